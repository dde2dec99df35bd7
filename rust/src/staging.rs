//! Copy-mode installs without uv's per-file temporary folder.
//!
//! uv 0.12.5 copies each file of a wheel into a fresh temporary folder beside its destination
//! and renames it into place (a mkdir, a rename and a rmdir per file), because its linker merges
//! into folders that may already hold the file. A mkdir is the dearest of those operations on
//! most disks. Here each wheel's unpacked tree is first copied from uv's cache into a staging
//! folder inside the destination folder (same filesystem; a dotted name Python cannot import),
//! then installed from there with hard links, and the staging folder is removed. The installed
//! files are independent copies of the cache's, with the same contents and permissions, and the
//! rest of the install (RECORD, INSTALLER, scripts, `direct_url.json`) is uv's own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use uv_distribution_types::CachedDist;

use crate::error::{ErrorKind, FfiError, Result};

/// A staging folder, removed with everything in it when dropped.
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    /// A new staging folder inside `site` (the folder the wheels' files go to).
    pub fn new(site: &Path) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".uv-ffi-staging-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = site.join(name);
        std::fs::create_dir(&root).map_err(|err| io_error(&root, &err))?;
        Ok(Self { root })
    }

    /// Copies of `wheels` in the staging folder, each pointing at its copy instead of the cache.
    pub fn stage(&self, wheels: Vec<CachedDist>) -> Result<Vec<CachedDist>> {
        wheels
            .into_par_iter()
            .enumerate()
            .map(|(i, wheel)| {
                let copy = self.root.join(i.to_string());
                copy_tree(wheel.path(), &copy)?;
                Ok(pointing_at(wheel, copy))
            })
            .collect()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The installed files are links to the staged inodes: removing the staging names
        // leaves them in place.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn pointing_at(wheel: CachedDist, path: PathBuf) -> CachedDist {
    match wheel {
        CachedDist::Registry(mut dist) => {
            dist.path = path.into_boxed_path();
            CachedDist::Registry(dist)
        }
        CachedDist::Url(mut dist) => {
            dist.path = path.into_boxed_path();
            CachedDist::Url(dist)
        }
    }
}

/// Copy a folder tree: files with their permission bits, as uv's copy mode copies them
/// (`std::fs::copy`, which follows a symbolic link to its file), folders as new folders.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).map_err(|err| io_error(to, &err))?;
    let entries = std::fs::read_dir(from).map_err(|err| io_error(from, &err))?;
    for entry in entries {
        let entry = entry.map_err(|err| io_error(from, &err))?;
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|err| io_error(&source, &err))?;
        if kind.is_dir() {
            copy_tree(&source, &dest)?;
        } else {
            std::fs::copy(&source, &dest).map_err(|err| io_error(&dest, &err))?;
        }
    }
    Ok(())
}

fn io_error(path: &Path, err: &std::io::Error) -> FfiError {
    FfiError::new(
        ErrorKind::Install,
        format!(
            "Failed to copy a wheel's files at `{}`: {err}",
            path.display()
        ),
    )
}
