//! Index pages kept in memory between calls.
//!
//! uv keeps what it learns about an index (version lists, wheel metadata) in a `SharedState`
//! that it normally throws away after one command. The engine keeps one per interpreter and index
//! configuration, together with the registry client (and its connection pools) and the
//! `--find-links` listing, so a warm call resolves without any HTTP.
//!
//! Freshness rules:
//! - kept pages expire after a time-to-live chosen by the caller;
//! - `--upgrade`, `--reinstall` and `index_clear` always read fresh pages;
//! - any failed call drops the pages it used (uv's in-memory index also remembers failures), and
//!   tells the caller that a retry with fresh pages may succeed (for example, a version published
//!   after the pages were read).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uv_client::RegistryClient;
use uv_dispatch::SharedState;
use uv_resolver::FlatIndex;

use crate::plan::KeptResolutions;

/// What one call resolves against.
#[derive(Clone)]
pub struct IndexPages {
    pub client: RegistryClient,
    pub flat_index: FlatIndex,
    pub state: SharedState,
    created: Instant,
    /// Which kept pages these are (0: read for this call, not kept yet). Two calls that see the
    /// same generation resolve against the same pages.
    pub generation: u64,
    /// Resolutions of recent installs into empty `--target` folders against these pages, shared
    /// by every such folder: their inputs leave the folder's path out (`install::reuse_key`).
    pub target_resolutions: Arc<Mutex<KeptResolutions>>,
}

impl IndexPages {
    pub fn new(client: RegistryClient, flat_index: FlatIndex, state: SharedState) -> Self {
        Self {
            client,
            flat_index,
            state,
            created: Instant::now(),
            generation: 0,
            target_resolutions: Arc::default(),
        }
    }
}

/// Counters of what the kept pages did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexCounters {
    /// Calls that resolved against kept pages.
    pub reused: u64,
    /// Calls that read fresh pages (first use, expiry, refresh, or after a drop).
    pub fresh: u64,
    /// Kept pages dropped because a call using them failed.
    pub dropped_after_failure: u64,
    /// Kept pages dropped because they outlived their time-to-live.
    pub expired: u64,
}

#[derive(Default)]
pub struct KeptIndexes {
    pages: HashMap<String, IndexPages>,
    pub counters: IndexCounters,
    last_generation: u64,
}

impl KeptIndexes {
    /// The generation of the pages kept for `key`, if they exist and are younger than `ttl`,
    /// without counting a use (the caller counts one with [`KeptIndexes::note_reuse`]).
    pub fn generation_of(&self, key: &str, ttl: Duration) -> Option<u64> {
        let pages = self.pages.get(key)?;
        (pages.created.elapsed() <= ttl).then_some(pages.generation)
    }

    /// A call used kept pages without taking them ([`KeptIndexes::generation_of`]).
    pub fn note_reuse(&mut self) {
        self.counters.reused += 1;
    }

    /// Kept pages for `key`, if they exist and are younger than `ttl`.
    pub fn get(&mut self, key: &str, ttl: Duration) -> Option<IndexPages> {
        let pages = self.pages.get(key)?;
        if pages.created.elapsed() > ttl {
            self.pages.remove(key);
            self.counters.expired += 1;
            return None;
        }
        self.counters.reused += 1;
        Some(pages.clone())
    }

    /// Keep pages for later calls (a fresh read replaces older pages).
    pub fn keep(&mut self, key: String, mut pages: IndexPages) {
        self.last_generation += 1;
        pages.generation = self.last_generation;
        self.pages.insert(key, pages);
    }

    /// A call using these pages failed: forget them.
    pub fn drop_after_failure(&mut self, key: &str) {
        if self.pages.remove(key).is_some() {
            self.counters.dropped_after_failure += 1;
        }
    }

    pub fn clear(&mut self) {
        self.pages.clear();
    }
}
