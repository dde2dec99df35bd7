//! Requests read before. A host sends the same few requests again and again, and reading one
//! (its JSON, the command split into words, its options read by the fast parser,
//! `command::parse_fast`) depends on its text alone, so the answer is kept and shared.
//! Everything else that decides a call's road (`UV_*` variables, configuration files, the
//! current directory) is read on every call (`request::route`).

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::command::{self, Command};
use crate::error::{ErrorKind, FfiError, Result};
use crate::ops::RunRequest;

/// How many requests, command lines and lists of words are kept; all are dropped when full.
const KEEP: usize = 64;

/// A command as the request gave it, split into words, with the fast parser's reading.
pub struct Parsed {
    pub argv: Vec<String>,
    /// The words joined by NUL: the request's identity for the "already satisfied" memo.
    pub joined: String,
    /// `None` where the fast parser leaves the words to uv's parser.
    pub fast: Option<Arc<Command>>,
}

/// A `uv_ffi_run` request, read.
pub struct ReadRequest {
    pub request: RunRequest,
    pub parsed: Arc<Parsed>,
}

#[derive(Default)]
struct Kept {
    lines: FxHashMap<String, Arc<Parsed>>,
    words: FxHashMap<Vec<String>, Arc<Parsed>>,
    requests: FxHashMap<String, Arc<ReadRequest>>,
}

static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Kept>> {
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What is kept, locked: held across a fork (`fork.rs`), so that no thread is in the middle of
/// changing it. No other lock is taken while it is held.
pub struct KeptLock {
    _kept: std::sync::MutexGuard<'static, Option<Kept>>,
}

pub fn lock_kept() -> KeptLock {
    KeptLock { _kept: lock() }
}

/// The text of a `uv_ffi_run` request, read (an invalid request is an error, and not kept).
pub fn run_request(text: &str) -> Result<Arc<ReadRequest>> {
    if let Some(found) = lock()
        .as_ref()
        .and_then(|kept| kept.requests.get(text).cloned())
    {
        return Ok(found);
    }
    let request: RunRequest = crate::guard::parse_request(text)?;
    let parsed = parsed(request.command.as_deref(), request.argv.as_deref())?;
    let answer = Arc::new(ReadRequest { request, parsed });
    let mut guard = lock();
    let kept = guard.get_or_insert_with(Kept::default);
    if kept.requests.len() >= KEEP {
        kept.requests.clear();
    }
    kept.requests.insert(text.to_string(), answer.clone());
    Ok(answer)
}

/// The request's command (exactly one of a line, split by shell rules, or its words), read.
pub fn parsed(line: Option<&str>, words: Option<&[String]>) -> Result<Arc<Parsed>> {
    if let Some(found) = kept(line, words) {
        return Ok(found);
    }
    let argv = match (line, words) {
        (Some(line), None) => command::tokenize(line)?,
        (None, Some(words)) => words.to_vec(),
        _ => {
            return Err(FfiError::new(
                ErrorKind::InvalidJson,
                "Invalid request: give exactly one of `command` (a string) and `argv` (a list of strings)",
            ));
        }
    };
    let fast = command::parse_fast(&argv).map(Arc::new);
    let joined = argv.join("\0");
    let answer = Arc::new(Parsed { argv, joined, fast });
    keep(line, words, &answer);
    Ok(answer)
}

fn kept(line: Option<&str>, words: Option<&[String]>) -> Option<Arc<Parsed>> {
    let guard = lock();
    let kept = guard.as_ref()?;
    match (line, words) {
        (Some(line), None) => kept.lines.get(line).cloned(),
        (None, Some(words)) => kept.words.get(words).cloned(),
        _ => None,
    }
}

fn keep(line: Option<&str>, words: Option<&[String]>, answer: &Arc<Parsed>) {
    let mut guard = lock();
    let kept = guard.get_or_insert_with(Kept::default);
    if kept.lines.len() + kept.words.len() >= 2 * KEEP {
        kept.lines.clear();
        kept.words.clear();
    }
    match (line, words) {
        (Some(line), None) => {
            kept.lines.insert(line.to_string(), answer.clone());
        }
        (None, Some(words)) => {
            kept.words.insert(words.to_vec(), answer.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_asked_again_is_the_same_reading() {
        let line = "pip install --python /p/bin/python 'rich==14.3.2'";
        let first = parsed(Some(line), None).unwrap();
        let again = parsed(Some(line), None).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.argv[4], "rich==14.3.2");
        assert!(first.fast.is_some());
        let words: Vec<String> = first.argv.clone();
        let from_words = parsed(None, Some(&words)).unwrap();
        assert_eq!(from_words.argv, first.argv);
        assert_eq!(from_words.fast, first.fast);
    }

    #[test]
    fn a_request_sent_again_is_the_same_reading() {
        let text = r#"{"command":"pip install --python /p/bin/python six","check":false}"#;
        let first = run_request(text).unwrap();
        assert!(Arc::ptr_eq(&first, &run_request(text).unwrap()));
        assert!(!first.request.check);
        assert_eq!(first.parsed.argv.last().map(String::as_str), Some("six"));
        assert!(run_request(r#"{"command":"pip install six","bogus":1}"#).is_err());
        assert!(run_request("[]").is_err());
    }

    #[test]
    fn a_line_that_does_not_split_is_an_error_and_not_kept() {
        assert!(parsed(Some("pip install 'unclosed"), None).is_err());
        assert!(kept(Some("pip install 'unclosed"), None).is_none());
        assert!(parsed(None, None).is_err());
    }
}
