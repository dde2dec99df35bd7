//! The one error type that crosses the C boundary, and the rendering of uv's errors as text.

use std::error::Error as StdError;
use std::fmt::Write as _;

use serde::Serialize;

/// What went wrong, as a stable snake_case string the Python side maps to exception classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was not valid JSON or did not match the request schema.
    InvalidJson,
    /// The command line could not be tokenized, named an unknown flag, or was empty.
    InvalidCommand,
    /// A requirement (argument, requirements file or constraints file) could not be read.
    InvalidRequirement,
    /// `--python` named no usable interpreter or environment.
    PythonNotFound,
    /// The environment is externally managed (PEP 668) and `--break-system-packages` was not given.
    ExternallyManaged,
    /// The requirements cannot be satisfied, or a package does not exist on the index.
    Resolution,
    /// An index or find-links location could not be reached or read.
    Index,
    /// Downloading, building, unpacking, linking or removing files failed.
    Install,
    /// A panic inside the engine, caught at the boundary.
    Panic,
    /// A command run through uv's own command line reported a failure; the message is what it
    /// printed to stderr, and the error carries `stdout`/`stderr` too.
    Failed,
    /// The host asked a call to stop (`uv_ffi_progress` with `"stop": true`); nothing was
    /// changed, or only what the message says.
    Stopped,
    /// A plan kept for `uv_ffi_plan_apply` is gone, or the environment changed since it was made.
    StalePlan,
    /// Internal signal, never sent to a caller: the warm engine cannot honour this request after
    /// all, and uv's own command line runs it instead.
    DeferToUv,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// The process-style exit code a command ending in this error reports.
    pub fn exit_code(self) -> i32 {
        match self {
            // uv exits with 2 for usage errors and for errors it did not expect, among them an
            // index or find-links location it cannot reach.
            Self::InvalidJson | Self::InvalidCommand | Self::InvalidRequirement | Self::Index => 2,
            _ => 1,
        }
    }
}

/// How a failed call may succeed if retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// With index pages read afresh instead of kept ones.
    FreshIndex,
}

/// An error as it is sent to the caller: a kind, uv's human-readable text and any hints.
#[derive(Debug, Clone, Serialize)]
pub struct FfiError {
    pub kind: ErrorKind,
    pub message: String,
    pub hints: Vec<String>,
    pub exit_code: i32,
    /// Set when the same call may succeed if retried this way (`"fresh_index"`: the call used
    /// index pages kept from earlier calls, and a newer page may change the answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// What uv's command line printed, for errors of kind `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// The structured answer of a read command that ended with a non-zero exit code (`pip check`
    /// finding problems, `pip show` finding nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Box<serde_json::Value>>,
}

impl FfiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hints: Vec::new(),
            exit_code: kind.exit_code(),
            retry: None,
            stdout: None,
            stderr: None,
            read: None,
        }
    }

    /// A command run through uv's command line that ended with a non-zero exit code.
    pub fn failed(exit_code: i32, printed: crate::capture::Printed) -> Self {
        let message = strip_ansi(printed.stderr.trim_end());
        Self {
            kind: ErrorKind::Failed,
            message,
            hints: Vec::new(),
            exit_code,
            retry: None,
            stdout: Some(printed.stdout),
            stderr: Some(printed.stderr),
            read: None,
        }
    }

    /// Render an error from uv with its cause chain and hints, without colour or backtrace.
    pub fn from_uv(kind: ErrorKind, err: &(dyn StdError + 'static)) -> Self {
        let (message, hints) = render(err);
        Self {
            hints,
            ..Self::new(kind, message)
        }
    }

    pub fn from_anyhow(kind: ErrorKind, err: &anyhow::Error) -> Self {
        Self::from_uv(kind, err.as_ref())
    }
}

impl std::fmt::Display for FfiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T, E = FfiError> = std::result::Result<T, E>;

/// Turn an error chain into uv-style text.
///
/// A resolver failure reads like the CLI ("No solution found when resolving dependencies:" and
/// PubGrub's "Because ..." explanation); anything else is the chain of causes, one per line.
fn render(err: &(dyn StdError + 'static)) -> (String, Vec<String>) {
    let mut hints = Vec::new();
    let mut causes: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        causes.push(cause);
        next = cause.source();
    }
    for cause in &causes {
        collect_hints(*cause, &mut hints);
    }

    let no_solution = causes.iter().find_map(|cause| {
        cause
            .downcast_ref::<uv_resolver::NoSolutionError>()
            .or_else(|| {
                cause
                    .downcast_ref::<Box<uv_resolver::NoSolutionError>>()
                    .map(AsRef::as_ref)
            })
            .or_else(|| match cause.downcast_ref::<uv_resolver::ResolveError>() {
                Some(uv_resolver::ResolveError::NoSolution(inner)) => Some(inner.as_ref()),
                _ => None,
            })
    });

    let mut text = String::new();
    if let Some(no_solution) = no_solution {
        let header = uv_resolver::NoSolutionHeader::new(no_solution.environment().clone());
        let _ = write!(text, "{header}");
        let report = no_solution.report().trim().to_string();
        let mut lines = report.lines();
        if let Some(first) = lines.next() {
            let _ = write!(text, "\n  ╰─▶ {first}");
        }
        for line in lines {
            let _ = write!(text, "\n      {line}");
        }
    } else {
        for (index, cause) in causes.iter().enumerate() {
            let line = cause.to_string();
            if index == 0 {
                text.push_str(&line);
            } else if !text.contains(&line) {
                let _ = write!(text, "\n  Caused by: {line}");
            }
        }
    }
    hints.dedup();
    (
        strip_ansi(&text),
        hints.iter().map(|h| strip_ansi(h)).collect(),
    )
}

/// An error that escaped uv's command line, rendered as uv's `main` prints it: `error: ...`,
/// one `Caused by: ...` line per cause, then the hints; without colour.
pub fn render_chain(err: &anyhow::Error) -> String {
    let mut hints = Vec::new();
    for cause in err.chain() {
        collect_hints(cause, &mut hints);
    }
    hints.dedup();
    let mut found = uv_errors::Hints::none();
    for hint in hints {
        found.push(hint);
    }
    let mut text = String::new();
    let _ = uv_errors::write_error_chain_with_options(
        err.as_ref(),
        found,
        uv_errors::ErrorOptions::default().with_stream(&mut text),
    );
    strip_ansi(&text)
}

/// Collect the hints uv attaches to its public error types.
fn collect_hints(cause: &(dyn StdError + 'static), hints: &mut Vec<String>) {
    use uv_errors::Hint;
    fn push(found: uv_errors::Hints<'_>, hints: &mut Vec<String>) {
        // `Hints` renders each entry as "\nhint: ..." (with "hint" coloured); keep only the
        // hint text.
        let text = strip_ansi(&found.to_string());
        for line in text.split("\nhint: ").map(str::trim) {
            let line = line.strip_prefix("hint: ").unwrap_or(line);
            if !line.is_empty() {
                hints.push(line.to_string());
            }
        }
    }
    if let Some(err) = cause.downcast_ref::<uv_resolver::NoSolutionError>() {
        push(err.hints(), hints);
    } else if let Some(err) = cause.downcast_ref::<uv_resolver::ResolveError>() {
        push(err.hints(), hints);
    } else if let Some(err) = cause.downcast_ref::<uv_distribution::Error>() {
        push(err.hints(), hints);
    } else if let Some(err) = cause.downcast_ref::<uv_client::Error>() {
        push(err.hints(), hints);
    } else if let Some(err) = cause.downcast_ref::<uv_python::Error>() {
        push(err.hints(), hints);
    }
}

/// uv colours parts of its messages unconditionally; the caller gets plain text.
/// Removes ANSI CSI sequences (`ESC [` parameters, then one final byte in `@`..=`~`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for next in chars.by_ref() {
                if ('@'..='~').contains(&next) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strips_colour_but_keeps_text() {
        assert_eq!(strip_ansi("\u{1b}[36mdemo-app\u{1b}[39m==9"), "demo-app==9");
        assert_eq!(strip_ansi("a==1, <2"), "a==1, <2");
    }
}
