//! A swap asked again, made on the caller's thread.
//!
//! A host swapping between a few versions asks the same few questions. When a request comes
//! back to an environment whose view is the one an earlier call resolved it against, the engine
//! thread would reuse that call's resolution and plan (`install::reuse_key`, `replan.rs`), bring
//! back with renames each wheel the stash holds (`stash.rs`), and hard-link again without uv's
//! installer each other one whose tree it learned (`relink.rs`). This module makes exactly those
//! checks, renames and links on the caller's thread, without building what the checks do not
//! read (the HTTP client, the requirements, the settings): each request notes which kept index
//! pages it read ([`Asked`]), and that finds its kept resolution again. When anything does not
//! hold (the pages expired or were read again, the view or the plan's inputs changed, a wheel
//! is neither in the stash nor learned, another process holds the environment's lock), nothing
//! was changed and the call goes to the engine thread as before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use uv_install_wheel::LinkMode;

use crate::archives::Archives;
use crate::command::InstallArgs;
use crate::engine::{Engine, EnvKey};
use crate::environment::EnvState;
use crate::install::{self, CallPolicy, InstallReply};
use crate::profile::Profile;
use crate::stages::{self, Relinkable, Relinks, Renamed};
use crate::stash::{self, Stash, WheelKey};

/// Which kept index pages recent requests read: by the request's memo key (`install::memo_key`),
/// its arguments as parsed, the cache folder they chose and the key of the pages. A request
/// whose arguments now parse differently, or that now chooses another cache folder (a variable
/// changed), is not found.
#[derive(Default)]
pub struct Asked(HashMap<String, Noted>);

struct Noted {
    args: InstallArgs,
    cache_dir: PathBuf,
    pages_key: String,
}

/// How many requests an environment remembers (a host swaps between a few versions).
const KEEP_ASKED: usize = 32;

impl Asked {
    pub fn note(&mut self, memo: &str, args: &InstallArgs, pages_key: &str) {
        if self.0.len() >= KEEP_ASKED && !self.0.contains_key(memo) {
            self.0.clear();
        }
        let noted = Noted {
            args: args.clone(),
            cache_dir: crate::engine::cache_dir(args.cache_dir.as_deref()),
            pages_key: pages_key.to_string(),
        };
        self.0.insert(memo.to_string(), noted);
    }

    fn pages_key(&self, memo: &str, args: &InstallArgs) -> Option<String> {
        let noted = self.0.get(memo)?;
        let same = noted.args == *args
            && noted.cache_dir == crate::engine::cache_dir(args.cache_dir.as_deref());
        same.then(|| noted.pages_key.clone())
    }
}

/// The swap `args` asks for, made by renames when the engine thread would make exactly it (see
/// the module's comment); `None` leaves the call to the engine thread. The caller has already
/// checked the view when the policy asks for it, and found the request not satisfied.
pub fn swap(
    engine: &mut Engine,
    key: &EnvKey,
    args: &InstallArgs,
    memo: &str,
    policy: CallPolicy,
    profile: &mut Profile,
) -> Option<InstallReply> {
    if policy.fresh_index || policy.refresh_index || engine.refresh_index || args.dry_run {
        return None;
    }
    let memory = engine.stash_memory();
    let archives = engine.archives();
    let (indexes, state) = engine.parts(key);
    let pages_key = state.asked.pages_key(memo, args)?;
    let generation = indexes.generation_of(&pages_key, policy.index_ttl)?;
    let reuse = install::reuse_key_of(args, memo, generation, state)?;
    let link_mode = install::link_mode(args).ok()?;
    let stash = Stash::open(state, key, &memory)?;
    let kept = state.resolutions.find(&reuse)?;
    let kept_plan = kept.plan.as_ref()?;
    let keys: Vec<Option<WheelKey>> = kept_plan
        .cached()
        .iter()
        .map(|dist| WheelKey::of(dist, link_mode))
        .collect();
    if keys.is_empty() {
        // Nothing to install: the engine thread remembers the request as satisfied.
        return None;
    }
    let relinks = relinks_for(&archives, state, &keys, link_mode, &stash)?;
    // Only now is a stale snapshot rebuilt (here, as the engine thread would): a version that
    // uv's installer links leaves it to the engine thread without this thread reading the folders.
    state.site_packages().ok()?;
    let kept = state.resolutions.find(&reuse)?;
    let kept_plan = kept.plan.as_ref()?;
    let plan = kept_plan.plan_for(&kept.resolution, state.snapshot()?)?;
    if !args.break_system_packages && install::check_externally_managed(&state.env).is_err() {
        return None;
    }
    // Held, as on the engine thread, while the stash's checks and renames run. A swap killed
    // while another process held the lock is undone first, and the call goes to the engine
    // thread, which reads the environment again.
    let _lock = install::lock_environment_now(key, &state.env)?;
    if let Some(journal) = &state.stash_journal
        && stash::recover_locked(journal)
    {
        state.invalidate();
        return None;
    }
    profile.mark("swap-kept");
    match stages::swap_by_renames(stash, plan, keys, &relinks, state) {
        Renamed::Done {
            installed,
            removed,
            relinked,
        } => {
            indexes.note_reuse();
            state.counters.resolutions_reused += 1;
            state.counters.plans_reused += 1;
            state.counters.swapped_here += 1;
            profile.mark(if relinked > 0 { "relink" } else { "renames" });
            Some(InstallReply::warm(
                key,
                installed,
                removed,
                false,
                false,
                profile.clone(),
            ))
        }
        Renamed::Untouched => None,
        Renamed::Partial => {
            // What moved stands; the engine thread reads the disk again and finishes the call.
            state.invalidate();
            None
        }
    }
}

/// What hard-links again, here, each wheel of `keys` the stash does not hold (`relink.rs`);
/// `None` when one cannot be: a link mode other than hard links, a wheel not from an index, an
/// archive whose tree was not learned (uv's installer links it, on the engine thread).
fn relinks_for(
    archives: &Mutex<Archives>,
    state: &EnvState,
    keys: &[Option<WheelKey>],
    link_mode: LinkMode,
    stash: &Stash,
) -> Option<Relinks> {
    let mut relinks = Relinks::new();
    for key in keys {
        let key = key.as_ref()?;
        if stash.has_entry_for(key) {
            continue;
        }
        if link_mode != LinkMode::Hardlink {
            return None;
        }
        let mut archives = archives.lock().ok()?;
        let tree = archives.relink(&key.archive)?;
        let layout = state.env.interpreter().layout();
        let dist_info = archives.dist_info(&layout, &key.archive)?;
        let relinkable = Relinkable {
            tree,
            site: dist_info.parent()?.to_path_buf(),
            linked: archives.linked_files(&key.archive),
        };
        relinks.insert(key.archive.clone(), relinkable);
    }
    Some(relinks)
}
