//! Whether uv's configuration files apply to a call, answered cheaply enough for the hot path.
//!
//! uv reads `uv.toml`, or `pyproject.toml` with a `[tool.uv]` table, in the working directory
//! or its nearest ancestor that has one, plus the user's and the system's `uv.toml`
//! (`uv_settings::FilesystemOptions::{find, user, system}`). The warm engine does not apply
//! settings from those files itself: a call they apply to runs through uv's own command line.
//! The answer is kept per directory with the `stat` of every file uv would look at, and the files
//! are read again only when one of them changed. On Linux the paths of those files are watched
//! (`config_watch.rs`), so a warm call whose answer is watched asks the kernel once instead of
//! `stat`ing every file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use uv_settings::FilesystemOptions;

/// One file uv may read, and what it looked like when the answer was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    /// `None` when the file did not exist.
    seen: Option<(u64, i64, i64, u64)>,
}

impl FileStamp {
    fn read(path: PathBuf) -> Self {
        let seen = std::fs::metadata(&path)
            .ok()
            .map(|meta| (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len()));
        Self { path, seen }
    }

    fn unchanged(&self) -> bool {
        *self == Self::read(self.path.clone())
    }
}

struct Answer {
    stamps: Vec<FileStamp>,
    applies: bool,
    /// Every path of the stamps is watched and nothing that matters changed since the stamps
    /// were last compared: the answer holds without comparing them.
    watched: bool,
    /// A path of the stamps cannot be watched: they are compared on every call.
    unwatchable: bool,
    /// The variables that chose where the user's and the system's files are (see [`places`]).
    places: Vec<Option<std::ffi::OsString>>,
}

/// Remembered answers, by working directory.
#[derive(Default)]
pub struct ConfigProbe {
    answers: FxHashMap<PathBuf, Answer>,
    #[cfg(target_os = "linux")]
    watch: Option<crate::config_watch::ConfigWatch>,
}

impl ConfigProbe {
    /// True when a configuration file (project, user or system) would apply to a `uv pip`
    /// command run in `cwd`. An unreadable or invalid file counts as applying, so that uv's
    /// own command line reports it exactly as uv would.
    pub fn applies(&mut self, cwd: &Path) -> bool {
        if self
            .answers
            .get(cwd)
            .is_some_and(|answer| !same_places(&answer.places))
        {
            // The host pointed uv elsewhere for the user's or the system's files.
            self.answers.remove(cwd);
        }
        if !self.nothing_changed() {
            for answer in self.answers.values_mut() {
                answer.watched = false;
            }
        }
        if let Some(answer) = self.answers.get(cwd)
            && answer.watched
        {
            return answer.applies;
        }
        if let Some(answer) = self.answers.get(cwd)
            && answer.unwatchable
            && answer.stamps.iter().all(FileStamp::unchanged)
        {
            return answer.applies;
        }
        // Watched from before the comparison: a change during it is an event next time.
        let candidates = candidates(cwd);
        let watched = self.watch_paths(&candidates);
        if let Some(answer) = self.answers.get_mut(cwd)
            && answer.stamps.iter().all(FileStamp::unchanged)
        {
            answer.watched = watched;
            answer.unwatchable = !watched;
            return answer.applies;
        }
        let stamps: Vec<FileStamp> = candidates.into_iter().map(FileStamp::read).collect();
        let applies = stamps.iter().any(|stamp| stamp.seen.is_some()) && settings_found(cwd);
        if self.answers.len() > 64 {
            self.answers.clear();
        }
        let answer = Answer {
            stamps,
            applies,
            watched,
            unwatchable: !watched,
            places: places(),
        };
        self.answers.insert(cwd.to_path_buf(), answer);
        applies
    }

    /// Whether no watched path changed since the last call (`false` without watches).
    #[cfg(target_os = "linux")]
    fn nothing_changed(&mut self) -> bool {
        match &mut self.watch {
            Some(watch) if watch.is_own() => watch.quiet(),
            _ => false,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn nothing_changed(&mut self) -> bool {
        false
    }

    /// Watch every path a change to one of `files` may come through; `false` if one cannot be.
    #[cfg(target_os = "linux")]
    fn watch_paths(&mut self, files: &[PathBuf]) -> bool {
        if !self.watch.as_ref().is_some_and(|watch| watch.is_own()) {
            // First use, or inherited through a fork: the parent's queue is not ours to read.
            self.watch = crate::config_watch::ConfigWatch::new();
            for answer in self.answers.values_mut() {
                answer.watched = false;
            }
        }
        let Some(watch) = self.watch.as_mut() else {
            return false;
        };
        files.iter().all(|file| watch.watch_path(file))
    }

    #[cfg(not(target_os = "linux"))]
    fn watch_paths(&mut self, _files: &[PathBuf]) -> bool {
        false
    }
}

/// The process's one probe.
static PROBE: Mutex<Option<ConfigProbe>> = Mutex::new(None);

/// The probe's lock, held across a fork (`fork.rs`).
pub type ProbeLock = MutexGuard<'static, Option<ConfigProbe>>;

pub fn lock_probe() -> ProbeLock {
    PROBE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`ConfigProbe::applies`] on the process's one probe.
pub fn applies(cwd: &Path) -> bool {
    lock_probe()
        .get_or_insert_with(ConfigProbe::default)
        .applies(cwd)
}

/// Ask uv's own settings reader whether it finds anything for `cwd`.
fn settings_found(cwd: &Path) -> bool {
    let found = |options: Result<Option<FilesystemOptions>, uv_settings::Error>| {
        !matches!(options, Ok(None))
    };
    found(FilesystemOptions::find(cwd))
        || found(FilesystemOptions::user())
        || found(FilesystemOptions::system())
}

/// The variables uv reads to find the user's configuration folder (`XDG_CONFIG_HOME`, else
/// `HOME`) and the system's (`XDG_CONFIG_DIRS`): a change moves the files [`candidates`] names.
const PLACES: [&std::ffi::CStr; 3] = [c"XDG_CONFIG_HOME", c"HOME", c"XDG_CONFIG_DIRS"];

/// The values of [`PLACES`].
fn places() -> Vec<Option<std::ffi::OsString>> {
    PLACES
        .into_iter()
        .map(|name| crate::vars::with_value(name, owned))
        .collect()
}

/// Whether the values of [`PLACES`] are still `kept`: compared in place, as every call asks.
fn same_places(kept: &[Option<std::ffi::OsString>]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    PLACES.iter().zip(kept).all(|(name, kept)| {
        crate::vars::with_value(name, |value| value == kept.as_ref().map(|k| k.as_bytes()))
    })
}

fn owned(value: Option<&[u8]>) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    value.map(|v| std::ffi::OsStr::from_bytes(v).to_os_string())
}

/// Every file whose appearance, change or removal may change the answer for `cwd`.
fn candidates(cwd: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in cwd.ancestors() {
        files.push(dir.join("uv.toml"));
        files.push(dir.join("pyproject.toml"));
    }
    if let Some(dir) = uv_dirs::user_uv_config_dir() {
        files.push(dir.join("uv.toml"));
    }
    let xdg = std::env::var("XDG_CONFIG_DIRS").unwrap_or_default();
    let xdg = if xdg.is_empty() {
        "/etc/xdg".to_string()
    } else {
        xdg
    };
    for dir in xdg.split(':').take_while(|dir| !dir.is_empty()) {
        files.push(Path::new(dir).join("uv").join("uv.toml"));
    }
    files.push(PathBuf::from("/etc/uv/uv.toml"));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uv_toml_in_the_directory_applies_and_its_removal_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = ConfigProbe::default();
        let before = probe.applies(dir.path());
        std::fs::write(
            dir.path().join("uv.toml"),
            "[pip]\nindex-url = \"http://x/\"\n",
        )
        .unwrap();
        assert!(probe.applies(dir.path()));
        std::fs::remove_file(dir.path().join("uv.toml")).unwrap();
        assert_eq!(probe.applies(dir.path()), before);
    }

    #[cfg(target_os = "linux")]
    fn watched(probe: &ConfigProbe, cwd: &Path) -> bool {
        probe.answers.get(cwd).is_some_and(|answer| answer.watched)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_watched_answer_notices_a_file_edited_through_another_link() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("project");
        std::fs::create_dir(&cwd).unwrap();
        std::fs::write(cwd.join("pyproject.toml"), "[project]\nname = \"x\"\n").unwrap();
        let mut probe = ConfigProbe::default();
        let before = probe.applies(&cwd);
        assert!(
            watched(&probe, &cwd),
            "a temporary folder on a local disk is watched"
        );
        assert_eq!(probe.applies(&cwd), before);
        // Written through a hard link elsewhere: no event in the watched folder itself.
        let other = dir.path().join("elsewhere.toml");
        std::fs::hard_link(cwd.join("pyproject.toml"), &other).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&other)
            .unwrap();
        std::io::Write::write_all(&mut file, b"[tool.uv]\nindex-url = \"http://x/\"\n").unwrap();
        drop(file);
        assert!(probe.applies(&cwd));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_watched_answer_notices_its_folder_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("project");
        std::fs::create_dir(&cwd).unwrap();
        let mut probe = ConfigProbe::default();
        let before = probe.applies(&cwd);
        probe.applies(&cwd);
        assert!(watched(&probe, &cwd));
        // Another folder takes the path: it has a uv.toml the watched one never had.
        let replacement = dir.path().join("replacement");
        std::fs::create_dir(&replacement).unwrap();
        std::fs::write(
            replacement.join("uv.toml"),
            "[pip]\nindex-url = \"http://x/\"\n",
        )
        .unwrap();
        std::fs::rename(&cwd, dir.path().join("old")).unwrap();
        std::fs::rename(&replacement, &cwd).unwrap();
        assert!(probe.applies(&cwd));
        std::fs::remove_file(cwd.join("uv.toml")).unwrap();
        assert_eq!(probe.applies(&cwd), before);
        assert!(watched(&probe, &cwd), "watched again once compared");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn other_names_in_a_watched_folder_keep_the_answer_watched() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = ConfigProbe::default();
        probe.applies(dir.path());
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        probe.applies(dir.path());
        assert!(watched(&probe, dir.path()));
    }

    #[test]
    fn a_pyproject_without_tool_uv_does_not_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = ConfigProbe::default();
        let before = probe.applies(dir.path());
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"x\"\n",
        )
        .unwrap();
        assert_eq!(probe.applies(dir.path()), before);
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"x\"\n[tool.uv]\nindex-url = \"http://x/\"\n",
        )
        .unwrap();
        assert!(probe.applies(dir.path()));
    }
}
