//! Turning a command line such as `pip install --python /venv/bin/python "rich>=13,<15"` into a
//! typed request, without clap: shell-style tokenizing, then the `pip install` options the engine
//! runs on its fast path. Anything else is refused with a message that names it.

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

/// The options of one `pip install` call, as given (paths are resolved by the engine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallArgs {
    pub packages: Vec<String>,
    pub requirements: Vec<String>,
    pub constraints: Vec<String>,
    pub python: Option<String>,
    pub target: Option<String>,
    pub link_mode: Option<String>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub reinstall: bool,
    pub upgrade: bool,
    pub no_deps: bool,
    pub prerelease: Option<String>,
    pub dry_run: bool,
    pub quiet: u8,
    pub verbose: u8,
    pub system: bool,
    pub break_system_packages: bool,
}

/// A parsed command. `pip uninstall` uses the same option struct; only the options listed in
/// [`UNINSTALL_OPTIONS`] are accepted for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    PipInstall(InstallArgs),
    PipUninstall(InstallArgs),
}

/// The options `pip uninstall` accepts (by their long name).
const UNINSTALL_OPTIONS: [&str; 9] = [
    "--python",
    "--target",
    "--requirement",
    "--system",
    "--break-system-packages",
    "--dry-run",
    "--quiet",
    "--verbose",
    "--",
];

const LINK_MODES: [&str; 5] = ["clone", "copy", "hardlink", "symlink", "reflink"];
const PRERELEASE_MODES: [&str; 5] = [
    "disallow",
    "allow",
    "if-necessary",
    "explicit",
    "if-necessary-or-explicit",
];

/// Parse a tokenized command (an optional leading `uv`, then `pip install ...`).
pub fn parse(argv: &[String]) -> Result<Command> {
    let mut rest = argv;
    if rest.first().map(String::as_str) == Some("uv") {
        rest = &rest[1..];
    }
    match rest {
        [] => Err(invalid(
            "The command is empty; expected `pip install <package>...`",
        )),
        [pip, install, args @ ..] if pip == "pip" && install == "install" => {
            parse_options(args, None).map(Command::PipInstall)
        }
        [pip, uninstall, args @ ..] if pip == "pip" && uninstall == "uninstall" => {
            parse_options(args, Some(&UNINSTALL_OPTIONS)).map(Command::PipUninstall)
        }
        [pip, other, ..] if pip == "pip" => Err(invalid(format!(
            "The command `pip {other}` is not supported by the engine yet; only `pip install` and `pip uninstall` are"
        ))),
        [other, ..] => Err(invalid(format!(
            "The command `{other}` is not supported by the engine yet; only `pip install` and `pip uninstall` are"
        ))),
    }
}

/// Parse the options of `pip install` (all options) or of `pip uninstall` (`allowed`).
fn parse_options(args: &[String], allowed: Option<&[&str]>) -> Result<InstallArgs> {
    let mut out = InstallArgs::default();
    let mut iter = args.iter();
    let mut only_positional = false;
    while let Some(arg) = iter.next() {
        if only_positional || !arg.starts_with('-') || arg == "-" {
            out.packages.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        // `--flag=value` and, for short flags, `-rvalue`.
        let (flag, inline) = split_flag(arg);
        if let Some(allowed) = allowed {
            if !allowed.contains(&long_name(flag, arg)) {
                return Err(unknown_flag(flag, inline.is_some(), "pip uninstall"));
            }
        }
        let mut value = |name: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| invalid(format!("The option `{name}` needs a value"))),
            }
        };
        match flag {
            "-p" | "--python" => out.python = Some(value(flag)?),
            "-t" | "--target" => out.target = Some(value(flag)?),
            "--link-mode" => {
                let mode = value(flag)?;
                if !LINK_MODES.contains(&mode.as_str()) {
                    return Err(invalid(format!(
                        "Invalid value `{mode}` for `--link-mode`; expected one of: clone, copy, hardlink, symlink"
                    )));
                }
                out.link_mode = Some(mode);
            }
            "-i" | "--index-url" => out.index_url = Some(value(flag)?),
            "--extra-index-url" => out.extra_index_urls.push(value(flag)?),
            "-f" | "--find-links" => out.find_links.push(value(flag)?),
            "-r" | "--requirement" | "--requirements" => out.requirements.push(value(flag)?),
            "-c" | "--constraint" | "--constraints" => out.constraints.push(value(flag)?),
            "--prerelease" => {
                let mode = value(flag)?;
                if !PRERELEASE_MODES.contains(&mode.as_str()) {
                    return Err(invalid(format!(
                        "Invalid value `{mode}` for `--prerelease`; expected one of: {}",
                        PRERELEASE_MODES.join(", ")
                    )));
                }
                out.prerelease = Some(mode);
            }
            _ if inline.is_some() && flag.starts_with("--") => {
                return Err(unknown_flag(flag, true, "pip install"));
            }
            "--pre" => out.prerelease = Some("allow".to_string()),
            "--no-index" => out.no_index = true,
            "--reinstall" | "--force-reinstall" => out.reinstall = true,
            "-U" | "--upgrade" => out.upgrade = true,
            "--no-deps" => out.no_deps = true,
            "--dry-run" => out.dry_run = true,
            "--system" => out.system = true,
            "--break-system-packages" => out.break_system_packages = true,
            "-q" | "--quiet" => out.quiet += 1,
            "-v" | "--verbose" => out.verbose += 1,
            _ if is_repeated_short(arg, 'q') => out.quiet += (arg.len() - 1) as u8,
            _ if is_repeated_short(arg, 'v') => out.verbose += (arg.len() - 1) as u8,
            _ => return Err(unknown_flag(arg, false, "pip install")),
        }
    }
    if out.packages.is_empty() && out.requirements.is_empty() {
        let command = if allowed.is_some() {
            "pip uninstall"
        } else {
            "pip install"
        };
        return Err(invalid(format!(
            "`{command}` needs at least one package or `-r <file>`"
        )));
    }
    Ok(out)
}

/// The long spelling of an option, to check it against a command's allowed options.
fn long_name<'a>(flag: &'a str, arg: &'a str) -> &'a str {
    match flag {
        "-p" => "--python",
        "-t" => "--target",
        "-r" | "--requirements" => "--requirement",
        "-c" | "--constraints" => "--constraint",
        "-i" => "--index-url",
        "-f" => "--find-links",
        "-U" => "--upgrade",
        "-q" => "--quiet",
        "-v" => "--verbose",
        _ if is_repeated_short(arg, 'q') => "--quiet",
        _ if is_repeated_short(arg, 'v') => "--verbose",
        other => other,
    }
}

/// Split `--name=value` or `-Xvalue` (for short options that take a value).
fn split_flag(arg: &str) -> (&str, Option<String>) {
    if let Some(long) = arg.strip_prefix("--") {
        if let Some((name, value)) = long.split_once('=') {
            return (&arg[..name.len() + 2], Some(value.to_string()));
        }
        return (arg, None);
    }
    const VALUED_SHORT: [&str; 6] = ["-p", "-t", "-i", "-f", "-r", "-c"];
    if arg.len() > 2 {
        if let Some(short) = VALUED_SHORT.iter().find(|s| arg.starts_with(**s)) {
            let rest = &arg[2..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            return (short, Some(rest.to_string()));
        }
    }
    (arg, None)
}

fn is_repeated_short(arg: &str, letter: char) -> bool {
    arg.len() > 2 && arg[1..].chars().all(|c| c == letter)
}

fn unknown_flag(flag: &str, with_value: bool, command: &str) -> FfiError {
    let mut err = invalid(format!(
        "The option `{flag}` is not supported by the engine's `{command}`{}",
        if with_value {
            " (or does not take a value)"
        } else {
            ""
        }
    ));
    err.hints.push(if command == "pip uninstall" {
        "supported: --python, --target, -r, --dry-run, -q, -v, --system, --break-system-packages"
            .to_string()
    } else {
        "supported: --python, --target, --link-mode, -i/--index-url, --extra-index-url, \
         -f/--find-links, --no-index, --reinstall, -U/--upgrade, --no-deps, -r, -c, \
         --prerelease, --dry-run, -q, -v, --system, --break-system-packages"
            .to_string()
    });
    err
}

fn invalid(message: impl Into<String>) -> FfiError {
    FfiError::new(ErrorKind::InvalidCommand, message)
}

/// Tokenize and parse in one step.
pub fn parse_line(line: &str) -> Result<(Vec<String>, Command)> {
    let argv = tokenize(line)?;
    let command = parse(&argv)?;
    Ok((argv, command))
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
    fn parses_install_options() {
        let argv =
            words("pip install -q --python=/p/bin/python -rreq.txt --no-deps a==1 -- -weird");
        let Command::PipInstall(args) = parse(&argv).unwrap() else {
            panic!("not an install")
        };
        assert_eq!(args.python.as_deref(), Some("/p/bin/python"));
        assert_eq!(args.requirements, ["req.txt"]);
        assert_eq!(args.packages, ["a==1", "-weird"]);
        assert!(args.no_deps);
        assert_eq!(args.quiet, 1);
    }

    #[test]
    fn refuses_unknown_flags_and_commands() {
        let err = parse(&words("pip install --frobnicate a")).unwrap_err();
        assert!(err.message.contains("--frobnicate"));
        assert!(
            parse(&words("pip freeze"))
                .unwrap_err()
                .message
                .contains("pip freeze")
        );
        assert!(
            parse(&words("pip uninstall --no-deps a"))
                .unwrap_err()
                .message
                .contains("--no-deps")
        );
        assert!(matches!(
            parse(&words("pip uninstall -q --python=/x a")),
            Ok(Command::PipUninstall(_))
        ));
        assert!(parse(&words("")).is_err());
        assert!(parse(&words("pip install --python")).is_err());
        assert!(parse(&words("pip install --link-mode=fast a")).is_err());
    }
}
