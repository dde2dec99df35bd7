//! Turning a command line such as `pip install --python /venv/bin/python "rich>=13,<15"` into a
//! list of words (shell-style tokenizing), and the hot path's own parser for the common shapes of
//! `pip install` and `pip uninstall`. uv's parser (see `request.rs`) is the authority for the rest.

use std::str::FromStr;

use serde::Serialize;

use crate::error::{ErrorKind, FfiError, Result};

/// Split a command line the way a POSIX shell would (quotes and backslashes; no expansion).
pub fn tokenize(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether the current word exists even if empty (`''` is a word).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(invalid("Unterminated single quote in command")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(invalid("Unterminated double quote in command")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(invalid("Unterminated double quote in command")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(invalid("Trailing backslash in command")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The options of one `pip install` or `pip uninstall` call that the warm engine runs, as given
/// (paths are resolved by the engine). Built by the fast parser below or from uv's own parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallArgs {
    pub packages: Vec<String>,
    pub requirements: Vec<String>,
    pub constraints: Vec<String>,
    pub python: Option<String>,
    pub target: Option<String>,
    pub prefix: Option<String>,
    pub link_mode: Option<String>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub reinstall: bool,
    pub reinstall_packages: Vec<String>,
    pub upgrade: bool,
    pub upgrade_packages: Vec<String>,
    pub no_deps: bool,
    pub prerelease: Option<String>,
    pub resolution: Option<String>,
    pub index_strategy: Option<String>,
    pub only_binary: Vec<String>,
    pub no_binary: Vec<String>,
    pub no_build: bool,
    pub cache_dir: Option<String>,
    pub dry_run: bool,
    pub quiet: u8,
    pub verbose: u8,
    pub system: bool,
    pub break_system_packages: bool,
    /// Network settings that select a warm HTTP client (see `network.rs`).
    pub system_certs: Option<bool>,
    pub offline: bool,
    pub allow_insecure_hosts: Vec<String>,
}

/// A command the warm engine runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    PipInstall(InstallArgs),
    PipUninstall(InstallArgs),
}

impl InstallArgs {
    /// Whether the call must act even on an environment that satisfies its requirements.
    pub fn changes_anyway(&self) -> bool {
        self.reinstall
            || self.upgrade
            || !self.reinstall_packages.is_empty()
            || !self.upgrade_packages.is_empty()
    }
}

/// The hot path's parser: the common shapes of `pip install` / `pip uninstall`, parsed without
/// clap. It answers `None` for anything it does not know for certain (an unknown or repeated
/// option, a missing or empty value, a combined short flag, an invalid value), and the caller
/// then asks uv's own parser, which is the authority; a property test checks that the two agree
/// wherever this one answers.
pub fn parse_fast(argv: &[String]) -> Option<Command> {
    let rest = match argv.first().map(String::as_str) {
        Some("uv") => &argv[1..],
        _ => argv,
    };
    match rest {
        [pip, install, args @ ..] if pip == "pip" && install == "install" => {
            parse_options(args, false).map(Command::PipInstall)
        }
        [pip, uninstall, args @ ..] if pip == "pip" && uninstall == "uninstall" => {
            parse_options(args, true).map(Command::PipUninstall)
        }
        _ => None,
    }
}

/// Options the fast parser knows, by spelling, with whether they take a value and whether
/// `pip uninstall` has them too.
const FAST_OPTIONS: [(&str, bool, bool); 25] = [
    ("--python", true, true),
    ("-p", true, true),
    ("--target", true, true),
    ("--requirements", true, true),
    ("-r", true, true),
    ("--system", false, true),
    ("--break-system-packages", false, true),
    ("--dry-run", false, true),
    ("--cache-dir", true, true),
    ("--no-config", false, true),
    ("--quiet", false, true),
    ("-q", false, true),
    ("--verbose", false, true),
    ("-v", false, true),
    ("--link-mode", true, false),
    ("--index-url", true, false),
    ("-i", true, false),
    ("--extra-index-url", true, false),
    ("--find-links", true, false),
    ("-f", true, false),
    ("--no-index", false, false),
    ("--reinstall", false, false),
    ("--upgrade", false, false),
    ("-U", false, false),
    ("--no-deps", false, false),
];
const FAST_OPTIONS_MORE: [(&str, bool, bool); 6] = [
    ("--constraints", true, false),
    ("-c", true, false),
    ("--prerelease", true, false),
    ("--pre", false, false),
    ("--only-binary", true, false),
    ("--no-binary", true, false),
];

/// `UV_LINK_MODE` is unset or names a link mode (an invalid value is left to uv's parser, which
/// reports it in its own words).
pub fn valid_link_mode_variable() -> bool {
    crate::vars::with_value(c"UV_LINK_MODE", |value| {
        value.is_none_or(|v| LINK_MODES.iter().any(|mode| mode.as_bytes() == v))
    })
}

const LINK_MODES: [&str; 4] = ["clone", "copy", "hardlink", "symlink"];
const PRERELEASE_MODES: [&str; 5] = [
    "disallow",
    "allow",
    "if-necessary",
    "explicit",
    "if-necessary-or-explicit",
];

/// Parse the options of `pip install` or `pip uninstall`; `None` when unsure (see above).
fn parse_options(args: &[String], uninstall: bool) -> Option<InstallArgs> {
    let mut out = InstallArgs::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut iter = args.iter();
    let mut only_positional = false;
    while let Some(arg) = iter.next() {
        if only_positional || !arg.starts_with('-') {
            if arg.is_empty() {
                return None;
            }
            out.packages.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (flag, inline) = split_flag(arg);
        let (name, takes_value, in_uninstall) = FAST_OPTIONS
            .iter()
            .chain(FAST_OPTIONS_MORE.iter())
            .find(|(name, ..)| *name == flag)
            .copied()?;
        if uninstall && !in_uninstall {
            return None;
        }
        let value = if takes_value {
            let value = match inline {
                Some(value) => value,
                None => iter.next()?.clone(),
            };
            // Empty values and values that look like options: leave them to uv's parser.
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            value
        } else if inline.is_some() {
            return None;
        } else {
            String::new()
        };
        let long = long_name(name);
        let repeatable = matches!(
            long,
            "--requirements"
                | "--constraints"
                | "--extra-index-url"
                | "--find-links"
                | "--quiet"
                | "--verbose"
                | "--only-binary"
                | "--no-binary"
        );
        if seen.contains(&long) && !repeatable {
            return None;
        }
        seen.push(long);
        apply(&mut out, long, value)?;
    }
    // Options uv refuses together, or no package at all: uv's parser has the words.
    let conflict = (seen.contains(&"--pre") && seen.contains(&"--prerelease"))
        || (out.quiet > 0 && out.verbose > 0);
    if conflict {
        return None;
    }
    if out.packages.is_empty() && out.requirements.is_empty() {
        return None;
    }
    Some(out)
}

/// Record one option in `out`; `None` for a value uv would reject.
fn apply(out: &mut InstallArgs, long: &str, value: String) -> Option<()> {
    match long {
        "--python" => out.python = Some(value),
        "--target" => out.target = Some(value),
        "--requirements" => out.requirements.push(value),
        // uv splits these values as it splits their variables (`UV_CONSTRAINT`, ...).
        "--constraints" => out.constraints.extend(pieces(&value, ' ')),
        "--system" => out.system = true,
        "--break-system-packages" => out.break_system_packages = true,
        "--dry-run" => out.dry_run = true,
        "--cache-dir" => out.cache_dir = Some(value),
        "--no-config" => {}
        "--quiet" => out.quiet = out.quiet.saturating_add(1),
        "--verbose" => out.verbose = out.verbose.saturating_add(1),
        "--link-mode" if LINK_MODES.contains(&value.as_str()) => out.link_mode = Some(value),
        "--index-url" => out.index_url = Some(value),
        "--extra-index-url" => out.extra_index_urls.extend(pieces(&value, ' ')),
        "--find-links" => out.find_links.extend(pieces(&value, ',')),
        "--no-index" => out.no_index = true,
        "--reinstall" => out.reinstall = true,
        "--upgrade" => out.upgrade = true,
        "--no-deps" => out.no_deps = true,
        "--prerelease" if PRERELEASE_MODES.contains(&value.as_str()) => {
            out.prerelease = Some(value)
        }
        "--pre" => out.prerelease = Some("allow".to_string()),
        "--only-binary" => out.only_binary.extend(split_names(&value)?),
        "--no-binary" => out.no_binary.extend(split_names(&value)?),
        _ => return None,
    }
    Some(())
}

/// The non-empty pieces of a value that uv splits at `delimiter`.
fn pieces(value: &str, delimiter: char) -> Vec<String> {
    value
        .split(delimiter)
        .filter(|piece| !piece.is_empty())
        .map(str::to_string)
        .collect()
}

/// `--only-binary` / `--no-binary` values: `:all:`, `:none:` or package names, comma-separated.
fn split_names(value: &str) -> Option<Vec<String>> {
    value
        .split(',')
        .map(|part| {
            let known = part == ":all:"
                || part == ":none:"
                || uv_normalize::PackageName::from_str(part).is_ok();
            known.then(|| part.to_string())
        })
        .collect()
}

/// The long spelling of an option.
fn long_name(flag: &str) -> &str {
    match flag {
        "-p" => "--python",
        "-r" => "--requirements",
        "-c" => "--constraints",
        "-i" => "--index-url",
        "-f" => "--find-links",
        "-U" => "--upgrade",
        "-q" => "--quiet",
        "-v" => "--verbose",
        other => other,
    }
}

/// Split `--name=value`, or `-Xvalue` for a short option that takes a value.
pub(crate) fn split_flag(arg: &str) -> (&str, Option<String>) {
    if let Some(long) = arg.strip_prefix("--") {
        if let Some((name, value)) = long.split_once('=') {
            return (&arg[..name.len() + 2], Some(value.to_string()));
        }
        return (arg, None);
    }
    const VALUED_SHORT: [&str; 5] = ["-p", "-i", "-f", "-r", "-c"];
    if arg.len() > 2
        && let Some(short) = VALUED_SHORT.iter().find(|s| arg.starts_with(**s))
    {
        let rest = &arg[2..];
        let rest = rest.strip_prefix('=').unwrap_or(rest);
        return (short, Some(rest.to_string()));
    }
    (arg, None)
}

fn invalid(message: impl Into<String>) -> FfiError {
    FfiError::new(ErrorKind::InvalidCommand, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokenize(line).unwrap()
    }

    #[test]
    fn tokenizes_like_a_shell() {
        assert_eq!(
            words(r#"pip install "rich>=13,<15""#),
            ["pip", "install", "rich>=13,<15"]
        );
        assert_eq!(words(r"a\ b 'c d' ''"), ["a b", "c d", ""]);
        assert_eq!(words(r#""a\"b" "\x""#), ["a\"b", "\\x"]);
        assert!(tokenize("'open").is_err());
    }

    #[test]
    fn parses_the_common_install_shapes() {
        let argv =
            words("pip install -q --python=/p/bin/python -rreq.txt --no-deps a==1 -- -weird");
        let Some(Command::PipInstall(args)) = parse_fast(&argv) else {
            panic!("not an install")
        };
        assert_eq!(args.python.as_deref(), Some("/p/bin/python"));
        assert_eq!(args.requirements, ["req.txt"]);
        assert_eq!(args.packages, ["a==1", "-weird"]);
        assert!(args.no_deps);
        assert_eq!(args.quiet, 1);
    }

    #[test]
    fn leaves_anything_uncertain_to_uv() {
        for line in [
            "pip install --frobnicate a",
            "pip freeze",
            "pip uninstall --no-deps a",
            "",
            "pip install --python",
            "pip install --link-mode=fast a",
            "pip install --python a --python b c",
            "pip install -qv a",
            "pip install --python= a",
        ] {
            assert_eq!(parse_fast(&words(line)), None, "{line}");
        }
        assert!(matches!(
            parse_fast(&words("pip uninstall -q --python=/x a")),
            Some(Command::PipUninstall(_))
        ));
    }
}
