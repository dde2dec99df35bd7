//! The install-plan hook. A warm `pip install` / `pip uninstall` asked with `"plan": true`
//! stops once it knows what it would do, reports that plan, and keeps it: `uv_ffi_plan_apply`
//! later carries out exactly that plan (the kept resolution, never a second one), and
//! `uv_ffi_plan_discard` drops it. Two phases rather than a callback pointer, so the C ABI stays
//! JSON in, JSON out and a host in any language decides between the phases.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use uv_distribution_types::{DistributionMetadata, Name, Resolution, VersionOrUrlRef};
use uv_installer::Plan;
use uv_types::HashStrategy;

use crate::command::Command;
use crate::engine::EnvKey;
use crate::environment::Listing;
use crate::error::{ErrorKind, FfiError, Result};
use crate::install::Pair;
use crate::ops::RunRequest;

/// One line of a plan: PEP 503 name, version (`""` only for a remote distribution named by URL)
/// and what will happen: `cached`, `remote`, `reinstall` or `extraneous`.
pub type PlanEntry = (String, String, &'static str);

/// How far a warm call goes.
#[derive(Clone, Copy)]
pub enum PlanStep<'a> {
    /// Resolve, plan and apply, as uv does.
    Apply,
    /// Stop after planning: report the plan and keep the resolution; change nothing.
    Report,
    /// Apply a plan reported earlier, from its kept resolution (no new resolution).
    Execute(&'a KeptResolution),
}

/// A resolution kept for later: to apply a reported plan exactly, or to answer the same
/// question again (`install::reuse_key`).
#[derive(Clone)]
pub struct KeptResolution {
    pub resolution: Resolution,
    pub hasher: HashStrategy,
    /// The plan made for it, while what it was made from holds (`replan.rs`).
    pub plan: Option<std::sync::Arc<crate::replan::KeptPlan>>,
}

/// Resolutions of recent calls, by their inputs (see `install::reuse_key`), newest last.
#[derive(Default)]
pub struct KeptResolutions(std::collections::VecDeque<(String, KeptResolution)>);

/// How many resolutions are kept for reuse (a host swapping between a few versions asks the same
/// few questions again and again).
const KEEP_RESOLUTIONS: usize = 8;

impl KeptResolutions {
    /// A resolution kept for these inputs, if any.
    pub fn get(&self, inputs: &str) -> Option<KeptResolution> {
        self.find(inputs).cloned()
    }

    /// Forget every kept resolution (of an environment not used lately); whether there were any.
    pub fn forget_all(&mut self) -> bool {
        let any = !self.0.is_empty();
        self.0.clear();
        any
    }

    /// The resolution kept for these inputs, if any, without copying it.
    pub fn find(&self, inputs: &str) -> Option<&KeptResolution> {
        self.0
            .iter()
            .find(|(key, _)| key == inputs)
            .map(|(_, kept)| kept)
    }

    /// Keep the plan made for the resolution kept for these inputs.
    pub fn keep_plan(&mut self, inputs: &str, plan: crate::replan::KeptPlan) {
        if let Some((_, kept)) = self.0.iter_mut().find(|(key, _)| key == inputs) {
            kept.plan = Some(std::sync::Arc::new(plan));
        }
    }

    /// Keep a resolution for its inputs (the oldest goes when too many are kept).
    pub fn keep(&mut self, inputs: String, kept: KeptResolution) {
        self.0.retain(|(key, _)| *key != inputs);
        self.0.push_back((inputs, kept));
        if self.0.len() > KEEP_RESOLUTIONS {
            self.0.pop_front();
        }
    }
}

/// The lines of an install plan, sorted by name.
pub fn install_entries(plan: &Plan) -> Vec<PlanEntry> {
    let mut entries: Vec<PlanEntry> = plan
        .cached
        .iter()
        .map(|dist| {
            let version = dist.filename().version.to_string();
            (dist.name().to_string(), version, "cached")
        })
        .chain(plan.remote.iter().map(|dist| {
            // A distribution named by URL has no version until it is built.
            let version = match dist.version_or_url() {
                VersionOrUrlRef::Version(version) => version.to_string(),
                VersionOrUrlRef::Url(_) => String::new(),
            };
            (dist.name().to_string(), version, "remote")
        }))
        .chain(plan.reinstalls.iter().map(|dist| {
            (
                dist.name().to_string(),
                dist.version().to_string(),
                "reinstall",
            )
        }))
        .collect();
    // uv's planner also lists every installed distribution the resolution does not need as
    // "extraneous"; `pip install` leaves those in place, so they are not part of its plan.
    entries.sort();
    entries
}

/// The lines of an uninstall plan: every distribution it removes.
pub fn removal_entries(removed: &[Pair]) -> Vec<PlanEntry> {
    removed
        .iter()
        .map(|(name, version)| (name.clone(), version.clone(), "extraneous"))
        .collect()
}

/// A plan waiting for the host's decision.
pub struct PendingPlan {
    pub command: Command,
    pub argv: Vec<String>,
    pub request: RunRequest,
    pub cwd: PathBuf,
    pub key: EnvKey,
    /// `None` for an uninstall (nothing to resolve).
    pub kept: Option<KeptResolution>,
    /// The distributions on disk when the plan was made; applying it requires the same.
    pub listing: Listing,
}

/// Plans kept for the host's decision, by id; the oldest go first when too many wait.
#[derive(Default)]
pub struct PendingPlans {
    next_id: u64,
    waiting: BTreeMap<u64, PendingPlan>,
}

/// How many undecided plans are kept (a host that never decides cannot grow the engine).
const KEEP_PLANS: usize = 16;

impl PendingPlans {
    pub fn keep(&mut self, plan: PendingPlan) -> u64 {
        self.next_id += 1;
        self.waiting.insert(self.next_id, plan);
        while self.waiting.len() > KEEP_PLANS {
            self.waiting.pop_first();
        }
        self.next_id
    }

    pub fn take(&mut self, id: u64) -> Result<PendingPlan> {
        self.waiting.remove(&id).ok_or_else(|| {
            FfiError::new(
                ErrorKind::StalePlan,
                format!(
                    "No plan {id} is waiting: it was applied or discarded already, or newer \
                     plans replaced it. Nothing was changed; run the command again."
                ),
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub plan_id: u64,
    /// For `uv_ffi_plan_apply`: record progress events, as `uv_ffi_run`'s `"progress"`.
    #[serde(default)]
    pub progress: bool,
}

/// The error for a plan whose environment changed between planning and applying.
pub fn changed_since(key: &EnvKey) -> FfiError {
    let place = key.target.as_ref().unwrap_or(&key.root);
    FfiError::new(
        ErrorKind::StalePlan,
        format!(
            "The distributions installed in {} changed after the plan was made; nothing was \
             changed. Run the command again for a new plan.",
            place.display()
        ),
    )
}
