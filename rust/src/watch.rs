//! Change notification for the folders of distributions the stash may keep (Linux `inotify`),
//! so that proving a stash entry intact does not take a `stat` of every file in it.
//!
//! A folder is watched from right before everything in it is compared with its stamps (a survey
//! after linking, or the full check of a stash entry), and is *vouched for* when that comparison
//! held and nothing changed in it meanwhile. From then on, any change to a name in it or to a
//! file's content or attributes made through it is an event; a folder that had none since it was
//! vouched for still matches the stamps it was compared with. (A failed comparison vouches for
//! nothing: a folder shared with another distribution fails the other's survey.) The watch goes
//! with the folder's inode through the stash's renames, so one watch serves every swap.
//!
//! What is not seen, and is then taken as uv would: a change made through another hard link to a
//! file (one of uv's cache files, hard-linked: its content is the cache's, which is what uv links
//! again), and writes through a shared memory map. A lost event (the queue overflowed) makes
//! every folder unvouched; a folder that is removed loses its watch. `__pycache__` coming and
//! going is not a change (uv's uninstall removes it; a stash entry never brings it back) but is
//! noted, so that the folder is read for it before the distribution leaves.
//!
//! The watches belong to one engine: a forked child starts its own engine with none, and reads
//! nothing from the parent's (whose descriptor is closed on `exec`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// At most this many folders are watched (the system allows about 190,000 per user here);
/// past that, folders are compared with their stamps file by file, as without watches.
const MAX_WATCHES: usize = 8192;

/// A watched folder: its inode, whether it is unchanged since it was vouched for, and whether
/// a `__pycache__` appeared in it since.
struct Watched {
    inode: (u64, u64),
    unchanged: bool,
    /// Changes seen since the watch was set.
    changes: u64,
    bytecode: bool,
}

/// A folder being compared with its stamps: its watch and the changes it had seen when the
/// comparison began.
pub struct Vouch {
    wd: i32,
    changes: u64,
}

#[derive(Default)]
pub struct Watches {
    /// The `inotify` descriptor, made on first use (`None` where it cannot be made).
    fd: Option<std::os::fd::OwnedFd>,
    /// The descriptor could not be made: no watches.
    failed: bool,
    by_wd: HashMap<i32, Watched>,
    by_inode: HashMap<(u64, u64), i32>,
}

impl Watches {
    /// Read every pending event (without waiting). Call before any question below.
    #[cfg(not(target_os = "linux"))]
    pub fn drain(&mut self) {}

    /// Read every pending event (without waiting). Call before any question below.
    #[cfg(target_os = "linux")]
    pub fn drain(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut events = Vec::new();
        read_events(fd, &mut events);
        for (wd, mask, name) in events {
            self.note(wd, mask, &name);
        }
    }

    /// Watch the folder at `path` from now: the caller is about to compare everything in it
    /// with stamps, and [`Watches::confirm`]s it if they all hold. `None` when it cannot be
    /// watched.
    pub fn begin(&mut self, path: &Path) -> Option<Vouch> {
        self.drain();
        let wd = self.add_watch(path)?;
        // Which folder is watched, read after the watch is set.
        let meta = path.symlink_metadata().ok()?;
        let inode = (meta.dev(), meta.ino());
        if let Some(old) = self.by_inode.insert(inode, wd)
            && old != wd
        {
            self.by_wd.remove(&old);
        }
        let watched = self.by_wd.entry(wd).or_insert(Watched {
            inode,
            unchanged: false,
            changes: 0,
            bytecode: false,
        });
        Some(Vouch {
            wd,
            changes: watched.changes,
        })
    }

    /// Everything in the folders of `vouches` held its stamps: each is unchanged from now,
    /// unless something changed in it since [`Watches::begin`] (while it was compared).
    pub fn confirm(&mut self, vouches: &[Vouch]) {
        self.drain();
        for vouch in vouches {
            if let Some(watched) = self.by_wd.get_mut(&vouch.wd)
                && watched.changes == vouch.changes
            {
                watched.unchanged = true;
            }
        }
    }

    /// Whether the folder with this inode is watched and unchanged since it was vouched for;
    /// `Some(true)` when a `__pycache__` appeared in it meanwhile.
    pub fn unchanged(&self, inode: (u64, u64)) -> Option<bool> {
        let watched = self.by_wd.get(self.by_inode.get(&inode)?)?;
        watched.unchanged.then_some(watched.bytecode)
    }

    #[cfg(target_os = "linux")]
    fn note(&mut self, wd: i32, mask: u32, name: &[u8]) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            for watched in self.by_wd.values_mut() {
                watched.unchanged = false;
                watched.changes += 1;
            }
            return;
        }
        if mask & libc::IN_IGNORED != 0 {
            // The folder is gone (or its filesystem): so is the watch.
            if let Some(watched) = self.by_wd.remove(&wd)
                && self.by_inode.get(&watched.inode) == Some(&wd)
            {
                self.by_inode.remove(&watched.inode);
            }
            return;
        }
        let Some(watched) = self.by_wd.get_mut(&wd) else {
            return;
        };
        if name == b"__pycache__" {
            watched.bytecode |= mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0;
        } else {
            watched.unchanged = false;
            watched.changes += 1;
        }
    }

    /// Only Linux tells: elsewhere every folder is compared with its stamps file by file.
    #[cfg(not(target_os = "linux"))]
    fn add_watch(&mut self, _path: &Path) -> Option<i32> {
        None
    }

    #[cfg(target_os = "linux")]
    fn add_watch(&mut self, path: &Path) -> Option<i32> {
        if self.by_wd.len() >= MAX_WATCHES {
            return None;
        }
        let fd = self.fd()?;
        add_watch(fd, path, WATCHED_EVENTS)
    }

    #[cfg(target_os = "linux")]
    fn fd(&mut self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        if self.fd.is_none() && !self.failed {
            self.fd = open_inotify();
            self.failed = self.fd.is_none();
        }
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// A new `inotify` descriptor (non-blocking, closed on `exec`), or `None` where there is none.
#[cfg(target_os = "linux")]
pub(crate) fn open_inotify() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: no pointer is passed; a non-negative result is a descriptor we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Watch `path` for `events` through the `inotify` descriptor `fd`: the watch's number.
#[cfg(target_os = "linux")]
pub(crate) fn add_watch(fd: std::os::fd::RawFd, path: &Path, events: u32) -> Option<i32> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
    let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), events) };
    (wd >= 0).then_some(wd)
}

#[cfg(target_os = "linux")]
/// Every change to a name in the folder or to a file in it (not the folder's own move: the
/// stash moves folders whole, and where a folder is is checked by its inode).
const WATCHED_EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

/// At most this many reads of pending events per call (64 KiB of events). A file written
/// without pause in a watched folder (a log in the working directory) can queue a new event
/// after every read; past this, the events count as lost (`IN_Q_OVERFLOW`), so that what the
/// watches vouch for is checked again by `stat`, and the call goes on.
const MAX_READS: usize = 16;

#[cfg(target_os = "linux")]
/// Read the pending events as (watch, mask, name) until none is left, or [`MAX_READS`] reads.
pub(crate) fn read_events(fd: &std::os::fd::OwnedFd, events: &mut Vec<(i32, u32, Vec<u8>)>) {
    use std::os::fd::AsRawFd;
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    // On the stack, and not zeroed (4 KiB of stores): this runs on every call, and almost
    // always finds nothing pending.
    let mut space = std::mem::MaybeUninit::<[u8; 4096]>::uninit();
    for _ in 0..MAX_READS {
        // SAFETY: the buffer is valid for writes of its whole length.
        let read = unsafe { libc::read(fd.as_raw_fd(), space.as_mut_ptr().cast(), 4096) };
        let Ok(read) = usize::try_from(read) else {
            return; // EAGAIN: nothing pending (or an error: nothing more to learn)
        };
        if read == 0 {
            return;
        }
        // SAFETY: the kernel wrote the first `read` bytes.
        let buffer = unsafe { std::slice::from_raw_parts(space.as_ptr().cast::<u8>(), read) };
        let mut at = 0;
        while at + HEADER <= read {
            // SAFETY: the kernel wrote a whole event header at `at`; read unaligned.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buffer[at..].as_ptr().cast()) };
            let name_len = event.len as usize;
            let name = &buffer[at + HEADER..(at + HEADER + name_len).min(read)];
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            events.push((event.wd, event.mask, name.to_vec()));
            at += HEADER + name_len;
        }
    }
    events.push((-1, libc::IN_Q_OVERFLOW, Vec::new()));
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn inode(path: &Path) -> (u64, u64) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    /// A comparison that held, with nothing changing during it.
    fn vouch(watches: &mut Watches, path: &Path) {
        let vouch = watches.begin(path).unwrap();
        watches.confirm(&[vouch]);
    }

    fn package() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("pkg");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.py"), "a").unwrap();
        (root, folder)
    }

    #[test]
    fn a_folder_is_unchanged_until_something_in_it_changes() {
        let (root, folder) = package();
        let mut watches = Watches::default();
        vouch(&mut watches, &folder);
        watches.drain();
        assert_eq!(watches.unchanged(inode(&folder)), Some(false));
        // Moved whole, it is still the same, unchanged folder.
        let moved = root.path().join("moved");
        std::fs::rename(&folder, &moved).unwrap();
        std::fs::read(moved.join("a.py")).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(inode(&moved)), Some(false));
        // Bytecode is noted, not a change.
        std::fs::create_dir(moved.join("__pycache__")).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(inode(&moved)), Some(true));
        std::fs::write(moved.join("a.py"), "b").unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(inode(&moved)), None);
        // Compared again, and vouched for, it is unchanged again.
        vouch(&mut watches, &moved);
        assert_eq!(watches.unchanged(inode(&moved)), Some(true));
    }

    #[test]
    fn events_past_the_reads_of_a_call_count_as_lost() {
        let (_root, folder) = package();
        let fd = open_inotify().unwrap();
        add_watch(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &folder,
            libc::IN_CREATE,
        )
        .unwrap();
        let mut events = Vec::new();
        std::fs::write(folder.join("b.py"), "b").unwrap();
        read_events(&fd, &mut events);
        assert_eq!(events.len(), 1);
        assert_ne!(events[0].1 & libc::IN_CREATE, 0);
        // More than 64 KiB of events pending: the last one read says some were not.
        for i in 0..3000 {
            std::fs::write(folder.join(format!("module_with_a_long_name_{i}.py")), "").unwrap();
        }
        events.clear();
        read_events(&fd, &mut events);
        assert!(events.len() < 3000);
        assert_eq!(events.last().map(|e| e.1), Some(libc::IN_Q_OVERFLOW));
    }

    #[test]
    fn only_a_comparison_that_held_undisturbed_vouches() {
        let (_root, folder) = package();
        let mut watches = Watches::default();
        // Begun but never confirmed (the comparison failed): not vouched for.
        watches.begin(&folder).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(inode(&folder)), None);
        // A change while it was compared: not vouched for either.
        let during = watches.begin(&folder).unwrap();
        std::fs::write(folder.join("b.py"), "b").unwrap();
        watches.confirm(&[during]);
        assert_eq!(watches.unchanged(inode(&folder)), None);
        // A comparison begun by another owner that fails leaves a vouched folder as it was.
        vouch(&mut watches, &folder);
        std::fs::write(folder.join("a.py"), "c").unwrap();
        watches.begin(&folder).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(inode(&folder)), None);
    }

    #[test]
    fn an_attribute_change_or_a_removed_folder_is_seen() {
        use std::os::unix::fs::PermissionsExt;
        let (_root, folder) = package();
        let mut watches = Watches::default();
        let id = inode(&folder);
        vouch(&mut watches, &folder);
        let perms = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(folder.join("a.py"), perms).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(id), None);
        vouch(&mut watches, &folder);
        std::fs::remove_dir_all(&folder).unwrap();
        watches.drain();
        assert_eq!(watches.unchanged(id), None);
        assert!(watches.by_wd.is_empty() && watches.by_inode.is_empty());
    }
}
