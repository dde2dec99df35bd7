//! Change notification for the files uv's configuration may come from (Linux `inotify`), so that
//! a warm call asks the kernel one question ("did anything that matters change?") instead of
//! `stat`ing every candidate file (nine of them for a working directory two levels deep).
//!
//! For each candidate file, every existing folder on its path is watched for the name of the
//! next step on that path (a folder or link renamed or replaced anywhere above the file is a
//! change), and the file itself, if it exists, for any change to it through any of its links.
//! Any event on one of those names, a lost event (the queue overflowed), or a watch gone (its
//! folder removed) makes every answer unwatched: it is then checked by `stat` again, as
//! without watches, and watched again from there. Folders on filesystems whose changes may
//! come from elsewhere (NFS, FUSE, ...) are not watched at all: there a change made by another
//! machine raises no event.
//!
//! A forked child does not share its parent's event queue: the watch notices the new process
//! and starts over with a fresh descriptor.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Watches for the folders and files of the configuration candidates.
pub struct ConfigWatch {
    fd: OwnedFd,
    /// The process that made the descriptor (a forked child makes its own).
    pid: u32,
    /// For each watched folder, the names in it whose change matters.
    folders: HashMap<i32, HashSet<OsString>>,
    /// Watched candidate files: any event on one matters.
    files: HashSet<i32>,
}

/// Folder events: a name created, removed, renamed, or a file in it written or changed.
const FOLDER_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// File events: written, changed, removed or renamed (seen whichever link was used).
const FILE_EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// At most this many watches: a working directory deep enough to need more is `stat`ed.
const MAX_WATCHES: usize = 256;

impl ConfigWatch {
    /// A new, empty watch (`None` where `inotify` cannot be used).
    pub fn new() -> Option<Self> {
        Some(Self {
            fd: crate::watch::open_inotify()?,
            pid: std::process::id(),
            folders: HashMap::new(),
            files: HashSet::new(),
        })
    }

    /// Whether this watch was made by this process (not inherited through a fork).
    pub fn is_own(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Read every pending event (without waiting): `true` when none of them matters.
    pub fn quiet(&mut self) -> bool {
        let mut events = Vec::new();
        crate::watch::read_events(&self.fd, &mut events);
        let mut quiet = true;
        for (wd, mask, name) in events {
            if mask & (libc::IN_Q_OVERFLOW | libc::IN_IGNORED) != 0 {
                // Events were lost, or a watch is gone with its folder or file.
                self.folders.remove(&wd);
                self.files.remove(&wd);
                quiet = false;
            } else if self.files.contains(&wd) {
                quiet = false;
            } else if let Some(names) = self.folders.get(&wd) {
                // An event without a name is about the watched folder itself.
                let name = std::ffi::OsStr::from_bytes(&name);
                quiet &= !(name.is_empty() || names.contains(name));
            }
        }
        quiet
    }

    /// Watch everything a change to `file` may come through; `false` when that is not
    /// possible (a folder on a filesystem that may change elsewhere, too many watches).
    pub fn watch_path(&mut self, file: &Path) -> bool {
        let mut folder = std::path::PathBuf::new();
        for component in file.components() {
            let Component::Normal(name) = component else {
                folder.push(component);
                continue;
            };
            if !folder.is_dir() {
                // Nothing below a missing folder can exist; its creation is watched above.
                return true;
            }
            let Some(wd) = self.add(&folder, FOLDER_EVENTS) else {
                return false;
            };
            self.folders
                .entry(wd)
                .or_default()
                .insert(name.to_os_string());
            folder.push(name);
        }
        if folder.is_file() {
            let Some(wd) = self.add(&folder, FILE_EVENTS) else {
                return false;
            };
            self.files.insert(wd);
        }
        true
    }

    fn add(&mut self, path: &Path, events: u32) -> Option<i32> {
        if self.folders.len() + self.files.len() >= MAX_WATCHES || !changes_are_local(path) {
            return None;
        }
        crate::watch::add_watch(self.fd.as_raw_fd(), path, events)
    }
}

/// Whether every change to files under `path` is made through this kernel (and so raises an
/// event): local disk filesystems, memory and overlays of them. Not NFS, SMB, FUSE, 9p, ...
fn changes_are_local(path: &Path) -> bool {
    const LOCAL: [i64; 7] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x794C_7630, // overlayfs
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
    ];
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: all-zero bytes are a valid `statfs`, which the call fills in.
    let mut info: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid pointer to a `statfs`.
    if unsafe { libc::statfs(path.as_ptr(), &mut info) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s integer type differs between targets
    LOCAL.contains(&(info.f_type as i64))
}
