//! Commands the warm engine does not run itself go through uv 0.12.5's own command line
//! (`uv::run` with `GlobalInitialization::Reuse`), in this process, on the engine thread.
//!
//! The engine owns every process global uv expects (preview, rayon; see `engine::init_globals`)
//! and never installs a logger, so `Reuse` is always right. What uv prints is captured
//! (`capture.rs`) and returned in the reply. After a command that may change environments, the
//! views of the environments it may have touched are dropped, and for `pip install`,
//! `pip uninstall` and `pip sync` the changelog is the difference between the environment's view
//! before and after.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::runtime::Runtime;
use uv::commands::ExitStatus;
use uv_cli::{Cli, Commands, PipCommand, PipNamespace};

use crate::capture::{Capture, Printed};
use crate::engine::{Engine, EnvKey};
use crate::error::{ErrorKind, FfiError, Result};
use crate::request::UvCall;

/// A `(name, version)` pair.
type Pair = (String, String);

/// What a command run through uv's command line did.
pub struct UvOutcome {
    pub exit_code: i32,
    pub printed: Printed,
    pub installed: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// The environment whose changelog is given, if the command names one.
    pub environment: Option<EnvKey>,
}

/// Run `call` with the engine's warm state around it (views refreshed afterwards).
pub fn run(engine: &mut Engine, runtime: &Runtime, call: UvCall, cwd: &Path) -> Result<UvOutcome> {
    check_process_cwd(cwd)?;
    let key = call.changes.as_ref().and_then(|args| {
        engine
            .environment(
                args.python.as_deref(),
                args.system,
                args.target.as_deref(),
                args.prefix.as_deref(),
                cwd,
            )
            .ok()
    });
    let before = key
        .as_ref()
        .and_then(|key| Snapshot::of(engine.parts(key).1));
    let read_only = is_read_only(&call.cli);
    let cli = with_compile_command(with_project_dir(*call.cli, cwd), &call.argv);
    let (exit_code, printed) = run_uv(runtime, cli)?;
    if !read_only {
        engine.forget_everything_on_disk();
    }
    let (installed, removed) = match (&key, before) {
        (Some(key), Some(before)) => match engine.environment_again(key).and_then(Snapshot::of) {
            Some(after) => diff(&before, &after),
            None => (Vec::new(), Vec::new()),
        },
        _ => (Vec::new(), Vec::new()),
    };
    Ok(UvOutcome {
        exit_code,
        printed,
        installed,
        removed,
        environment: key,
    })
}

/// Run `cli` without any warm state (the engine was stopped to release its cache lock).
pub fn run_without_engine(runtime: &Runtime, call: UvCall, cwd: &Path) -> Result<UvOutcome> {
    check_process_cwd(cwd)?;
    let (exit_code, printed) = run_uv(runtime, with_project_dir(*call.cli, cwd))?;
    Ok(UvOutcome {
        exit_code,
        printed,
        installed: Vec::new(),
        removed: Vec::new(),
        environment: None,
    })
}

/// uv's command line itself: its exit status, and what it printed.
fn run_uv(runtime: &Runtime, cli: Cli) -> Result<(i32, Printed)> {
    if crate::fork::in_forked_child() {
        // uv's command line links files on rayon's global pool, whose threads stayed in the
        // parent: it would wait for ever here.
        return Err(FfiError::new(
            ErrorKind::InvalidCommand,
            "This command runs through uv's own command line, which cannot run in a process forked from one where the engine already ran; run it in the parent, start the child with the `spawn` method, or run `uv` as a subprocess",
        ));
    }
    check_variables_uv_would_exit_on()?;
    let capture = Capture::start().map_err(|err| {
        FfiError::new(
            ErrorKind::Internal,
            format!("Failed to capture uv's output: {err}"),
        )
    })?;
    let outcome = runtime.block_on(uv::run(cli, uv::GlobalInitialization::Reuse));
    let mut printed = capture.finish();
    let exit_code = match outcome {
        Ok(ExitStatus::Success) => 0,
        Ok(ExitStatus::Failure) => 1,
        Ok(ExitStatus::Error) => 2,
        Ok(ExitStatus::External(code)) => i32::from(code),
        Err(err) => {
            // uv's `main` renders an escaping error as its cause chain with hints and exits
            // with 2 for the errors `pip` commands raise (argument and unexpected errors).
            printed.stderr.push_str(&crate::error::render_chain(&err));
            2
        }
    };
    Ok((exit_code, printed))
}

/// uv looks for configuration files from the directory the process had when uv first read it
/// (`uv_fs::CWD`). A host that changed directory since must get the files of its directory now,
/// as a new `uv` process would: for commands outside a project, name it as `--project`.
fn with_project_dir(mut cli: Cli, cwd: &Path) -> Cli {
    let moved = uv_fs::CWD.as_path() != cwd;
    let outside_a_project = !matches!(&*cli.command, Commands::Project(_));
    if moved && outside_a_project && cli.top_level.global_args.project.is_none() {
        cli.top_level.global_args.project = Some(cwd.to_path_buf());
    }
    cli
}

/// `pip compile` writes the command that made the file into its header, which uv takes from
/// the process's own arguments: in a host, those are the host's. Name the command the caller
/// gave instead, leaving out what uv leaves out (index and find-links locations unless they are
/// to be emitted, upgrade, quiet, verbose and progress options).
fn with_compile_command(mut cli: Cli, argv: &[String]) -> Cli {
    if let Commands::Pip(PipNamespace {
        command: PipCommand::Compile(args),
        ..
    }) = &mut *cli.command
        && args.custom_compile_command.is_none()
    {
        let words = compile_command_words(argv, args.emit_index_url, args.emit_find_links);
        args.custom_compile_command = Some(format!("uv {}", words.join(" ")));
    }
    cli
}

/// The words of a `pip compile` command as its header shows them.
fn compile_command_words(argv: &[String], keep_indexes: bool, keep_find_links: bool) -> Vec<&str> {
    const INDEX: [&str; 5] = [
        "--index-url",
        "--extra-index-url",
        "-i",
        "--index",
        "--default-index",
    ];
    const FIND_LINKS: [&str; 2] = ["--find-links", "-f"];
    const UPGRADE_PACKAGE: [&str; 2] = ["--upgrade-package", "-P"];
    const DROPPED_FLAGS: [&str; 8] = [
        "--upgrade",
        "-U",
        "--quiet",
        "-q",
        "--verbose",
        "-v",
        "--no-progress",
        "--native-tls",
    ];
    let mut words = Vec::new();
    let mut skip_value = false;
    for word in argv {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let with_value = |options: &[&str]| options.contains(&word.as_str());
        let joined = |options: &[&str]| {
            options.iter().any(|o| {
                word.starts_with(&format!("{o}="))
                    || (o.len() == 2 && word.starts_with(o) && word.len() > 2)
            })
        };
        let dropped_options: Vec<&[&str]> = [
            (!keep_indexes).then_some(&INDEX[..]),
            (!keep_find_links).then_some(&FIND_LINKS[..]),
            Some(&UPGRADE_PACKAGE[..]),
        ]
        .into_iter()
        .flatten()
        .collect();
        if dropped_options.iter().any(|options| with_value(options)) {
            skip_value = true;
        } else if !dropped_options.iter().any(|options| joined(options))
            && !DROPPED_FLAGS.contains(&word.as_str())
        {
            words.push(word.as_str());
        }
    }
    words
}

/// uv's command line is pinned to the directory the process had when uv first looked
/// (`uv_fs::CWD`); a request for another directory cannot be honoured without changing the
/// whole process's directory.
fn check_process_cwd(cwd: &Path) -> Result<()> {
    let process_cwd = crate::engine::current_dir()?;
    if process_cwd == cwd {
        return Ok(());
    }
    Err(FfiError::new(
        ErrorKind::InvalidCommand,
        format!(
            "This command runs through uv's own command line, which works in the process's current directory (`{}`), not in `{}`; pass absolute paths instead of `cwd`",
            process_cwd.display(),
            cwd.display()
        ),
    ))
}

/// uv exits the whole process when `UV_PYTHON_DOWNLOADS` holds an invalid value; say so here
/// instead, with uv's words and exit code.
fn check_variables_uv_would_exit_on() -> Result<()> {
    let Some(value) = std::env::var_os("UV_PYTHON_DOWNLOADS") else {
        return Ok(());
    };
    let valid = value
        .to_str()
        .is_some_and(|text| text.parse::<uv_python::PythonDownloads>().is_ok());
    if valid {
        return Ok(());
    }
    let mut err = FfiError::new(
        ErrorKind::InvalidCommand,
        "error: invalid value for UV_PYTHON_DOWNLOADS, expected one of 'auto', 'true', 'manual', 'never', or 'false'",
    );
    err.exit_code = 1;
    Err(err)
}

/// Commands that only read: the views stay valid after them.
fn is_read_only(cli: &Cli) -> bool {
    match &*cli.command {
        Commands::Pip(PipNamespace { command, .. }) => matches!(
            command,
            PipCommand::List(_)
                | PipCommand::Freeze(_)
                | PipCommand::Show(_)
                | PipCommand::Tree(_)
                | PipCommand::Check(_)
                | PipCommand::Compile(_)
        ),
        Commands::Help(_) => true,
        _ => false,
    }
}

/// An environment's distributions, and the identity of each one's `.dist-info` folder (inode
/// and modification time): a reinstall at the same version makes a new folder.
struct Snapshot {
    pairs: Vec<Pair>,
    folders: BTreeMap<String, (u64, i128)>,
}

impl Snapshot {
    fn of(state: &mut crate::environment::EnvState) -> Option<Self> {
        let pairs = state.view().ok()?;
        let folders = crate::environment::installed_on_disk(&state.site_dirs()).inodes;
        Some(Self { pairs, folders })
    }
}

/// The changelog between two snapshots, as uv prints it: what is new, at another version or
/// reinstalled (`+`, `~`), and what went away, was replaced or reinstalled (`-`, `~`).
fn diff(before: &Snapshot, after: &Snapshot) -> (Vec<Pair>, Vec<Pair>) {
    let versions = |pairs: &[Pair]| -> BTreeMap<String, String> { pairs.iter().cloned().collect() };
    let (old, new) = (versions(&before.pairs), versions(&after.pairs));
    let reinstalled = |name: &String| {
        let folder = before.folders.get(name);
        folder.is_some() && folder != after.folders.get(name)
    };
    let installed = after
        .pairs
        .iter()
        .filter(|(name, version)| old.get(name) != Some(version) || reinstalled(name))
        .cloned()
        .collect();
    let removed = before
        .pairs
        .iter()
        .filter(|(name, version)| new.get(name) != Some(version) || reinstalled(name))
        .cloned()
        .collect();
    (installed, removed)
}

#[cfg(test)]
mod tests {
    use super::diff;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_compile_header_leaves_out_what_uv_leaves_out() {
        let argv: Vec<String> = "pip compile req.in -i http://x/ --index-url=http://y/ -fdir -q -U -P a --upgrade-package=b -o out.txt"
            .split(' ')
            .map(str::to_string)
            .collect();
        assert_eq!(
            super::compile_command_words(&argv, false, false).join(" "),
            "pip compile req.in -o out.txt"
        );
        assert_eq!(
            super::compile_command_words(&argv, true, false).join(" "),
            "pip compile req.in -i http://x/ --index-url=http://y/ -o out.txt"
        );
    }

    fn snapshot(items: &[(&str, &str, u64)]) -> super::Snapshot {
        let names: Vec<(&str, &str)> = items.iter().map(|(n, v, _)| (*n, *v)).collect();
        super::Snapshot {
            pairs: pairs(&names),
            folders: items
                .iter()
                .map(|(n, _, inode)| (n.to_string(), (*inode, 0)))
                .collect(),
        }
    }

    #[test]
    fn a_swap_is_one_install_and_one_removal() {
        let before = snapshot(&[("a", "1", 1), ("b", "1", 2)]);
        let after = snapshot(&[("a", "2", 3), ("b", "1", 2), ("c", "1", 4)]);
        let (installed, removed) = diff(&before, &after);
        assert_eq!(installed, pairs(&[("a", "2"), ("c", "1")]));
        assert_eq!(removed, pairs(&[("a", "1")]));
    }

    #[test]
    fn a_reinstall_at_the_same_version_is_both() {
        let before = snapshot(&[("a", "1", 1), ("b", "1", 2)]);
        let after = snapshot(&[("a", "1", 5), ("b", "1", 2)]);
        let (installed, removed) = diff(&before, &after);
        assert_eq!(installed, pairs(&[("a", "1")]));
        assert_eq!(removed, pairs(&[("a", "1")]));
    }
}
