//! uv-ffi: uv's resolver and installer kept resident in memory, behind a C ABI of JSON-in /
//! JSON-out functions (see `include/uv_ffi.h`).

pub mod abi;
mod command;
mod engine;
mod environment;
mod error;
mod guard;
mod index;
mod install;
mod logging;
mod ops;
mod profile;
mod uninstall;
