//! The front door: a command line is understood exactly as uv 0.12.5 understands it, then sent
//! down one of three roads.
//!
//! - **Warm**: `pip install` / `pip uninstall` whose every given option the warm engine honours
//!   with uv's meaning, with no configuration file applying and no `UV_*` variable it does not
//!   read itself.
//! - **Uv**: anything else runs through uv's own command line in this process (`fallback.rs`).
//! - **Printed**: clap answered without running anything (`--help`, `--version`).
//!
//! uv's clap definitions (`uv_cli::Cli`) are the authority. The hot path first tries the fast
//! parser in `command.rs`, which only answers where it agrees with clap (a property test checks
//! this); everything else, including every error message, comes from clap.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::Serialize;
use uv_cli::{AuthCommand, Cli, Commands, PipCommand, PipNamespace, ProjectCommand, ToolCommand};

use crate::capture::Printed;
use crate::command::{self, Command, InstallArgs};
use crate::error::{ErrorKind, FfiError, Result};
use crate::read::ReadCommand;

/// Where a command goes.
pub enum Route {
    Warm(Arc<Command>),
    /// `pip list/freeze/show/check`, answered from the engine's snapshot (`read.rs`).
    Read(Box<ReadCall>),
    Uv(Box<UvCall>),
    Printed {
        printed: Printed,
        exit_code: i32,
    },
}

/// A command for uv's own command line, with what the engine must know around it.
pub struct UvCall {
    pub cli: Box<Cli>,
    /// The words after `uv`, as the caller gave them.
    pub argv: Vec<String>,
    /// The environment the command may change (`pip install/uninstall/sync`), named as the
    /// warm path names environments, so that its view can be refreshed and a changelog given.
    pub changes: Option<InstallArgs>,
    /// `cache clean` / `cache prune` need the cache lock that the warm engine holds.
    pub needs_cache_lock: bool,
}

/// A read-only command the engine answers itself, with the same words for uv's command line
/// in case the engine cannot find the environment the way uv would.
pub struct ReadCall {
    pub command: ReadCommand,
    /// The environment and printing options (`--python`, `--target`, `-q`, ...).
    pub args: InstallArgs,
    pub uv: ReadFallback,
}

/// uv's own command line for a read: already parsed (uv's parser routed the read), or the words
/// only (the fast parser did), which uv parses when the engine leaves the read to it.
pub enum ReadFallback {
    Parsed(Box<UvCall>),
    Words(Vec<String>),
}

impl ReadFallback {
    /// The route through uv's own command line.
    pub fn route(self, cwd: &Path) -> Result<Route> {
        match self {
            Self::Parsed(call) => Ok(Route::Uv(call)),
            Self::Words(argv) => route_to_uv(&argv, cwd),
        }
    }
}

/// Route a tokenized command (with or without a leading `uv`), given the fast parser's reading
/// of it (`command::parse_fast`, kept from an earlier call: `parsed.rs`).
pub fn route(argv: &[String], fast: Option<Arc<Command>>, cwd: &Path) -> Result<Route> {
    if let Some(command) = fast
        && !foreign_variable_set(&[])
        && command::valid_link_mode_variable()
        && !config_applies(cwd, false)
    {
        return Ok(Route::Warm(command));
    }
    if let Some(read) = crate::fast_read::parse(argv)
        && !foreign_variable_set(&[])
        && !colour_forced()
        && !config_applies(cwd, read.no_config)
    {
        return Ok(Route::Read(Box::new(ReadCall {
            command: read.command,
            args: read.args,
            uv: ReadFallback::Words(argv.to_vec()),
        })));
    }
    route_with_uv_parser(argv, cwd, true)
}

/// What `uv_ffi_parse` reports: both parsers' answers, so tests can compare them.
#[derive(Serialize)]
pub struct Understanding {
    /// The fast parser's answer (null where it leaves the command to uv's parser).
    pub fast: Option<Command>,
    /// `"warm"`, `"read"` (list/freeze/show/check from the engine's snapshot), `"uv"`,
    /// `"printed"` (help, version) or `"error"` (uv's parser refused it).
    pub route: &'static str,
    /// The warm engine's arguments as read from uv's parse, when the route is `"warm"`.
    pub warm: Option<Command>,
    /// The options given explicitly (on the command line or through a variable), by clap id.
    pub explicit: Vec<String>,
    /// uv's message when the route is `"error"`.
    pub error: Option<String>,
    /// The read command and its options as the fast read parser understood them (`fast_read.rs`),
    /// and as uv's parser routed them: renderings that are equal when the two agree.
    pub fast_read: Option<String>,
    pub read: Option<String>,
}

pub fn understand(argv: &[String], cwd: &Path) -> Understanding {
    let explicit = uv_matches(argv)
        .map(|matches| explicit_ids(&matches))
        .unwrap_or_default();
    let mut read = None;
    let (route, warm, error) = match route_with_uv_parser(argv, cwd, true) {
        Ok(Route::Warm(command)) => ("warm", Some((*command).clone()), None),
        Ok(Route::Read(call)) => {
            read = Some(rendered(&call.command, &call.args));
            ("read", None, None)
        }
        Ok(Route::Uv(_)) => ("uv", None, None),
        Ok(Route::Printed { .. }) => ("printed", None, None),
        Err(err) => ("error", None, Some(err.message)),
    };
    Understanding {
        fast: command::parse_fast(argv),
        route,
        warm,
        explicit,
        error,
        fast_read: crate::fast_read::parse(argv).map(|fast| rendered(&fast.command, &fast.args)),
        read,
    }
}

fn rendered(command: &ReadCommand, args: &InstallArgs) -> String {
    format!("{command:?} {args:?}")
}

/// Route with uv's parser, never to the warm engine: for a command the warm engine found it
/// cannot honour after all (a project file as a requirement source, for example).
pub fn route_to_uv(argv: &[String], cwd: &Path) -> Result<Route> {
    route_with_uv_parser(argv, cwd, false)
}

fn route_with_uv_parser(argv: &[String], cwd: &Path, allow_warm: bool) -> Result<Route> {
    let matches = match uv_matches(argv) {
        Ok(matches) => matches,
        Err(err) => return printed_or_error(err),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|err| clap_error(&err))?;
    refuse_in_a_host(&cli)?;
    let explicit = explicit_ids(&matches);
    let leaf = leaf_matches(&matches);
    let warm = match pip_subcommand(&cli) {
        Some(PipCommand::Install(_)) => Some((WARM_INSTALL_IDS, false)),
        Some(PipCommand::Uninstall(_)) => Some((WARM_UNINSTALL_IDS, true)),
        _ => None,
    };
    if let Some((allowed, uninstall)) = warm.filter(|_| allow_warm) {
        let all_honoured = explicit.iter().all(|id| allowed.contains(&id.as_str()));
        let no_config = cli.top_level.no_config;
        if all_honoured
            && !foreign_variable_set(&variables_of(allowed))
            && !config_applies(cwd, no_config)
        {
            let args = install_args(leaf);
            return Ok(Route::Warm(Arc::new(if uninstall {
                Command::PipUninstall(args)
            } else {
                Command::PipInstall(args)
            })));
        }
    }
    let changes = match pip_subcommand(&cli) {
        Some(PipCommand::Install(_) | PipCommand::Uninstall(_) | PipCommand::Sync(_)) => {
            Some(install_args(leaf))
        }
        _ => None,
    };
    let needs_cache_lock = matches!(&*cli.command, Commands::Cache(_));
    let read = read_command(&cli, &explicit)
        .filter(|_| allow_warm && !foreign_variable_set(&variables_of(READ_IDS)))
        .filter(|_| !config_applies(cwd, cli.top_level.no_config))
        .map(|command| (command, install_args(leaf)));
    let cli = match anchored_paths(argv, cwd) {
        Some(anchored) => {
            let matches = uv_matches(&anchored).map_err(|err| clap_error(&err))?;
            Cli::from_arg_matches(&matches).map_err(|err| clap_error(&err))?
        }
        None => cli,
    };
    let call = UvCall {
        cli: Box::new(cli),
        argv: argv
            .iter()
            .skip(usize::from(argv.first().is_some_and(|w| w == "uv")))
            .cloned()
            .collect(),
        changes,
        needs_cache_lock,
    };
    Ok(match read {
        Some((command, args)) => Route::Read(Box::new(ReadCall {
            command,
            args,
            uv: ReadFallback::Parsed(Box::new(call)),
        })),
        None => Route::Uv(Box::new(call)),
    })
}

/// Options of `pip list/freeze/show/check` that `read.rs` honours with uv's meaning, by clap
/// id. `--outdated` (it asks the index), `freeze --path` and `check --python-version` /
/// `--python-platform` stay with uv, as do `-v` (uv's debug log) and everything else.
const READ_IDS: &[&str] = &[
    "python",
    "system",
    "no_system",
    "target",
    "prefix",
    "strict",
    "no_strict",
    "editable",
    "exclude_editable",
    "exclude",
    "format",
    "no_outdated",
    "package",
    "files",
    "cache_dir",
    "no_config",
    "quiet",
    "color",
    "no_color",
    "no_progress",
];

/// The read-only command `cli` asks for, when the engine can answer it exactly as uv would.
fn read_command(cli: &Cli, explicit: &[String]) -> Option<ReadCommand> {
    let honoured = explicit.iter().all(|id| READ_IDS.contains(&id.as_str()));
    // uv colours its text when asked to, and the engine's text has no colour.
    let colour_asked = matches!(
        cli.top_level.global_args.color,
        Some(uv_cli::ColorChoice::Always)
    );
    if !honoured || colour_asked || colour_forced() {
        return None;
    }
    match pip_subcommand(cli)? {
        PipCommand::List(args) if !args.outdated => Some(ReadCommand::List {
            format: args.format.clone(),
            editable: if args.editable {
                Some(true)
            } else if args.exclude_editable {
                Some(false)
            } else {
                None
            },
            exclude: args.exclude.clone(),
            strict: args.strict,
        }),
        PipCommand::Freeze(args) => Some(ReadCommand::Freeze {
            exclude_editable: args.exclude_editable,
            exclude: args.exclude.clone(),
            strict: args.strict,
        }),
        PipCommand::Show(args) => Some(ReadCommand::Show {
            packages: args.package.clone(),
            files: args.files,
            strict: args.strict,
        }),
        PipCommand::Check(_) => Some(ReadCommand::Check),
        _ => None,
    }
}

/// Whether a variable makes uv colour its text even into a pipe.
fn colour_forced() -> bool {
    std::env::var_os("FORCE_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Options whose value is a path, as uv spells them.
const PATH_OPTIONS: &[&str] = &[
    "-r",
    "--requirements",
    "--requirement",
    "-c",
    "--constraints",
    "--constraint",
    "--overrides",
    "--override",
    "--excludes",
    "--exclude",
    "-b",
    "--build-constraints",
    "--build-constraint",
    "-e",
    "--editable",
    "-f",
    "--find-links",
    "--target",
    "-t",
    "--prefix",
    "--cache-dir",
    "--config-file",
    "-o",
    "--output-file",
    "--project",
];

/// uv resolves some relative paths against the directory the process had when uv first read
/// it (`uv_fs::CWD`), not the current one. After the host changed directory, relative paths
/// given to uv's command line are made absolute against the current directory, so they mean
/// what they would mean to a `uv` started there: values of path options, and words that are
/// clearly paths (`./x`, `../x`, `x/y`, or an archive or requirements file name), when they
/// exist. uv's messages then show those paths in full. `None` when nothing needs anchoring.
fn anchored_paths(argv: &[String], cwd: &Path) -> Option<Vec<String>> {
    if uv_fs::CWD.as_path() == cwd {
        return None;
    }
    let anchor = |word: &str| -> Option<String> {
        let path = Path::new(word);
        let relative = !word.is_empty() && path.is_relative() && !word.contains("://");
        (relative && cwd.join(path).exists()).then(|| cwd.join(path).to_string_lossy().into_owned())
    };
    let looks_like_a_path = |word: &str| {
        word.starts_with("./")
            || word.starts_with("../")
            || word == "."
            || word == ".."
            || (word.contains('/') && !word.contains("://") && !word.contains('@'))
            || [".whl", ".tar.gz", ".zip", ".txt", ".toml", ".in"]
                .iter()
                .any(|suffix| word.ends_with(suffix))
    };
    let mut out = Vec::with_capacity(argv.len());
    let mut value_of_path_option = false;
    for word in argv {
        let anchored = if value_of_path_option {
            anchor(word)
        } else if let Some((option, value)) = word
            .split_once('=')
            .filter(|(o, _)| PATH_OPTIONS.contains(o))
        {
            anchor(value).map(|value| format!("{option}={value}"))
        } else if !word.starts_with('-') && looks_like_a_path(word) {
            anchor(word)
        } else {
            None
        };
        value_of_path_option = PATH_OPTIONS.contains(&word.as_str());
        out.push(anchored.unwrap_or_else(|| word.clone()));
    }
    (out != argv).then_some(out)
}

/// `pip install` options the warm engine applies with uv's meaning, by clap id. The negative
/// flags (`--deps`, `--no-upgrade`, ...) are uv's defaults, so honouring them is doing nothing.
const WARM_INSTALL_IDS: &[&str] = &[
    "package",
    "requirements",
    "constraints",
    "python",
    "target",
    "prefix",
    "system",
    "no_system",
    "break_system_packages",
    "no_break_system_packages",
    "dry_run",
    "no_deps",
    "deps",
    "link_mode",
    "index_url",
    "extra_index_url",
    "find_links",
    "no_index",
    "reinstall",
    "no_reinstall",
    "reinstall_package",
    "upgrade",
    "no_upgrade",
    "upgrade_package",
    "prerelease",
    "pre",
    "resolution",
    "index_strategy",
    "only_binary",
    "no_binary",
    "no_build",
    "build",
    "cache_dir",
    "no_config",
    "quiet",
    "verbose",
    "color",
    "no_color",
    "no_progress",
    "offline",
    "no_offline",
    "system_certs",
    "no_system_certs",
    "native_tls",
    "no_native_tls",
    "allow_insecure_host",
];

/// `pip uninstall` options the warm engine applies, by clap id.
const WARM_UNINSTALL_IDS: &[&str] = &[
    "package",
    "requirements",
    "python",
    "target",
    "prefix",
    "system",
    "no_system",
    "break_system_packages",
    "no_break_system_packages",
    "dry_run",
    "cache_dir",
    "no_config",
    "quiet",
    "verbose",
    "color",
    "no_color",
    "no_progress",
];

/// `UV_*` variables the warm path reads itself, with uv's meaning: the cache folder and link
/// mode (`engine.rs`, `install.rs`) and the network settings (`network.rs`); `UV_FFI_*` are
/// this library's own.
const WARM_VARIABLES: &[&str] = &[
    "UV_CACHE_DIR",
    "UV_LINK_MODE",
    "UV_HTTP_TIMEOUT",
    "UV_REQUEST_TIMEOUT",
    "UV_HTTP_CONNECT_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_SYSTEM_CERTS",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
];

/// Whether a `UV_*` variable is set that neither the warm path nor the given clap-read names
/// account for. This runs on every warm call, so it reads the environment block in place
/// instead of copying every variable as `std::env::vars_os` does.
fn foreign_variable_set(read_by_clap: &[String]) -> bool {
    unsafe extern "C" {
        static environ: *const *const std::ffi::c_char;
    }
    let accounted_for = |name: &[u8]| {
        name.starts_with(b"UV_FFI_")
            || WARM_VARIABLES.iter().any(|known| known.as_bytes() == name)
            || read_by_clap.iter().any(|known| known.as_bytes() == name)
    };
    // SAFETY: `environ` is the NULL-terminated array of NUL-terminated `NAME=value` strings
    // that `getenv` reads too; like `getenv`, this must not race with a `setenv`.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            // Only the first bytes of most entries are read: a host's environment is long
            // (`PATH` alone), and a NUL ends the comparison early.
            let start = (*entry).cast::<u8>();
            if *start == b'U' && *start.add(1) == b'V' && *start.add(2) == b'_' {
                let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
                let name = text.split(|&byte| byte == b'=').next().unwrap_or(text);
                if !accounted_for(name) {
                    return true;
                }
            }
            entry = entry.add(1);
        }
    }
    false
}

/// uv's `clap::Command` (building it is the expensive part of parsing) and what the router reads
/// from its definitions, computed once from one tree: every further copy of uv's tree costs
/// megabytes of heap that the allocator keeps.
static COMMAND: Mutex<Option<BuiltCommand>> = Mutex::new(None);

/// uv's `clap::Command`, with the values of the variables its options read. clap reads an
/// option's variable when the command is built, not when it parses, so a kept command is used
/// only while every one of those variables still has the value it had then.
pub struct BuiltCommand {
    command: clap::Command,
    variables: Vec<(OsString, Option<OsString>)>,
    /// The variables of the options of the root and of the `pip` commands, by clap id.
    variables_of_id: HashMap<String, Vec<String>>,
    /// Every argument group id in uv's command tree.
    groups: HashSet<String>,
}

impl BuiltCommand {
    fn new() -> Self {
        let command = Cli::command();
        let mut names = Vec::new();
        let mut groups = HashSet::new();
        walk_tree(&command, &mut names, &mut groups);
        names.sort();
        names.dedup();
        let variables = names
            .into_iter()
            .map(|name| {
                let value = std::env::var_os(&name);
                (name, value)
            })
            .collect();
        let variables_of_id = pip_option_variables(&command);
        Self {
            command,
            variables,
            variables_of_id,
            groups,
        }
    }

    fn is_current(&self) -> bool {
        self.variables
            .iter()
            .all(|(name, value)| std::env::var_os(name) == *value)
    }
}

/// The variable names and group ids of `command` and everything under it.
fn walk_tree(command: &clap::Command, names: &mut Vec<OsString>, groups: &mut HashSet<String>) {
    names.extend(
        command
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(OsString::from)),
    );
    groups.extend(command.get_groups().map(|group| group.get_id().to_string()));
    for sub in command.get_subcommands() {
        walk_tree(sub, names, groups);
    }
}

/// The variables of the options declared on the root (global options are declared there) or on
/// a `pip` command, by clap id.
fn pip_option_variables(command: &clap::Command) -> HashMap<String, Vec<String>> {
    let pip_leaves = command
        .find_subcommand("pip")
        .into_iter()
        .flat_map(clap::Command::get_subcommands);
    let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
    for arg in std::iter::once(command)
        .chain(pip_leaves)
        .flat_map(clap::Command::get_arguments)
    {
        if let Some(env) = arg.get_env().and_then(|env| env.to_str()) {
            by_id
                .entry(arg.get_id().to_string())
                .or_default()
                .push(env.to_string());
        }
    }
    by_id
}

fn lock<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The parser's lock, held across a fork (`fork.rs`).
pub struct ParserLocks {
    _command: MutexGuard<'static, Option<BuiltCommand>>,
}

pub fn lock_parser() -> ParserLocks {
    ParserLocks {
        _command: lock(&COMMAND),
    }
}

/// uv's command tree, built again if the variables it read have changed since (for parsing).
fn built_command() -> MutexGuard<'static, Option<BuiltCommand>> {
    let mut built = lock(&COMMAND);
    if !built.as_ref().is_some_and(BuiltCommand::is_current) {
        *built = Some(BuiltCommand::new());
    }
    built
}

/// uv's command tree as kept, for what does not depend on the variables' values (which option
/// a variable stands for, the group ids): checking every variable again would cost more than
/// the lookup.
fn kept_command() -> MutexGuard<'static, Option<BuiltCommand>> {
    let mut built = lock(&COMMAND);
    if built.is_none() {
        *built = Some(BuiltCommand::new());
    }
    built
}

/// The variables clap reads for the given ids of `pip install` / `pip uninstall`.
fn variables_of(ids: &[&str]) -> Vec<String> {
    let built = kept_command();
    let variables_of_id = &built.as_ref().expect("built above").variables_of_id;
    let mut names: Vec<String> = ids
        .iter()
        .filter_map(|id| variables_of_id.get(*id))
        .flatten()
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

fn config_applies(cwd: &Path, no_config: bool) -> bool {
    !no_config && crate::config::applies(cwd)
}

/// Parse with uv's own definitions.
fn uv_matches(argv: &[String]) -> std::result::Result<ArgMatches, clap::Error> {
    let mut built = built_command();
    let command = &mut built.as_mut().expect("built above").command;
    let words = std::iter::once(OsString::from("uv")).chain(
        argv.iter()
            .skip(usize::from(argv.first().is_some_and(|w| w == "uv")))
            .map(OsString::from),
    );
    command.try_get_matches_from_mut(words)
}

/// `--help` and `--version` are answers, not errors; anything else clap reports is a usage
/// error with clap's own text and exit code.
fn printed_or_error(err: clap::Error) -> Result<Route> {
    use clap::error::ErrorKind as Kind;
    let text = err.render().to_string();
    match err.kind() {
        Kind::DisplayHelp | Kind::DisplayVersion => Ok(Route::Printed {
            printed: Printed {
                stdout: text,
                stderr: String::new(),
            },
            exit_code: 0,
        }),
        Kind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Route::Printed {
            printed: Printed {
                stdout: String::new(),
                stderr: text,
            },
            exit_code: err.exit_code(),
        }),
        _ => Err(clap_error(&err)),
    }
}

fn clap_error(err: &clap::Error) -> FfiError {
    let text = err.render().to_string();
    let mut error = FfiError::new(ErrorKind::InvalidCommand, text.trim_end());
    error.exit_code = err.exit_code();
    error
}

/// Commands that would change the host process itself: its signal handlers, its current
/// directory, or that would wait for a person to type. They get a clear error instead.
fn refuse_in_a_host(cli: &Cli) -> Result<()> {
    let refuse = |what: &str, instead: &str| {
        let mut err = FfiError::new(
            ErrorKind::InvalidCommand,
            format!("`uv {what}` cannot run inside a host process: {instead}"),
        );
        err.hints.push(
            "run it as a subprocess instead, for example `subprocess.run([\"uv\", ...])`"
                .to_string(),
        );
        Err(err)
    };
    if cli.top_level.global_args.directory.is_some()
        || std::env::var_os("UV_WORKING_DIRECTORY").is_some()
    {
        return refuse(
            "--directory",
            "it changes the current directory of the whole process; pass absolute paths, or the request's `cwd`, instead",
        );
    }
    match &*cli.command {
        Commands::Project(project) => match &**project {
            ProjectCommand::Run(_) => refuse(
                "run",
                "it replaces the process's signal handlers while the child runs",
            ),
            ProjectCommand::Add(_) => refuse(
                "add",
                "it installs a Ctrl-C handler that exits the whole process",
            ),
            _ => Ok(()),
        },
        Commands::Tool(tool) => match &tool.command {
            ToolCommand::Run(_) | ToolCommand::Uvx(_) => refuse(
                "tool run",
                "it replaces the process's signal handlers and may ask for confirmation",
            ),
            _ => Ok(()),
        },
        Commands::Publish(_) => refuse("publish", "it may prompt for credentials on the terminal"),
        Commands::Auth(auth) => match &auth.command {
            AuthCommand::Login(_) => refuse(
                "auth login",
                "it may prompt for credentials on the terminal",
            ),
            AuthCommand::Helper(_) => refuse(
                "auth helper",
                "it talks to its caller over the process's standard input",
            ),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn pip_subcommand(cli: &Cli) -> Option<&PipCommand> {
    match &*cli.command {
        Commands::Pip(PipNamespace { command, .. }) => Some(command),
        _ => None,
    }
}

/// The matches of the innermost subcommand (`pip install`'s own).
fn leaf_matches(matches: &ArgMatches) -> &ArgMatches {
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    leaf
}

/// The ids of every option given on the command line or through its variable, at any level.
/// Argument groups are left out: they only stand for the options in them.
fn explicit_ids(matches: &ArgMatches) -> Vec<String> {
    let built = kept_command();
    let groups = &built.as_ref().expect("built above").groups;
    let mut ids = Vec::new();
    let mut level = Some(matches);
    while let Some(current) = level {
        for id in current.ids() {
            let id = id.as_str();
            let given = matches!(
                current.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if given && !groups.contains(id) && !ids.iter().any(|known: &String| known == id) {
                ids.push(id.to_string());
            }
        }
        level = current.subcommand().map(|(_, sub)| sub);
    }
    ids
}

/// The warm engine's arguments, read from clap's matches of `pip install` / `pip uninstall`.
fn install_args(leaf: &ArgMatches) -> InstallArgs {
    let strings = |id: &str| -> Vec<String> {
        leaf.try_get_raw(id)
            .ok()
            .flatten()
            .map(|values| {
                values
                    .map(|value| value.to_string_lossy().into_owned())
                    .filter(|value| !value.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let one = |id: &str| strings(id).pop();
    // `UV_CACHE_DIR` and `UV_LINK_MODE` are read by the warm path itself (as on the fast path),
    // so only a value given on the command line is carried here.
    let on_line = |id: &str| {
        let given = leaf.value_source(id) == Some(ValueSource::CommandLine);
        if given { one(id) } else { None }
    };
    let flag = |id: &str| matches!(leaf.try_get_one::<bool>(id), Ok(Some(true)));
    let count = |id: &str| {
        leaf.try_get_one::<u8>(id)
            .ok()
            .flatten()
            .copied()
            .unwrap_or(0)
    };
    InstallArgs {
        packages: strings("package"),
        requirements: strings("requirements"),
        constraints: strings("constraints"),
        python: one("python"),
        target: one("target"),
        prefix: one("prefix"),
        link_mode: on_line("link_mode"),
        index_url: one("index_url"),
        extra_index_urls: strings("extra_index_url"),
        find_links: strings("find_links"),
        no_index: flag("no_index"),
        reinstall: flag("reinstall"),
        reinstall_packages: strings("reinstall_package"),
        upgrade: flag("upgrade"),
        upgrade_packages: strings("upgrade_package"),
        no_deps: flag("no_deps"),
        prerelease: one("prerelease").or_else(|| flag("pre").then(|| "allow".to_string())),
        resolution: one("resolution"),
        index_strategy: one("index_strategy"),
        only_binary: strings("only_binary"),
        no_binary: strings("no_binary"),
        no_build: flag("no_build"),
        cache_dir: on_line("cache_dir"),
        dry_run: flag("dry_run"),
        quiet: count("quiet"),
        verbose: count("verbose"),
        system: flag("system"),
        break_system_packages: flag("break_system_packages"),
        system_certs: if flag("system_certs") || flag("native_tls") {
            Some(true)
        } else if flag("no_system_certs") || flag("no_native_tls") {
            Some(false)
        } else {
            None
        },
        offline: flag("offline"),
        allow_insecure_hosts: strings("allow_insecure_host"),
    }
}
