//! The resident engine: one thread that owns a Tokio runtime and every piece of warm state.
//!
//! uv's resolver and preparer build `!Send` futures that want a deep stack, so all work runs on a
//! single engine thread with uv's minimum stack size and a current-thread runtime (as uv's own
//! CLI does). Callers hand it jobs over a channel and wait for the reply. Between jobs the thread
//! rebuilds stale site-packages snapshots, so that this work is off the caller's clock.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use rustc_hash::FxHashMap;
use tokio::runtime::Runtime;
use uv_cache::Cache;
use uv_client::{BaseClient, BaseClientBuilder};
use uv_configuration::Concurrency;
use uv_python::{
    EnvironmentPreference, Prefix, PythonEnvironment, PythonPreference, PythonRequest, Target,
};

use crate::command::InstallArgs;
use crate::environment::{DirStamp, EnvState};
use crate::error::{ErrorKind, FfiError, Result};
use crate::guard::panic_error;
use crate::index::KeptIndexes;
use crate::network::{self, NetworkKey, WarmClient};

/// Where an environment lives: its prefix, and the `--target` folder if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvKey {
    pub root: PathBuf,
    pub target: Option<PathBuf>,
    /// The `--prefix` folder, if any.
    pub prefix: Option<PathBuf>,
}

impl EnvKey {
    /// A `--target` or `--prefix` folder: often used once, so only the most recent few are
    /// kept, and they are never the "last environment" a call without `--python` means.
    pub fn is_one_off(&self) -> bool {
        self.target.is_some() || self.prefix.is_some()
    }
}

/// What one call uses besides its environment: the cache folder it names and the HTTP client
/// for its network settings, both kept warm between calls (cheap handles, cloned per call).
pub struct Shared {
    pub cache: Cache,
    pub client_builder: BaseClientBuilder<'static>,
    pub base_client: BaseClient,
    pub concurrency: Concurrency,
    /// The threads that link files: the engine's own pool (see `fork.rs`).
    pub pool: std::sync::Arc<rayon::ThreadPool>,
    /// What earlier installs learned of uv's unpacked archives (`archives.rs`).
    pub archives: std::sync::Arc<Mutex<crate::archives::Archives>>,
    /// Whether uv's cache can be cloned into each filesystem (`reflink.rs`).
    pub clone_support: std::sync::Arc<Mutex<crate::reflink::CloneSupport>>,
    /// What the engine keeps of the stashes between calls (`stash.rs`).
    pub stash_memory: std::sync::Arc<Mutex<crate::stash::Memory>>,
}

pub struct Engine {
    /// The cache named by `UV_CACHE_DIR` (or uv's default) when the engine started; interpreter
    /// facts are kept there.
    default_cache: Cache,
    /// Caches by folder (`--cache-dir`, `UV_CACHE_DIR`), each holding uv's shared lock.
    caches: HashMap<PathBuf, Cache>,
    /// Warm HTTP clients, one per network configuration (`network.rs`).
    clients: HashMap<NetworkKey, WarmClient>,
    /// Whether a client was asked for ahead of a call ([`Engine::build_client_ahead`]).
    client_asked: bool,
    concurrency: Concurrency,
    pool: std::sync::Arc<rayon::ThreadPool>,
    archives: std::sync::Arc<Mutex<crate::archives::Archives>>,
    clone_support: std::sync::Arc<Mutex<crate::reflink::CloneSupport>>,
    stash_memory: std::sync::Arc<Mutex<crate::stash::Memory>>,
    /// Index pages kept between calls, per interpreter (its facts: the virtual environments of
    /// one Python share them) and index configuration.
    pub indexes: KeptIndexes,
    /// `--python` requests already answered, with the executable's stamp to notice a replacement.
    pythons: FxHashMap<String, (PythonEnvironment, DirStamp)>,
    pub envs: FxHashMap<EnvKey, EnvState>,
    /// The environment of the most recent call, used when a caller names none.
    pub last_env: Option<EnvKey>,
    /// Set by `index_clear`: the next resolution revalidates every index page.
    pub refresh_index: bool,
    /// Environments by last use, most recent last.
    recent: std::collections::VecDeque<EnvKey>,
    /// Install plans waiting for the host's decision (`plan.rs`).
    pub plans: crate::plan::PendingPlans,
}

/// How many `--target` and `--prefix` folders keep their views between calls (each view holds a
/// copy of its interpreter's facts).
const KEEP_TARGETS: usize = 16;

/// How many environments keep uv's site-packages snapshot between calls.
const KEEP_SNAPSHOTS: usize = 4;

impl Engine {
    async fn start() -> Result<Self> {
        if FAIL_NEXT_START.swap(false, std::sync::atomic::Ordering::Relaxed) {
            panic!("requested by uv_ffi_debug_panic (while the engine starts)");
        }
        let dir = cache_dir(None);
        let default_cache = init_cache(&dir).await?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(worker_threads())
            .stack_size(uv_configuration::min_stack_size())
            .thread_name(|index| format!("uv-ffi-rayon-{index}"))
            .build()
            .map_err(|err| {
                FfiError::new(
                    ErrorKind::Internal,
                    format!("Failed to start the link threads: {err}"),
                )
            })?;
        Ok(Self {
            pool: std::sync::Arc::new(pool),
            archives: std::sync::Arc::default(),
            clone_support: std::sync::Arc::default(),
            stash_memory: std::sync::Arc::default(),
            caches: HashMap::from([(dir, default_cache.clone())]),
            default_cache,
            clients: HashMap::new(),
            client_asked: false,
            concurrency: Concurrency::default(),
            indexes: KeptIndexes::default(),
            pythons: FxHashMap::default(),
            envs: FxHashMap::default(),
            last_env: None,
            refresh_index: false,
            recent: std::collections::VecDeque::new(),
            plans: Default::default(),
        })
    }

    /// The cache and HTTP client a call's options and environment select, built on first use.
    pub fn shared_for(&mut self, args: &InstallArgs, runtime: &Runtime) -> Result<Shared> {
        let dir = cache_dir(args.cache_dir.as_deref());
        let cache = match self.caches.get(&dir) {
            Some(cache) => cache.clone(),
            None => {
                let cache = runtime.block_on(init_cache(&dir))?;
                self.caches.insert(dir, cache.clone());
                cache
            }
        };
        let key = NetworkKey::for_call(args)?;
        if !self.clients.contains_key(&key) {
            let client = key.client(worker_threads())?;
            self.clients.insert(key.clone(), client);
        }
        let warm = &self.clients[&key];
        let client_builder = if network::may_carry_credentials(args) {
            // Credentials one call learns must not serve a later call, as with a new `uv`
            // process: such a call gets a builder (and credential store) of its own.
            key.builder(worker_threads(), warm.certificates.clone())?
        } else {
            warm.builder.clone()
        };
        let base_client = warm.client.clone();
        Ok(Shared {
            cache,
            client_builder,
            base_client,
            concurrency: self.concurrency.clone(),
            pool: self.pool.clone(),
            archives: self.archives.clone(),
            clone_support: self.clone_support.clone(),
            stash_memory: self.stash_memory.clone(),
        })
    }

    /// For the first call that may use the network: build its HTTP client on the engine thread
    /// (loading certificates takes milliseconds) while this thread finds the call's interpreter
    /// (which may run it, the longest step of a first call). The call then finds it built.
    pub fn build_client_ahead(&mut self, args: &InstallArgs) {
        if self.client_asked || !self.clients.is_empty() {
            return;
        }
        self.client_asked = true;
        let Ok(key) = NetworkKey::for_call(args) else {
            return;
        };
        let _ = submit(Box::new(move |_| {
            // A failure is the call's to report, when it builds the client itself.
            let Ok(client) = key.client(worker_threads()) else {
                return;
            };
            if let Some(engine) = lock_engine().as_mut() {
                engine.clients.entry(key).or_insert(client);
            }
        }));
    }

    /// Find (or reuse) the environment a call acts on, creating its state on first use.
    pub fn environment(
        &mut self,
        python: Option<&str>,
        system: bool,
        target: Option<&str>,
        prefix: Option<&str>,
        cwd: &Path,
    ) -> Result<EnvKey> {
        let base = self.find_python(python, system, cwd)?;
        let key = EnvKey {
            root: base.root().to_path_buf(),
            target: target.map(|t| absolute(cwd, t)),
            prefix: prefix.map(|p| absolute(cwd, p)),
        };
        if let Some(target) = &key.target
            && !target.is_dir()
        {
            // A `--target` folder removed since it was last used is laid out afresh.
            self.envs.remove(&key);
        }
        let new = !self.envs.contains_key(&key);
        if new {
            let env = with_layout(base, &key)?;
            self.envs.insert(key.clone(), EnvState::new(env)?);
        }
        // A swap a killed process left half done is undone before anything reads the disk.
        let state = self.envs.get_mut(&key).expect("inserted above");
        if new {
            state.stash_journal =
                crate::stash::root_of(&key, state).map(|root| crate::stash::journal_of(&root));
        }
        if let Some(journal) = &state.stash_journal
            && crate::stash::recover_interrupted(journal)
        {
            state.invalidate();
        }
        // Touched first, so that the folder just added is among those kept.
        self.touch(&key);
        if new && key.is_one_off() {
            self.forget_old_targets();
        }
        Ok(key)
    }

    /// Keep the views of the `--target` (and `--prefix`) folders used most recently, up to
    /// [`KEEP_TARGETS`].
    fn forget_old_targets(&mut self) {
        let targets = self.envs.keys().filter(|k| k.is_one_off()).count();
        if targets <= KEEP_TARGETS {
            return;
        }
        let recent: Vec<EnvKey> = self
            .recent
            .iter()
            .rev()
            .take(KEEP_TARGETS)
            .cloned()
            .collect();
        self.envs
            .retain(|key, _| !key.is_one_off() || recent.contains(key));
    }

    /// The views of one `--target` folder (as given, or the same folder reached another way),
    /// or of every `--target` folder when `target` is `None`.
    pub fn target_keys(&self, target: Option<&Path>) -> Vec<EnvKey> {
        let resolved = target.map(|t| std::fs::canonicalize(t).unwrap_or_else(|_| t.to_path_buf()));
        let same = |kept: &Path| match (target, &resolved) {
            (None, _) => true,
            (Some(given), Some(resolved)) => {
                kept == given || std::fs::canonicalize(kept).is_ok_and(|k| &k == resolved)
            }
            (Some(given), None) => kept == given,
        };
        // Most recently used first.
        let mut keys: Vec<EnvKey> = self
            .envs
            .keys()
            .filter(|key| key.target.as_deref().is_some_and(same))
            .cloned()
            .collect();
        keys.sort_by_key(|key| std::cmp::Reverse(self.recent.iter().position(|k| k == key)));
        keys
    }

    /// Forget the views of one `--target` folder, or of all of them; returns how many.
    pub fn forget_targets(&mut self, target: Option<&Path>) -> usize {
        let keys = self.target_keys(target);
        for key in &keys {
            self.envs.remove(key);
        }
        keys.len()
    }

    fn find_python(
        &mut self,
        python: Option<&str>,
        system: bool,
        cwd: &Path,
    ) -> Result<PythonEnvironment> {
        // Relative paths are relative to the caller's directory at call time, not to the
        // directory the process had when uv first looked.
        let request_text = python.map(|p| {
            if p.contains(std::path::MAIN_SEPARATOR) && !Path::new(p).is_absolute() {
                std::borrow::Cow::Owned(absolute(cwd, p).to_string_lossy().into_owned())
            } else {
                std::borrow::Cow::Borrowed(p)
            }
        });
        let memo_key = match &request_text {
            Some(text) => format!("{system}:{text}"),
            None => format!(
                "{system}:default:{:?}:{:?}:{}",
                std::env::var_os("VIRTUAL_ENV"),
                std::env::var_os("CONDA_PREFIX"),
                cwd.display()
            ),
        };
        // A recreated environment has a new executable entry; `lstat` notices that without
        // following the links to the base interpreter. (An interpreter replaced in place is
        // noticed after `view_invalidate`, which forgets these lookups.)
        if let Some((env, stamp)) = self.pythons.get(&memo_key)
            && stamp.matches_link(env.interpreter().sys_executable())
        {
            return Ok(env.clone());
        }
        let request = request_text
            .as_deref()
            .map(PythonRequest::parse)
            .unwrap_or_default();
        let env = PythonEnvironment::find(
            &request,
            EnvironmentPreference::from_system_flag(system, true),
            PythonPreference::default().with_system_flag(system),
            &self.default_cache,
        )
        .map_err(|err| FfiError::from_uv(ErrorKind::PythonNotFound, &err))?;
        let stamp = DirStamp::read_link(env.interpreter().sys_executable());
        // A different interpreter at the same prefix (a recreated or upgraded environment)
        // invalidates everything known about it; the same interpreter reached by another
        // spelling of `--python` keeps its state.
        let fresh = env.interpreter();
        self.envs.retain(|key, state| {
            key.root != env.root()
                || (state.env.interpreter().sys_executable() == fresh.sys_executable()
                    && state.env.interpreter().markers() == fresh.markers())
        });
        self.pythons.insert(memo_key, (env.clone(), stamp));
        Ok(env)
    }

    /// What the engine keeps of the stashes between calls (`stash.rs`).
    pub fn stash_memory(&self) -> std::sync::Arc<Mutex<crate::stash::Memory>> {
        self.stash_memory.clone()
    }

    pub fn archives(&self) -> std::sync::Arc<Mutex<crate::archives::Archives>> {
        self.archives.clone()
    }

    /// The kept index pages and one environment's state, borrowed together.
    pub fn parts(&mut self, key: &EnvKey) -> (&mut KeptIndexes, &mut EnvState) {
        let state = self
            .envs
            .get_mut(key)
            .expect("environment() registers every key it returns");
        (&mut self.indexes, state)
    }

    /// Drop every view: a command run through uv's own command line may have changed any
    /// environment. The next use of each rescans (the interpreter lookups stay: a recreated
    /// environment is noticed by its executable's stamp).
    pub fn forget_everything_on_disk(&mut self) {
        for state in self.envs.values_mut() {
            state.invalidate();
        }
    }

    /// The state of an environment found earlier, if it is still known.
    pub fn environment_again(&mut self, key: &EnvKey) -> Option<&mut EnvState> {
        self.envs.get_mut(key)
    }

    /// Forget which interpreters `--python` requests found, for an environment's prefix.
    pub fn forget_python(&mut self, root: &Path) {
        self.pythons.retain(|_, (env, _)| env.root() != root);
    }

    /// The environment a view call acts on: the one named (an interpreter, a `--target` folder,
    /// or both), or the last one used. A `--target` folder named alone is looked at with the
    /// interpreter it was last used with, else that of the last environment used.
    pub fn env_for_view(
        &mut self,
        python: Option<&str>,
        target: Option<&str>,
    ) -> Result<Option<EnvKey>> {
        let cwd = current_dir()?;
        match (python, target) {
            (Some(_), _) => self
                .environment(python, false, target, None, &cwd)
                .map(Some),
            (None, Some(folder)) => {
                let given = absolute(&cwd, folder);
                if let Some(key) = self.target_keys(Some(&given)).into_iter().next() {
                    self.touch(&key);
                    return Ok(Some(key));
                }
                let python = self
                    .last_env
                    .as_ref()
                    .map(|key| key.root.to_string_lossy().into_owned());
                self.environment(python.as_deref(), false, target, None, &cwd)
                    .map(Some)
            }
            (None, None) => Ok(self
                .last_env
                .clone()
                .filter(|key| self.envs.contains_key(key))),
        }
    }

    /// The environment whose site-packages folder (or `--target` folder) holds `folder`.
    pub fn env_holding(&self, folder: &Path) -> Option<EnvKey> {
        let resolved = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
        let holds =
            |dir: &Path| dir == folder || std::fs::canonicalize(dir).is_ok_and(|d| d == resolved);
        let mut keys: Vec<&EnvKey> = self
            .envs
            .iter()
            .filter(|(_, state)| state.site_dirs().iter().any(|d| holds(d)))
            .map(|(key, _)| key)
            .collect();
        // The most recently used, when several views share the folder.
        keys.sort_by_key(|key| std::cmp::Reverse(self.recent.iter().position(|k| k == *key)));
        keys.first().map(|key| (*key).clone())
    }

    /// Work done while no caller is waiting: rebuild the snapshot of the last environment used,
    /// and drop the snapshots of the others. Returns whether memory was freed.
    fn idle(&mut self) -> bool {
        if let Some(key) = &self.last_env
            && let Some(state) = self.envs.get_mut(key)
            && state.may_rescan_when_idle()
            && !key.is_one_off()
        {
            let _ = state.rescan();
        }
        // The manifests of the entries swaps stashed, then the stashes a call used brought back
        // within their bounds (see `stash::tidy`).
        crate::stash::write_unwritten(&self.stash_memory);
        for (key, state) in &mut self.envs {
            if std::mem::take(&mut state.stash_untidy)
                && let Some(root) = crate::stash::root_of(key, state)
            {
                crate::stash::tidy(&root);
            }
        }
        // Spares for the trees the next swaps link again (`spare.rs`).
        crate::spare::refill(&self.stash_memory);
        // uv's snapshots carry a copy of the interpreter each: keep them only for the
        // environments used most recently. The views themselves are kept.
        let keep: Vec<EnvKey> = self
            .recent
            .iter()
            .rev()
            .take(KEEP_SNAPSHOTS)
            .cloned()
            .collect();
        let mut evicted = false;
        for (key, state) in &mut self.envs {
            if !keep.contains(key) && !state.needs_rescan() {
                state.evict_snapshot();
                evicted = true;
            }
            if !keep.contains(key) && state.resolutions.forget_all() {
                evicted = true;
            }
        }
        evicted
    }

    /// How long until every view waiting to be confirmed can be ([`EnvState::settles_in`]).
    fn settle_wait(&self) -> Option<std::time::Duration> {
        self.envs.values().filter_map(EnvState::settles_in).max()
    }

    /// Confirm the views whose folders' stamps can now be trusted ([`EnvState::settle`]).
    fn settle_views(&mut self) {
        for state in self.envs.values_mut() {
            state.settle();
        }
    }

    /// Note that `key` was just used (most recent last).
    pub fn touch(&mut self, key: &EnvKey) {
        if self.recent.back() != Some(key) {
            self.recent.retain(|k| k != key);
            self.recent.push_back(key.clone());
            if self.recent.len() > 64 {
                self.recent.pop_front();
            }
        }
    }
}

/// Test hook: the next engine start panics (see `uv_ffi_debug_panic`).
pub static FAIL_NEXT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The environment as `--target` or `--prefix` lays it out (created if missing, as uv does).
fn with_layout(base: PythonEnvironment, key: &EnvKey) -> Result<PythonEnvironment> {
    let failed = |dir: &Path, err: &dyn std::fmt::Display| {
        FfiError::new(
            ErrorKind::Install,
            format!("Failed to prepare the directory `{}`: {err}", dir.display()),
        )
    };
    match (&key.target, &key.prefix) {
        (Some(dir), _) => base
            .with_target(Target::from(dir.clone()))
            .map_err(|err| failed(dir, &err)),
        (None, Some(dir)) => base
            .with_prefix(Prefix::from(dir.clone()))
            .map_err(|err| failed(dir, &err)),
        (None, None) => Ok(base),
    }
}

/// Work for the engine thread: it gets the runtime, or the reason there is none.
type Job = Box<dyn FnOnce(std::result::Result<&Runtime, &str>) + Send>;

/// The way to the engine thread of this process.
pub(crate) struct Handle {
    jobs: Sender<Job>,
    /// The process that started the engine thread: a forked child has no such thread.
    pid: u32,
}

/// The engine thread's queue. Empty before the first call, after a failed start, and in a
/// forked child (see `fork.rs`); the next call then starts a fresh engine thread.
static HANDLE: Mutex<Option<Handle>> = Mutex::new(None);

/// The engine's state. The engine thread holds the lock while it runs an install; callers hold
/// it briefly for synchronous work (an already-satisfied check, reading or patching a view), so
/// that work never waits for the engine thread to wake up.
static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

pub(crate) fn lock_handle() -> std::sync::MutexGuard<'static, Option<Handle>> {
    HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn lock_engine() -> std::sync::MutexGuard<'static, Option<Engine>> {
    ENGINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In a forked child: forget the parent's engine without running any of its destructors (they
/// would wait for threads that do not exist here). Called with both locks held.
pub(crate) fn forget_parent_engine(handle: &mut Option<Handle>, engine: &mut Option<Engine>) {
    std::mem::forget(handle.take());
    std::mem::forget(engine.take());
}

/// Process-wide settings uv's crates expect to be made once, before any work.
fn init_globals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // uv reads the current directory once, on first use, and exits the process if it is
        // gone by then: read it now, while it exists.
        if std::env::current_dir().is_ok() {
            std::sync::LazyLock::force(&uv_fs::CWD);
        }
        // The first concurrent map uv creates registers a process-wide memory barrier, which
        // costs a scheduler grace period (about 15 ms here) once several threads exist. Pay it
        // now, before the rayon pool and the engine thread start, as uv's own CLI does.
        drop(uv_dispatch::SharedState::default());
        // Preview features are read while unpacking archives and creating build environments;
        // the setting must exist and be final before any of that.
        let _ = uv_preview::set(uv_preview::Preview::default());
        let _ = uv_preview::finalize();
        uv_configuration::initialize_rayon_once();
    });
}

fn spawn_engine() -> Result<Handle> {
    init_globals();
    let (sender, receiver) = mpsc::channel::<Job>();
    let stack = uv_configuration::min_stack_size().max(8 * 1024 * 1024);
    std::thread::Builder::new()
        .name("uv-ffi-engine".to_string())
        .stack_size(stack)
        .spawn(move || engine_loop(receiver))
        .map_err(|err| {
            FfiError::new(
                ErrorKind::Internal,
                format!("Failed to start the engine thread: {err}"),
            )
        })?;
    Ok(Handle {
        jobs: sender,
        pid: std::process::id(),
    })
}

fn engine_loop(receiver: Receiver<Job>) {
    // Blocking threads are not capped below tokio's default: uv waits for file locks on them
    // (`flock` on a cache entry), and with as few threads as cores, the waiters could take
    // every thread and the holder could never finish.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("uv-ffi-blocking")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            // Without a runtime nothing can run: answer the job that is waiting and stop, so
            // that the next call starts a new engine thread.
            let error = format!("Failed to start the runtime: {err}");
            if let Ok(job) = receiver.recv() {
                job(Err(&error));
            }
            return;
        }
    };
    let mut job = receiver.recv().ok();
    // Memory freed by evicted snapshots, not yet handed back to the system.
    let mut untrimmed = false;
    while let Some(next) = job {
        next(Ok(&runtime));
        let waited = if IDLE_LATER.with(|later| later.replace(false)) {
            receiver.recv_timeout(IDLE_DELAY).map_err(|err| match err {
                mpsc::RecvTimeoutError::Timeout => TryRecvError::Empty,
                mpsc::RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
            })
        } else {
            receiver.try_recv()
        };
        job = match waited {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) => {
                if let Some(engine) = lock_engine().as_mut() {
                    untrimmed |= catch_unwind(AssertUnwindSafe(|| engine.idle())).unwrap_or(false);
                }
                next_job_or_trim(&receiver, &mut untrimmed)
            }
            Err(TryRecvError::Disconnected) => None,
        };
    }
}

/// Wait for the next job. The views of environments the engine just changed are confirmed once
/// their folders' stamps can be trusted (`EnvState::settle`: then the next call's check needs
/// no listing), once per idle spell. Freed memory goes back to the system only once the engine
/// has been idle for a while: trimming between back-to-back calls would make each call fault
/// its memory back in.
fn next_job_or_trim(receiver: &Receiver<Job>, untrimmed: &mut bool) -> Option<Job> {
    let settle_after = lock_engine().as_ref().and_then(Engine::settle_wait);
    if let Some(wait) = settle_after {
        match receiver.recv_timeout(wait) {
            Ok(job) => return Some(job),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(engine) = lock_engine().as_mut() {
                    let _ = catch_unwind(AssertUnwindSafe(|| engine.settle_views()));
                }
            }
        }
    }
    if *untrimmed {
        match receiver.recv_timeout(TRIM_AFTER_IDLE) {
            Ok(job) => return Some(job),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                release_free_memory();
                *untrimmed = false;
            }
        }
    }
    receiver.recv().ok()
}

/// How long the engine waits idle before it hands freed memory back to the system.
const TRIM_AFTER_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// After a panic, forget everything that a half-finished change may have left wrong.
fn recover_from_panic(engine: &mut Engine, payload: &(dyn std::any::Any + Send)) -> FfiError {
    engine.envs.clear();
    engine.last_env = None;
    engine.indexes.clear();
    panic_error(payload)
}

/// Hand `job` to this process's engine thread, starting one if there is none (first call,
/// a failed start, a forked child). A thread that has stopped is replaced once.
fn submit(job: Job) -> Result<()> {
    let mut handle = lock_handle();
    let pid = std::process::id();
    if handle.as_ref().is_none_or(|h| h.pid != pid) {
        *handle = Some(spawn_engine()?);
    }
    let job = match handle.as_ref().expect("set above").jobs.send(job) {
        Ok(()) => return Ok(()),
        Err(mpsc::SendError(job)) => job,
    };
    *handle = Some(spawn_engine()?);
    handle
        .as_ref()
        .expect("set above")
        .jobs
        .send(job)
        .map_err(|_| FfiError::new(ErrorKind::Internal, "The engine thread has stopped"))
}

/// Run a job on the engine thread and wait for its answer.
fn on_engine_thread<T: Send + 'static>(
    work: impl FnOnce(&Runtime) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
    submit(Box::new(move |runtime| {
        let outcome = match runtime {
            Ok(runtime) => catch_unwind(AssertUnwindSafe(|| work(runtime)))
                .unwrap_or_else(|payload| Err(panic_error(payload.as_ref()))),
            Err(message) => Err(FfiError::new(ErrorKind::Internal, message)),
        };
        let _ = reply.send(outcome);
    }))?;
    answer.recv().map_err(|_| {
        FfiError::new(
            ErrorKind::Internal,
            "The engine thread stopped before answering",
        )
    })?
}

/// Run `work` on the engine thread (with the runtime) and wait for its answer. The engine is
/// started first if needed; a failure or panic while it starts is an error for this call, and
/// the next call tries again. A panic inside `work` comes back as an error.
pub fn with_engine<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Engine, &Runtime) -> Result<T> + Send + 'static,
{
    on_engine_thread(move |runtime| {
        let mut guard = lock_engine();
        if guard.is_none() {
            *guard = Some(runtime.block_on(Engine::start())?);
        }
        let engine = guard.as_mut().expect("started above");
        catch_unwind(AssertUnwindSafe(|| work(engine, runtime)))
            .unwrap_or_else(|payload| Err(recover_from_panic(engine, payload.as_ref())))
    })
}

/// Let the engine thread do its idle work (`Engine::idle`: rebuild the snapshot a call made
/// stale, tidy a stash) after a call that changed an environment without it. Not waited for.
pub fn wake_for_idle_work() {
    let _ = submit(Box::new(|_| IDLE_LATER.with(|later| later.set(true))));
}

thread_local! {
    /// Set on the engine thread by [`wake_for_idle_work`]'s job: wait [`IDLE_DELAY`] before the
    /// idle work, so that it does not take the CPU from the caller that just woke it.
    static IDLE_LATER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How long the idle work waits after a wake from a call that did not need the engine thread.
const IDLE_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// Run `work` on the engine thread after stopping the engine: its caches, clients and views are
/// dropped (releasing its cache locks) and it starts again on the next call.
pub fn with_engine_stopped<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Runtime) -> Result<T> + Send + 'static,
{
    on_engine_thread(move |runtime| {
        *lock_engine() = None;
        work(runtime)
    })
}

/// Run synchronous `work` on the caller's thread, starting the engine first if needed.
pub fn with_engine_here<T>(work: impl FnOnce(&mut Engine) -> Result<T>) -> Result<T> {
    {
        let mut guard = lock_engine();
        if let Some(engine) = guard.as_mut() {
            return catch_unwind(AssertUnwindSafe(|| work(engine)))
                .unwrap_or_else(|payload| Err(recover_from_panic(engine, payload.as_ref())));
        }
    }
    // The engine is started on its own thread, where the runtime lives.
    with_engine(|_, _| Ok(()))?;
    let mut guard = lock_engine();
    let engine = guard
        .as_mut()
        .ok_or_else(|| FfiError::new(ErrorKind::Internal, "The engine did not start"))?;
    catch_unwind(AssertUnwindSafe(|| work(engine)))
        .unwrap_or_else(|payload| Err(recover_from_panic(engine, payload.as_ref())))
}

/// Hand memory freed by evicted snapshots back to the system instead of keeping it in the
/// allocator's free lists, where it would still count against the host's resident size.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Threads for linking files and reading uv's HTTP cache: one per core. More cannot run at once
/// anyway, and each extra thread costs the host process a malloc arena.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The cache folder a call names (`--cache-dir`), else `UV_CACHE_DIR`, else uv's default, as
/// uv's CLI chooses it, so the engine and the `uv` command share downloaded and unpacked wheels.
pub(crate) fn cache_dir(given: Option<&str>) -> PathBuf {
    if let Some(dir) = given.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("UV_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = uv_dirs::legacy_user_cache_dir().filter(|dir| dir.exists()) {
        return dir;
    }
    uv_dirs::user_cache_dir().unwrap_or_else(|| PathBuf::from(".uv_cache"))
}

/// The absolute cache folder a call names, as uv's command line would use it.
pub fn cache_root(given: Option<&str>, cwd: &Path) -> PathBuf {
    absolute(cwd, &cache_dir(given).to_string_lossy())
}

async fn init_cache(dir: &Path) -> Result<Cache> {
    Cache::from_path(dir)
        .init()
        .await
        .map_err(|err| FfiError::from_uv(ErrorKind::Internal, &err))
}

pub fn current_dir() -> Result<PathBuf> {
    let unreadable = |err: std::io::Error| {
        FfiError::new(
            ErrorKind::Internal,
            format!("The current directory is not readable: {err}"),
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // Every call reads it: into the stack, then one allocation of its size (the standard
        // library's version allocates 512 bytes and then shrinks them).
        let mut buffer = std::mem::MaybeUninit::<[u8; 4096]>::uninit();
        // SAFETY: `getcwd` writes at most the buffer's length, a NUL-terminated path, on success.
        let found = unsafe { libc::getcwd(buffer.as_mut_ptr().cast(), 4096) };
        if found.is_null() {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ERANGE) {
                return Err(unreadable(err));
            }
            // Longer than the buffer: the standard library grows its own.
            return std::env::current_dir().map_err(unreadable);
        }
        // SAFETY: `getcwd` succeeded, so the buffer holds a NUL-terminated path.
        let path = unsafe { std::ffi::CStr::from_ptr(found) };
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes())))
    }
    #[cfg(not(unix))]
    std::env::current_dir().map_err(unreadable)
}

fn absolute(cwd: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}
