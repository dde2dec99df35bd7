//! One target environment as the engine keeps it between calls.
//!
//! Two views of the same folder are kept:
//! - `view`: the engine's own name → version map. It is what callers read, and it is updated in
//!   place from each install's changelog (and from `patch` calls) with no disk access.
//! - `site`: uv's `SitePackages` snapshot, which the resolver and the planner need and which must
//!   match the disk exactly. uv offers no way to edit it, so it is dropped after every change and
//!   rebuilt lazily, or by the engine thread while it is idle.
//!
//! Whether the disk changed behind the engine's back is decided by a fingerprint: one `stat` per
//! site-packages folder, backed by the set of `.dist-info` folders the view implies. When a stamp
//! moved (or a patch was applied, or the stamp is too recent to trust), the folders are listed and
//! compared with that set; any disagreement drops the view. So a patch, even a wrong or late one,
//! can never make a view that disagrees with the disk look clean.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use uv_distribution_types::{InstalledDist, Name};
use uv_installer::SitePackages;
use uv_platform_tags::Tags;
use uv_pypi_types::ResolverMarkerEnvironment;
use uv_python::PythonEnvironment;

use crate::error::{ErrorKind, FfiError, Result};
use crate::plan::KeptResolutions;

/// A site-packages folder changed by less than this long before it was fingerprinted may change
/// again within the same timestamp tick, so its fingerprint is not trusted on its own.
const RACY_WINDOW_NS: i128 = 50_000_000;

/// The identity of one folder at one moment: enough to notice an entry being added, removed or
/// renamed (each of which updates the folder's mtime and ctime), or the folder being replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirStamp {
    pub path: PathBuf,
    pub exists: bool,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl DirStamp {
    /// Whether `path` still has this stamp (no allocation: this runs on every call).
    pub fn matches(&self, path: &Path) -> bool {
        self.matches_metadata(fs::metadata(path))
    }

    /// The stamp of a link itself (`lstat`), not of what it points to.
    pub fn read_link(path: &Path) -> Self {
        Self::from_metadata(path, fs::symlink_metadata(path))
    }

    /// Whether the link at `path` is still the one stamped by [`DirStamp::read_link`].
    pub fn matches_link(&self, path: &Path) -> bool {
        self.matches_metadata(fs::symlink_metadata(path))
    }

    fn matches_metadata(&self, meta: std::io::Result<fs::Metadata>) -> bool {
        match meta {
            Ok(meta) => {
                self.exists
                    && self.dev == meta.dev()
                    && self.ino == meta.ino()
                    && self.mtime_ns
                        == i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
                    && self.ctime_ns
                        == i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
            }
            Err(_) => !self.exists,
        }
    }

    pub fn read(path: &Path) -> Self {
        Self::from_metadata(path, fs::metadata(path))
    }

    /// Whether this stamp, taken at `taken_ns`, shows any later change: the folder's last
    /// change was outside the racy window (or there is no folder).
    pub fn settled_at(&self, taken_ns: i128) -> bool {
        !self.exists || taken_ns - self.mtime_ns.max(self.ctime_ns) >= RACY_WINDOW_NS
    }

    fn from_metadata(path: &Path, meta: std::io::Result<fs::Metadata>) -> Self {
        match meta {
            Ok(meta) => Self {
                path: path.to_path_buf(),
                exists: true,
                dev: meta.dev(),
                ino: meta.ino(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            },
            Err(_) => Self {
                path: path.to_path_buf(),
                exists: false,
                dev: 0,
                ino: 0,
                mtime_ns: 0,
                ctime_ns: 0,
            },
        }
    }
}

/// What the view was built from: one stamp per folder and when it was taken, the `.dist-info`
/// folders the view implies (name -> version), and the other metadata entries seen.
#[derive(Debug, Clone)]
struct Fingerprint {
    stamps: Vec<DirStamp>,
    taken_ns: i128,
    expected: BTreeMap<String, String>,
    others: Vec<String>,
    /// Each `.dist-info` folder's inode and modification time, by normalised name: a
    /// reinstall by another tool recreates the folder under the same name (the engine forgets
    /// those it changed itself, and learns them again at the next listing).
    inodes: BTreeMap<String, (u64, i128)>,
    /// The view was changed without reading the disk: list the folders on the next check.
    must_list: bool,
}

impl Fingerprint {
    fn take(dirs: &[PathBuf]) -> Self {
        let stamps = dirs.iter().map(|d| DirStamp::read(d)).collect();
        let Listing {
            expected,
            others,
            inodes,
        } = list_entries(dirs);
        Self {
            stamps,
            taken_ns: now_ns(),
            expected,
            others,
            inodes,
            must_list: false,
        }
    }
}

/// Counters of what the engine did to keep this view true.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewCounters {
    /// Full rescans of site-packages (uv's `SitePackages` rebuilt).
    pub rescans: u64,
    /// Checks that found the folders unchanged by `stat` alone.
    pub checks_clean: u64,
    /// Checks that had to list the folders (a racy or changed stamp).
    pub checks_listed: u64,
    /// The engine's own changes confirmed by listing the folders while idle, once their stamps
    /// could be trusted (so that the next check needed no listing).
    pub settled_when_idle: u64,
    /// Checks that found an outside change and dropped the view.
    pub changes_detected: u64,
    /// Deltas applied by `patch`.
    pub patches: u64,
    /// Installs that met a view that disagreed with the disk and were retried after a rescan.
    pub heals: u64,
    /// Installs that reused an earlier call's resolution (same request, view and index pages).
    pub resolutions_reused: u64,
    /// Of those, installs that also reused its plan (same installed distributions and cache
    /// folders: `replan.rs`).
    pub plans_reused: u64,
    /// `pip list/freeze/show/check` answered from the snapshot (`read.rs`).
    pub reads: u64,
    /// Distributions a swap moved into the stash, and brought back from it (`stash.rs`).
    pub stashed: u64,
    pub restored: u64,
    /// Wheels hard-linked again the way uv linked them before, without its installer
    /// (`relink.rs`).
    pub relinked: u64,
    /// Folders and files those took from spares made ahead (`spare.rs`).
    pub spares_used: u64,
    /// Swaps asked again and made by renames on the caller's thread (`fast_swap.rs`).
    pub swapped_here: u64,
}

pub struct EnvState {
    pub env: PythonEnvironment,
    pub markers: ResolverMarkerEnvironment,
    site: Option<SitePackages>,
    /// Name -> the versions installed under it (more than one only when the disk holds
    /// several `.dist-info` folders for one name, as a killed install can leave behind).
    view: BTreeMap<String, BTreeSet<String>>,
    view_known: bool,
    /// The host patched the view (`view_patch`): it stands as patched until a check, an
    /// invalidation or an install reads the disk, never replaced behind the host's back.
    patched_by_host: bool,
    fingerprint: Option<Fingerprint>,
    /// Install requests proven satisfied since the last change to this environment.
    satisfied: rustc_hash::FxHashSet<String>,
    /// Resolutions of recent calls on this environment (see `install::reuse_key`).
    pub resolutions: KeptResolutions,
    pub counters: ViewCounters,
    /// The distributions this engine installed from index wheels, as they were right after:
    /// what a swap that replaces one may move into the stash (`stash.rs`).
    pub installed_wheels: std::collections::HashMap<(String, String), crate::stash::Installed>,
    /// The stash's journal, if this environment can have a stash (checked on every call).
    pub stash_journal: Option<PathBuf>,
    /// The device of the site folder, once found to be the stash's too (two `stat`s a swap
    /// saved); forgotten with the view, when a check sees the folders change.
    pub stash_device: Option<u64>,
    /// A call used the stash: the engine tidies it when idle (`stash::tidy`).
    pub stash_untidy: bool,
    /// Which kept index pages recent requests read (`fast_swap.rs`).
    pub asked: crate::fast_swap::Asked,
}

impl EnvState {
    pub fn new(env: PythonEnvironment) -> Result<Self> {
        let interpreter = env.interpreter();
        // Computed once and kept inside the interpreter; `tags()` below relies on this check.
        interpreter
            .tags()
            .map_err(|err| FfiError::from_uv(ErrorKind::PythonNotFound, &err))?;
        let markers = interpreter.to_resolver_marker_environment();
        Ok(Self {
            env,
            markers,
            site: None,
            view: BTreeMap::new(),
            view_known: false,
            patched_by_host: false,
            fingerprint: None,
            satisfied: rustc_hash::FxHashSet::default(),
            resolutions: KeptResolutions::default(),
            counters: ViewCounters::default(),
            installed_wheels: std::collections::HashMap::new(),
            stash_journal: None,
            stash_device: None,
            stash_untidy: false,
            asked: Default::default(),
        })
    }

    /// The interpreter's platform tags (computed and checked in [`EnvState::new`]).
    pub fn tags(&self) -> &Tags {
        self.env
            .interpreter()
            .tags()
            .expect("tags were computed when the environment was first seen")
    }

    /// Drop uv's snapshot to save memory (the view stays; the snapshot is rebuilt when needed).
    pub fn evict_snapshot(&mut self) {
        self.site = None;
    }

    /// The folders this environment installs into (purelib, and platlib if it differs).
    pub fn site_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.env.site_packages().map(|p| p.into_owned()).collect();
        dirs.dedup();
        dirs
    }

    /// uv's snapshot of the environment, scanning the disk if it is stale.
    pub fn site_packages(&mut self) -> Result<&SitePackages> {
        if self.site.is_none() {
            self.rescan()?;
        }
        Ok(self.site.as_ref().expect("rescan fills the snapshot"))
    }

    /// uv's snapshot of the environment, if it is not stale.
    pub fn snapshot(&self) -> Option<&SitePackages> {
        self.site.as_ref()
    }

    /// Rebuild uv's snapshot and the view from the disk.
    pub fn rescan(&mut self) -> Result<()> {
        // Stamp first: a change during the scan then shows up at the next check.
        let fingerprint = Fingerprint::take(&self.site_dirs());
        let site = SitePackages::from_environment(&self.env)
            .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))?;
        self.view = view_of(site.iter());
        self.view_known = true;
        self.patched_by_host = false;
        self.site = Some(site);
        self.fingerprint = Some(fingerprint);
        self.satisfied.clear();
        self.counters.rescans += 1;
        Ok(())
    }

    /// Whether uv's snapshot is stale (it will be rebuilt before the next resolution).
    pub fn needs_rescan(&self) -> bool {
        self.site.is_none()
    }

    /// Compare the disk with what the view was built from; drop the view if anything outside the
    /// engine changed it. Returns `true` if a change was found.
    pub fn check(&mut self) -> bool {
        let Some(fingerprint) = &self.fingerprint else {
            return false;
        };
        // The common case first, without allocating: every stamp unchanged and old enough.
        let settled = fingerprint
            .stamps
            .iter()
            .all(|s| s.settled_at(fingerprint.taken_ns));
        if settled
            && !fingerprint.must_list
            && fingerprint.stamps.iter().all(|s| s.matches(&s.path))
        {
            self.counters.checks_clean += 1;
            return false;
        }
        // The stamp moved, cannot be trusted yet, or the view was patched: compare the
        // distribution folders on disk with what the view implies.
        self.counters.checks_listed += 1;
        if self.confirm_by_listing() {
            return false;
        }
        self.counters.changes_detected += 1;
        self.invalidate();
        true
    }

    /// List the folders and compare them with what the view implies; when they agree, the
    /// fingerprint is taken again from this listing. False when they differ (or there is no
    /// fingerprint), and nothing is changed.
    fn confirm_by_listing(&mut self) -> bool {
        let Some(fingerprint) = &self.fingerprint else {
            return false;
        };
        let stamps: Vec<DirStamp> = fingerprint
            .stamps
            .iter()
            .map(|s| DirStamp::read(&s.path))
            .collect();
        let taken_ns = now_ns();
        let dirs: Vec<PathBuf> = stamps.iter().map(|s| s.path.clone()).collect();
        let listing = list_entries(&dirs);
        let recreated = fingerprint
            .inodes
            .iter()
            .any(|(name, inode)| listing.inodes.get(name).is_some_and(|now| now != inode));
        if listing.expected != fingerprint.expected
            || listing.others != fingerprint.others
            || recreated
        {
            return false;
        }
        let replaced =
            |(now, then): (&DirStamp, &DirStamp)| (now.dev, now.ino) != (then.dev, then.ino);
        if stamps.iter().zip(&fingerprint.stamps).any(replaced) {
            self.stash_device = None;
        }
        self.fingerprint = Some(Fingerprint {
            stamps,
            taken_ns,
            expected: listing.expected,
            others: listing.others,
            inodes: listing.inodes,
            must_list: false,
        });
        true
    }

    /// How long until the engine's own last change to these folders (a swap, an install), or a
    /// view taken right after a change, can be confirmed with stamps that later checks trust
    /// ([`EnvState::settle`]); `None` when the fingerprint is trusted already.
    pub fn settles_in(&self) -> Option<std::time::Duration> {
        let fingerprint = self
            .fingerprint
            .as_ref()
            .filter(|f| f.must_list || !f.stamps.iter().all(|s| s.settled_at(f.taken_ns)))?;
        let now = now_ns();
        let last_change = fingerprint
            .stamps
            .iter()
            .map(|s| DirStamp::read(&s.path))
            .map(|s| s.mtime_ns.max(s.ctime_ns))
            .max()?;
        let wait = (last_change + RACY_WINDOW_NS - now).clamp(0, RACY_WINDOW_NS);
        Some(std::time::Duration::from_nanos(
            u64::try_from(wait).unwrap_or(0),
        ))
    }

    /// Confirm the engine's own change by listing the folders once their racy window has passed
    /// (the engine thread does it when idle): the next call's check is then a `stat` per folder
    /// instead of a listing. It only confirms: folders that disagree with the view are left to
    /// the next call's check, which acts as its policy says.
    pub fn settle(&mut self) {
        if self.settles_in() == Some(std::time::Duration::ZERO) && self.confirm_by_listing() {
            self.counters.settled_when_idle += 1;
        }
    }

    /// The current fingerprint, for callers that watch for changes themselves.
    pub fn stamps(&self) -> Vec<DirStamp> {
        self.site_dirs().iter().map(|d| DirStamp::read(d)).collect()
    }

    /// Forget everything read from disk; the next use rescans.
    pub fn invalidate(&mut self) {
        self.installed_wheels.clear();
        self.stash_device = None;
        self.site = None;
        self.view_known = false;
        self.fingerprint = None;
        self.satisfied.clear();
    }

    /// The engine's view as sorted `(name, version)` pairs, scanning first if it was never built.
    pub fn view(&mut self) -> Result<Vec<(String, String)>> {
        if !self.view_known {
            self.rescan()?;
        }
        Ok(self
            .view
            .iter()
            .flat_map(|(name, versions)| versions.iter().map(|v| (name.clone(), v.clone())))
            .collect())
    }

    /// Whether a live view exists (nothing to patch otherwise).
    pub fn view_known(&self) -> bool {
        self.view_known
    }

    /// Apply a known change: removals first, then installs. uv's snapshot is marked stale since it
    /// cannot be edited; the view is updated without reading the disk, and the next check lists
    /// the folders to confirm the disk agrees.
    pub fn apply_delta(&mut self, installed: &[(String, String)], removed: &[(String, String)]) {
        fn apply(
            map: &mut BTreeMap<String, String>,
            installed: &[(String, String)],
            removed: &[(String, String)],
        ) {
            for (name, version) in removed {
                if map.get(name).is_some_and(|v| v == version) {
                    map.remove(name);
                }
            }
            for (name, version) in installed {
                map.insert(name.clone(), version.clone());
            }
        }
        for (name, version) in removed {
            if let Some(versions) = self.view.get_mut(name) {
                versions.remove(version);
                if versions.is_empty() {
                    self.view.remove(name);
                }
            }
        }
        for (name, version) in installed {
            self.view
                .insert(name.clone(), BTreeSet::from([version.clone()]));
        }
        if let Some(fingerprint) = self.fingerprint.as_mut() {
            apply(&mut fingerprint.expected, installed, removed);
            for (name, _) in installed.iter().chain(removed) {
                fingerprint.inodes.remove(name);
            }
            fingerprint.must_list = true;
        }
        self.site = None;
        self.satisfied.clear();
    }

    /// Apply a change the host made itself (`view_patch`).
    pub fn patch(&mut self, installed: &[(String, String)], removed: &[(String, String)]) {
        self.apply_delta(installed, removed);
        self.patched_by_host = true;
        self.counters.patches += 1;
    }

    /// Whether the idle engine may rebuild the snapshot now: not while a host patch stands,
    /// which a rescan would silently replace.
    pub fn may_rescan_when_idle(&self) -> bool {
        self.needs_rescan() && !self.patched_by_host
    }

    /// Whether this request was found satisfied since the last change (every change, and every
    /// rescan, clears what was remembered).
    pub fn is_known_satisfied(&self, key: &str) -> bool {
        self.satisfied.contains(key)
    }

    pub fn remember_satisfied(&mut self, key: String) {
        self.satisfied.insert(key);
    }

    /// Whether the view holds no distribution.
    pub fn holds_nothing(&self) -> bool {
        self.view.is_empty()
    }

    /// What the view says, as one number: equal views give equal digests.
    pub fn view_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.view.hash(&mut hasher);
        hasher.finish()
    }
}

fn view_of<'a>(
    dists: impl Iterator<Item = &'a InstalledDist>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut view: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for dist in dists {
        view.entry(dist.name().to_string())
            .or_default()
            .insert(dist.version().to_string());
    }
    view
}

/// The distributions installed in the given folders, read from the disk now.
pub fn installed_on_disk(dirs: &[PathBuf]) -> Listing {
    list_entries(dirs)
}

/// What is installed in some folders, as [`list_entries`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    expected: BTreeMap<String, String>,
    others: Vec<String>,
    pub inodes: BTreeMap<String, (u64, i128)>,
}

/// The distribution metadata entries in the given folders: `.dist-info` folders as normalised
/// name -> version (and their inode and modification time), and every other metadata entry
/// (egg-info, egg-link, unparseable or duplicated names) by its raw name, sorted.
fn list_entries(dirs: &[PathBuf]) -> Listing {
    use std::os::unix::fs::MetadataExt;
    let mut dist_infos = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    let mut others = Vec::new();
    for dir in dirs {
        let Ok(read) = fs::read_dir(dir) else {
            continue;
        };
        for entry in read.flatten() {
            let raw = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = raw.strip_suffix(".dist-info") {
                if let Some((name, version)) = parse_dist_info(stem)
                    && let std::collections::btree_map::Entry::Vacant(e) =
                        dist_infos.entry(name.clone())
                {
                    e.insert(version);
                    if let Ok(meta) = entry.metadata() {
                        let mtime = i128::from(meta.mtime()) * 1_000_000_000
                            + i128::from(meta.mtime_nsec());
                        inodes.insert(name, (meta.ino(), mtime));
                    }
                    continue;
                }
                others.push(raw);
            } else if raw.ends_with(".egg-info") || raw.ends_with(".egg-link") {
                others.push(raw);
            }
        }
    }
    others.sort_unstable();
    Listing {
        expected: dist_infos,
        others,
        inodes,
    }
}

/// `{name}-{version}` as normalised strings, the way the view spells them.
fn parse_dist_info(stem: &str) -> Option<(String, String)> {
    let (name, version) = stem.split_once('-')?;
    let name = uv_normalize::PackageName::from_str(name).ok()?;
    let version = uv_pep440::Version::from_str(version).ok()?;
    Some((name.to_string(), version.to_string()))
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}
