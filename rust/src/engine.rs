//! The resident engine: one thread that owns a Tokio runtime and every piece of warm state.
//!
//! uv's resolver and preparer build `!Send` futures that want a deep stack, so all work runs on a
//! single engine thread with uv's minimum stack size and a current-thread runtime (as uv's own
//! CLI does). Callers hand it jobs over a channel and wait for the reply. Between jobs the thread
//! rebuilds stale site-packages snapshots, so that this work is off the caller's clock.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Mutex, OnceLock};

use tokio::runtime::Runtime;
use uv_cache::Cache;
use uv_client::{BaseClient, BaseClientBuilder};
use uv_configuration::Concurrency;
use uv_python::{
    EnvironmentPreference, PythonEnvironment, PythonPreference, PythonRequest, Target,
};

use crate::environment::{DirStamp, EnvState};
use crate::error::{ErrorKind, FfiError, Result};
use crate::guard::panic_error;
use crate::command::InstallArgs;
use crate::index::KeptIndexes;
use crate::network::NetworkKey;

/// Where an environment lives: its prefix, and the `--target` folder if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvKey {
    pub root: PathBuf,
    pub target: Option<PathBuf>,
}

/// What one call uses besides its environment: the cache folder it names and the HTTP client
/// for its network settings, both kept warm between calls (cheap handles, cloned per call).
pub struct Shared {
    pub cache: Cache,
    pub client_builder: BaseClientBuilder<'static>,
    pub base_client: BaseClient,
    pub concurrency: Concurrency,
}

pub struct Engine {
    /// The cache named by `UV_CACHE_DIR` (or uv's default) when the engine started; interpreter
    /// facts are kept there.
    default_cache: Cache,
    /// Caches by folder (`--cache-dir`, `UV_CACHE_DIR`), each holding uv's shared lock.
    caches: HashMap<PathBuf, Cache>,
    /// Warm HTTP clients, one per network configuration.
    clients: HashMap<NetworkKey, (BaseClientBuilder<'static>, BaseClient)>,
    concurrency: Concurrency,
    /// Index pages kept between calls, per interpreter and index configuration.
    pub indexes: KeptIndexes,
    /// `--python` requests already answered, with the executable's stamp to notice a replacement.
    pythons: HashMap<String, (PythonEnvironment, DirStamp)>,
    pub envs: HashMap<EnvKey, EnvState>,
    /// The environment of the most recent call, used when a caller names none.
    pub last_env: Option<EnvKey>,
    /// Set by `index_clear`: the next resolution revalidates every index page.
    pub refresh_index: bool,
    /// Environments by last use, most recent last.
    recent: std::collections::VecDeque<EnvKey>,
}

/// How many environments keep uv's site-packages snapshot between calls.
const KEEP_SNAPSHOTS: usize = 4;

impl Engine {
    async fn start() -> Result<Self> {
        let dir = cache_dir(None);
        let default_cache = init_cache(&dir).await?;
        Ok(Self {
            caches: HashMap::from([(dir, default_cache.clone())]),
            default_cache,
            clients: HashMap::new(),
            concurrency: Concurrency::default(),
            indexes: KeptIndexes::default(),
            pythons: HashMap::new(),
            envs: HashMap::new(),
            last_env: None,
            refresh_index: false,
            recent: std::collections::VecDeque::new(),
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
            let client = key.build(worker_threads())?;
            self.clients.insert(key.clone(), client);
        }
        let (client_builder, base_client) = self.clients[&key].clone();
        Ok(Shared {
            cache,
            client_builder,
            base_client,
            concurrency: self.concurrency.clone(),
        })
    }

    /// Find (or reuse) the environment a call acts on, creating its state on first use.
    pub fn environment(
        &mut self,
        python: Option<&str>,
        system: bool,
        target: Option<&str>,
        cwd: &Path,
    ) -> Result<EnvKey> {
        let base = self.find_python(python, system, cwd)?;
        let target = target.map(|t| absolute(cwd, t));
        let key = EnvKey {
            root: base.root().to_path_buf(),
            target: target.clone(),
        };
        if !self.envs.contains_key(&key) {
            let env = match &target {
                Some(dir) => base.with_target(Target::from(dir.clone())).map_err(|err| {
                    FfiError::new(
                        ErrorKind::Install,
                        format!(
                            "Failed to prepare the target directory `{}`: {err}",
                            dir.display()
                        ),
                    )
                })?,
                None => base,
            };
            self.envs.insert(key.clone(), EnvState::new(env)?);
        }
        self.touch(&key);
        Ok(key)
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
            if p.contains(std::path::MAIN_SEPARATOR) {
                absolute(cwd, p).to_string_lossy().into_owned()
            } else {
                p.to_string()
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
        if let Some((env, stamp)) = self.pythons.get(&memo_key) {
            if stamp.matches_link(env.interpreter().sys_executable()) {
                return Ok(env.clone());
            }
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

    /// The environment a view call acts on: the one named, or the last one used.
    pub fn env_for_view(
        &mut self,
        python: Option<&str>,
        target: Option<&str>,
    ) -> Result<Option<EnvKey>> {
        match python {
            Some(_) => {
                let cwd = current_dir()?;
                self.environment(python, false, target, &cwd).map(Some)
            }
            None => Ok(self
                .last_env
                .clone()
                .filter(|key| self.envs.contains_key(key))),
        }
    }

    /// Work done while no caller is waiting: rebuild the snapshot of the last environment used.
    fn idle(&mut self) {
        if let Some(key) = &self.last_env {
            if let Some(state) = self.envs.get_mut(key) {
                if state.needs_rescan() && key.target.is_none() {
                    let _ = state.rescan();
                }
            }
        }
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
        }
        if evicted {
            release_free_memory();
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

/// Work for the engine thread: it gets the runtime, or the reason there is none.
type Job = Box<dyn FnOnce(std::result::Result<&Runtime, &str>) + Send>;

struct Handle {
    jobs: Mutex<Sender<Job>>,
    /// The process that started the engine thread: a forked child has no such thread.
    pid: u32,
}

static HANDLE: OnceLock<std::result::Result<Handle, String>> = OnceLock::new();

/// The engine's state. The engine thread holds the lock while it runs an install; callers hold
/// it briefly for synchronous work (an already-satisfied check, reading or patching a view), so
/// that work never waits for the engine thread to wake up.
static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

fn lock_engine() -> std::sync::MutexGuard<'static, Option<Engine>> {
    ENGINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Process-wide settings uv's crates expect to be made once, before any work.
fn init_globals() {
    // The first concurrent map uv creates registers a process-wide memory barrier, which costs a
    // scheduler grace period (about 15 ms here) once several threads exist. Pay it now, before
    // the rayon pool and the engine thread start, as uv's own CLI does.
    drop(uv_dispatch::SharedState::default());
    // Preview features are read while unpacking archives and creating build environments; the
    // setting must exist and be final before any of that.
    let _ = uv_preview::set(uv_preview::Preview::default());
    let _ = uv_preview::finalize();
    uv_configuration::initialize_rayon_once();
    crate::guard::install_quiet_panic_hook();
}

fn spawn_engine() -> std::result::Result<Handle, String> {
    init_globals();
    let (sender, receiver) = mpsc::channel::<Job>();
    let stack = uv_configuration::min_stack_size().max(8 * 1024 * 1024);
    std::thread::Builder::new()
        .name("uv-ffi-engine".to_string())
        .stack_size(stack)
        .spawn(move || engine_loop(receiver))
        .map_err(|err| format!("Failed to start the engine thread: {err}"))?;
    Ok(Handle {
        jobs: Mutex::new(sender),
        pid: std::process::id(),
    })
}

fn engine_loop(receiver: Receiver<Job>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(worker_threads())
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let error = format!("Failed to start the runtime: {err}");
            // Without a runtime nothing can run: every caller gets this error.
            while let Ok(job) = receiver.recv() {
                job(Err(&error));
            }
            return;
        }
    };
    let mut job = receiver.recv().ok();
    while let Some(next) = job {
        next(Ok(&runtime));
        job = match receiver.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) => {
                if let Some(engine) = lock_engine().as_mut() {
                    let _ = catch_unwind(AssertUnwindSafe(|| engine.idle()));
                }
                receiver.recv().ok()
            }
            Err(TryRecvError::Disconnected) => None,
        };
    }
}

/// After a panic, forget everything that a half-finished change may have left wrong.
fn recover_from_panic(engine: &mut Engine, payload: &(dyn std::any::Any + Send)) -> FfiError {
    engine.envs.clear();
    engine.last_env = None;
    engine.indexes.clear();
    panic_error(payload)
}

/// Run `work` on the engine thread (with the runtime) and wait for its answer. A panic inside
/// `work` is caught there and comes back as an error.
pub fn with_engine<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Engine, &Runtime) -> Result<T> + Send + 'static,
{
    let handle = HANDLE
        .get_or_init(spawn_engine)
        .as_ref()
        .map_err(|msg| FfiError::new(ErrorKind::Internal, msg.clone()))?;
    if handle.pid != std::process::id() {
        return Err(FfiError::new(
            ErrorKind::Internal,
            "The engine was started in a parent process and cannot run in a forked child; \
             use uv_ffi from the parent, or start children with the `spawn` method",
        ));
    }
    let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
    let job: Job = Box::new(move |runtime| {
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(message) => {
                let _ = reply.send(Err(FfiError::new(ErrorKind::Internal, message)));
                return;
            }
        };
        let mut guard = lock_engine();
        if guard.is_none() {
            match runtime.block_on(Engine::start()) {
                Ok(engine) => *guard = Some(engine),
                Err(err) => {
                    let _ = reply.send(Err(err));
                    return;
                }
            }
        }
        let engine = guard.as_mut().expect("started above");
        let outcome = catch_unwind(AssertUnwindSafe(|| work(engine, runtime)))
            .unwrap_or_else(|payload| Err(recover_from_panic(engine, payload.as_ref())));
        drop(guard);
        let _ = reply.send(outcome);
    });
    handle
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job)
        .map_err(|_| FfiError::new(ErrorKind::Internal, "The engine thread has stopped"))?;
    answer.recv().map_err(|_| {
        FfiError::new(
            ErrorKind::Internal,
            "The engine thread stopped before answering",
        )
    })?
}

/// Run `work` on the engine thread after stopping the engine: its caches, clients and views are
/// dropped (releasing its cache locks) and it starts again on the next call.
pub fn with_engine_stopped<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Runtime) -> Result<T> + Send + 'static,
{
    let handle = HANDLE
        .get_or_init(spawn_engine)
        .as_ref()
        .map_err(|msg| FfiError::new(ErrorKind::Internal, msg.clone()))?;
    let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
    let job: Job = Box::new(move |runtime| {
        let outcome = match runtime {
            Ok(runtime) => {
                let mut guard = lock_engine();
                *guard = None;
                catch_unwind(AssertUnwindSafe(|| work(runtime)))
                    .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
            }
            Err(message) => Err(FfiError::new(ErrorKind::Internal, message)),
        };
        let _ = reply.send(outcome);
    });
    handle
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job)
        .map_err(|_| FfiError::new(ErrorKind::Internal, "The engine thread has stopped"))?;
    answer.recv().map_err(|_| {
        FfiError::new(
            ErrorKind::Internal,
            "The engine thread stopped before answering",
        )
    })?
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

/// Threads for blocking file work (the runtime's pool, uv's cache reads): one per core. More
/// cannot run at once anyway, and each extra thread costs the host process a malloc arena.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The cache folder a call names (`--cache-dir`), else `UV_CACHE_DIR`, else uv's default, as
/// uv's CLI chooses it, so the engine and the `uv` command share downloaded and unpacked wheels.
fn cache_dir(given: Option<&str>) -> PathBuf {
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

async fn init_cache(dir: &Path) -> Result<Cache> {
    Cache::from_path(dir)
        .init()
        .await
        .map_err(|err| FfiError::from_uv(ErrorKind::Internal, &err))
}

pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|err| {
        FfiError::new(
            ErrorKind::Internal,
            format!("The current directory is not readable: {err}"),
        )
    })
}

fn absolute(cwd: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}
