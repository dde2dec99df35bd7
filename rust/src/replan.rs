//! Reusing the plan of an earlier call that asked the same question (`install::reuse_key`).
//!
//! uv's planner reads, for every resolved package and index, the cache's wheel pointers (a file
//! per cached wheel) and its built-wheel folder, and checks the archive each pointer names:
//! about 0.14 ms for one package on a call after other processes ran. For a reused resolution
//! its answer changes only if the installed distributions of those packages change, or those
//! cache folders do (uv writes a pointer by renaming it into place, which moves its folder's
//! times), or an archive goes. So a plan is kept with its resolution, together with a digest of
//! those installed distributions (as uv's snapshot describes them) and the stamps of those
//! folders and archives, each settled (older than 50 ms) when stamped; it is used again only
//! while all of them hold. Only plans that link from the cache and download nothing, for
//! resolutions of index distributions from remote indexes, are kept.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use uv_cache::{Cache, CacheBucket, WheelCache};
use uv_distribution_types::{
    BuiltDist, CachedDist, Dist, IndexLocations, IndexUrl, InstalledDist, Name, Resolution,
    ResolvedDist, SourceDist,
};
use uv_installer::{Plan, SitePackages};

use crate::environment::{DirStamp, now_ns};

/// A plan for a kept resolution, and what it was made from.
#[derive(Debug)]
pub struct KeptPlan {
    cached: Vec<CachedDist>,
    reinstalls: Vec<InstalledDist>,
    installed: u64,
    proof: Vec<DirStamp>,
}

/// Where the planner looks for a resolution's wheels.
pub struct PlanInputs<'a> {
    pub resolution: &'a Resolution,
    pub site: &'a SitePackages,
    pub cache: &'a Cache,
    pub index_locations: &'a IndexLocations,
}

/// What a plan is made from, read before the planner runs (a change while it runs then shows).
pub struct PlanBasis {
    installed: u64,
    proof: Vec<DirStamp>,
}

impl PlanBasis {
    /// `None` when a plan for `inputs` is not kept (see [`plannable`]).
    pub fn read(inputs: &PlanInputs<'_>) -> Option<Self> {
        plannable(inputs).then(|| Self {
            installed: installed_digest(inputs.resolution, inputs.site),
            proof: cache_folders(inputs)
                .iter()
                .map(|folder| DirStamp::read(folder))
                .collect(),
        })
    }

    /// Keep `plan`, made from this basis; `None` when it downloads something, or a folder or
    /// archive changed too recently for its stamp to show a later change.
    pub fn keep(self, plan: &Plan) -> Option<KeptPlan> {
        if !plan.remote.is_empty() {
            return None;
        }
        let mut proof = self.proof;
        proof.extend(plan.cached.iter().map(|dist| DirStamp::read(dist.path())));
        let now = now_ns();
        let settled = proof.iter().all(|stamp| stamp.settled_at(now));
        settled.then(|| KeptPlan {
            cached: plan.cached.clone(),
            reinstalls: plan.reinstalls.clone(),
            installed: self.installed,
            proof,
        })
    }
}

impl KeptPlan {
    /// The plan again, if everything it was made from still holds.
    pub fn plan(&self, inputs: &PlanInputs<'_>) -> Option<Plan> {
        self.plan_for(inputs.resolution, inputs.site)
    }

    /// The wheels the plan links from the cache.
    pub fn cached(&self) -> &[CachedDist] {
        &self.cached
    }

    /// [`KeptPlan::plan`], from what its check reads: the resolution and uv's snapshot.
    pub fn plan_for(&self, resolution: &Resolution, site: &SitePackages) -> Option<Plan> {
        let holds = self.installed == installed_digest(resolution, site)
            && self.proof.iter().all(|stamp| stamp.matches(&stamp.path));
        holds.then(|| Plan {
            cached: self.cached.clone(),
            remote: Vec::new(),
            reinstalls: self.reinstalls.clone(),
            extraneous: Vec::new(),
        })
    }
}

/// Index distributions only, from remote indexes only (a `--find-links` folder's wheels may be
/// rewritten in place).
fn plannable(inputs: &PlanInputs<'_>) -> bool {
    let remote = inputs
        .index_locations
        .allowed_indexes()
        .iter()
        .all(|index| matches!(index.url(), IndexUrl::Pypi(_) | IndexUrl::Url(_)));
    remote
        && inputs.resolution.distributions().all(|dist| match dist {
            ResolvedDist::Installed { .. } => true,
            ResolvedDist::Installable { dist, .. } => matches!(
                dist.as_ref(),
                Dist::Built(BuiltDist::Registry(_)) | Dist::Source(SourceDist::Registry(_))
            ),
        })
}

/// The cache folders the planner reads: each resolved package's wheel pointers and built
/// wheels, for each index.
fn cache_folders(inputs: &PlanInputs<'_>) -> Vec<PathBuf> {
    let indexes = inputs.index_locations.allowed_indexes();
    let mut folders = Vec::new();
    for dist in inputs.resolution.distributions() {
        for index in &indexes {
            let shard = WheelCache::Index(index.url()).wheel_dir(dist.name().as_ref());
            folders.push(
                inputs
                    .cache
                    .shard(CacheBucket::Wheels, &shard)
                    .to_path_buf(),
            );
            folders.push(
                inputs
                    .cache
                    .shard(CacheBucket::SourceDistributions, &shard)
                    .to_path_buf(),
            );
        }
    }
    folders
}

/// The installed distributions of every resolved package, as uv's snapshot describes them
/// (kind, name, version, folder, and how it was installed; not what was read from them since).
fn installed_digest(resolution: &Resolution, site: &SitePackages) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for dist in resolution.distributions() {
        for installed in site.get_packages(dist.name()) {
            installed.kind.hash(&mut hasher);
        }
    }
    hasher.finish()
}
