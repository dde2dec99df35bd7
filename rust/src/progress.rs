//! Progress events for warm calls that ask for them (`"progress": true`), reported by uv's own
//! reporter hooks (resolver, preparer, installer) and by the engine's uninstall loop.
//!
//! Calls run one at a time, so one log serves them all: the running call appends, another
//! thread may drain it while the call runs (`uv_ffi_progress`), and the call's reply carries
//! whatever was not drained. A host that polls can also ask the call to stop: the engine stops
//! at the next point where nothing has been changed yet (after resolving, after downloading);
//! a call that has begun removing or linking files finishes. A call that does not ask pays
//! nothing: no reporter is attached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use uv_distribution_types::{BuildableSource, CachedDist, Name, VersionOrUrlRef};
use uv_normalize::PackageName;
use uv_redacted::DisplaySafeUrl;

use crate::error::{ErrorKind, FfiError, Result};

/// One event. Names are PEP 503-normalised.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase begins; `total` is how many items it has (0 when not known in advance).
    Phase {
        phase: &'static str,
        total: usize,
    },
    /// The resolver chose a version for a package.
    Resolved {
        name: String,
        version: String,
    },
    /// A download begins; `total_bytes` when the server said.
    DownloadStart {
        id: usize,
        name: String,
        total_bytes: Option<u64>,
    },
    /// Bytes downloaded so far for download `id`.
    DownloadProgress {
        id: usize,
        bytes: u64,
    },
    DownloadDone {
        id: usize,
        name: String,
    },
    /// A source distribution (or source tree) build begins, and ends.
    BuildStart {
        id: usize,
        name: String,
    },
    BuildDone {
        id: usize,
        name: String,
    },
    /// A wheel is downloaded (built if needed) and unpacked into the cache.
    Prepared {
        name: String,
        version: String,
    },
    /// An installed distribution was removed.
    Uninstalled {
        name: String,
        version: String,
    },
    /// A distribution was linked into the environment.
    Installed {
        name: String,
        version: String,
    },
}

#[derive(Default)]
pub struct Log {
    events: Vec<Event>,
    /// Bytes so far per download, since uv reports increments.
    downloaded: HashMap<usize, u64>,
    next_id: usize,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);
static STOP: AtomicBool = AtomicBool::new(false);

fn log() -> MutexGuard<'static, Option<Log>> {
    LOG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The log's lock, held across `fork()` (see `fork.rs`).
pub struct LogLock(#[allow(dead_code)] MutexGuard<'static, Option<Log>>);

/// A call holds the engine, then this lock, always in that order.
pub fn lock_log() -> LogLock {
    LogLock(log())
}

/// Start recording for the call that is about to run.
pub fn begin() {
    STOP.store(false, Ordering::Relaxed);
    *log() = Some(Log::default());
}

/// Stop recording; returns what no poll took.
pub fn finish() -> Vec<Event> {
    STOP.store(false, Ordering::Relaxed);
    log().take().map(|log| log.events).unwrap_or_default()
}

/// The events recorded since the last drain, and whether a call is recording.
pub fn drain() -> (Vec<Event>, bool) {
    match log().as_mut() {
        Some(log) => (std::mem::take(&mut log.events), true),
        None => (Vec::new(), false),
    }
}

/// Ask the recording call to stop where it safely can (no effect when none records).
pub fn request_stop() -> bool {
    let recording = log().is_some();
    if recording {
        STOP.store(true, Ordering::Relaxed);
    }
    recording
}

/// Fail the call here if the host asked it to stop.
pub fn stop_point(what_is_left: &str) -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        return Err(FfiError::new(
            ErrorKind::Stopped,
            format!("Stopped at the host's request; {what_is_left}"),
        ));
    }
    Ok(())
}

/// Whether the running call records events (so the caller attaches a reporter).
pub fn recording() -> bool {
    log().is_some()
}

pub fn emit(event: Event) {
    if let Some(log) = log().as_mut() {
        log.events.push(event);
    }
}

fn new_id() -> usize {
    log().as_mut().map_or(0, |log| {
        log.next_id += 1;
        log.next_id
    })
}

fn add_bytes(id: usize, increment: u64) {
    if let Some(log) = log().as_mut() {
        let done = log.downloaded.entry(id).or_default();
        *done += increment;
        let bytes = *done;
        log.events.push(Event::DownloadProgress { id, bytes });
    }
}

fn pair(name: &PackageName, version: impl ToString) -> (String, String) {
    (name.to_string(), version.to_string())
}

fn source_name(source: &BuildableSource) -> String {
    source
        .name()
        .map(ToString::to_string)
        .unwrap_or_else(|| source.to_string())
}

/// The reporter given to uv's resolver, preparer and installer.
pub struct Reporter;

impl Reporter {
    /// A reporter when the call records, none otherwise.
    pub fn if_recording() -> Option<Arc<Self>> {
        recording().then(|| Arc::new(Self))
    }

    fn download_start(&self, name: &PackageName, size: Option<u64>) -> usize {
        let id = new_id();
        emit(Event::DownloadStart {
            id,
            name: name.to_string(),
            total_bytes: size,
        });
        id
    }

    fn build_start(&self, source: &BuildableSource) -> usize {
        let id = new_id();
        emit(Event::BuildStart {
            id,
            name: source_name(source),
        });
        id
    }

    fn build_done(&self, source: &BuildableSource, id: usize) {
        let name = source_name(source);
        emit(Event::BuildDone { id, name });
    }

    fn download_done(&self, name: &PackageName, id: usize) {
        let name = name.to_string();
        emit(Event::DownloadDone { id, name });
    }
}

/// The methods uv's resolver and preparer reporters share (the same hooks on two traits).
macro_rules! download_and_build_hooks {
    () => {
        fn on_download_start(&self, name: &PackageName, size: Option<u64>) -> usize {
            self.download_start(name, size)
        }
        fn on_download_progress(&self, id: usize, bytes: u64) {
            add_bytes(id, bytes);
        }
        fn on_download_complete(&self, name: &PackageName, id: usize) {
            self.download_done(name, id);
        }
        fn on_build_start(&self, source: &BuildableSource) -> usize {
            self.build_start(source)
        }
        fn on_build_complete(&self, source: &BuildableSource, id: usize) {
            self.build_done(source, id);
        }
        fn on_checkout_start(&self, _url: &DisplaySafeUrl, _rev: &str) -> usize {
            new_id()
        }
        fn on_checkout_complete(&self, _url: &DisplaySafeUrl, _rev: &str, _id: usize) {}
    };
}

impl uv_resolver::ResolverReporter for Reporter {
    fn on_progress(&self, name: &PackageName, version: &VersionOrUrlRef) {
        let version = match version {
            VersionOrUrlRef::Version(version) => version.to_string(),
            VersionOrUrlRef::Url(url) => url.to_string(),
        };
        let name = name.to_string();
        emit(Event::Resolved { name, version });
    }
    fn on_complete(&self) {}
    download_and_build_hooks!();
}

impl uv_installer::PrepareReporter for Reporter {
    fn on_progress(&self, dist: &CachedDist) {
        let (name, version) = pair(dist.name(), &dist.filename().version);
        emit(Event::Prepared { name, version });
    }
    fn on_complete(&self) {}
    download_and_build_hooks!();
}

impl uv_installer::InstallReporter for Reporter {
    fn on_install_progress(&self, wheel: &CachedDist) {
        let (name, version) = pair(wheel.name(), &wheel.filename().version);
        emit(Event::Installed { name, version });
    }
    fn on_install_complete(&self) {}
}
