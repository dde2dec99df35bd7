//! Per-phase timing of one call, returned in the reply and printed to stderr when
//! `UV_FFI_PROFILE=1`, so a slow phase can be found.

use std::time::Instant;

#[derive(Clone)]
pub struct Profile {
    last: Instant,
    phases: Vec<(&'static str, u64)>,
}

impl Profile {
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            phases: Vec::with_capacity(16),
        }
    }

    /// Close the current phase under `name`.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let micros = u64::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u64::MAX);
        self.phases.push((name, micros));
        self.last = now;
    }

    /// The phases in order, in microseconds.
    pub fn finish(self) -> Vec<(&'static str, u64)> {
        if enabled() {
            let total: u64 = self.phases.iter().map(|(_, us)| us).sum();
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|(name, us)| format!("{name}={:.3}ms", *us as f64 / 1000.0))
                .collect();
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "[uv-ffi profile] total={:.3}ms {}",
                    total as f64 / 1000.0,
                    parts.join(" ")
                );
            }
        }
        self.phases
    }
}

fn enabled() -> bool {
    crate::vars::switched_on(c"UV_FFI_PROFILE")
}
