//! Swap by rename: a version a swap replaces is kept, intact, in a stash beside the environment,
//! and a later call that installs exactly that wheel again brings it back with renames instead
//! of linking or copying it file by file.
//!
//! The stash is `<venv>/.uv-ffi-stash` for a virtual environment and `<folder>/.uv-ffi-stash` for
//! a `--target` folder (same filesystem, a dotted name no import can reach). An entry is the
//! distribution's installed paths, each moved whole (a folder the distribution owns alone, a
//! top-level file, a script), plus a manifest: which wheel it is (uv's cache archive, file name,
//! hashes, cache info) and a stamp (size, mode, times, inode) of every file and folder in it.
//! The manifest's name carries a hash of the wheel and the entry's size, so finding an entry and
//! keeping the stash within bounds read no manifest but the one that matches.
//!
//! What is stashed is exactly what uv installed: the engine stamps a distribution right after it
//! links it, and stashes it only if every stamp still holds (an edit made while installed is
//! removed with it, as uv removes it). An entry is used only when the wheel uv would install
//! now is that wheel and every stamp still holds; anything else discards it. A distribution
//! whose files share a folder with another's (a namespace package) is removed as uv removes it.
//!
//! Crash safety: the renames of a swap whose new versions all come from the stash are written
//! to `journal` first; a journal found later not empty (the process was killed) is undone in
//! reverse, under the environment's lock, before anything reads the environment, so it holds
//! the old versions, complete. A swap whose new version uv links keeps the journal only while
//! the old version moves out, and is then as safe as uv's own install. The journal is emptied,
//! not removed, when a swap is done, and the manifest of an entry a swap brings back is written
//! over, in place, with the manifest of the version going out: a swap between stashed versions
//! creates no file. (Not truncated first: ext4 flushes a file truncated to nothing and written
//! again when it is closed, `auto_da_alloc`, which took 0.13 ms here, more than all the renames.)
//! That writing is left to the engine's idle work, after the call returned: the engine itself
//! finds its entries in memory ([`Memory`]). A process that ends before then leaves the version
//! it stashed without a manifest, and the stale manifest of the one it brought back: the first
//! is swept as stray paths when the stash is next tidied, the second discarded by the first
//! lookup that reads it (its paths are gone).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uv_distribution_types::{CachedDist, InstalledDist, Name};
use uv_install_wheel::LinkMode;

use crate::engine::EnvKey;
use crate::environment::EnvState;
use crate::relink::Relink;
use crate::watch::{Vouch, Watches};

/// The folder name of the stash.
pub const STASH_DIR: &str = ".uv-ffi-stash";
/// At most this many entries, and this many bytes, are kept; the least recently used go first.
const MAX_ENTRIES: usize = 16;
const MAX_BYTES: u64 = 512 << 20;

/// Which wheel an installed distribution came from, and how it was linked: what makes two
/// installs the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WheelKey {
    pub filename: String,
    /// uv's unpacked archive in the cache (a rebuilt wheel gets a new one).
    pub archive: PathBuf,
    pub hashes: String,
    pub cache_info: String,
    /// The link mode the call asked for: hard links into uv's cache must not come back for a
    /// call that asked for copies, nor copies for one that asked for links.
    pub link_mode: String,
}

impl WheelKey {
    /// Index wheels only: a local path or URL (which may be rebuilt in place) is never stashed.
    pub fn of(dist: &CachedDist, link_mode: LinkMode) -> Option<Self> {
        let CachedDist::Registry(registry) = dist else {
            return None;
        };
        Some(Self {
            filename: registry.filename.to_string(),
            archive: registry.path.to_path_buf(),
            hashes: serde_json::to_string(&registry.hashes).ok()?,
            cache_info: serde_json::to_string(&registry.cache_info).ok()?,
            link_mode: format!("{link_mode:?}"),
        })
    }
}

/// One path moved into the stash: where it lives in the environment (relative to the site
/// folder, as RECORD names it) and its name in the stash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    original: String,
    stashed: String,
}

/// A file (size, mode, times, inode) or a folder (its inode and settled modification time, see
/// [`FileStamp::of_folder`]). A file hard-linked from uv's cache keeps no change time: another environment
/// linking the same cache file moves it, and its content is the cache's, which is what uv would
/// link again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    size: u64,
    mode: u32,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

/// Every file and folder of a distribution's movable paths, keyed by path as RECORD names them.
pub type Stamps = BTreeMap<String, FileStamp>;

/// What the engine saw of a distribution right after it installed it: the wheel, the paths
/// that carry it, and their stamps. Only a distribution still exactly so is stashed (an edit
/// made while installed must not come back with it).
#[derive(Debug, Clone)]
pub struct Installed {
    pub key: WheelKey,
    items: Vec<String>,
    stamps: Stamps,
}

impl Installed {
    /// Survey a distribution just installed from `key`'s wheel (`None`: it cannot be stashed).
    /// `linked`: the stamps of the files uv hard-linked from the same archive last time, taken
    /// as they are for the files it hard-linked again (see `archives.rs`). A survey that
    /// stamps every file vouches for the folders it read (`watch.rs`).
    pub fn survey(
        key: WheelKey,
        dist_info: &Path,
        linked: Option<&Stamps>,
        watches: Option<&mut Watches>,
    ) -> Option<Self> {
        let site = dist_info.parent()?;
        let record = read_record(dist_info)?;
        let items = movable_items(&record)?;
        let listed: HashSet<&str> = record.iter().map(String::as_str).collect();
        let linked = linked.filter(|stamps| !stamps.is_empty());
        let mut known = Known {
            listed,
            linked,
            watches: watches.filter(|_| linked.is_none()),
            vouches: Vec::new(),
        };
        let stamps = stamp_paths(site, &items, &mut known)?;
        if let Some(watches) = known.watches {
            watches.confirm(&known.vouches);
        }
        Some(Self { key, items, stamps })
    }

    /// What a survey would find of a tree [`Relink::apply`] just made from `key`'s archive,
    /// taken from the tree itself: its folders did not exist before and hold only what was
    /// linked and written into them, so neither `RECORD` nor a folder is read. A folder's names
    /// are still read when the distribution is stashed ([`Stash::check_out`]). `linked`: as
    /// for [`Installed::survey`].
    pub fn made(
        key: WheelKey,
        site: &Path,
        tree: &Relink,
        linked: Option<&Stamps>,
    ) -> Option<Self> {
        let mut stamps = Stamps::new();
        for (path, hard_linked) in tree.paths() {
            let known = linked
                .filter(|_| hard_linked)
                .and_then(|linked| linked.get(path))
                .filter(|stamp| stamp.is_shared_file());
            let stamp = match known {
                Some(stamp) => stamp.clone(),
                None => {
                    let meta = site.join(path).symlink_metadata().ok()?;
                    if meta.is_dir() {
                        FileStamp::of_folder(&meta)
                    } else {
                        FileStamp::of(&meta)
                    }
                }
            };
            stamps.insert(path.to_string(), stamp);
        }
        let items = tree.tops().to_vec();
        Some(Self { key, items, stamps })
    }

    pub fn stamps(&self) -> &Stamps {
        &self.stamps
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    key: WheelKey,
    name: String,
    version: String,
    items: Vec<Item>,
    /// Every file and folder of the items, keyed as in the environment.
    files: Stamps,
    bytes: u64,
}

/// What the engine keeps of the stashes it manages between calls: the watches of the folders
/// of their entries and installed distributions, and the manifests of the entries it wrote
/// (taken from here, not read back from disk).
#[derive(Default)]
pub struct Memory {
    pub watches: Watches,
    /// By manifest path: a name is made once (see [`unique`]), so the file by that name holds
    /// what was written. Only these entries are judged by their watches: another process's
    /// stamps may be of another moment than this engine's watches.
    written: HashMap<PathBuf, Manifest>,
    /// Manifests kept in `written` that are not on disk yet: a swap leaves writing them to the
    /// engine's idle work ([`write_unwritten`]), in the order the swaps made them.
    unwritten: Vec<Unwritten>,
    /// The spare folders and files of each filesystem a tree linked again asked them of, by
    /// device (`spare.rs`).
    pub spares: HashMap<u64, crate::spare::Pool>,
}

/// A manifest a swap left to be written (see [`Memory::unwritten`]).
struct Unwritten {
    dir: PathBuf,
    entry: Entry,
    /// The manifest of an entry the swap brought back, to be written over (see the module
    /// comment): it describes paths that are no longer in the stash.
    spare: Option<PathBuf>,
}

/// At most this many manifests are kept in memory; past that, all are forgotten at once.
const KEEP_WRITTEN: usize = 256;

impl Memory {
    /// A panic while it was held may have left it half changed: then it starts again empty
    /// (every entry is checked file by file, as without it).
    pub(crate) fn lock(memory: &Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        memory.lock().unwrap_or_else(|poisoned| {
            let mut memory = poisoned.into_inner();
            *memory = Self::default();
            memory
        })
    }
}

/// The stash of one environment, for one call.
pub struct Stash {
    dir: PathBuf,
    site: PathBuf,
    /// The filesystem both are on.
    dev: u64,
    memory: Arc<Mutex<Memory>>,
    atomic: bool,
    /// The journal, open once this call wrote to it (it must then be emptied): one open file
    /// for every batch of renames of the call.
    journal: Option<std::fs::File>,
    /// Manifests of entries this swap brings back, to be written over (see the module comment).
    spares: Vec<PathBuf>,
    /// Those written over so far: no longer under their old names.
    spent: Vec<PathBuf>,
}

/// Whether stashing is on: it is unless `UV_FFI_STASH=0`.
pub fn enabled() -> bool {
    std::env::var_os("UV_FFI_STASH").is_none_or(|v| v != "0")
}

/// The folder whose `.uv-ffi-stash` serves an environment: the `--target` folder, or the
/// virtual environment (none for a system interpreter or a `--prefix`).
pub fn root_of(key: &EnvKey, state: &EnvState) -> Option<PathBuf> {
    match (&key.target, &key.prefix) {
        (Some(target), _) => Some(target.clone()),
        (None, None) if state.env.interpreter().is_virtualenv() => Some(key.root.clone()),
        _ => None,
    }
}

/// Where the journal of the stash at `root` is (see [`root_of`]): named once per environment,
/// so that the check on every call is one `stat` and nothing else.
pub fn journal_of(root: &Path) -> PathBuf {
    root.join(STASH_DIR).join("journal")
}

/// Undo a swap that a killed process left half done, before anything reads the environment
/// (one `stat` of `journal` when there is none). Skipped while another process holds the
/// environment's lock: it may be in the middle of that swap. True when something was undone.
pub fn recover_interrupted(journal: &Path) -> bool {
    if !interrupted(journal) {
        return false;
    }
    let (Some(dir), Some(root)) = (journal.parent(), journal.parent().and_then(Path::parent))
    else {
        return false;
    };
    let mode = uv_fs::LockedFileMode::Exclusive;
    let resource = root.display().to_string();
    let Some(_lock) = uv_fs::LockedFile::acquire_no_wait(root.join(".lock"), mode, resource) else {
        return false;
    };
    recover(dir);
    true
}

/// Undo a swap a killed process left half done, for a call about to change the environment
/// that has taken its lock (no live process is then in the middle of a swap), before it reads
/// the environment: the check without the lock ([`recover_interrupted`]) skips a journal while
/// the environment is locked. True when something was undone.
pub fn recover_locked(journal: &Path) -> bool {
    if !interrupted(journal) {
        return false;
    }
    journal.parent().is_some_and(|dir| {
        recover(dir);
        true
    })
}

/// Whether `journal` holds the renames of a swap that did not finish (one `stat`).
fn interrupted(journal: &Path) -> bool {
    journal.symlink_metadata().is_ok_and(|meta| meta.len() > 0)
}

impl Stash {
    /// The stash of `state`'s environment, on the same filesystem as its site folder (see
    /// [`root_of`]). An interrupted swap was undone when the call took the environment's lock
    /// (see [`recover_locked`]).
    pub fn open(state: &mut EnvState, key: &EnvKey, memory: &Arc<Mutex<Memory>>) -> Option<Self> {
        if !enabled() {
            return None;
        }
        let root = root_of(key, state)?;
        let site = state.site_dirs().into_iter().next()?;
        let dev = match state.stash_device {
            Some(dev) => dev,
            None => {
                let dev = std::fs::metadata(&site).ok()?.dev();
                if std::fs::metadata(&root).ok()?.dev() != dev {
                    return None;
                }
                state.stash_device = Some(dev);
                dev
            }
        };
        // Made when something is first stashed: an environment no swap touched has none.
        let dir = root.join(STASH_DIR);
        Some(Self {
            dir,
            site,
            dev,
            memory: memory.clone(),
            atomic: false,
            journal: None,
            spares: Vec::new(),
            spent: Vec::new(),
        })
    }

    /// Journal every rename of this swap, to undo it if the process dies before `finish`; the
    /// manifests of `hits`, all brought back by this swap, are written over by those going out.
    pub fn make_atomic(&mut self, hits: &[Option<Found>]) {
        self.atomic = true;
        let manifests = hits.iter().flatten();
        self.spares = manifests
            .map(|found| self.dir.join(found.entry.manifest_name()))
            .collect();
    }

    /// The entry holding exactly `key`'s wheel, intact; a damaged entry is discarded. An entry
    /// this engine wrote is found without listing the stash.
    pub fn find(&self, key: &WheelKey) -> Option<Found> {
        if let Some(found) = self.find_own(key) {
            return Some(found);
        }
        let wanted = key.hash();
        for entry in entries(&self.dir)
            .into_iter()
            .filter(|e| e.key_hash == wanted)
        {
            let written = Memory::lock(&self.memory)
                .written
                .remove(&self.dir.join(entry.manifest_name()));
            let own = written.is_some();
            let Some(manifest) = written.or_else(|| read_manifest(&self.dir, &entry)) else {
                continue;
            };
            if &manifest.key != key {
                continue;
            }
            if self.intact(&manifest, own) {
                return Some(Found { entry, manifest });
            }
            discard(&self.dir, &entry, &manifest);
        }
        None
    }

    /// Whether the stash has an entry for `key`'s wheel (not whether it is intact: see
    /// [`Stash::find`]). Reads nothing but the stash's listing, and not that for an entry this
    /// engine wrote.
    pub fn has_entry_for(&self, key: &WheelKey) -> bool {
        let own = self
            .own_manifest(&Memory::lock(&self.memory), key)
            .is_some();
        own || {
            let wanted = key.hash();
            entries(&self.dir)
                .iter()
                .any(|entry| entry.key_hash == wanted)
        }
    }

    /// [`Stash::find`] among the entries of this stash whose manifests this engine keeps.
    fn find_own(&self, key: &WheelKey) -> Option<Found> {
        let (path, manifest) = {
            let mut memory = Memory::lock(&self.memory);
            let path = self.own_manifest(&memory, key)?.clone();
            memory.written.remove_entry(&path)?
        };
        let entry = Entry::parse(&path.file_name()?.to_string_lossy())?;
        if self.intact(&manifest, true) {
            return Some(Found { entry, manifest });
        }
        discard(&self.dir, &entry, &manifest);
        None
    }

    /// The path of the manifest of an entry of this stash for `key`'s wheel, among those this
    /// engine keeps.
    fn own_manifest<'m>(&self, memory: &'m Memory, key: &WheelKey) -> Option<&'m PathBuf> {
        memory
            .written
            .iter()
            .find(|(path, manifest)| path.parent() == Some(&self.dir) && manifest.key == *key)
            .map(|(path, _)| path)
    }

    /// Whether `dist` may be stashed: its top-level paths are the ones the engine installed
    /// (same stamps) and each of its folders holds exactly the names its RECORD gives it, so
    /// that moving the folders whole takes nothing uv's uninstall would leave (not read when
    /// their watches saw no change: `watch.rs`). Files below them are not stamped here (a
    /// `stat` each): an edit made while installed is caught by the stamps when the entry is
    /// looked for, which discards it. Returns the `__pycache__` folders met, which do not go
    /// with it.
    pub fn check_out(&self, dist: &InstalledDist, installed: &Installed) -> Option<Vec<String>> {
        if dist.install_path().parent()? != self.site {
            return None;
        }
        let mut bytecode = Vec::new();
        let here: Vec<(PathBuf, &str)> = installed
            .items
            .iter()
            .map(|item| (self.site.join(item), item.as_str()))
            .collect();
        let check = match self.unchanged_folders(&installed.stamps) {
            Some(false) => Check::Roots,
            Some(true) | None => Check::Names,
        };
        holds(&here, &installed.stamps, check, &mut bytecode).then_some(bytecode)
    }

    /// Move `dist`, checked by [`Stash::check_out`], into the stash. `None` when that failed
    /// (nothing moved): the caller removes it as uv does.
    pub fn stash_out(
        &mut self,
        dist: &InstalledDist,
        installed: Installed,
        bytecode: &[String],
    ) -> Option<(String, String)> {
        let site = self.site.clone();
        let id = format!("{}-{}-{}", dist.name(), dist.version(), unique());
        let items: Vec<Item> = installed
            .items
            .iter()
            .enumerate()
            .map(|(i, original)| Item {
                original: original.clone(),
                stashed: format!("{id}.{i}"),
            })
            .collect();
        let moves: Vec<(PathBuf, PathBuf)> = items
            .iter()
            .map(|item| (site.join(&item.original), self.dir.join(&item.stashed)))
            .collect();
        self.rename_all(&moves, |from, to| std::fs::rename(from, to))
            .ok()?;
        // uv's uninstall removes `__pycache__`, and a fresh install has none.
        for folder in bytecode {
            if let Some(path) = stashed_path(&self.dir, &items, folder) {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        let key_hash = installed.key.hash();
        let files = restamp(installed.stamps, &items, |item| {
            self.dir.join(&item.stashed)
        });
        let manifest = Manifest {
            key: installed.key,
            name: dist.name().to_string(),
            version: dist.version().to_string(),
            items,
            bytes: files
                .values()
                .filter(|s| s.size != FOLDER)
                .map(|s| s.size)
                .sum(),
            files,
        };
        let entry = Entry {
            id,
            key_hash,
            bytes: manifest.bytes,
        };
        let spare = self.spares.pop();
        self.spent.extend(spare.clone());
        let moved = (manifest.name.clone(), manifest.version.clone());
        // This engine finds the entry in memory; the file, for other processes and later
        // engines, is written when the engine is idle.
        let mut memory = Memory::lock(&self.memory);
        if memory.written.len() >= KEEP_WRITTEN {
            memory.written.clear();
        }
        memory
            .written
            .insert(self.dir.join(entry.manifest_name()), manifest);
        memory.unwritten.push(Unwritten {
            dir: self.dir.clone(),
            entry,
            spare,
        });
        Some(moved)
    }

    /// Bring an entry back into the environment; returns what is then installed. `None`
    /// (nothing moved) when one of its paths is taken: the caller installs the wheel as usual.
    pub fn restore(&mut self, found: Found) -> Option<Installed> {
        let Found { entry, manifest } = found;
        let moves: Vec<(PathBuf, PathBuf)> = manifest
            .items
            .iter()
            .map(|item| (self.dir.join(&item.stashed), self.site.join(&item.original)))
            .collect();
        if let Err(err) = self.rename_all(&moves, put_back) {
            // A path taken (by another tool's install): nothing moved. Its manifest may already
            // hold another entry's: then its files are of no use.
            if err.kind() == std::io::ErrorKind::AlreadyExists
                && !self.dir.join(entry.manifest_name()).exists()
            {
                discard(&self.dir, &entry, &manifest);
            }
            return None;
        }
        let manifest_path = self.dir.join(entry.manifest_name());
        if !self.spent.contains(&manifest_path) {
            let _ = std::fs::remove_file(manifest_path);
        }
        let stamps = restamp(manifest.files, &manifest.items, |item| {
            self.site.join(&item.original)
        });
        Some(Installed {
            key: manifest.key,
            items: manifest
                .items
                .into_iter()
                .map(|item| item.original)
                .collect(),
            stamps,
        })
    }

    /// Spares for a tree of `folders` folders and `files` files linked again (`spare.rs`).
    pub fn spares(&self, folders: usize, files: usize) -> crate::spare::Taken {
        crate::spare::Taken::from(&self.memory, self.dev, &self.dir, folders, files)
    }

    /// The swap is complete: empty the journal. The stash is brought back within its bounds
    /// when the engine is idle (see [`tidy`]): dropping an entry removes each of its files.
    pub fn finish(mut self) {
        self.empty_journal();
    }

    /// The renames so far stand even if the process dies now (a swap whose new version uv links).
    pub fn settle(&mut self) {
        if !self.atomic {
            self.empty_journal();
        }
    }

    fn empty_journal(&mut self) {
        if let Some(journal) = self.journal.take() {
            let _ = journal.set_len(0);
        }
    }

    /// Journal `moves`, then make each with `rename`; on a failure, put back what this batch
    /// moved and return the error.
    fn rename_all(
        &mut self,
        moves: &[(PathBuf, PathBuf)],
        rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.write_journal(moves)?;
        for (done, (from, to)) in moves.iter().enumerate() {
            if let Err(err) = rename(from, to) {
                // Put back what this batch moved; the environment is as it was.
                for (from, to) in moves[..done].iter().rev() {
                    let _ = std::fs::rename(to, from);
                }
                return Err(err);
            }
            pause_for_tests();
        }
        Ok(())
    }

    /// Append `moves` to the journal (created by the first swap of this stash).
    fn write_journal(&mut self, moves: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
        let mut text = String::new();
        for (from, to) in moves {
            text.push_str(&format!("{}\t{}\n", from.display(), to.display()));
        }
        let journal = match &mut self.journal {
            Some(journal) => journal,
            None => {
                let open = || {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join("journal"))
                };
                // The stash folder is made by the first swap that needs it.
                let file = match open() {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::create_dir(&self.dir)?;
                        open()?
                    }
                    opened => opened?,
                };
                self.journal.insert(file)
            }
        };
        journal.write_all(text.as_bytes())
    }

    /// Whether every file and folder of the entry still has its stamp: the top-level paths are
    /// looked at, and everything below them too unless their folders' watches saw no change
    /// since they were last found to hold (`watch.rs`).
    /// `own`: the manifest is one this engine wrote (see [`Memory`]).
    fn intact(&self, manifest: &Manifest, own: bool) -> bool {
        let here: Vec<(PathBuf, &str)> = manifest
            .items
            .iter()
            .map(|item| (self.dir.join(&item.stashed), item.original.as_str()))
            .collect();
        if own && self.unchanged_folders(&manifest.files).is_some() {
            return holds(&here, &manifest.files, Check::Roots, &mut Vec::new());
        }
        let folders = folders_of(&here, &manifest.files);
        let vouches: Vec<Vouch> = {
            let watches = &mut Memory::lock(&self.memory).watches;
            folders.iter().filter_map(|f| watches.begin(f)).collect()
        };
        let intact = holds(&here, &manifest.files, Check::Stamps, &mut Vec::new());
        if intact {
            Memory::lock(&self.memory).watches.confirm(&vouches);
        }
        intact
    }

    /// `Some` when every folder in `stamps` is watched and unchanged since it was last found to
    /// hold; `Some(true)` when a `__pycache__` appeared in one of them meanwhile.
    fn unchanged_folders(&self, stamps: &Stamps) -> Option<bool> {
        let watches = &mut Memory::lock(&self.memory).watches;
        watches.drain();
        let mut bytecode = false;
        for stamp in stamps.values().filter(|stamp| stamp.size == FOLDER) {
            bytecode |= watches.unchanged((self.dev, stamp.ino))?;
        }
        Some(bytecode)
    }
}

/// The paths that carry a distribution's RECORD when each is moved whole, or `None` if some
/// cannot be: an absolute path. (A missing path, a folder outside the site folder, which may be
/// shared, and a folder holding anything else are seen when they are stamped.)
fn movable_items(record: &[String]) -> Option<Vec<String>> {
    // Bytecode listed in RECORD (`--compile-bytecode`) would be swept with `__pycache__`.
    if record.iter().any(|path| path.contains("__pycache__/")) {
        return None;
    }
    let mut items: Vec<String> = Vec::new();
    for path in record {
        let item = if path.starts_with("../") {
            path.clone()
        } else {
            path.split('/').next()?.to_string()
        };
        if !items.contains(&item) {
            items.push(item);
        }
    }
    for item in &items {
        if Path::new(item)
            .components()
            .any(|c| matches!(c, Component::RootDir))
        {
            return None;
        }
    }
    Some(items)
}

/// Stamps of every file and folder of `items` (paths below `site`), keyed as in RECORD, with
/// `__pycache__` left out; `None` when an item is missing, or is a folder outside the site
/// folder, or as soon as a folder holds a file `listed` (the RECORD) does not name: a folder
/// shared with another distribution cannot move whole.
fn stamp_paths(site: &Path, items: &[String], known: &mut Known<'_>) -> Option<Stamps> {
    let mut stamps = Stamps::new();
    for item in items {
        if let Some(stamp) = known.linked_file(item) {
            stamps.insert(item.clone(), stamp);
            continue;
        }
        let path = site.join(item);
        let meta = path.symlink_metadata().ok()?;
        if meta.is_dir() && item.starts_with("../") {
            return None;
        }
        if meta.is_dir() {
            stamps.insert(item.clone(), FileStamp::of_folder(&meta));
            known.begin(&path);
            stamp_folder(&path, item, known, &mut stamps)?;
        } else {
            stamps.insert(item.clone(), FileStamp::of(&meta));
        }
    }
    Some(stamps)
}

/// What a survey knows before it looks: the paths RECORD lists, and the stamps of the files
/// uv hard-linked from the same archive last time; and the watches of the folders it reads
/// (only when it stamps every file in them).
struct Known<'a> {
    listed: HashSet<&'a str>,
    linked: Option<&'a Stamps>,
    watches: Option<&'a mut Watches>,
    vouches: Vec<Vouch>,
}

impl Known<'_> {
    /// About to read every name and file in the folder at `path`: watch it from now.
    fn begin(&mut self, path: &Path) {
        if let Some(vouch) = self.watches.as_deref_mut().and_then(|w| w.begin(path)) {
            self.vouches.push(vouch);
        }
    }

    /// The stamp of `path` if it is a file hard-linked last time (hard-linked again now, it is
    /// the same file).
    fn linked_file(&self, path: &str) -> Option<FileStamp> {
        let stamp = self.linked?.get(path)?;
        stamp.is_shared_file().then(|| stamp.clone())
    }
}

/// The entries below a folder, each checked against `listed` from the folder read alone (no
/// `stat` for a file that is not the distribution's) and stamped relative to the folder's
/// handle (`fstatat`), which spares resolving the whole path once per file.
fn stamp_folder(path: &Path, name: &str, known: &mut Known<'_>, stamps: &mut Stamps) -> Option<()> {
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let file_name = entry.file_name();
        let is_dir = entry.file_type().ok()?.is_dir();
        if is_dir && file_name == "__pycache__" {
            continue;
        }
        let child = format!("{name}/{}", file_name.to_string_lossy());
        if !is_dir && !known.listed.contains(child.as_str()) {
            return None;
        }
        if !is_dir && let Some(stamp) = known.linked_file(&child) {
            stamps.insert(child, stamp);
            continue;
        }
        let meta = entry.metadata().ok()?;
        if is_dir {
            stamps.insert(child.clone(), FileStamp::of_folder(&meta));
            known.begin(&entry.path());
            stamp_folder(&entry.path(), &child, known, stamps)?;
        } else {
            stamps.insert(child, FileStamp::of(&meta));
        }
    }
    Some(())
}

/// How far [`holds`] looks at files below the top-level paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every file has its stamp (a `stat` each): the proof that an entry is intact.
    Stamps,
    /// Files are not looked at; folders are (their names, as below).
    Names,
    /// Nothing below the top-level paths is looked at: their folders' watches saw no change
    /// since everything in them was last found to hold (`watch.rs`).
    Roots,
}

/// Whether the top-level paths `roots` (each a path and its name in RECORD) and everything
/// below them are as `expected` says: each folder holds exactly the names expected
/// (`__pycache__` aside: listed in `bytecode`), and, as `check` asks, each file has its stamp.
/// A folder whose settled modification time still holds has had no name added or removed, so
/// it is not read (see [`FileStamp::of_folder`]); any other folder is.
fn holds(
    roots: &[(PathBuf, &str)],
    expected: &Stamps,
    check: Check,
    bytecode: &mut Vec<String>,
) -> bool {
    let mut met = 0;
    for (root, name) in roots {
        let below = format!("{name}/");
        let Some(own) = expected.get_key_value(*name) else {
            return false;
        };
        for (key, stamp) in std::iter::once(own).chain(descendants(expected, &below)) {
            met += 1;
            let is_root = key == name;
            if check == Check::Roots && !is_root {
                continue; // only the roots are looked at: no path to build
            }
            let path = match key.strip_prefix(&below) {
                Some(rest) => root.join(rest),
                None => root.clone(),
            };
            let holds = if stamp.size == FOLDER && check == Check::Roots {
                is_folder(&path, stamp)
            } else if stamp.size == FOLDER {
                folder_holds(&path, key, stamp, expected, bytecode)
            } else if is_root || check == Check::Stamps {
                path.symlink_metadata()
                    .is_ok_and(|meta| FileStamp::of(&meta) == *stamp)
            } else {
                true
            };
            if !holds {
                return false;
            }
        }
    }
    // Every expected path belongs to one of the roots.
    met == expected.len()
}

/// Whether the folder at `path` is the one stamped (its inode).
fn is_folder(path: &Path, stamp: &FileStamp) -> bool {
    path.symlink_metadata()
        .is_ok_and(|meta| meta.is_dir() && meta.ino() == stamp.ino)
}

/// Where the folders among the top-level paths `roots` and below them are (see [`holds`]).
fn folders_of(roots: &[(PathBuf, &str)], expected: &Stamps) -> Vec<PathBuf> {
    let mut folders = Vec::new();
    for (root, name) in roots {
        let below = format!("{name}/");
        let Some(own) = expected.get_key_value(*name) else {
            continue;
        };
        for (key, stamp) in std::iter::once(own).chain(descendants(expected, &below)) {
            if stamp.size == FOLDER {
                let path = key
                    .strip_prefix(&below)
                    .map_or(root.clone(), |rest| root.join(rest));
                folders.push(path);
            }
        }
    }
    folders
}

/// Whether the folder at `path` (named `key`) is the one stamped and holds exactly the names
/// `expected` gives it.
fn folder_holds(
    path: &Path,
    key: &str,
    stamp: &FileStamp,
    expected: &Stamps,
    bytecode: &mut Vec<String>,
) -> bool {
    let Ok(meta) = path.symlink_metadata() else {
        return false;
    };
    if !meta.is_dir() || meta.ino() != stamp.ino {
        return false;
    }
    if stamp.mtime_ns != 0 && mtime_ns(&meta) == stamp.mtime_ns {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let mut names = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let child = format!("{key}/{}", name.to_string_lossy());
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir && name == "__pycache__" {
            bytecode.push(child);
            continue;
        }
        let listed = expected
            .get(&child)
            .is_some_and(|stamp| (stamp.size == FOLDER) == is_dir);
        if !listed {
            return false;
        }
        names += 1;
    }
    // As many names as expected children: none is missing.
    let below = format!("{key}/");
    let children = descendants(expected, &below)
        .filter(|(child, _)| !child[below.len()..].contains('/'))
        .count();
    names == children
}

/// The stamps of every path whose key starts with `below` (a folder's key and `/`).
fn descendants<'a>(
    stamps: &'a Stamps,
    below: &'a str,
) -> impl Iterator<Item = (&'a String, &'a FileStamp)> + 'a {
    stamps
        .range::<str, _>((std::ops::Bound::Included(below), std::ops::Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(below))
}

/// `stamps` after the items were renamed: a renamed file's change time moved (only that is
/// taken: an edit made before the rename still shows in the other fields), and each folder is
/// stamped again where it now is (its time may have settled since, or moved when its
/// `__pycache__` was removed).
fn restamp(mut stamps: Stamps, items: &[Item], now_at: impl Fn(&Item) -> PathBuf) -> Stamps {
    for item in items {
        let root = now_at(item);
        let below = format!("{}/", item.original);
        let folders: Vec<String> = descendants(&stamps, &below)
            .filter(|(_, stamp)| stamp.size == FOLDER)
            .map(|(key, _)| key.clone())
            .collect();
        for key in std::iter::once(&item.original).chain(&folders) {
            let path = match key.strip_prefix(&below) {
                Some(rest) => root.join(rest),
                None => root.clone(),
            };
            if let Some(stamp) = stamps.get_mut(key)
                && let Ok(meta) = path.symlink_metadata()
            {
                if stamp.size != FOLDER {
                    stamp.ctime_ns = FileStamp::of(&meta).ctime_ns;
                } else if meta.is_dir() && meta.ino() == stamp.ino {
                    *stamp = FileStamp::of_folder(&meta);
                }
            }
        }
    }
    stamps
}

/// Where a path of the environment (`pkg/sub/__pycache__`) is inside the stash.
fn stashed_path(dir: &Path, items: &[Item], original: &str) -> Option<PathBuf> {
    items.iter().find_map(|item| {
        let rest = original.strip_prefix(&item.original)?.strip_prefix('/')?;
        Some(dir.join(&item.stashed).join(rest))
    })
}

/// The size a folder's stamp carries.
const FOLDER: u64 = u64::MAX;
/// How old a folder's modification time must be to be trusted: well over the tick of a coarse
/// filesystem clock, so that a later change cannot leave it as it was.
const SETTLED: i128 = 100_000_000;

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

impl FileStamp {
    /// A file with more than one link when stamped: one of uv's cache files, hard-linked.
    pub fn is_shared_file(&self) -> bool {
        self.size != FOLDER && self.ctime_ns == 0
    }

    fn of(meta: &std::fs::Metadata) -> Self {
        let shared = meta.nlink() > 1;
        Self {
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: mtime_ns(meta),
            ctime_ns: if shared {
                0
            } else {
                i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
            },
            ino: meta.ino(),
        }
    }

    /// A folder: its inode, and its modification time if that was already settled when the
    /// stamp was taken (older than [`SETTLED`]): a name added or removed later then moves it,
    /// even where the filesystem's clock is coarse. Otherwise 0: the folder must be read.
    fn of_folder(meta: &std::fs::Metadata) -> Self {
        let mtime = mtime_ns(meta);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
        Self {
            size: FOLDER,
            mode: 0,
            mtime_ns: if now - mtime > SETTLED { mtime } else { 0 },
            ctime_ns: 0,
            ino: meta.ino(),
        }
    }
}

fn read_record(dist_info: &Path) -> Option<Vec<String>> {
    let mut file = std::fs::File::open(dist_info.join("RECORD")).ok()?;
    let record = uv_install_wheel::read_record(&mut file).ok()?;
    Some(record.into_iter().map(|entry| entry.path).collect())
}

fn read_manifest(dir: &Path, entry: &Entry) -> Option<Manifest> {
    let text = std::fs::read(dir.join(entry.manifest_name())).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Write the manifests swaps left to the engine's idle work (see [`Memory::unwritten`]); reading
/// a view (`uv_ffi_view_get`) writes them too, so the stash on disk then agrees with it. An
/// entry brought back meanwhile gets none, and its spare, which describes paths no longer in
/// the stash, goes. An entry whose manifest cannot be written (a full disk, say) is of no use,
/// so its files go as uv's uninstall would remove them.
pub fn write_unwritten(memory: &Mutex<Memory>) {
    // Its callers (the idle work, `view_get`) hold the engine's lock: no two run at once, so a
    // caller that finds nothing left to write knows every manifest taken is on disk.
    let pending: Vec<(Unwritten, Option<Vec<u8>>)> = {
        let mut memory = Memory::lock(memory);
        let unwritten = std::mem::take(&mut memory.unwritten);
        unwritten
            .into_iter()
            .map(|unwritten| {
                let path = unwritten.dir.join(unwritten.entry.manifest_name());
                let text = memory
                    .written
                    .get(&path)
                    .and_then(|manifest| serde_json::to_vec(manifest).ok());
                (unwritten, text)
            })
            .collect()
    };
    for (unwritten, text) in pending {
        let Unwritten { dir, entry, spare } = unwritten;
        let Some(text) = text else {
            if let Some(spare) = spare {
                let _ = std::fs::remove_file(spare);
            }
            continue;
        };
        if write_manifest(&dir, &entry, &text, spare).is_err() {
            let path = dir.join(entry.manifest_name());
            if let Some(manifest) = Memory::lock(memory).written.remove(&path) {
                discard(&dir, &entry, &manifest);
            }
        }
    }
}

/// Write a manifest under a name no entry has (`spare`, an entry's manifest that is no longer
/// needed, else a new file) and rename it: a manifest is whole or absent.
fn write_manifest(
    dir: &Path,
    entry: &Entry,
    text: &[u8],
    spare: Option<PathBuf>,
) -> std::io::Result<()> {
    let partial = spare.unwrap_or_else(|| dir.join(format!("{}.partial", entry.id)));
    let written = overwrite(&partial, text)
        .and_then(|()| std::fs::rename(&partial, dir.join(entry.manifest_name())));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Write `text` over the file at `path` (made if missing), then cut it to that length. Not
/// truncated first: see the module comment.
fn overwrite(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all(text)?;
    let length = u64::try_from(text.len()).map_err(std::io::Error::other)?;
    if file.metadata()?.len() != length {
        file.set_len(length)?;
    }
    Ok(())
}

/// Bring a stashed path back to `to`, which must not exist (`AlreadyExists` then, and nothing
/// moved), making `to`'s folder first where it is missing (a script's `bin`). One system call
/// in the usual case, where a check before the rename took one more per path, and left a moment
/// in which another tool's file could appear and be replaced.
fn put_back(from: &Path, to: &Path) -> std::io::Result<()> {
    match rename_no_replace(from, to) {
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound && from.symlink_metadata().is_ok() =>
        {
            let parent = to.parent().ok_or(err)?;
            std::fs::create_dir_all(parent)?;
            rename_no_replace(from, to)
        }
        other => other,
    }
}

/// `rename`, failing with `AlreadyExists` instead of replacing an existing `to`.
#[cfg(target_os = "linux")]
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let path =
        |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other);
    let (c_from, c_to) = (path(from)?, path(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // A filesystem (or kernel) without the flag: check, then rename.
        Some(libc::EINVAL | libc::ENOSYS) => rename_after_check(from, to),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    rename_after_check(from, to)
}

fn rename_after_check(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// An intact entry holding the wheel asked for.
pub struct Found {
    entry: Entry,
    manifest: Manifest,
}

/// One stash entry, as its manifest's name tells it: `<id>~<wheel hash>~<bytes>.json`.
pub struct Entry {
    id: String,
    key_hash: u64,
    bytes: u64,
}

impl Entry {
    fn manifest_name(&self) -> String {
        format!("{}~{:016x}~{}.json", self.id, self.key_hash, self.bytes)
    }

    fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".json")?;
        let mut parts = stem.rsplitn(3, '~');
        let bytes = parts.next()?.parse().ok()?;
        let key_hash = u64::from_str_radix(parts.next()?, 16).ok()?;
        let id = parts.next()?.to_string();
        Some(Self {
            id,
            key_hash,
            bytes,
        })
    }
}

impl WheelKey {
    /// A hash that is the same in every process (FNV-1a over the key's fields).
    fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let fields = [
            self.filename.as_bytes(),
            self.archive.as_os_str().as_encoded_bytes(),
            self.hashes.as_bytes(),
            self.cache_info.as_bytes(),
            self.link_mode.as_bytes(),
        ];
        for field in fields {
            for byte in field.iter().chain(&[0]) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}

fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|e| Entry::parse(&e.file_name().to_string_lossy()))
        .collect()
}

/// Remove an entry: its manifest and every stashed path.
fn discard(dir: &Path, entry: &Entry, manifest: &Manifest) {
    let _ = std::fs::remove_file(dir.join(entry.manifest_name()));
    for item in &manifest.items {
        remove_any(&dir.join(&item.stashed));
    }
}

fn remove_any(path: &Path) {
    if path.symlink_metadata().is_ok_and(|meta| meta.is_dir()) {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Undo an interrupted swap (see the module comment), then drop what no manifest accounts for.
fn recover(dir: &Path) {
    let journal = dir.join("journal");
    if let Ok(text) = std::fs::read_to_string(&journal)
        && !text.is_empty()
    {
        for line in text.lines().rev() {
            let Some((from, to)) = line.split_once('\t') else {
                continue;
            };
            let (from, to) = (Path::new(from), Path::new(to));
            if to.symlink_metadata().is_ok() && from.symlink_metadata().is_err() {
                let _ = std::fs::rename(to, from);
            }
        }
        let _ = std::fs::remove_file(&journal);
        sweep(dir);
    }
}

/// Remove stashed paths that belong to no manifest (a swap that was undone) and manifests whose
/// paths are gone.
fn sweep(dir: &Path) {
    let mut kept: HashSet<String> = HashSet::new();
    for entry in entries(dir) {
        let manifest = read_manifest(dir, &entry);
        match manifest {
            Some(manifest)
                if manifest
                    .items
                    .iter()
                    .all(|i| dir.join(&i.stashed).symlink_metadata().is_ok()) =>
            {
                kept.extend(manifest.items.into_iter().map(|item| item.stashed));
                kept.insert(entry.manifest_name());
            }
            Some(manifest) => discard(dir, &entry, &manifest),
            None => {
                let _ = std::fs::remove_file(dir.join(entry.manifest_name()));
            }
        }
    }
    if let Ok(read) = std::fs::read_dir(dir) {
        for found in read.flatten() {
            let name = found.file_name().to_string_lossy().into_owned();
            if !kept.contains(&name) {
                remove_any(&found.path());
            }
        }
    }
}

/// Run by the engine thread when idle, for the stash at `root` (see [`root_of`]): keep it within
/// its bounds. Skipped while another process holds the environment's lock (it may be swapping),
/// and while the journal holds a swap a killed process left half done: the next call undoes it
/// first (its paths have no manifest yet, and must not be swept).
pub fn tidy(root: &Path) {
    let dir = root.join(STASH_DIR);
    if !dir.is_dir() {
        return;
    }
    let mode = uv_fs::LockedFileMode::Exclusive;
    let resource = root.display().to_string();
    let Some(_lock) = uv_fs::LockedFile::acquire_no_wait(root.join(".lock"), mode, resource) else {
        return;
    };
    if interrupted(&journal_of(root)) {
        return;
    }
    prune(&dir);
    sweep_orphans(&dir, orphan_age());
}

/// How long a stashed path no manifest accounts for is left alone: a live process writes the
/// manifests of what it stashed when its engine is next idle (well under a second after the
/// swap), so only a path older than this was left by a process that ended first.
/// `UV_FFI_TEST_ORPHAN_AGE_MS` changes it, for tests.
fn orphan_age() -> std::time::Duration {
    let for_tests = std::env::var("UV_FFI_TEST_ORPHAN_AGE_MS").ok();
    std::time::Duration::from_millis(for_tests.and_then(|ms| ms.parse().ok()).unwrap_or(60_000))
}

/// Whether the path's last change of status (a rename into the stash sets it) is older than
/// `age`.
fn older_than(path: &Path, age: std::time::Duration) -> bool {
    path.symlink_metadata().is_ok_and(|meta| {
        let changed = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now - changed >= age.as_nanos() as i128
    })
}

/// Remove stashed paths whose entry has no manifest and that are older than `age`: left by a
/// process that ended between a swap and its idle work (see [`write_unwritten`]), or by a
/// manifest that could not be written. One listing; no manifest is read.
fn sweep_orphans(dir: &Path, age: std::time::Duration) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let names: Vec<String> = read
        .flatten()
        .map(|found| found.file_name().to_string_lossy().into_owned())
        .collect();
    let ids: HashSet<String> = names
        .iter()
        .filter_map(|name| Entry::parse(name))
        .map(|entry| entry.id)
        .collect();
    for name in &names {
        // A stashed path is `<id>.<n>`, a manifest being written `<id>.partial`.
        let orphan = name != "journal"
            && Entry::parse(name).is_none()
            && name
                .rsplit_once('.')
                .is_some_and(|(id, _)| !ids.contains(id));
        if orphan && older_than(&dir.join(name), age) {
            remove_any(&dir.join(name));
        }
    }
}

/// Keep at most `MAX_ENTRIES` entries and `MAX_BYTES` bytes, dropping the least recently used
/// (the oldest manifests: a manifest is written when its entry is stashed).
fn prune(dir: &Path) {
    let entries = entries(dir);
    // The names tell the count and the bytes: the manifests' times are read only when over.
    let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
    if entries.len() <= MAX_ENTRIES && bytes <= MAX_BYTES {
        return;
    }
    let mut found: Vec<(std::time::SystemTime, Entry)> = entries
        .into_iter()
        .filter_map(|entry| {
            let meta = std::fs::metadata(dir.join(entry.manifest_name())).ok()?;
            Some((meta.modified().ok()?, entry))
        })
        .collect();
    found.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
    let mut bytes = 0;
    for (i, (_, entry)) in found.iter().enumerate() {
        bytes += entry.bytes;
        if (i >= MAX_ENTRIES || bytes > MAX_BYTES)
            && let Some(manifest) = read_manifest(dir, entry)
        {
            discard(dir, entry, &manifest);
        }
    }
}

/// Empty the stash of an environment root (a venv or a `--target` folder): every entry goes. The
/// folder and its journal stay, so that the next swap does not make them again (a new folder and
/// a new file cost this disk about 0.5 ms); removing the environment removes them. True when
/// something was removed.
pub fn clear(root: &Path, memory: &Mutex<Memory>) -> bool {
    let dir = root.join(STASH_DIR);
    // The manifests kept of its entries go with them, written or not.
    {
        let mut memory = Memory::lock(memory);
        memory
            .written
            .retain(|path, _| path.parent() != Some(dir.as_path()));
        memory.unwritten.retain(|unwritten| unwritten.dir != dir);
    }
    if !dir.is_dir() {
        return false;
    }
    recover(&dir);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return false;
    };
    let mut cleared = false;
    for found in read.flatten() {
        // The journal and the spares hold nothing (see `spare.rs`).
        if found.file_name() != "journal" && found.file_name() != crate::spare::SPARE_DIR {
            remove_any(&found.path());
            cleared = true;
        }
    }
    cleared
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}{:x}{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// For the crash-safety test only: `UV_FFI_TEST_STASH_PAUSE_MS` sleeps after each rename, so a
/// test can kill the process in the middle of a swap.
fn pause_for_tests() {
    static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("UV_FFI_TEST_STASH_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(ms) = pause {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            key: WheelKey {
                filename: "a-1-py3-none-any.whl".to_string(),
                archive: PathBuf::from("archive"),
                hashes: String::new(),
                cache_info: String::new(),
                link_mode: "hardlink".to_string(),
            },
            name: "a".to_string(),
            version: "1".to_string(),
            items: Vec::new(),
            files: Stamps::default(),
            bytes: 0,
        }
    }

    /// An archive of a plain wheel, installed into `site` as uv hard-links one.
    fn install_as_uv_does(archive: &Path, site: &Path) {
        for folder in ["a", "a/sub", "a-1.dist-info"] {
            std::fs::create_dir(site.join(folder)).unwrap();
        }
        for file in [
            "a/__init__.py",
            "a/sub/m.py",
            "top.py",
            "a-1.dist-info/METADATA",
        ] {
            std::fs::hard_link(archive.join(file), site.join(file)).unwrap();
        }
        let record = "a/__init__.py,,\na/sub/m.py,,\ntop.py,,\na-1.dist-info/METADATA,,\n\
                      a-1.dist-info/INSTALLER,,\na-1.dist-info/RECORD,,\n";
        std::fs::write(site.join("a-1.dist-info/RECORD"), record).unwrap();
        std::fs::write(site.join("a-1.dist-info/INSTALLER"), "uv").unwrap();
    }

    #[test]
    fn a_tree_made_again_is_known_as_a_survey_finds_it() {
        let (archive, site) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (archive, site) = (archive.path(), site.path());
        for folder in ["a/sub", "a-1.dist-info"] {
            std::fs::create_dir_all(archive.join(folder)).unwrap();
        }
        for file in [
            "a/__init__.py",
            "a/sub/m.py",
            "top.py",
            "a-1.dist-info/METADATA",
        ] {
            std::fs::write(archive.join(file), file).unwrap();
        }
        std::fs::write(archive.join("a-1.dist-info/RECORD"), "").unwrap();
        install_as_uv_does(archive, site);
        let dist_info = site.join("a-1.dist-info");
        let tree = Relink::learn(archive, &dist_info).expect("a plain wheel");
        let key = manifest().key;
        let first = Installed::survey(key.clone(), &dist_info, None, None).unwrap();
        let linked: Stamps = first
            .stamps
            .iter()
            .filter(|(_, stamp)| stamp.is_shared_file())
            .map(|(path, stamp)| (path.clone(), stamp.clone()))
            .collect();
        assert_eq!(linked.len(), 4);
        for top in ["a", "a-1.dist-info", "top.py"] {
            let path = site.join(top);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        tree.apply(archive, site, &mut crate::spare::Taken::default())
            .unwrap();
        for known in [None, Some(&linked)] {
            let made = Installed::made(key.clone(), site, &tree, known).unwrap();
            let surveyed = Installed::survey(key.clone(), &dist_info, known, None).unwrap();
            assert_eq!(made.stamps, surveyed.stamps);
            let mut items = surveyed.items.clone();
            items.sort();
            assert_eq!(made.items, items);
        }
    }

    #[test]
    fn clearing_a_stash_forgets_the_manifests_kept_of_its_entries() {
        let (root, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let memory = Mutex::new(Memory::default());
        let ours = root.path().join(STASH_DIR).join("a~1~0.json");
        let theirs = other.path().join(STASH_DIR).join("a~1~0.json");
        std::fs::create_dir(root.path().join(STASH_DIR)).unwrap();
        std::fs::write(&ours, "{}").unwrap();
        std::fs::write(root.path().join(STASH_DIR).join("journal"), "").unwrap();
        for path in [&ours, &theirs] {
            Memory::lock(&memory)
                .written
                .insert(path.clone(), manifest());
        }
        assert!(clear(root.path(), &memory));
        let left: Vec<_> = std::fs::read_dir(root.path().join(STASH_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("journal")]);
        assert!(!clear(root.path(), &memory));
        let kept: Vec<PathBuf> = Memory::lock(&memory).written.keys().cloned().collect();
        assert_eq!(kept, vec![theirs]);
    }

    fn left_unwritten(memory: &Mutex<Memory>, dir: &Path, id: &str, spare: Option<PathBuf>) {
        let entry = Entry {
            id: id.to_string(),
            key_hash: 1,
            bytes: 0,
        };
        let mut memory = Memory::lock(memory);
        memory
            .written
            .insert(dir.join(entry.manifest_name()), manifest());
        memory.unwritten.push(Unwritten {
            dir: dir.to_path_buf(),
            entry,
            spare,
        });
    }

    #[test]
    fn manifests_left_to_idle_work_are_written_over_their_spares_in_order() {
        // Two swaps before the engine was idle: b out (over a's manifest, a came back), then
        // b back and a out again (over b's, which was never written).
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(STASH_DIR);
        std::fs::create_dir(&dir).unwrap();
        let memory = Mutex::new(Memory::default());
        let spare_a = dir.join("a-1~0000000000000001~0.json");
        std::fs::write(&spare_a, "{\"stale\": true}").unwrap();
        left_unwritten(&memory, &dir, "b-2", Some(spare_a.clone()));
        let b = dir.join("b-2~0000000000000001~0.json");
        Memory::lock(&memory).written.remove(&b); // b came back: found by this engine
        left_unwritten(&memory, &dir, "a-1x", Some(b.clone()));
        write_unwritten(&memory);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, vec!["a-1x~0000000000000001~0.json".to_string()]);
        let text = std::fs::read_to_string(dir.join(&on_disk[0])).unwrap();
        let written: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(written.name, "a");
        assert!(Memory::lock(&memory).unwritten.is_empty());
    }
}
