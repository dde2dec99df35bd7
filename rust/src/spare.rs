//! Spare folders and files, made ahead while the engine is idle, so that a tree hard-linked
//! again (`relink.rs`) takes them by rename instead of making new ones during the call.
//!
//! Making a folder or a file allocates an inode, which on ext4 waits for the block allocator
//! and the journal: about 40 us when the disk is calm, and 0.4 to 0.65 ms each when another
//! process is writing a lot (measured with `strace -T` beside a writer of small files). A
//! rename, or a hard link, stays at 15 to 30 us then. A tree linked again makes few inodes (its
//! folders, and `RECORD`, `INSTALLER`, `REQUESTED`) but they were most of a swap's time under
//! such load.
//!
//! The spares live in `<stash>/spare` of the first stash on a filesystem that asked for them,
//! and serve every tree linked again on that filesystem (a rename cannot cross one), in any
//! environment or `--target` folder. They are out of every import path: empty
//! folders made with `mkdir` and empty files made with mode 0o666, both under the process's
//! umask of that moment, as uv would make them. One is used only while the umask is still the
//! same (read from `/proc/self/status`, which changes nothing). Each is claimed by renaming it
//! into place (a file is written after: one a killed process left written is emptied first); a
//! spare another process took first is simply not there, and the folder or file is then made as
//! without spares. Clearing the stash keeps them (they hold nothing).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::stash::{Memory, rename_no_replace};

/// The spares' folder inside a stash.
pub const SPARE_DIR: &str = "spare";
/// Kept of each kind: a tree needs a folder per package folder and three files.
const KEEP: usize = 8;

/// What the engine knows of the spares of one filesystem.
pub struct Pool {
    /// The stash whose spare folder holds them.
    home: PathBuf,
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
    /// The umask they were made under.
    umask: Option<u32>,
}

/// Spares taken for one tree; those not used stay in the spare folder for the next refill.
#[derive(Default)]
pub struct Taken {
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
    /// How many were used.
    pub used: u64,
}

impl Taken {
    /// Up to `folders` folders and `files` files of the filesystem `dev`, when they were made
    /// under this umask. The first stash of a filesystem to ask (`dir`) gets none, and holds
    /// its spares from the engine's next idle work on ([`refill`]); only a stash that exists
    /// (something was stashed there), so that a `--target` folder no swap touched stays as
    /// it is.
    pub fn from(
        memory: &Mutex<Memory>,
        dev: u64,
        dir: &Path,
        folders: usize,
        files: usize,
    ) -> Self {
        let umask = current_umask();
        let mut memory = Memory::lock(memory);
        if !memory.spares.contains_key(&dev) && !dir.is_dir() {
            return Self::default();
        }
        let pool = memory.spares.entry(dev).or_insert_with(|| Pool {
            home: dir.to_path_buf(),
            folders: Vec::new(),
            files: Vec::new(),
            umask: None,
        });
        if umask.is_none() || pool.umask != umask {
            return Self::default();
        }
        let split = |kept: &mut Vec<PathBuf>, count: usize| {
            let at = kept.len().saturating_sub(count);
            kept.split_off(at)
        };
        Self {
            folders: split(&mut pool.folders, folders),
            files: split(&mut pool.files, files),
            used: 0,
        }
    }

    /// Make the folder `path` (which must not exist), from a spare if one is left.
    pub fn make_folder(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(spare) = self.folders.pop()
            && rename_no_replace(&spare, path).is_ok()
        {
            self.used += 1;
            return Ok(());
        }
        std::fs::create_dir(path)
    }

    /// Make the file `path` (which must not exist) holding `content`, with the permission bits
    /// `mode` if given (else those of a new file), from a spare if one is left. The spare is
    /// renamed into place first, which claims it (another process taking the same spare finds
    /// it gone), then written, as a file made new would be.
    pub fn write_file(
        &mut self,
        path: &Path,
        content: &[u8],
        mode: Option<u32>,
    ) -> std::io::Result<()> {
        if let Some(spare) = self.files.pop() {
            match rename_no_replace(&spare, path) {
                Ok(()) => {
                    fill(path, content, mode)?;
                    self.used += 1;
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Err(err),
                // Gone (another process took it): made new below.
                Err(_) => {}
            }
        }
        let mut handle = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(path)?;
        handle.write_all(content)?;
        if let Some(mode) = mode {
            handle.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}

/// Write `content` into `file`, a spare just renamed into place, as a new file would hold it.
fn fill(file: &Path, content: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let mut handle = std::fs::OpenOptions::new().write(true).open(file)?;
    if handle.metadata()?.len() != 0 {
        // Left written by a process killed while it filled it.
        handle.set_len(0)?;
    }
    handle.write_all(content)?;
    if let Some(mode) = mode {
        handle.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    if content.is_empty() {
        // Nothing written: the time it was made would show.
        handle.set_modified(std::time::SystemTime::now())?;
    }
    Ok(())
}

/// Bring the spares of each stash a tree asked them of back to [`KEEP`] of each kind (engine
/// idle work). The memory's lock is not held while files are made.
pub fn refill(memory: &Mutex<Memory>) {
    let homes: Vec<(u64, PathBuf)> = {
        let memory = Memory::lock(memory);
        let low = |pool: &Pool| pool.folders.len() < KEEP || pool.files.len() < KEEP;
        memory
            .spares
            .iter()
            .filter(|(_, pool)| low(pool))
            .map(|(dev, pool)| (*dev, pool.home.clone()))
            .collect()
    };
    for (dev, home) in homes {
        let Some(umask) = current_umask() else {
            return;
        };
        let Some((folders, files)) = make_spares(&home, umask) else {
            // The stash is gone with its environment: the next stash to ask holds the spares.
            Memory::lock(memory).spares.remove(&dev);
            continue;
        };
        let pool = Pool {
            home,
            folders,
            files,
            umask: Some(umask),
        };
        Memory::lock(memory).spares.insert(dev, pool);
    }
}

/// The spares in the spare folder of the stash `home`, topped up to [`KEEP`] of each kind
/// (the spare folder made if missing, not the stash: an environment removed stays removed);
/// all made anew when the umask changed since they were made. `None` when there is no such
/// stash.
fn make_spares(home: &Path, umask: u32) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    if !home.is_dir() {
        return None;
    }
    let spare = home.join(SPARE_DIR);
    let marker = spare.join(format!("umask-{umask:o}"));
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&spare);
    }
    match std::fs::create_dir(&spare) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return None,
        _ => {}
    }
    std::fs::write(&marker, "").ok()?;
    let (mut folders, mut files) = (Vec::new(), Vec::new());
    for found in std::fs::read_dir(&spare).into_iter().flatten().flatten() {
        let name = found.file_name();
        let Ok(meta) = found.metadata() else { continue };
        let path = found.path();
        if name.to_string_lossy().starts_with("d-") && meta.is_dir() {
            folders.push(path);
        } else if name.to_string_lossy().starts_with("f-") && meta.is_file() && meta.len() == 0 {
            files.push(path);
        }
    }
    while folders.len() < KEEP {
        let path = spare.join(format!("d-{}", unique()));
        if std::fs::create_dir(&path).is_err() {
            break;
        }
        folders.push(path);
    }
    while files.len() < KEEP {
        let path = spare.join(format!("f-{}", unique()));
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&path);
        if made.is_err() {
            break;
        }
        files.push(path);
    }
    Some((folders, files))
}

/// A name no other spare has: the process, and a count.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{next}", std::process::id())
}

/// The process's umask, read without changing it (`umask(2)` can only set it).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Umask:"))?;
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_stash_asked_for_spares_gets_them_after_a_refill() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("stash");
        std::fs::create_dir(&dir).unwrap();
        let memory = Mutex::new(Memory::default());
        // First asked: none yet, and the stash is refilled when the engine is idle.
        let mut first = Taken::from(&memory, 1, &dir, 1, 1);
        assert!(first.folders.is_empty() && first.files.is_empty());
        first.make_folder(&root.path().join("made")).unwrap();
        refill(&memory);
        let spare = dir.join(SPARE_DIR);
        let count = |prefix: &str| {
            std::fs::read_dir(&spare)
                .unwrap()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with(prefix))
                .count()
        };
        assert_eq!((count("d-"), count("f-")), (KEEP, KEEP));

        let mut taken = Taken::from(&memory, 1, &dir, 2, 3);
        let (folder, file, empty) = (
            root.path().join("pkg"),
            root.path().join("RECORD"),
            root.path().join("REQUESTED"),
        );
        taken.make_folder(&folder).unwrap();
        taken.write_file(&file, b"a,,\n", Some(0o640)).unwrap();
        taken.write_file(&empty, b"", None).unwrap();
        assert_eq!((count("d-"), count("f-")), (KEEP - 1, KEEP - 2));
        assert_eq!(taken.used, 3);
        assert!(std::fs::read_dir(&folder).unwrap().next().is_none());
        assert_eq!(std::fs::read(&file).unwrap(), b"a,,\n");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);
        let made = std::fs::metadata(&empty).unwrap();
        assert_eq!(made.len(), 0);
        let age = std::time::SystemTime::now().duration_since(made.modified().unwrap());
        assert!(age.unwrap_or_default() < std::time::Duration::from_secs(60));
        // A path that exists is refused, from a spare as without one.
        assert_eq!(
            taken.make_folder(&folder).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        let mut more = Taken::from(&memory, 1, &dir, 0, 1);
        let refused = more.write_file(&file, b"b", None).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&file).unwrap(), b"a,,\n");
        // Refilled back up to the count kept.
        refill(&memory);
        assert_eq!((count("d-"), count("f-")), (KEEP, KEEP));
    }

    #[test]
    fn a_removed_environment_is_not_made_again_for_its_spares() {
        let root = tempfile::tempdir().unwrap();
        let venv = root.path().join("venv");
        let memory = Mutex::new(Memory::default());
        // A stash not made yet is no home for spares: a folder no swap touched stays as it is.
        let _ = Taken::from(&memory, 7, &venv.join(".uv-ffi-stash"), 1, 1);
        assert!(Memory::lock(&memory).spares.is_empty());
        std::fs::create_dir_all(venv.join(".uv-ffi-stash")).unwrap();
        let _ = Taken::from(&memory, 7, &venv.join(".uv-ffi-stash"), 1, 1);
        assert_eq!(Memory::lock(&memory).spares.len(), 1);
        std::fs::remove_dir_all(&venv).unwrap();
        refill(&memory);
        assert!(!venv.exists());
        assert!(Memory::lock(&memory).spares.is_empty());
    }

    #[test]
    fn a_spare_left_written_is_emptied_before_it_is_used() {
        let root = tempfile::tempdir().unwrap();
        let spare = root.path().join("f-1");
        std::fs::write(&spare, "left over by a killed process").unwrap();
        let mut taken = Taken {
            files: vec![spare.clone()],
            ..Taken::default()
        };
        let path = root.path().join("INSTALLER");
        taken.write_file(&path, b"uv", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"uv");
        assert!(!spare.exists());
        assert_eq!(taken.used, 1);
    }
}
