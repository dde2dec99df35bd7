//! The hot path's parser for `pip list`, `pip freeze` and `pip show` in their common shapes,
//! without uv's command tree: building that tree costs milliseconds once and about 3 MiB that
//! the process keeps, which a host that only installs and reads need not pay. Like
//! `command::parse_fast`, it answers `None` for anything it does not know for certain (an
//! unknown, repeated or conflicting option, a value uv might read otherwise), and uv's parser
//! then decides. `tests/test_read.py` compares what these commands answer with the `uv` binary.

use std::str::FromStr;

use uv_cli::ListFormat;
use uv_normalize::PackageName;

use crate::command::InstallArgs;
use crate::read::ReadCommand;

/// A read command understood without uv's parser.
pub struct FastRead {
    pub command: ReadCommand,
    /// The environment and printing options (`--python`, `--target`, `-q`, `--cache-dir`).
    pub args: InstallArgs,
    pub no_config: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Freeze,
    Show,
}

/// Everything given, before it becomes a [`ReadCommand`].
#[derive(Default)]
struct Given {
    args: InstallArgs,
    no_config: bool,
    format: Option<ListFormat>,
    editable: bool,
    exclude_editable: bool,
    exclude: Vec<PackageName>,
    files: bool,
    strict: bool,
    packages: Vec<PackageName>,
    seen: Vec<&'static str>,
}

/// `pip list|freeze|show [options]` (with or without a leading `uv`), or `None`.
pub fn parse(argv: &[String]) -> Option<FastRead> {
    let rest = match argv.first().map(String::as_str) {
        Some("uv") => &argv[1..],
        _ => argv,
    };
    let [pip, subcommand, words @ ..] = rest else {
        return None;
    };
    let kind = match (pip.as_str(), subcommand.as_str()) {
        ("pip", "list") => Kind::List,
        ("pip", "freeze") => Kind::Freeze,
        ("pip", "show") => Kind::Show,
        _ => return None,
    };
    let mut given = Given::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if !word.starts_with('-') {
            // Only `show` takes words, and only names uv's parser would accept.
            if kind != Kind::Show {
                return None;
            }
            given.packages.push(PackageName::from_str(word).ok()?);
            // As uv's parse reads them into the arguments too (unused by a read).
            given.args.packages.push(word.clone());
            continue;
        }
        let (flag, inline) = crate::command::split_flag(word);
        let value = match (takes_value(flag), inline) {
            (true, Some(value)) => Some(value),
            (true, None) => Some(words.next()?.clone()),
            (false, Some(_)) => return None,
            (false, None) => None,
        };
        // Empty values and values that look like options: leave them to uv's parser.
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.starts_with('-'))
        {
            return None;
        }
        given.apply(kind, flag, value)?;
    }
    given.finish(kind)
}

fn takes_value(flag: &str) -> bool {
    matches!(
        flag,
        "--python" | "--target" | "--cache-dir" | "--format" | "--exclude"
    )
}

impl Given {
    /// Record one option; `None` for one this parser does not take (for this command), a value
    /// uv would read otherwise, or a repeat uv refuses.
    fn apply(&mut self, kind: Kind, flag: &str, value: Option<String>) -> Option<()> {
        let (name, repeatable): (&'static str, bool) = match (flag, kind) {
            ("--python", _) => ("--python", false),
            ("--target", _) => ("--target", false),
            ("--system", _) => ("--system", false),
            ("--cache-dir", _) => ("--cache-dir", false),
            ("--no-config", _) => ("--no-config", false),
            ("--quiet" | "-q", _) => ("--quiet", true),
            ("--strict", _) => ("--strict", false),
            ("--format", Kind::List) => ("--format", false),
            ("--editable", Kind::List) => ("--editable", false),
            ("--exclude-editable", Kind::List | Kind::Freeze) => ("--exclude-editable", false),
            ("--exclude", Kind::List | Kind::Freeze) => ("--exclude", true),
            ("--files", Kind::Show) => ("--files", false),
            _ => return None,
        };
        if !repeatable && self.seen.contains(&name) {
            return None;
        }
        self.seen.push(name);
        match name {
            "--python" => self.args.python = value,
            "--target" => self.args.target = value,
            "--system" => self.args.system = true,
            "--cache-dir" => self.args.cache_dir = value,
            "--no-config" => self.no_config = true,
            "--quiet" => self.args.quiet = self.args.quiet.checked_add(1)?,
            "--strict" => self.strict = true,
            "--format" => self.format = Some(list_format(value.as_deref()?)?),
            "--editable" => self.editable = true,
            "--exclude-editable" => self.exclude_editable = true,
            "--exclude" => self.exclude.push(PackageName::from_str(&value?).ok()?),
            "--files" => self.files = true,
            _ => return None,
        }
        Some(())
    }

    /// The command, unless options conflict (uv's parser words the refusal) or the shape is
    /// one left to uv (`show` without a name, `--system` beside another environment).
    fn finish(self, kind: Kind) -> Option<FastRead> {
        let other_environment = self.args.python.is_some() || self.args.target.is_some();
        if (self.args.system && other_environment)
            || (self.editable && self.exclude_editable)
            || self.args.quiet > 2
        {
            return None;
        }
        let command = match kind {
            Kind::List => ReadCommand::List {
                format: self.format.unwrap_or_default(),
                editable: match (self.editable, self.exclude_editable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                exclude: self.exclude,
                strict: self.strict,
            },
            Kind::Freeze => ReadCommand::Freeze {
                exclude_editable: self.exclude_editable,
                exclude: self.exclude,
                strict: self.strict,
            },
            Kind::Show if self.packages.is_empty() => return None,
            Kind::Show => ReadCommand::Show {
                packages: self.packages,
                files: self.files,
                strict: self.strict,
            },
        };
        Some(FastRead {
            command,
            args: self.args,
            no_config: self.no_config,
        })
    }
}

fn list_format(value: &str) -> Option<ListFormat> {
    match value {
        "columns" => Some(ListFormat::Columns),
        "freeze" => Some(ListFormat::Freeze),
        "json" => Some(ListFormat::Json),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::read::ReadCommand;

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn common_shapes_are_understood() {
        let read = parse(&words("pip list --python /v/bin/python --format json -q")).unwrap();
        assert!(matches!(read.command, ReadCommand::List { .. }));
        assert_eq!(read.args.python.as_deref(), Some("/v/bin/python"));
        assert_eq!(read.args.quiet, 1);
        let read = parse(&words("uv pip show --target=/t alpha beta --files")).unwrap();
        assert!(
            matches!(read.command, ReadCommand::Show { ref packages, files: true, .. } if packages.len() == 2)
        );
        assert!(parse(&words("pip freeze --exclude alpha --exclude beta")).is_some());
    }

    #[test]
    fn anything_uncertain_is_left_to_uv() {
        for line in [
            "pip list --outdated",
            "pip list --format yaml",
            "pip list --strict --strict",
            "pip list --editable --exclude-editable",
            "pip freeze --files",
            "pip show",
            "pip show --system --python /v/bin/python alpha",
            "pip list -qq",
            "pip list extra",
            "pip list --python=",
            "pip check",
        ] {
            assert!(parse(&words(line)).is_none(), "{line}");
        }
    }
}
