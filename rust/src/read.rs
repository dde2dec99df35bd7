//! `pip list`, `pip freeze`, `pip show` and `pip check` answered from the engine's snapshot of an
//! environment, as data and as the exact text uv 0.12.5 prints for them.
//!
//! The snapshot is uv's own (`SitePackages`, kept in `EnvState`): it is read from the disk only
//! when stale (after an install, or when the fingerprint check saw an outside change), and the
//! metadata a `show` or `check` reads is kept inside it. The text follows uv's commands
//! (`uv/src/commands/pip/{list,freeze,show,check}.rs`), without colour: the engine captures, and
//! uv only colours a terminal. Options this module does not know keep the command on uv's own
//! command line (`request.rs` decides).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use itertools::Itertools as _;
use serde::Serialize;
use uv_cli::ListFormat;
use uv_distribution_types::{
    DependencyMetadata, Diagnostic, InstalledDist, InstalledDistKind, Name,
};
use uv_installer::SitePackages;
use uv_normalize::PackageName;

use crate::environment::EnvState;
use crate::error::{ErrorKind, FfiError, Result};

/// A read-only command, with the options that shape its answer.
#[derive(Debug, Clone)]
pub enum ReadCommand {
    List {
        format: ListFormat,
        /// `--editable`: `Some(true)`; `--exclude-editable`: `Some(false)`.
        editable: Option<bool>,
        exclude: Vec<PackageName>,
        strict: bool,
    },
    Freeze {
        exclude_editable: bool,
        exclude: Vec<PackageName>,
        strict: bool,
    },
    Show {
        packages: Vec<PackageName>,
        files: bool,
        strict: bool,
    },
    Check,
}

/// How much uv prints: `-q` hides `stdout()` and `stderr()` but not the command's main output
/// (`stdout_important`), `-qq` hides everything.
#[derive(Debug, Clone, Copy)]
pub struct Loudness {
    pub quiet: u8,
}

impl Loudness {
    fn important(self) -> bool {
        self.quiet < 2
    }
    fn normal(self) -> bool {
        self.quiet == 0
    }
}

/// One installed distribution, as `list` and `freeze` report it.
#[derive(Debug, Clone, Serialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// The folder holding its `.dist-info` (site-packages, or the `--target` folder).
    pub location: PathBuf,
    /// `registry`, `url`, `egg_info_file`, `egg_info_directory` or `legacy_editable`.
    pub kind: &'static str,
    pub editable: bool,
    pub editable_project_location: Option<PathBuf>,
    /// The direct URL it was installed from (`direct_url.json`), if any.
    pub url: Option<String>,
    /// The `INSTALLER` file's first line, if there is one.
    pub installer: Option<String>,
}

/// One distribution's block of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShowRecord {
    pub name: String,
    pub version: String,
    pub location: PathBuf,
    pub editable_project_location: Option<PathBuf>,
    /// Null when the metadata could not be read (uv then prints no such lines).
    pub requires: Option<Vec<String>>,
    pub required_by: Option<Vec<String>>,
    /// The RECORD paths, with `--files`.
    pub files: Option<Vec<String>>,
}

/// The structured answer, beside the text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadAnswer {
    /// `list`, `freeze`, `show` or `check`.
    pub command: &'static str,
    /// `list` and `freeze`: the distributions reported, in uv's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<PackageRecord>>,
    /// `show`: one record per distribution found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show: Option<Vec<ShowRecord>>,
    /// `show`: the names asked for that are not installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// `check` (and `--strict`): one message per problem, as uv words it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

/// What a read command printed and found.
pub struct ReadOutcome {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub answer: ReadAnswer,
}

/// Everything about the call that the text depends on besides the environment.
pub struct ReadContext<'a> {
    pub loudness: Loudness,
    /// The folder the caller runs in: paths under it are shown relative, as uv shows them.
    pub cwd: &'a Path,
    /// uv's cache folder for this call: environments inside it are not reported.
    pub cache_root: &'a Path,
}

/// `show` with no name fails before any environment is looked at, as uv's does.
pub fn answer_without_environment(
    command: &ReadCommand,
    loudness: Loudness,
) -> Option<ReadOutcome> {
    match command {
        ReadCommand::Show { packages, .. } if packages.is_empty() => {
            let mut out = Printer::new(loudness);
            out.err(format_args!(
                "warning: Please provide a package name or names."
            ));
            Some(out.finish(1, ReadAnswer::named("show")))
        }
        _ => None,
    }
}

/// Answer `command` from `state`'s snapshot.
pub fn answer(
    command: &ReadCommand,
    state: &mut EnvState,
    context: &ReadContext,
) -> Result<ReadOutcome> {
    let start = Instant::now();
    let mut out = Printer::new(context.loudness);
    if let Some(line) = environment_line(state, context) {
        out.err(format_args!("{line}"));
    }
    let markers = state.markers.clone();
    let tags = state.tags().clone();
    let site = state.site_packages()?;
    let (exit_code, mut answer) = match command {
        ReadCommand::List {
            format,
            editable,
            exclude,
            ..
        } => {
            let rows = sorted(site, |dist| {
                editable.is_none_or(|wanted| wanted == dist.is_editable())
                    && !exclude.contains(dist.name())
            });
            print_list(&mut out, format, &rows);
            (0, ReadAnswer::listing("list", &rows))
        }
        ReadCommand::Freeze {
            exclude_editable,
            exclude,
            ..
        } => {
            let rows = sorted(site, |dist| {
                let hidden_editable = *exclude_editable && dist.is_editable();
                !hidden_editable && !exclude.contains(dist.name())
            });
            print_freeze(&mut out, &rows);
            (0, ReadAnswer::listing("freeze", &rows))
        }
        ReadCommand::Show {
            packages, files, ..
        } => show(&mut out, site, packages, *files, &markers)?,
        ReadCommand::Check => check(&mut out, site, &markers, &tags, start)?,
    };
    let strict = matches!(
        command,
        ReadCommand::List { strict: true, .. }
            | ReadCommand::Freeze { strict: true, .. }
            | ReadCommand::Show { strict: true, .. }
    );
    if strict && exit_code == 0 {
        let problems = problems(site, &markers, &tags)?;
        for problem in &problems {
            out.err(format_args!("warning: {problem}"));
        }
        answer.problems = Some(problems);
    }
    Ok(out.finish(exit_code, answer))
}

/// Distributions passing `keep`, sorted by name then version, as uv sorts them.
fn sorted(site: &SitePackages, keep: impl Fn(&InstalledDist) -> bool) -> Vec<&InstalledDist> {
    site.iter()
        .filter(|dist| keep(dist))
        .sorted_unstable_by(|a, b| a.name().cmp(b.name()).then(a.version().cmp(b.version())))
        .collect()
}

fn print_list(out: &mut Printer, format: &ListFormat, rows: &[&InstalledDist]) {
    match format {
        ListFormat::Json => {
            let entries: Vec<JsonRow> = rows.iter().map(|dist| JsonRow::of(dist)).collect();
            let text = serde_json::to_string(&entries).expect("plain strings serialize");
            out.important(format_args!("{text}"));
        }
        ListFormat::Columns if rows.is_empty() => {}
        ListFormat::Columns => {
            for line in columns(rows) {
                out.important(format_args!("{line}"));
            }
        }
        ListFormat::Freeze => {
            for dist in rows {
                out.important(format_args!("{}=={}", dist.name(), dist.version()));
            }
        }
    }
}

/// `uv pip list --format json`'s row (without the `--outdated` fields, which stay with uv).
#[derive(Serialize)]
struct JsonRow {
    name: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    editable_project_location: Option<String>,
}

impl JsonRow {
    fn of(dist: &InstalledDist) -> Self {
        Self {
            name: dist.name().to_string(),
            version: dist.version().to_string(),
            editable_project_location: editable_location(dist).map(|p| p.display().to_string()),
        }
    }
}

/// The table of `uv pip list`: each column as wide as its widest cell, a dashed rule under the
/// headers, cells joined by one space, trailing spaces trimmed.
fn columns(rows: &[&InstalledDist]) -> Vec<String> {
    let mut table: Vec<(&str, Vec<String>)> = vec![
        (
            "Package",
            rows.iter().map(|d| d.name().to_string()).collect(),
        ),
        (
            "Version",
            rows.iter().map(|d| d.version().to_string()).collect(),
        ),
    ];
    if rows.iter().any(|d| editable_location(d).is_some()) {
        let cells = rows
            .iter()
            .map(|d| {
                editable_location(d)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        table.push(("Editable project location", cells));
    }
    let widths: Vec<usize> = table
        .iter()
        .map(|(header, cells)| {
            cells
                .iter()
                .map(|c| width(c))
                .chain([width(header)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cell: &dyn Fn(usize) -> String| {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| pad(&cell(i), *w))
            .collect();
        cells.join(" ").trim_end().to_string()
    };
    let mut lines = vec![
        line(&|i| table[i].0.to_string()),
        line(&|i| "-".repeat(widths[i])),
    ];
    for row in 0..rows.len() {
        lines.push(line(&|i| table[i].1[row].clone()));
    }
    lines
}

/// Display width: one column per character (names, versions and paths here are not wide
/// East Asian text; uv counts Unicode widths, which agree for everything else).
fn width(text: &str) -> usize {
    text.chars().count()
}

fn pad(text: &str, width: usize) -> String {
    format!(
        "{text}{}",
        " ".repeat(width.saturating_sub(self::width(text)))
    )
}

fn print_freeze(out: &mut Printer, rows: &[&InstalledDist]) {
    let lines = rows.iter().map(|dist| freeze_line(dist)).dedup();
    for line in lines {
        out.important(format_args!("{line}"));
    }
}

/// One line of `uv pip freeze`: a pin, a direct reference, or an editable URL.
fn freeze_line(dist: &InstalledDist) -> String {
    match &dist.kind {
        InstalledDistKind::Url(url) if url.editable => format!("-e {}", url.url),
        InstalledDistKind::Url(url) => format!("{} @ {}", dist.name(), url.url),
        InstalledDistKind::LegacyEditable(legacy) => format!("-e {}", legacy.target.display()),
        _ => format!("{}=={}", dist.name(), dist.version()),
    }
}

fn editable_location(dist: &InstalledDist) -> Option<PathBuf> {
    dist.as_editable().and_then(|url| url.to_file_path().ok())
}

impl ReadAnswer {
    fn named(command: &'static str) -> Self {
        Self {
            command,
            ..Self::default()
        }
    }

    fn listing(command: &'static str, rows: &[&InstalledDist]) -> Self {
        Self {
            packages: Some(rows.iter().map(|dist| PackageRecord::of(dist)).collect()),
            ..Self::named(command)
        }
    }
}

impl PackageRecord {
    fn of(dist: &InstalledDist) -> Self {
        let (kind, url) = match &dist.kind {
            InstalledDistKind::Registry(_) => ("registry", None),
            InstalledDistKind::Url(url) => ("url", Some(url.url.to_string())),
            InstalledDistKind::EggInfoFile(_) => ("egg_info_file", None),
            InstalledDistKind::EggInfoDirectory(_) => ("egg_info_directory", None),
            InstalledDistKind::LegacyEditable(legacy) => {
                ("legacy_editable", Some(legacy.target_url.to_string()))
            }
        };
        Self {
            name: dist.name().to_string(),
            version: dist.version().to_string(),
            location: location(dist),
            kind,
            editable: dist.is_editable(),
            editable_project_location: editable_location(dist),
            url,
            installer: installer(dist),
        }
    }
}

/// The folder that holds the distribution's metadata folder.
fn location(dist: &InstalledDist) -> PathBuf {
    dist.install_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn installer(dist: &InstalledDist) -> Option<String> {
    let text = std::fs::read_to_string(dist.install_path().join("INSTALLER")).ok()?;
    text.lines()
        .next()
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
}

/// `uv pip show`: one block per installed distribution named, with what it requires and what
/// requires it (only requirements whose markers hold in this environment count).
fn show(
    out: &mut Printer,
    site: &SitePackages,
    packages: &[PackageName],
    files: bool,
    markers: &uv_pypi_types::ResolverMarkerEnvironment,
) -> Result<(i32, ReadAnswer)> {
    let names: Vec<&PackageName> = packages.iter().sorted_unstable().dedup().collect();
    let (missing, found): (Vec<&PackageName>, Vec<Vec<&InstalledDist>>) = names
        .iter()
        .map(|name| (*name, site.get_packages(name)))
        .partition_map(|(name, dists)| {
            if dists.is_empty() {
                itertools::Either::Left(name)
            } else {
                itertools::Either::Right(dists)
            }
        });
    if !missing.is_empty() {
        out.err(format_args!(
            "warning: Package(s) not found for: {}",
            missing.iter().join(", ")
        ));
    }
    let mut answer = ReadAnswer::named("show");
    answer.missing = Some(missing.iter().map(ToString::to_string).collect());
    let found: Vec<&InstalledDist> = found.into_iter().flatten().collect();
    if found.is_empty() {
        return Ok((1, answer));
    }
    let requires = requirements_by_name(site, &found, markers);
    let mut records = Vec::new();
    for (i, dist) in found.iter().enumerate() {
        if i > 0 {
            out.normal(format_args!("---"));
        }
        let record = show_record(dist, &requires, files)?;
        print_show_record(out, &record);
        records.push(record);
    }
    answer.show = Some(records);
    Ok((0, answer))
}

/// The names each distribution requires, for those shown and, if any of those could be read,
/// for every other installed one (to find what requires the ones shown).
fn requirements_by_name<'a>(
    site: &'a SitePackages,
    shown: &[&'a InstalledDist],
    markers: &uv_pypi_types::ResolverMarkerEnvironment,
) -> Vec<(&'a PackageName, Vec<&'a PackageName>)> {
    let required = |dist: &'a InstalledDist| {
        dist.read_metadata().ok().map(|metadata| {
            metadata
                .requires_dist
                .iter()
                .filter(|req| req.evaluate_markers(markers, &[]))
                .map(|req| &req.name)
                .sorted_unstable()
                .dedup()
                .collect::<Vec<_>>()
        })
    };
    let mut map: Vec<(&PackageName, Vec<&PackageName>)> = Vec::new();
    for dist in shown {
        // Several distributions of one name: the last one read counts, as in uv.
        if let Some(names) = required(dist) {
            map.retain(|(name, _)| *name != dist.name());
            map.push((dist.name(), names));
        }
    }
    if map.is_empty() {
        return map;
    }
    for dist in site.iter() {
        if map.iter().any(|(name, _)| *name == dist.name()) {
            continue;
        }
        if let Some(names) = required(dist).filter(|names| !names.is_empty()) {
            map.push((dist.name(), names));
        }
    }
    map
}

fn show_record(
    dist: &InstalledDist,
    requires: &[(&PackageName, Vec<&PackageName>)],
    files: bool,
) -> Result<ShowRecord> {
    let own = requires.iter().find(|(name, _)| *name == dist.name());
    let required_by = own.map(|_| {
        requires
            .iter()
            .filter(|(name, names)| *name != dist.name() && names.contains(&dist.name()))
            .map(|(name, _)| name.to_string())
            .sorted_unstable()
            .dedup()
            .collect()
    });
    Ok(ShowRecord {
        name: dist.name().to_string(),
        version: dist.version().to_string(),
        location: location(dist),
        editable_project_location: editable_location(dist),
        requires: own.map(|(_, names)| names.iter().map(ToString::to_string).collect()),
        required_by,
        files: if files {
            Some(record_paths(dist)?)
        } else {
            None
        },
    })
}

fn record_paths(dist: &InstalledDist) -> Result<Vec<String>> {
    let path = dist.install_path().join("RECORD");
    let read = || -> std::result::Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut file = fs_err::File::open(&path)?;
        Ok(uv_install_wheel::read_record(&mut file)?
            .into_iter()
            .map(|entry| entry.path)
            .collect())
    };
    read().map_err(|err| FfiError::new(ErrorKind::Failed, err.to_string()))
}

fn print_show_record(out: &mut Printer, record: &ShowRecord) {
    out.normal(format_args!("Name: {}", record.name));
    out.normal(format_args!("Version: {}", record.version));
    out.normal(format_args!("Location: {}", record.location.display()));
    if let Some(path) = &record.editable_project_location {
        out.normal(format_args!(
            "Editable project location: {}",
            path.display()
        ));
    }
    if let (Some(requires), Some(required_by)) = (&record.requires, &record.required_by) {
        out.normal(format_args!("{}", field("Requires", requires)));
        out.normal(format_args!("{}", field("Required-by", required_by)));
    }
    if let Some(files) = &record.files {
        out.normal(format_args!("Files:"));
        for path in files {
            out.normal(format_args!("  {path}"));
        }
    }
}

/// `Requires: a, b`, or `Requires:` alone when there is nothing.
fn field(label: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("{label}:")
    } else {
        format!("{label}: {}", names.join(", "))
    }
}

/// `uv pip check`: every installed distribution's requirements against what is installed.
fn check(
    out: &mut Printer,
    site: &SitePackages,
    markers: &uv_pypi_types::ResolverMarkerEnvironment,
    tags: &uv_platform_tags::Tags,
    start: Instant,
) -> Result<(i32, ReadAnswer)> {
    let count = site.iter().count();
    let s = if count == 1 { "" } else { "s" };
    out.err(format_args!(
        "Checked {count} package{s} in {}",
        elapsed(start.elapsed())
    ));
    let problems = problems(site, markers, tags)?;
    if problems.is_empty() {
        out.err(format_args!("All installed packages are compatible"));
    } else {
        let noun = if problems.len() == 1 {
            "incompatibility"
        } else {
            "incompatibilities"
        };
        out.err(format_args!("Found {} {noun}", problems.len()));
        for problem in &problems {
            out.err(format_args!("{problem}"));
        }
    }
    let exit_code = i32::from(!problems.is_empty());
    let answer = ReadAnswer {
        problems: Some(problems),
        ..ReadAnswer::named("check")
    };
    Ok((exit_code, answer))
}

fn problems(
    site: &SitePackages,
    markers: &uv_pypi_types::ResolverMarkerEnvironment,
    tags: &uv_platform_tags::Tags,
) -> Result<Vec<String>> {
    let diagnostics = site
        .diagnostics(markers, tags, &DependencyMetadata::default())
        .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))?;
    Ok(diagnostics.iter().map(Diagnostic::message).collect())
}

/// uv's way of printing a duration: `12ms`, `0.42ms`, `1.25s`, `2m 05s`.
fn elapsed(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    let ms = duration.subsec_millis();
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else if secs > 0 {
        format!("{secs}.{:02}s", duration.subsec_nanos() / 10_000_000)
    } else if ms > 0 {
        format!("{ms}ms")
    } else {
        format!("0.{:02}ms", duration.subsec_nanos() / 10_000)
    }
}

/// uv's `Using Python 3.11.9 environment at: .venv-x` line, on stderr, which it leaves out for an
/// environment in the cache, in the tools folder, or at `./.venv`.
fn environment_line(state: &EnvState, context: &ReadContext) -> Option<String> {
    let interpreter = state.env.interpreter();
    let root = if interpreter.is_virtualenv() {
        state.env.root().to_path_buf()
    } else {
        uv_python::managed::ManagedPythonInstallation::try_from_interpreter(interpreter)
            .and_then(|installation| {
                uv_python::managed::PythonMinorVersionLink::from_installation(&installation)
            })
            .map(|link| link.target_directory)
            .unwrap_or_else(|| state.env.root().to_path_buf())
    };
    let absolute = if root.is_absolute() {
        root.clone()
    } else {
        context.cwd.join(&root)
    };
    let tools = uv_tool::InstalledTools::from_settings().ok();
    let hidden = absolute.starts_with(context.cache_root)
        || tools.is_some_and(|tools| absolute.starts_with(tools.root()))
        || absolute == context.cwd.join(".venv");
    (!hidden).then(|| {
        format!(
            "Using Python {} environment at: {}",
            interpreter.python_version(),
            user_display(&root, context.cwd).display()
        )
    })
}

/// A path as uv shows it to a user started in `cwd`: relative when under it.
fn user_display(path: &Path, cwd: &Path) -> PathBuf {
    if cwd.parent().is_none() {
        return path.to_path_buf();
    }
    match path.strip_prefix(cwd) {
        Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rest) => rest.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

/// Collects what a command prints, honouring `-q` as uv's printer does.
struct Printer {
    loudness: Loudness,
    stdout: String,
    stderr: String,
}

impl Printer {
    fn new(loudness: Loudness) -> Self {
        Self {
            loudness,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// The command's main output (shown under `-q`).
    fn important(&mut self, line: std::fmt::Arguments) {
        if self.loudness.important() {
            let _ = writeln!(self.stdout, "{line}");
        }
    }

    fn normal(&mut self, line: std::fmt::Arguments) {
        if self.loudness.normal() {
            let _ = writeln!(self.stdout, "{line}");
        }
    }

    fn err(&mut self, line: std::fmt::Arguments) {
        if self.loudness.normal() {
            let _ = writeln!(self.stderr, "{line}");
        }
    }

    fn finish(self, exit_code: i32, answer: ReadAnswer) -> ReadOutcome {
        ReadOutcome {
            exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            answer,
        }
    }
}
