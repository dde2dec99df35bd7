//! `pip install` on the warm engine: read requirements, check whether the environment already
//! satisfies them, otherwise resolve, plan, prepare, uninstall and link, then update the view
//! from the changelog.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use tokio::runtime::Runtime;
use uv_configuration::{BuildOptions, NoBinary, NoBuild, PackageNameSpecifier, Reinstall, Upgrade};
use uv_distribution_types::{Index, IndexLocations, IndexUrl, InstalledDist, Name};
use uv_install_wheel::LinkMode;
use uv_requirements::{RequirementsSource, RequirementsSpecification};
use uv_requirements_txt::RequirementsTxtRequirement;
use uv_resolver::Prerelease;

use crate::command::InstallArgs;
use crate::engine::{EnvKey, Shared};
use crate::environment::EnvState;
use crate::error::{ErrorKind, FfiError, Result};
use crate::index::{IndexPages, KeptIndexes};
use crate::plan::{KeptResolution, KeptResolutions, PlanEntry, PlanStep};
use crate::profile::Profile;
use crate::replan::{PlanBasis, PlanInputs};
use crate::stages;

/// A `(name, version)` pair, PEP 503-normalised name.
pub type Pair = (String, String);

/// The outcome of one `pip install`.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReply {
    pub exit_code: i32,
    /// `(name, version)` pairs, PEP 503-normalised names, sorted.
    pub installed: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// `""` on success (the field exists for the upstream tuple API).
    pub error: String,
    /// The prefix of the environment acted on (null for commands that name none), and the
    /// `--target` folder if any.
    pub environment: Option<PathBuf>,
    pub target: Option<PathBuf>,
    /// True if the environment already satisfied the request and nothing was touched.
    pub satisfied: bool,
    pub dry_run: bool,
    /// `"warm"`: the engine ran it; `"uv"`: uv's own command line ran it in this process;
    /// `"printed"`: uv's parser answered (`--help`, `--version`).
    pub engine: &'static str,
    /// What the command printed (uv's command line and parser only; the warm engine prints
    /// nothing).
    pub stdout: String,
    pub stderr: String,
    /// True when the call failed on index pages kept from earlier calls and succeeded when
    /// retried with fresh ones.
    pub index_retried: bool,
    /// For a warm call asked with `"plan": true`: what it would do (empty when nothing).
    pub plan: Option<Vec<PlanEntry>>,
    /// Set when the call stopped at its plan and kept it for `uv_ffi_plan_apply`.
    pub plan_id: Option<u64>,
    /// For a call asked with `"progress": true`: the events no poll took.
    pub progress: Option<Vec<crate::progress::Event>>,
    /// For `pip list/freeze/show/check` answered by the engine: the answer as data (a
    /// `read::ReadAnswer`, documented with `uv_ffi_run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<serde_json::Value>,
    /// Microseconds spent in each phase. Written last: everything before it is the same in two
    /// answers to the same question, so a host can keep decoded replies by that part.
    pub timings_us: Vec<(&'static str, u64)>,
}

impl InstallReply {
    /// The reply of a warm call.
    pub fn warm(
        key: &EnvKey,
        installed: Vec<(String, String)>,
        removed: Vec<(String, String)>,
        satisfied: bool,
        dry_run: bool,
        profile: Profile,
    ) -> Self {
        Self {
            exit_code: 0,
            installed,
            removed,
            error: String::new(),
            environment: Some(key.root.clone()),
            target: key.target.clone(),
            satisfied,
            dry_run,
            timings_us: profile.finish(),
            engine: "warm",
            stdout: String::new(),
            stderr: String::new(),
            index_retried: false,
            plan: None,
            plan_id: None,
            progress: None,
            read: None,
        }
    }

    /// The reply when uv's parser answered without running anything.
    pub fn printed(printed: crate::capture::Printed, exit_code: i32, profile: Profile) -> Self {
        Self {
            exit_code,
            installed: Vec::new(),
            removed: Vec::new(),
            error: String::new(),
            environment: None,
            target: None,
            satisfied: false,
            dry_run: false,
            timings_us: profile.finish(),
            engine: "printed",
            stdout: printed.stdout,
            stderr: printed.stderr,
            index_retried: false,
            plan: None,
            plan_id: None,
            progress: None,
            read: None,
        }
    }
}

/// What the caller asked of the policy for this call.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// Compare the environment's fingerprint with the disk before trusting the view.
    pub check: bool,
    /// Rescan and retry once if an install meets a view that disagrees with the disk.
    pub heal: bool,
    /// Revalidate every index page this call reads (after `index_clear`, or on a retry).
    pub refresh_index: bool,
    /// Do not use index pages kept from earlier calls.
    pub fresh_index: bool,
    /// How long kept index pages may be used.
    pub index_ttl: std::time::Duration,
}

/// What one warm call is about: its request, and what the engine chose for it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub key: &'a EnvKey,
    pub runtime: &'a Runtime,
    pub args: &'a InstallArgs,
    /// The request's identity for the "already satisfied" memo.
    pub command: &'a str,
    pub cwd: &'a Path,
    pub policy: CallPolicy,
    /// Apply as uv does, stop at the plan, or apply a plan kept earlier.
    pub step: PlanStep<'a>,
}

/// Run one install; also returns the resolution when the call stopped at its plan.
pub fn run(
    call: Call<'_>,
    indexes: &mut KeptIndexes,
    state: &mut EnvState,
    mut profile: Profile,
) -> Result<(InstallReply, Option<KeptResolution>)> {
    let Call {
        key,
        runtime,
        args,
        command,
        cwd,
        policy,
        ..
    } = call;
    if let Some(reply) = already_satisfied(state, key, args, command, cwd, policy, &mut profile) {
        return Ok((reply, None));
    }
    let memo = memo_key(args, command, cwd);
    let outcome = runtime.block_on(install(call, indexes, state, memo.clone(), &mut profile));
    let outcome = match outcome {
        Err(err) if policy.heal && err.kind == ErrorKind::Install && state.check() => {
            // The environment changed under us (another tool): rescan and try once more.
            state.counters.heals += 1;
            runtime.block_on(install(call, indexes, state, memo, &mut profile))
        }
        other => other,
    };
    let Changes {
        installed,
        removed,
        satisfied,
        plan,
        kept,
    } = outcome?;
    let mut reply = reply(key, args, installed, removed, satisfied, profile);
    reply.plan = plan;
    Ok((reply, kept))
}

/// The fast answer, on the caller's thread: the same request was already found satisfied and
/// the environment has not changed since (checked first, unless the policy trusts the view).
pub fn already_satisfied(
    state: &mut EnvState,
    key: &EnvKey,
    args: &InstallArgs,
    command: &str,
    cwd: &Path,
    policy: CallPolicy,
    profile: &mut Profile,
) -> Option<InstallReply> {
    if policy.check {
        state.check();
        profile.mark("check");
    }
    let memo = memo_key(args, command, cwd)?;
    if !state.is_known_satisfied(&memo) {
        return None;
    }
    profile.mark("satisfied");
    Some(reply(
        key,
        args,
        Vec::new(),
        Vec::new(),
        true,
        profile.clone(),
    ))
}

fn reply(
    key: &EnvKey,
    args: &InstallArgs,
    installed: Vec<(String, String)>,
    removed: Vec<(String, String)>,
    satisfied: bool,
    profile: Profile,
) -> InstallReply {
    InstallReply::warm(key, installed, removed, satisfied, args.dry_run, profile)
}

/// A request whose answer depends only on the environment can be remembered as satisfied until
/// the environment changes. Requirement files may change on disk, so those are never remembered.
/// The command's text (with the directory relative paths are resolved in) identifies the request.
pub(crate) fn memo_key(args: &InstallArgs, command: &str, cwd: &Path) -> Option<String> {
    if !args.requirements.is_empty() || !args.constraints.is_empty() || args.changes_anyway() {
        return None;
    }
    let cwd = cwd.as_os_str().to_string_lossy();
    let mut key = String::with_capacity(cwd.len() + command.len() + 1);
    key.push_str(&cwd);
    key.push('\0');
    key.push_str(command);
    Some(key)
}

struct Changes {
    installed: Vec<(String, String)>,
    removed: Vec<(String, String)>,
    satisfied: bool,
    /// The plan, when the call reports it.
    plan: Option<Vec<PlanEntry>>,
    /// The resolution behind a plan the call stopped at.
    kept: Option<KeptResolution>,
}

impl Changes {
    fn none(satisfied: bool) -> Self {
        Self {
            installed: Vec::new(),
            removed: Vec::new(),
            satisfied,
            plan: None,
            kept: None,
        }
    }
}

/// One install, stage by stage (`stages.rs`).
async fn install(
    call: Call<'_>,
    indexes: &mut KeptIndexes,
    state: &mut EnvState,
    memo: Option<String>,
    profile: &mut Profile,
) -> Result<Changes> {
    let spec = stages::read_requirements(call).await?;
    profile.mark("requirements");
    if !call.args.break_system_packages {
        check_externally_managed(&state.env)?;
    }
    // The environment's lock (uv's, shared with its CLI), held for the rest of the call as uv
    // holds it: from before the environment is read until its files have changed.
    // A call that only reports its plan changes nothing, so it leaves no lock file behind.
    let env = state.env.clone();
    let _lock = match call.step {
        PlanStep::Report => None,
        PlanStep::Apply | PlanStep::Execute(_) => lock_environment(call.key, &env).await,
    };
    // A swap killed while another process held the lock is undone now, before the
    // environment is read: undone later, it would change what this call planned against.
    // (Without a lock uv goes on, and so does the engine: the journal is undone all the same.)
    if !matches!(call.step, PlanStep::Report)
        && let Some(journal) = &state.stash_journal
        && crate::stash::recover_locked(journal)
    {
        state.invalidate();
    }
    profile.mark("lock");
    let settings = stages::Settings::new(call, &spec, state)?;
    profile.mark("settings");
    if settings.reinstall.is_none() && settings.upgrade.is_none() {
        let satisfied = stages::satisfied_already(state, &spec)?;
        profile.mark("satisfied-check");
        if satisfied {
            remember(state, memo);
            return Ok(Changes::none(true));
        }
    }
    let (pages, key, reused) = stages::index_pages(call, indexes, &settings, state).await?;
    profile.mark(if reused { "index-kept" } else { "index-fresh" });
    if let Some(memo) = &memo
        && settings.may_reuse_pages
    {
        state.asked.note(memo, call.args, &key);
    }
    // From here on the answer may depend on what the kept pages say: see below.
    match resolve_and_apply(call, &settings, &pages, spec, state, memo, profile).await {
        Ok(changes) => {
            if !reused {
                indexes.keep(key, pages);
            }
            Ok(changes)
        }
        Err(mut err) => {
            indexes.drop_after_failure(&key);
            // Fresh pages cannot change an error about the request itself, or a stop the
            // host asked for.
            let not_about_pages = matches!(
                err.kind,
                ErrorKind::InvalidCommand | ErrorKind::InvalidRequirement | ErrorKind::Stopped
            );
            if reused && !not_about_pages {
                err.retry = Some(crate::error::Retry::FreshIndex);
            }
            Err(err)
        }
    }
}

/// Resolve, plan, and carry out the plan (or report it, for a dry run).
async fn resolve_and_apply(
    call: Call<'_>,
    settings: &stages::Settings,
    pages: &IndexPages,
    spec: RequirementsSpecification,
    state: &mut EnvState,
    memo: Option<String>,
    profile: &mut Profile,
) -> Result<Changes> {
    let env = state.env.clone();
    let (tags, markers) = (state.tags().clone(), state.markers.clone());
    // Resolution and planning see this exact snapshot (the planner insists on it).
    let site = state.site_packages()?.clone();
    let build = stages::BuildInputs::default();
    let context = stages::Context::new(call, settings, pages, env.interpreter(), &tags, &build);
    let reuse = reuse_key(call, memo.as_deref(), pages, state);
    let kept = reuse
        .as_deref()
        .and_then(|inputs| with_kept(call, pages, state, |kept| kept.get(inputs)));
    let (resolution, hasher, kept_plan) = match (call.step, kept) {
        (PlanStep::Execute(kept), _) => (kept.resolution.clone(), kept.hasher.clone(), None),
        (PlanStep::Apply | PlanStep::Report, Some(kept)) => {
            state.counters.resolutions_reused += 1;
            (kept.resolution, kept.hasher, kept.plan)
        }
        (PlanStep::Apply | PlanStep::Report, None) => {
            let (resolution, hasher) = stages::resolve(&context, spec, &markers, &site).await?;
            if let Some(inputs) = &reuse {
                let kept = KeptResolution {
                    resolution: resolution.clone(),
                    hasher: hasher.clone(),
                    plan: None,
                };
                with_kept(call, pages, state, |resolutions| {
                    resolutions.keep(inputs.clone(), kept)
                });
            }
            (resolution, hasher, None)
        }
    };
    profile.mark("resolve");
    let inputs = PlanInputs {
        resolution: &resolution,
        site: &site,
        cache: &settings.cache,
        index_locations: &settings.index_locations,
    };
    let plan = match kept_plan.and_then(|kept| kept.plan(&inputs)) {
        Some(plan) => {
            state.counters.plans_reused += 1;
            plan
        }
        None => {
            // Read before the planner runs: a change while it runs then shows later.
            let basis = reuse.as_ref().and_then(|_| PlanBasis::read(&inputs));
            let plan = stages::plan(&context, &resolution, &hasher, site, state)?;
            if let (Some(inputs), Some(kept)) = (&reuse, basis.and_then(|b| b.keep(&plan))) {
                with_kept(call, pages, state, |resolutions| {
                    resolutions.keep_plan(inputs, kept)
                });
            }
            plan
        }
    };
    profile.mark("plan");
    let entries =
        matches!(call.step, PlanStep::Report).then(|| crate::plan::install_entries(&plan));
    if call.args.dry_run {
        let (installed, removed) = stages::dry_run_changes(&plan);
        return Ok(Changes {
            installed,
            removed,
            satisfied: false,
            plan: entries,
            kept: None,
        });
    }
    if stages::is_empty(&plan) {
        remember(state, memo);
        return Ok(Changes {
            plan: entries,
            ..Changes::none(true)
        });
    }
    if entries.is_some() {
        // The host decides; nothing on disk changes in this call.
        return Ok(Changes {
            plan: entries,
            kept: Some(KeptResolution {
                resolution,
                hasher,
                plan: None,
            }),
            ..Changes::none(false)
        });
    }
    let (installed, removed) =
        stages::apply(&context, plan, &resolution, &hasher, state, profile).await?;
    profile.mark("changelog");
    Ok(Changes {
        installed,
        removed,
        satisfied: false,
        plan: None,
        kept: None,
    })
}

/// uv's environment lock (the same file uv locks: `.lock` in the `--target` or `--prefix`
/// folder, or in the virtual environment). uv tries the lock on a blocking thread; when it is
/// free, taking it here saves that round trip. When it is busy, or for a system interpreter
/// (whose lock file uv names itself), uv's own wait is used.
pub async fn lock_environment(
    key: &EnvKey,
    env: &uv_python::PythonEnvironment,
) -> Option<uv_fs::LockedFile> {
    if let Some(locked) = lock_environment_now(key, env) {
        return Some(locked);
    }
    env.lock().await.ok()
}

/// uv's environment lock when it can be taken at once: `None` when another process holds it,
/// or for a system interpreter (whose lock file uv names itself).
pub fn lock_environment_now(
    key: &EnvKey,
    env: &uv_python::PythonEnvironment,
) -> Option<uv_fs::LockedFile> {
    let interpreter = env.interpreter();
    let folder = match (&key.target, &key.prefix) {
        (Some(target), _) => target.as_path(),
        (None, Some(prefix)) => prefix.as_path(),
        (None, None) if interpreter.is_virtualenv() => interpreter.sys_prefix(),
        (None, None) => return None,
    };
    let mode = uv_fs::LockedFileMode::Exclusive;
    let resource = folder.display().to_string();
    uv_fs::LockedFile::acquire_no_wait(folder.join(".lock"), mode, resource)
}

/// The inputs a resolution depends on, when a later call can reuse it: the same request (words
/// and directory, without requirement files or `--upgrade`/`--reinstall`: see [`memo_key`]),
/// against the same kept index pages, with the environment's view the same. The environment
/// itself is the key's owner, but for an empty `--target` folder (see [`shares_resolutions`]).
/// A call on freshly read pages resolves.
fn reuse_key(
    call: Call<'_>,
    memo: Option<&str>,
    pages: &IndexPages,
    state: &EnvState,
) -> Option<String> {
    reuse_key_of(call.args, memo?, pages.generation, state)
}

/// [`reuse_key`] from its parts: the request, its memo key, and the generation of its kept
/// index pages (0: read fresh by this call).
pub(crate) fn reuse_key_of(
    args: &InstallArgs,
    memo: &str,
    generation: u64,
    state: &EnvState,
) -> Option<String> {
    if generation == 0 {
        return None;
    }
    let request = match &args.target {
        Some(folder) if shares_resolutions(args, state) => without_folder(memo, folder)?,
        _ => memo.to_string(),
    };
    Some(format!(
        "{generation}\0{:x}\0{request}",
        state.view_digest()
    ))
}

/// Whether this call's resolution may serve other folders: a `--target` folder that holds no
/// distribution asks what every such folder asks (a host filling new folders with one request
/// resolves once). A folder holding some does not share: what it holds may come from elsewhere
/// than another folder's same versions.
pub(crate) fn shares_resolutions(args: &InstallArgs, state: &EnvState) -> bool {
    args.target.is_some() && state.holds_nothing()
}

/// Act on the resolutions reusable by this call: its environment's, or, when it shares them
/// (see [`shares_resolutions`]), those kept with the index pages for every empty folder.
fn with_kept<T>(
    call: Call<'_>,
    pages: &IndexPages,
    state: &mut EnvState,
    act: impl FnOnce(&mut KeptResolutions) -> T,
) -> T {
    if !shares_resolutions(call.args, state) {
        return act(&mut state.resolutions);
    }
    match pages.target_resolutions.lock() {
        Ok(mut shared) => act(&mut shared),
        // A panic while they were held: start again from none.
        Err(poisoned) => {
            let mut shared = poisoned.into_inner();
            *shared = KeptResolutions::default();
            act(&mut shared)
        }
    }
}

/// A request's words (`memo`, `\0`-separated) with its `--target` folder left out (either
/// spelling, `--target DIR` or `--target=DIR`); `None` unless exactly one word names it, so two
/// requests differing in more than the folder never share a key.
fn without_folder(memo: &str, folder: &str) -> Option<String> {
    let joined = format!("--target={folder}");
    let words: Vec<&str> = memo.split('\0').collect();
    if words
        .iter()
        .filter(|w| **w == folder || **w == joined)
        .count()
        != 1
    {
        return None;
    }
    let mut kept = Vec::with_capacity(words.len());
    let mut rest = words.iter().peekable();
    while let Some(word) = rest.next() {
        if *word == "--target" && rest.peek() == Some(&&folder) {
            rest.next();
            kept.push("--target=");
        } else if *word == joined || *word == folder {
            kept.push("--target=");
        } else {
            kept.push(word);
        }
    }
    Some(kept.join("\0"))
}

/// Remember a request as satisfied until the environment changes (when it can be remembered).
fn remember(state: &mut EnvState, memo: Option<String>) {
    if let Some(memo) = memo {
        state.remember_satisfied(memo);
    }
}

/// `-r` / `-c` files (relative to `cwd`) as uv's requirement sources.
pub fn file_sources(
    files: &[String],
    cwd: &Path,
    source: fn(PathBuf) -> anyhow::Result<RequirementsSource>,
) -> Result<Vec<RequirementsSource>> {
    files
        .iter()
        .map(|file| source(cwd.join(file)))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|err| FfiError::from_anyhow(ErrorKind::InvalidRequirement, &err))
}

/// Read requirement and constraint sources with uv's own reader.
pub async fn read_specification(
    shared: &Shared,
    sources: &[RequirementsSource],
    constraints: &[RequirementsSource],
) -> Result<RequirementsSpecification> {
    RequirementsSpecification::from_sources(
        sources,
        constraints,
        &[],
        &[],
        None,
        &shared.client_builder,
    )
    .await
    .map_err(|err| FfiError::from_anyhow(ErrorKind::InvalidRequirement, &err))
}

/// One requirement given on the command line (a specifier, URL or path), relative to `cwd`.
pub fn parse_argument(package: &str, cwd: &Path) -> Result<RequirementsTxtRequirement> {
    RequirementsTxtRequirement::parse(package, cwd, false).map_err(|err| {
        FfiError::new(
            ErrorKind::InvalidRequirement,
            format!("Failed to parse: `{package}`\n  Caused by: {err}"),
        )
    })
}

/// Refuse to change an environment that is externally managed (PEP 668).
pub fn check_externally_managed(env: &uv_python::PythonEnvironment) -> Result<()> {
    let Some(managed) = env.interpreter().is_externally_managed() else {
        return Ok(());
    };
    let detail = managed.into_error().unwrap_or_default();
    let mut err = FfiError::new(
        ErrorKind::ExternallyManaged,
        format!(
            "The interpreter at {} is externally managed and cannot be modified{}{}",
            env.root().display(),
            if detail.is_empty() { "" } else { ":\n\n" },
            detail
        ),
    );
    err.hints.push(
        "pass `--break-system-packages` to change it anyway, or use a virtual environment"
            .to_string(),
    );
    Err(err)
}

pub fn installed_pair(dist: &InstalledDist) -> (String, String) {
    (dist.name().to_string(), dist.version().to_string())
}

/// `--link-mode`, else `UV_LINK_MODE`, else uv's own default.
pub(crate) fn link_mode(args: &InstallArgs) -> Result<LinkMode> {
    let text = args
        .link_mode
        .clone()
        .or_else(|| std::env::var("UV_LINK_MODE").ok().filter(|v| !v.is_empty()));
    value_of("--link-mode", text.as_deref())
}

pub(crate) fn prerelease(args: &InstallArgs) -> Result<Prerelease> {
    Ok(Prerelease {
        global: value_of("--prerelease", args.prerelease.as_deref())?,
        ..Prerelease::default()
    })
}

/// A value of one of uv's enumerated options, read with uv's own spelling rules (clap's
/// `ValueEnum`, aliases included); the default when absent.
pub(crate) fn value_of<T: clap::ValueEnum + Default>(
    option: &str,
    text: Option<&str>,
) -> Result<T> {
    match text {
        None => Ok(T::default()),
        Some(text) => T::from_str(text, false).map_err(|err| {
            FfiError::new(
                ErrorKind::InvalidCommand,
                format!("error: invalid value '{text}' for '{option}': {err}"),
            )
        }),
    }
}

/// `--reinstall` and `--reinstall-package`.
pub(crate) fn reinstall_of(args: &InstallArgs) -> Result<Reinstall> {
    let packages = names(&args.reinstall_packages)?;
    Ok(Reinstall::from_args(args.reinstall.then_some(true), packages).unwrap_or_default())
}

/// `--upgrade` and `--upgrade-package` (whose requirements also constrain the upgrade).
pub(crate) fn upgrade_of(args: &InstallArgs) -> Result<Upgrade> {
    let packages = args
        .upgrade_packages
        .iter()
        .map(|text| {
            uv_pep508::Requirement::<uv_pypi_types::VerbatimParsedUrl>::from_str(text)
                .map(uv_distribution_types::Requirement::from)
                .map_err(|err| {
                    FfiError::new(
                        ErrorKind::InvalidRequirement,
                        format!("Failed to parse: `{text}`\n  Caused by: {err}"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Upgrade::from_args(args.upgrade.then_some(true), packages, Vec::new()).unwrap_or_default())
}

/// `--only-binary`, `--no-binary` and `--no-build`, with pip's meaning.
pub(crate) fn build_options_of(args: &InstallArgs) -> Result<BuildOptions> {
    let specifiers = |values: &[String]| {
        values
            .iter()
            .map(|text| {
                PackageNameSpecifier::from_str(text).map_err(|err| {
                    FfiError::new(
                        ErrorKind::InvalidCommand,
                        format!("Invalid package name `{text}`: {err}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
    };
    Ok(BuildOptions::new(
        NoBinary::from_pip_args(specifiers(&args.no_binary)?),
        NoBuild::from_pip_args(specifiers(&args.only_binary)?, args.no_build),
    ))
}

fn names(values: &[String]) -> Result<Vec<uv_normalize::PackageName>> {
    values
        .iter()
        .map(|text| {
            uv_normalize::PackageName::from_str(text).map_err(|err| {
                FfiError::new(
                    ErrorKind::InvalidRequirement,
                    format!("Invalid package name `{text}`: {err}"),
                )
            })
        })
        .collect()
}

/// Index locations as uv orders them: extra indexes first, then the default index, then any
/// given inside requirement files; `--find-links` locations are flat indexes.
pub(crate) fn index_locations(
    args: &InstallArgs,
    spec: &RequirementsSpecification,
    cwd: &Path,
) -> Result<IndexLocations> {
    let parse = |text: &str| {
        IndexUrl::parse(text, Some(cwd)).map_err(|err| {
            FfiError::new(
                ErrorKind::InvalidCommand,
                format!("Invalid index location `{text}`: {err}"),
            )
        })
    };
    let mut indexes = Vec::new();
    for url in &args.extra_index_urls {
        indexes.push(Index::from_extra_index_url(parse(url)?));
    }
    if let Some(url) = &args.index_url {
        indexes.push(Index::from_index_url(parse(url)?));
    }
    let mut flat = Vec::new();
    for url in &args.find_links {
        flat.push(Index::from_find_links(parse(url)?));
    }
    let from_files: Vec<Index> = spec
        .extra_index_urls
        .iter()
        .cloned()
        .map(Index::from_extra_index_url)
        .chain(spec.index_url.clone().map(Index::from_index_url))
        .collect();
    let flat_from_files: Vec<Index> = spec
        .find_links
        .iter()
        .cloned()
        .map(Index::from_find_links)
        .collect();
    Ok(IndexLocations::new(indexes, flat, args.no_index).combine(
        from_files,
        flat_from_files,
        spec.no_index,
    ))
}

/// Where relative paths in a request are resolved.
pub fn request_cwd(cwd: Option<&str>) -> Result<PathBuf> {
    match cwd {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => crate::engine::current_dir(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_folder;

    #[test]
    fn a_target_folder_is_left_out_in_either_spelling() {
        let spaced = without_folder("/cwd\0pip\0install\0--target\0/t/a\0beta", "/t/a");
        let joined = without_folder("/cwd\0pip\0install\0--target=/t/b\0beta", "/t/b");
        assert_eq!(
            spaced.as_deref(),
            Some("/cwd\0pip\0install\0--target=\0beta")
        );
        assert_eq!(spaced, joined);
    }

    #[test]
    fn a_folder_named_twice_keeps_the_request_apart() {
        // The folder is also a requirement here: leaving both out would make `/t/a` and `/t/b`
        // the same question.
        assert_eq!(
            without_folder("/cwd\0pip\0install\0--target\0/t/a\0/t/a", "/t/a"),
            None
        );
    }
}
