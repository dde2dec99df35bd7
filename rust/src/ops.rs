//! The operations behind the C functions: one request type and one reply type each.
//! Requests reject unknown fields so that a drifting caller fails loudly.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::command::InstallArgs;
use crate::command::{self, Command};
use crate::engine::{Engine, EnvKey, with_engine, with_engine_here};
use crate::environment::{DirStamp, ViewCounters};
use crate::error::{ErrorKind, FfiError, Result};
use crate::index::IndexCounters;
use crate::install::{self, CallPolicy, InstallReply};
use crate::profile::Profile;

/// Bumped whenever a request or reply changes incompatibly.
pub const ABI_VERSION: u32 = 1;

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
    pub command: String,
}

#[derive(Serialize)]
pub struct ParseReply {
    pub argv: Vec<String>,
    pub parsed: Command,
}

/// Tokenize and parse a command without running it.
pub fn parse(request: ParseRequest) -> Result<ParseReply> {
    let (argv, parsed) = command::parse_line(&request.command)?;
    Ok(ParseReply { argv, parsed })
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub command: String,
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
}

/// Ten minutes, the lifetime PyPI gives its simple pages.
pub fn default_index_ttl_ms() -> u64 {
    600_000
}

pub fn run(request: RunRequest) -> Result<InstallReply> {
    let mut profile = Profile::start();
    let (_, command) = command::parse_line(&request.command)?;
    let (args, uninstall) = match command {
        Command::PipInstall(args) => (args, false),
        Command::PipUninstall(args) => (args, true),
    };
    let cwd = install::request_cwd(request.cwd.as_deref())?;
    let mut policy = CallPolicy {
        check: request.check,
        heal: request.heal,
        refresh_index: false,
        fresh_index: request.fresh_index,
        index_ttl: std::time::Duration::from_millis(request.index_ttl_ms),
    };
    profile.mark("parse");
    let verbose = args.verbose > 0 || crate::logging::enabled();
    if !uninstall && !args.reinstall && !args.upgrade {
        // An install that is already satisfied is answered here, without waking the engine thread.
        // The answer says whether the disk was checked, and the reply if nothing is to be done.
        let fast = with_engine_here(|engine| {
            let key = environment_of(engine, &args, &cwd)?;
            if key.target.is_some() {
                return Ok((false, None));
            }
            engine.last_env = Some(key.clone());
            let (_, _, state) = engine.parts(&key);
            let mut attempt = profile.clone();
            attempt.mark("environment");
            let reply = install::already_satisfied(
                state,
                &key,
                &args,
                &request.command,
                &cwd,
                policy,
                &mut attempt,
            );
            Ok((true, reply))
        })?;
        match fast {
            (_, Some(reply)) => return Ok(reply),
            // The disk was just compared with the view; the engine thread need not do it again.
            (true, None) => policy.check = false,
            (false, None) => {}
        }
    }
    let command_text = request.command;
    let reply = with_engine(move |engine, runtime| {
        let key = environment_of(engine, &args, &cwd)?;
        profile.mark("environment");
        if key.target.is_none() {
            engine.last_env = Some(key.clone());
        }
        policy.refresh_index = std::mem::take(&mut engine.refresh_index);
        let (shared, indexes, state) = engine.parts(&key);
        let reply = if uninstall {
            crate::uninstall::run(shared, state, &key, runtime, &args, &cwd, policy, profile)
        } else {
            install::run(
                shared,
                indexes,
                state,
                &key,
                runtime,
                &args,
                &command_text,
                &cwd,
                policy,
                profile,
            )
        };
        if key.target.is_some() {
            // A `--target` folder is usually a one-off; do not keep its state around.
            engine.envs.remove(&key);
        }
        reply
    })?;
    if verbose {
        crate::logging::print_changes(&reply.installed, &reply.removed);
    }
    Ok(reply)
}

/// The environment a command's options name.
fn environment_of(engine: &mut Engine, args: &InstallArgs, cwd: &Path) -> Result<EnvKey> {
    engine.environment(
        args.python.as_deref(),
        args.system,
        args.target.as_deref(),
        cwd,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRequest {
    /// The interpreter whose environment to use; the last one used when absent.
    #[serde(default)]
    pub python: Option<String>,
    /// For `view_get`: compare the fingerprint with the disk first (the `validate` policy).
    #[serde(default)]
    pub check: bool,
}

#[derive(Serialize)]
pub struct ViewReply {
    /// The environment's prefix, or null when no environment was named or used yet.
    pub environment: Option<PathBuf>,
    pub packages: Vec<(String, String)>,
    pub counters: ViewCounters,
    pub index_counters: IndexCounters,
}

pub fn view_get(request: EnvRequest) -> Result<ViewReply> {
    with_engine_here(move |engine| {
        let Some(key) = engine.env_for_view(request.python.as_deref(), None)? else {
            return Ok(ViewReply {
                environment: None,
                packages: Vec::new(),
                counters: ViewCounters::default(),
                index_counters: engine.indexes.counters.clone(),
            });
        };
        let (_, indexes, state) = engine.parts(&key);
        if request.check {
            state.check();
        }
        let packages = state.view()?;
        Ok(ViewReply {
            environment: Some(key.root.clone()),
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
        let Some(key) = engine.env_for_view(request.python.as_deref(), None)? else {
            return Ok(PatchReply { patched: false });
        };
        let (_, _, state) = engine.parts(&key);
        if !state.view_known() {
            return Ok(PatchReply { patched: false });
        }
        state.apply_delta(&installed, &removed);
        state.counters.patches += 1;
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
        let Some(key) = engine.env_for_view(request.python.as_deref(), None)? else {
            return Ok(InvalidateReply { invalidated: false });
        };
        engine.parts(&key).2.invalidate();
        engine.forget_python(&key.root);
        Ok(InvalidateReply { invalidated: true })
    })
}

#[derive(Serialize)]
pub struct FingerprintReply {
    pub environment: Option<PathBuf>,
    pub site_packages: Vec<DirStamp>,
}

pub fn view_fingerprint(request: EnvRequest) -> Result<FingerprintReply> {
    with_engine_here(move |engine| {
        let Some(key) = engine.env_for_view(request.python.as_deref(), None)? else {
            return Ok(FingerprintReply {
                environment: None,
                site_packages: Vec::new(),
            });
        };
        let stamps = engine.parts(&key).2.stamps();
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
pub fn debug_panic(_: Empty) -> Result<Empty> {
    with_engine(|_, _| -> Result<Empty> { panic!("requested by uv_ffi_debug_panic") })
}
