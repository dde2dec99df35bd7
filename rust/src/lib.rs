//! uv-ffi: uv's resolver and installer kept resident in memory, behind a C ABI of JSON-in /
//! JSON-out functions (see `include/uv_ffi.h`).

pub mod abi;
mod archives;
mod capture;
mod command;
mod config;
#[cfg(target_os = "linux")]
mod config_watch;
mod engine;
mod environment;
mod error;
mod fallback;
mod fast_read;
mod fast_swap;
mod fork;
mod guard;
mod index;
mod install;
mod logging;
mod network;
mod ops;
mod parsed;
mod plan;
mod profile;
mod progress;
mod read;
mod reflink;
mod relink;
mod replan;
mod request;
mod spare;
mod stages;
mod staging;
mod stash;
mod uninstall;
mod vars;
mod watch;
