//! Whether uv's configuration files apply to a call, answered cheaply enough for the hot path.
//!
//! uv reads `uv.toml`, or `pyproject.toml` with a `[tool.uv]` table, in the working directory
//! or its nearest ancestor that has one, plus the user's and the system's `uv.toml`
//! (`uv_settings::FilesystemOptions::{find, user, system}`). The warm engine does not apply
//! settings from those files itself: a call they apply to runs through uv's own command line.
//! The answer is kept per directory with the `stat` of every file uv would look at, so a warm
//! call costs a few `stat`s and the files are read again only when one of them changed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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

#[derive(Debug)]
struct Answer {
    stamps: Vec<FileStamp>,
    applies: bool,
}

/// Remembered answers, by working directory.
#[derive(Debug, Default)]
pub struct ConfigProbe {
    answers: HashMap<PathBuf, Answer>,
}

impl ConfigProbe {
    /// True when a configuration file (project, user or system) would apply to a `uv pip`
    /// command run in `cwd`. An unreadable or invalid file counts as applying, so that uv's
    /// own command line reports it exactly as uv would.
    pub fn applies(&mut self, cwd: &Path) -> bool {
        if let Some(answer) = self.answers.get(cwd)
            && answer.stamps.iter().all(FileStamp::unchanged)
        {
            return answer.applies;
        }
        let stamps: Vec<FileStamp> = candidates(cwd).into_iter().map(FileStamp::read).collect();
        let applies = stamps.iter().any(|stamp| stamp.seen.is_some()) && settings_found(cwd);
        if self.answers.len() > 64 {
            self.answers.clear();
        }
        self.answers
            .insert(cwd.to_path_buf(), Answer { stamps, applies });
        applies
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
