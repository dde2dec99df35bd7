//! The operations behind the C functions: one request type and one reply type each.
//! Requests reject unknown fields so that a drifting caller fails loudly.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::command::{Command, InstallArgs};
use crate::engine::{Engine, EnvKey, with_engine, with_engine_here, with_engine_stopped};
use crate::environment;
use crate::environment::{DirStamp, ViewCounters};
use crate::error::{ErrorKind, FfiError, Result};
use crate::fallback;
use crate::guard::RequestText;
use crate::index::IndexCounters;
use crate::install::{self, CallPolicy, InstallReply};
use crate::plan::{self, KeptResolution, PendingPlan, PlanRequest, PlanStep};
use crate::profile::Profile;
use crate::progress;
use crate::read;
use crate::request::{self, ReadCall, Route, UvCall};

/// Bumped whenever a request or reply changes incompatibly.
pub const ABI_VERSION: u32 = 2;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Serialize)]
pub struct InfoReply {
    pub abi_version: u32,
    pub version: &'static str,
    pub uv_version: &'static str,
}

pub fn info(_: Empty) -> Result<InfoReply> {
    Ok(InfoReply {
        abi_version: ABI_VERSION,
        version: env!("CARGO_PKG_VERSION"),
        uv_version: "0.12.5",
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseRequest {
    /// The command line (shell quoting rules), or `argv`: the words themselves.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub cwd: Option<String>,
}

#[derive(Serialize)]
pub struct ParseReply {
    pub argv: Vec<String>,
    #[serde(flatten)]
    pub understanding: request::Understanding,
}

/// Understand a command without running it: both parsers' answers and the route it would take.
pub fn parse(request: ParseRequest) -> Result<ParseReply> {
    let parsed = crate::parsed::parsed(request.command.as_deref(), request.argv.as_deref())?;
    let cwd = install::request_cwd(request.cwd.as_deref())?;
    let understanding = request::understand(&parsed.argv, &cwd);
    Ok(ParseReply {
        argv: parsed.argv.clone(),
        understanding,
    })
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The command line (shell quoting rules), or `argv`: the words themselves.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// The directory relative paths are resolved against; the process's by default.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Compare the environment's fingerprint with the disk before trusting the view.
    #[serde(default = "yes")]
    pub check: bool,
    /// Rescan and retry once if an install meets a view that disagrees with the disk.
    #[serde(default = "yes")]
    pub heal: bool,
    /// Read index pages fresh (and revalidate the HTTP cache) instead of using kept ones.
    #[serde(default)]
    pub fresh_index: bool,
    /// How long index pages kept from earlier calls may be used, in milliseconds.
    #[serde(default = "default_index_ttl_ms")]
    pub index_ttl_ms: u64,
    /// Retry once with fresh index pages when a call that used kept pages fails.
    #[serde(default = "yes")]
    pub retry_fresh_index: bool,
    /// Stop a warm install or uninstall at its plan, report it and keep it (see `plan.rs`).
    #[serde(default)]
    pub plan: bool,
    /// Record progress events for a warm call (see `progress.rs`).
    #[serde(default)]
    pub progress: bool,
}

impl RunRequest {
    /// A request with every policy at its default.
    pub fn with_defaults(command: String) -> Self {
        Self {
            command: Some(command),
            argv: None,
            cwd: None,
            check: true,
            heal: true,
            fresh_index: false,
            index_ttl_ms: default_index_ttl_ms(),
            retry_fresh_index: true,
            plan: false,
            progress: false,
        }
    }
}

/// Ten minutes, the lifetime PyPI gives its simple pages.
pub fn default_index_ttl_ms() -> u64 {
    600_000
}

pub fn run(request: RunRequest) -> Result<InstallReply> {
    let profile = Profile::start();
    let parsed = crate::parsed::parsed(request.command.as_deref(), request.argv.as_deref())?;
    run_parsed(&request, &parsed, profile)
}

/// [`run`] of a request as the host sent it (`uv_ffi_run`): a request sent before is not read
/// again (`parsed.rs`).
pub fn run_text(request: RequestText<RunRequest>) -> Result<InstallReply> {
    let profile = Profile::start();
    let read = crate::parsed::run_request(request.text)?;
    run_parsed(&read.request, &read.parsed, profile)
}

fn run_parsed(
    request: &RunRequest,
    parsed: &crate::parsed::Parsed,
    mut profile: Profile,
) -> Result<InstallReply> {
    let argv = &parsed.argv;
    let cwd = install::request_cwd(request.cwd.as_deref())?;
    let route = request::route(argv, parsed.fast.clone(), &cwd)?;
    profile.mark("parse");
    match route {
        Route::Warm(command) => {
            match run_warm_with_retry(&command, parsed, request, &cwd, profile) {
                // Rare (a project file as a requirement source): its timings start afresh.
                Err(err) if err.kind == ErrorKind::DeferToUv => {
                    match request::route_to_uv(argv, &cwd)? {
                        Route::Uv(call) => run_uv(*call, cwd, Profile::start()),
                        _ => Err(err),
                    }
                }
                other => other,
            }
        }
        Route::Read(call) => run_read(*call, request, cwd, profile),
        Route::Uv(call) => run_uv(*call, cwd, profile),
        Route::Printed { printed, exit_code } => {
            Ok(InstallReply::printed(printed, exit_code, profile))
        }
    }
}

/// The warm call, retried once with fresh index pages when it failed after using kept ones (a
/// release published since the pages were read may change the answer). The policy lives here,
/// so callers through C get it too.
fn run_warm_with_retry(
    command: &Command,
    parsed: &crate::parsed::Parsed,
    request: &RunRequest,
    cwd: &Path,
    profile: Profile,
) -> Result<InstallReply> {
    // Nothing is cloned for the retry up front: this is the path of every warm call.
    match run_warm(command, parsed, request, cwd, profile) {
        Err(err)
            if err.retry == Some(crate::error::Retry::FreshIndex) && request.retry_fresh_index =>
        {
            let fresh = RunRequest {
                fresh_index: true,
                ..request.clone()
            };
            let mut reply = run_warm(command, parsed, &fresh, cwd, Profile::start())?;
            reply.index_retried = true;
            Ok(reply)
        }
        other => other,
    }
}

/// A `pip install` / `pip uninstall` on the warm engine.
fn run_warm(
    command: &Command,
    parsed: &crate::parsed::Parsed,
    request: &RunRequest,
    cwd: &Path,
    mut profile: Profile,
) -> Result<InstallReply> {
    let (args, uninstall): (&InstallArgs, bool) = match command {
        Command::PipInstall(args) => (args, false),
        Command::PipUninstall(args) => (args, true),
    };
    let mut policy = CallPolicy {
        check: request.check,
        heal: request.heal,
        refresh_index: false,
        fresh_index: request.fresh_index,
        index_ttl: std::time::Duration::from_millis(request.index_ttl_ms),
    };
    let (argv, command_text) = (&parsed.argv, &parsed.joined);
    let verbose = args.verbose > 0 || crate::logging::enabled();
    if !uninstall && !args.changes_anyway() {
        // An install that is already satisfied is answered here, without waking the engine
        // thread, and so is a swap asked again (`fast_swap.rs`) by a call that neither reports
        // its plan nor records progress. The answer says whether the disk was checked, and the
        // reply if nothing more is to be done.
        let may_swap_here = !request.plan && !request.progress;
        let fast = with_engine_here(|engine| {
            engine.build_client_ahead(args);
            let key = environment_of(engine, args, cwd)?;
            let one_off = key.is_one_off();
            if one_off && !may_swap_here {
                return Ok((false, None));
            }
            if !one_off && engine.last_env.as_ref() != Some(&key) {
                engine.last_env = Some(key.clone());
            }
            let (_, state) = engine.parts(&key);
            let mut attempt = profile.clone();
            attempt.mark("environment");
            // A `--target` or `--prefix` folder is not remembered as satisfied (see `is_one_off`).
            let satisfied = if one_off {
                if policy.check {
                    state.check();
                    attempt.mark("check");
                }
                None
            } else {
                install::already_satisfied(
                    state,
                    &key,
                    args,
                    command_text,
                    cwd,
                    policy,
                    &mut attempt,
                )
            };
            if satisfied.is_some() || !may_swap_here {
                return Ok((true, satisfied));
            }
            let checked = CallPolicy {
                check: false,
                ..policy
            };
            let swapped = install::memo_key(args, command_text, cwd).and_then(|memo| {
                crate::fast_swap::swap(engine, &key, args, &memo, checked, &mut attempt)
            });
            Ok((true, swapped))
        })?;
        match fast {
            (_, Some(reply)) if !reply.satisfied => {
                // A swap made here: the engine thread rebuilds the snapshot it made stale.
                crate::engine::wake_for_idle_work();
                if verbose {
                    crate::logging::print_changes(&reply.installed, &reply.removed);
                }
                return Ok(reply);
            }
            (_, Some(mut reply)) => {
                // Already satisfied: a call that asked for its plan gets the empty one.
                if request.plan {
                    reply.plan = Some(Vec::new());
                }
                return Ok(reply);
            }
            // The disk was just compared with the view; the engine thread need not do it again.
            (true, None) => policy.check = false,
            (false, None) => {}
        }
        // What the answer here cost a call that goes on to the engine thread.
        profile.mark("here");
    }
    let cwd = cwd.to_path_buf();
    // The engine thread needs its own copy; the already-satisfied answer above did not.
    let args = args.clone();
    // Only a call that may stop at its plan keeps the words to apply it later.
    let pending = request
        .plan
        .then(|| (command.clone(), argv.to_vec(), request.clone()));
    let progress = request.progress;
    let command_text = command_text.clone();
    let reply = with_engine(move |engine, runtime| {
        // From the call's request to the engine thread taking it up.
        profile.mark("hop");
        let call = WarmCall {
            args: &args,
            uninstall,
            command: &command_text,
            cwd: &cwd,
            policy,
        };
        let step = if pending.is_some() {
            PlanStep::Report
        } else {
            PlanStep::Apply
        };
        let (key, mut reply, kept) = recording_progress(progress, || {
            warm_on_engine(engine, runtime, call, profile, step)
        })?;
        if let Some((command, argv, request)) = pending {
            keep_plan(
                engine,
                &key,
                &mut reply,
                kept,
                command,
                argv,
                request,
                cwd.clone(),
            );
        }
        Ok(reply)
    })?;
    if verbose {
        crate::logging::print_changes(&reply.installed, &reply.removed);
    }
    Ok(reply)
}

/// What a warm call is about, for the part that runs on the engine thread.
#[derive(Clone, Copy)]
struct WarmCall<'a> {
    args: &'a InstallArgs,
    uninstall: bool,
    /// The request's identity for the "already satisfied" memo.
    command: &'a str,
    cwd: &'a Path,
    policy: CallPolicy,
}

/// The warm install or uninstall on the engine thread. Returns the environment acted on, the
/// reply, and the resolution behind a plan the call stopped at.
fn warm_on_engine(
    engine: &mut Engine,
    runtime: &tokio::runtime::Runtime,
    call: WarmCall<'_>,
    mut profile: Profile,
    step: PlanStep<'_>,
) -> Result<(EnvKey, InstallReply, Option<KeptResolution>)> {
    let WarmCall { args, cwd, .. } = call;
    let mut policy = call.policy;
    let key = environment_of(engine, args, cwd)?;
    profile.mark("environment");
    if !key.is_one_off() {
        engine.last_env = Some(key.clone());
    }
    policy.refresh_index = std::mem::take(&mut engine.refresh_index);
    let shared = engine.shared_for(args, runtime)?;
    profile.mark("client");
    let (indexes, state) = engine.parts(&key);
    if let PlanStep::Execute(_) = step {
        // A plan kept for `plan_apply` holds only while the installed distributions do.
        state.check();
    }
    let install_call = install::Call {
        shared: &shared,
        key: &key,
        runtime,
        args,
        command: call.command,
        cwd,
        policy,
        step,
    };
    let (reply, kept) = if call.uninstall {
        (crate::uninstall::run(install_call, state, profile)?, None)
    } else {
        install::run(install_call, indexes, state, profile)?
    };
    Ok((key, reply, kept))
}

/// Run `work` recording progress events when asked, and put what no poll took in its reply.
fn recording_progress<K, R>(
    asked: bool,
    work: impl FnOnce() -> Result<(K, InstallReply, R)>,
) -> Result<(K, InstallReply, R)> {
    if !asked {
        return work();
    }
    progress::begin();
    let outcome = work();
    let events = progress::finish();
    outcome.map(|(key, mut reply, rest)| {
        reply.progress = Some(events);
        (key, reply, rest)
    })
}

/// After a call asked for its plan: keep a plan that changes something, and say so in the reply.
#[allow(clippy::too_many_arguments)]
fn keep_plan(
    engine: &mut Engine,
    key: &EnvKey,
    reply: &mut InstallReply,
    kept: Option<KeptResolution>,
    command: Command,
    argv: Vec<String>,
    request: RunRequest,
    cwd: PathBuf,
) {
    let plan = reply.plan.get_or_insert_with(Vec::new);
    if plan.is_empty() || reply.dry_run {
        return;
    }
    let Some(state) = engine.environment_again(key) else {
        return;
    };
    let listing = environment::installed_on_disk(&state.site_dirs());
    let pending = PendingPlan {
        command,
        argv,
        request: RunRequest {
            plan: false,
            ..request
        },
        cwd,
        key: key.clone(),
        kept,
        listing,
    };
    reply.plan_id = Some(engine.plans.keep(pending));
}

/// Carry out a plan kept by an earlier call: exactly its resolution, and only if the installed
/// distributions are still the ones it was made against.
pub fn plan_apply(request: PlanRequest) -> Result<InstallReply> {
    let request_progress = request.progress;
    with_engine(move |engine, runtime| {
        let pending = engine.plans.take(request.plan_id)?;
        let PendingPlan {
            command,
            argv,
            request,
            cwd,
            key,
            kept,
            listing,
        } = pending;
        let (args, uninstall) = match &command {
            Command::PipInstall(args) => (args, false),
            Command::PipUninstall(args) => (args, true),
        };
        // The same words name the same environment (found again if its view was forgotten).
        let found = environment_of(engine, args, &cwd)?;
        let (_, state) = engine.parts(&found);
        if found != key || environment::installed_on_disk(&state.site_dirs()) != listing {
            return Err(plan::changed_since(&key));
        }
        let call = WarmCall {
            args,
            uninstall,
            command: &argv.join("\0"),
            cwd: &cwd,
            policy: CallPolicy {
                check: request.check,
                heal: false,
                refresh_index: false,
                fresh_index: false,
                index_ttl: std::time::Duration::from_millis(request.index_ttl_ms),
            },
        };
        let step = match &kept {
            Some(kept) => PlanStep::Execute(kept),
            None => PlanStep::Apply,
        };
        let (_, reply, _) = recording_progress(request_progress, || {
            warm_on_engine(engine, runtime, call, Profile::start(), step)
        })?;
        Ok(reply)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// Ask the running call to stop where it safely can.
    #[serde(default)]
    pub stop: bool,
}

#[derive(Serialize)]
pub struct ProgressReply {
    /// The events recorded since the last poll.
    pub events: Vec<progress::Event>,
    /// Whether a call that records progress is running.
    pub running: bool,
    /// Whether a stop was asked of a running call by this poll.
    pub stop_requested: bool,
}

/// The progress of the running call, from any thread, without waiting for the engine.
pub fn progress_poll(request: ProgressRequest) -> Result<ProgressReply> {
    let stop_requested = request.stop && progress::request_stop();
    let (events, running) = progress::drain();
    Ok(ProgressReply {
        events,
        running,
        stop_requested,
    })
}

#[derive(Serialize)]
pub struct DiscardReply {
    /// False when no such plan was waiting.
    pub discarded: bool,
}

/// Drop a kept plan: the host took it over, or decided against it.
pub fn plan_discard(request: PlanRequest) -> Result<DiscardReply> {
    with_engine_here(move |engine| {
        Ok(DiscardReply {
            discarded: engine.plans.take(request.plan_id).is_ok(),
        })
    })
}

/// Any other command, through uv's own command line in this process.
fn run_uv(call: UvCall, cwd: PathBuf, mut profile: Profile) -> Result<InstallReply> {
    let outcome = if call.needs_cache_lock {
        // The warm engine holds a shared lock on its caches; `cache clean` waits for an
        // exclusive one. Stop the engine (it restarts on the next call) and run without it.
        with_engine_stopped(move |runtime| fallback::run_without_engine(runtime, call, &cwd))?
    } else {
        with_engine(move |engine, runtime| fallback::run(engine, runtime, call, &cwd))?
    };
    profile.mark("uv");
    let fallback::UvOutcome {
        exit_code,
        printed,
        installed,
        removed,
        environment,
    } = outcome;
    if exit_code != 0 {
        return Err(FfiError::failed(exit_code, printed));
    }
    Ok(InstallReply {
        exit_code,
        installed,
        removed,
        error: String::new(),
        environment: environment.as_ref().map(|key| key.root.clone()),
        target: environment.and_then(|key| key.target),
        satisfied: false,
        dry_run: false,
        timings_us: profile.finish(),
        engine: "uv",
        stdout: printed.stdout,
        stderr: printed.stderr,
        index_retried: false,
        plan: None,
        plan_id: None,
        progress: None,
        read: None,
    })
}

/// `pip list/freeze/show/check` from the engine's snapshot of the environment; uv's own
/// command line runs it when the engine cannot find that environment (uv then reports why).
fn run_read(
    call: ReadCall,
    request: &RunRequest,
    cwd: PathBuf,
    mut profile: Profile,
) -> Result<InstallReply> {
    let loudness = read::Loudness {
        quiet: call.args.quiet,
    };
    if let Some(outcome) = read::answer_without_environment(&call.command, loudness) {
        return read_reply(outcome, None, profile);
    }
    let check = request.check;
    let here = cwd.clone();
    let answered = with_engine(move |engine, _runtime| {
        let ReadCall { command, args, uv } = call;
        let Ok(key) = environment_of(engine, &args, &here) else {
            return Ok(Err(uv));
        };
        let cache_root = crate::engine::cache_root(args.cache_dir.as_deref(), &here);
        let (_, state) = engine.parts(&key);
        if check {
            state.check();
        }
        let context = read::ReadContext {
            loudness,
            cwd: &here,
            cache_root: &cache_root,
        };
        // What uv would report as an error (an unreadable distribution, a missing RECORD) is
        // left to uv's own command line, which reports it in its words.
        let Ok(outcome) = read::answer(&command, state, &context) else {
            return Ok(Err(uv));
        };
        state.counters.reads += 1;
        Ok(Ok((outcome, key)))
    })?;
    profile.mark("read");
    match answered {
        Ok((outcome, key)) => read_reply(outcome, Some(key), profile),
        Err(uv) => match uv.route(&cwd)? {
            Route::Uv(call) => run_uv(*call, cwd, profile),
            Route::Printed { printed, exit_code } => {
                Ok(InstallReply::printed(printed, exit_code, profile))
            }
            Route::Warm(_) | Route::Read(_) => Err(FfiError::new(
                ErrorKind::Internal,
                "uv's command line was asked for a read and routed it elsewhere".to_string(),
            )),
        },
    }
}

fn read_reply(
    outcome: read::ReadOutcome,
    key: Option<EnvKey>,
    profile: Profile,
) -> Result<InstallReply> {
    let read::ReadOutcome {
        exit_code,
        stdout,
        stderr,
        answer,
    } = outcome;
    let answer = serde_json::to_value(&answer).ok();
    if exit_code != 0 {
        let mut err = FfiError::failed(exit_code, crate::capture::Printed { stdout, stderr });
        err.read = answer.map(Box::new);
        return Err(err);
    }
    Ok(InstallReply {
        exit_code,
        installed: Vec::new(),
        removed: Vec::new(),
        error: String::new(),
        environment: key.as_ref().map(|key| key.root.clone()),
        target: key.and_then(|key| key.target),
        satisfied: false,
        dry_run: false,
        timings_us: profile.finish(),
        engine: "view",
        stdout,
        stderr,
        index_retried: false,
        plan: None,
        plan_id: None,
        progress: None,
        read: answer,
    })
}

/// The environment a command's options name.
fn environment_of(engine: &mut Engine, args: &InstallArgs, cwd: &Path) -> Result<EnvKey> {
    engine.environment(
        args.python.as_deref(),
        args.system,
        args.target.as_deref(),
        args.prefix.as_deref(),
        cwd,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRequest {
    /// The interpreter whose environment to use; the last one used when absent.
    #[serde(default)]
    pub python: Option<String>,
    /// A `--target` folder: the view of that folder instead of the environment's.
    #[serde(default)]
    pub target: Option<String>,
    /// For `view_get`: compare the fingerprint with the disk first (the `validate` policy).
    #[serde(default)]
    pub check: bool,
}

#[derive(Serialize)]
pub struct ViewReply {
    /// The environment's prefix, or null when no environment was named or used yet.
    pub environment: Option<PathBuf>,
    /// The `--target` folder whose view this is, if any.
    pub target: Option<PathBuf>,
    pub packages: Vec<(String, String)>,
    pub counters: ViewCounters,
    pub index_counters: IndexCounters,
}

pub fn view_get(request: EnvRequest) -> Result<ViewReply> {
    with_engine_here(move |engine| {
        crate::stash::write_unwritten(&engine.stash_memory());
        let Some(key) =
            engine.env_for_view(request.python.as_deref(), request.target.as_deref())?
        else {
            return Ok(ViewReply {
                environment: None,
                target: None,
                packages: Vec::new(),
                counters: ViewCounters::default(),
                index_counters: engine.indexes.counters.clone(),
            });
        };
        let (indexes, state) = engine.parts(&key);
        if request.check {
            state.check();
        }
        let packages = state.view()?;
        Ok(ViewReply {
            environment: Some(key.root.clone()),
            target: key.target.clone(),
            packages,
            counters: state.counters.clone(),
            index_counters: indexes.counters.clone(),
        })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    #[serde(default)]
    pub python: Option<String>,
    /// A `--target` folder: patch that folder's view.
    #[serde(default)]
    pub target: Option<String>,
    /// A `.dist-info` folder: patch the view of the environment (or `--target` folder) that
    /// holds it.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub installed: Vec<(String, String)>,
    #[serde(default)]
    pub removed: Vec<(String, String)>,
}

#[derive(Serialize)]
pub struct PatchReply {
    /// False when there was no live view to patch (nothing was changed).
    pub patched: bool,
}

pub fn view_patch(request: PatchRequest) -> Result<PatchReply> {
    let installed = normalise_pairs(&request.installed)?;
    let removed = normalise_pairs(&request.removed)?;
    with_engine_here(move |engine| {
        let key = match &request.location {
            Some(location) => {
                let location = PathBuf::from(location);
                location
                    .parent()
                    .and_then(|folder| engine.env_holding(folder))
            }
            None => engine.env_for_view(request.python.as_deref(), request.target.as_deref())?,
        };
        let Some(key) = key else {
            return Ok(PatchReply { patched: false });
        };
        let (_, state) = engine.parts(&key);
        if !state.view_known() {
            return Ok(PatchReply { patched: false });
        }
        state.patch(&installed, &removed);
        Ok(PatchReply { patched: true })
    })
}

/// Names in a patch are normalised like the engine's own, and versions must parse.
fn normalise_pairs(pairs: &[(String, String)]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|(name, version)| {
            let name = uv_normalize::PackageName::from_str(name).map_err(|err| {
                FfiError::new(
                    ErrorKind::InvalidRequirement,
                    format!("Invalid package name `{name}`: {err}"),
                )
            })?;
            let version = uv_pep440::Version::from_str(version).map_err(|err| {
                FfiError::new(
                    ErrorKind::InvalidRequirement,
                    format!("Invalid version `{version}`: {err}"),
                )
            })?;
            Ok((name.to_string(), version.to_string()))
        })
        .collect()
}

#[derive(Serialize)]
pub struct InvalidateReply {
    /// False when no environment was named or used yet.
    pub invalidated: bool,
}

pub fn view_invalidate(request: EnvRequest) -> Result<InvalidateReply> {
    with_engine_here(move |engine| {
        let Some(key) =
            engine.env_for_view(request.python.as_deref(), request.target.as_deref())?
        else {
            return Ok(InvalidateReply { invalidated: false });
        };
        engine.parts(&key).1.invalidate();
        engine.forget_python(&key.root);
        Ok(InvalidateReply { invalidated: true })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    /// One `--target` folder; every one when absent.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Serialize)]
pub struct ForgetReply {
    /// How many views were forgotten (one per interpreter the folder was used with).
    pub forgotten: usize,
}

/// Forget the views of `--target` folders (the environments' own views stay).
pub fn view_forget(request: ForgetRequest) -> Result<ForgetReply> {
    let cwd = crate::engine::current_dir()?;
    let folder = request.target.map(|t| cwd.join(t));
    with_engine_here(move |engine| {
        Ok(ForgetReply {
            forgotten: engine.forget_targets(folder.as_deref()),
        })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StashRequest {
    /// The interpreter whose environment's stash to clear; the last one used when absent.
    #[serde(default)]
    pub python: Option<String>,
    /// A `--target` folder whose stash to clear instead.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Serialize)]
pub struct StashReply {
    /// Whether there was a stash to remove.
    pub cleared: bool,
    /// The stash folder looked at (null when no environment was named or used yet).
    pub folder: Option<PathBuf>,
}

/// Empty the stash of swapped-out versions of one environment or `--target` folder.
pub fn stash_clear(request: StashRequest) -> Result<StashReply> {
    let cwd = crate::engine::current_dir()?;
    with_engine_here(move |engine| {
        let root = match (&request.target, &request.python) {
            (Some(target), _) => Some(cwd.join(target)),
            (None, python) => engine
                .env_for_view(python.as_deref(), None)?
                .map(|key| key.root),
        };
        let Some(root) = root else {
            return Ok(StashReply {
                cleared: false,
                folder: None,
            });
        };
        Ok(StashReply {
            cleared: crate::stash::clear(&root, &engine.stash_memory()),
            folder: Some(root.join(crate::stash::STASH_DIR)),
        })
    })
}

#[derive(Serialize)]
pub struct FingerprintReply {
    pub environment: Option<PathBuf>,
    pub site_packages: Vec<DirStamp>,
}

pub fn view_fingerprint(request: EnvRequest) -> Result<FingerprintReply> {
    with_engine_here(move |engine| {
        let Some(key) =
            engine.env_for_view(request.python.as_deref(), request.target.as_deref())?
        else {
            return Ok(FingerprintReply {
                environment: None,
                site_packages: Vec::new(),
            });
        };
        let stamps = engine.parts(&key).1.stamps();
        Ok(FingerprintReply {
            environment: Some(key.root),
            site_packages: stamps,
        })
    })
}

#[derive(Serialize)]
pub struct IndexClearReply {
    pub cleared: bool,
}

/// Make the next resolution revalidate every index page instead of trusting kept copies.
pub fn index_clear(_: Empty) -> Result<IndexClearReply> {
    with_engine_here(|engine| {
        engine.indexes.clear();
        engine.refresh_index = true;
        Ok(IndexClearReply { cleared: true })
    })
}

/// Test hook: panics on the engine thread, to prove the panic comes back as an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugPanicRequest {
    /// `"call"` (default): panic inside a call on the engine thread; `"start"`: stop the engine
    /// and make its next start panic.
    #[serde(default)]
    pub at: Option<String>,
}

pub fn debug_panic(request: DebugPanicRequest) -> Result<Empty> {
    match request.at.as_deref() {
        None | Some("call") => {
            with_engine(|_, _| -> Result<Empty> { panic!("requested by uv_ffi_debug_panic") })
        }
        Some("start") => with_engine_stopped(|_| {
            crate::engine::FAIL_NEXT_START.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Empty {})
        }),
        Some(other) => Err(FfiError::new(
            ErrorKind::InvalidJson,
            format!("Invalid request: `at` is \"call\" or \"start\", not {other:?}"),
        )),
    }
}
