//! What the engine learned of each of uv's unpacked archives when it last linked one: where the
//! distribution's `.dist-info` folder goes, and, for hard links, the stamp of every file linked
//! from it, and the tree uv made of it (`relink.rs`). An archive in uv's cache does not change (a
//! rebuilt wheel is unpacked into a new one), so a later install of the same archive is surveyed
//! (see `stash::Installed::survey`) without reading its `WHEEL` again and, in hardlink mode,
//! without a `stat` per file, and is hard-linked again without uv's installer.
//!
//! A kept stamp can only be too old, never wrong in the other direction: if uv copied a file
//! instead of linking it, or the cache file was edited since, the stamp does not match the file,
//! and the stash entry made from it is discarded when it is looked for (never used).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uv_install_wheel::Layout;

use crate::relink::Relink;
use crate::stash::Stamps;

/// How many archives are remembered; past that, all are forgotten at once (each is cheap to
/// learn again: one `WHEEL` read, one `stat` per file).
const KEEP: usize = 512;

#[derive(Default)]
pub struct Archives {
    /// `.dist-info` folder by archive and by the layout's pure and platform library folders.
    dist_infos: HashMap<(PathBuf, PathBuf, PathBuf), PathBuf>,
    /// Stamps of the files hard-linked from each archive, keyed as in RECORD.
    linked: HashMap<PathBuf, Arc<Stamps>>,
    /// The tree uv hard-linked from each archive (`relink.rs`), relative to the site folder: a
    /// plain wheel makes the same tree in every site folder. `None`: not a plain wheel, left
    /// to uv's installer.
    relinks: HashMap<PathBuf, Option<Arc<Relink>>>,
}

impl Archives {
    /// Where the `.dist-info` folder of `archive`'s distribution is installed in `layout`
    /// (uv's `installed_dist_info_path`, read once per archive and layout).
    pub fn dist_info(&mut self, layout: &Layout, archive: &Path) -> Option<PathBuf> {
        let key = (
            archive.to_path_buf(),
            layout.scheme.purelib.clone(),
            layout.scheme.platlib.clone(),
        );
        if let Some(path) = self.dist_infos.get(&key) {
            return Some(path.clone());
        }
        let path = uv_install_wheel::installed_dist_info_path(layout, archive).ok()?;
        if self.dist_infos.len() >= KEEP {
            self.dist_infos.clear();
        }
        self.dist_infos.insert(key, path.clone());
        Some(path)
    }

    /// The stamps of the files last hard-linked from `archive`.
    pub fn linked_files(&self, archive: &Path) -> Option<Arc<Stamps>> {
        self.linked.get(archive).cloned()
    }

    /// Keep the stamps of the files of `stamps` that are hard links (shared with uv's cache):
    /// the next hard-linked install of `archive` links the same files.
    pub fn remember_linked(&mut self, archive: &Path, stamps: &Stamps) {
        let shared: Stamps = stamps
            .iter()
            .filter(|(_, stamp)| stamp.is_shared_file())
            .map(|(path, stamp)| (path.clone(), stamp.clone()))
            .collect();
        if self.linked.len() >= KEEP {
            self.linked.clear();
        }
        self.linked.insert(archive.to_path_buf(), Arc::new(shared));
    }

    /// What uv made when it last hard-linked `archive`, if it was learned.
    pub fn relink(&self, archive: &Path) -> Option<Arc<Relink>> {
        self.relinks.get(archive).cloned().flatten()
    }

    /// Learn what uv just made by hard-linking `archive` (its `.dist-info` folder installed at
    /// `dist_info`), unless known already (a wheel that is not plain is not looked at again).
    pub fn learn_relink(&mut self, archive: &Path, dist_info: &Path) {
        if self.relinks.contains_key(archive) {
            return;
        }
        if self.relinks.len() >= KEEP {
            self.relinks.clear();
        }
        let relink = Relink::learn(archive, dist_info).map(Arc::new);
        self.relinks.insert(archive.to_path_buf(), relink);
    }
}
