//! uv's default link mode on Linux is `clone` (copy-on-write). For each wheel, uv clones the
//! first file and, when the filesystem refuses (ext4, tmpfs...), removes the file it created and
//! hard-links that wheel instead. On such a filesystem every wheel of every install pays a file
//! created and removed in the environment. The engine tries once per pair of filesystems (uv's
//! cache's and the environment's) and, where cloning is refused, asks uv for hard links from
//! the start: where uv's own fallback ends, with the same files linked the same way.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use uv_install_wheel::LinkMode;

/// Whether cloning works, by the devices of the cache and of the environment.
#[derive(Default)]
pub struct CloneSupport {
    by_devices: HashMap<(u64, u64), bool>,
}

impl CloneSupport {
    /// The link mode to ask uv for when linking from the unpacked wheel `archive` into `site`:
    /// `requested`, unless that is `clone` and cloning between the two is refused.
    pub fn mode(&mut self, requested: LinkMode, archive: &Path, site: &Path) -> LinkMode {
        if requested != LinkMode::Clone {
            return requested;
        }
        let (Ok(from), Ok(to)) = (archive.metadata(), site.metadata()) else {
            return requested;
        };
        let devices = (from.dev(), to.dev());
        let clones = match self.by_devices.get(&devices) {
            Some(known) => *known,
            None => match probe(archive, site) {
                Some(found) => *self.by_devices.entry(devices).or_insert(found),
                None => return requested,
            },
        };
        if clones {
            requested
        } else {
            LinkMode::Hardlink
        }
    }
}

/// Try to clone one file of `archive` into `site` as uv would (then remove the clone).
/// `Some(false)` only when the filesystem says it cannot clone; `None` when the try itself
/// failed (uv then meets whatever it met, as it would have).
fn probe(archive: &Path, site: &Path) -> Option<bool> {
    let source = std::fs::File::open(some_file(archive)?).ok()?;
    let name = format!(".uv-ffi-clone-probe-{}", std::process::id());
    let path = site.join(name);
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ok()?;
    // SAFETY: both descriptors are open for the duration of the call.
    let result = unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
    let error = std::io::Error::last_os_error().raw_os_error();
    drop(target);
    let _ = std::fs::remove_file(&path);
    if result == 0 {
        return Some(true);
    }
    let refused = [
        libc::EOPNOTSUPP,
        libc::EXDEV,
        libc::EINVAL,
        libc::ENOTTY,
        libc::ENOSYS,
    ];
    refused.contains(&error?).then_some(false)
}

/// A regular file of an unpacked wheel: the first one met in its top folder or one level down
/// (every wheel has `<name>.dist-info/METADATA`).
fn some_file(archive: &Path) -> Option<PathBuf> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(archive).ok()?.flatten() {
        let kind = entry.file_type().ok()?;
        if kind.is_file() {
            return Some(entry.path());
        }
        if kind.is_dir() {
            folders.push(entry.path());
        }
    }
    folders.into_iter().find_map(|folder| {
        std::fs::read_dir(folder)
            .ok()?
            .flatten()
            .find(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .map(|entry| entry.path())
    })
}
