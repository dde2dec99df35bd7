//! Link order: the library's code that a host runs is laid out together.
//!
//! A process's resident memory holds every page of the library's code it has touched, and the
//! kernel maps the 64 KiB around each page it faults in. Laid out as the compiler emits it, the
//! code a host runs is spread over most of the library's 31 MB. `link-order.txt` names the
//! functions a host session runs (written by `benchmarks/link_order.py`, which records them
//! under valgrind); LLD's `--symbol-ordering-file` puts them first, side by side.
//!
//! Only a layout: a function the file does not name (after a change of code) is laid out after
//! those it names, and a build whose linker is not rustc's own LLD (another target, a linker
//! chosen in the configuration) links in the compiler's order.

use std::path::PathBuf;

const ORDER_FILE: &str = "link-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-changed=build.rs");
    for variable in [
        "UV_FFI_NO_LINK_ORDER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={variable}");
    }
    // Cargo.toml's `strip = "symbols"` is not applied to this crate: a per-package override
    // of the profile (`[profile.release.package.uv-ffi]`) drops it. Symbols are 14 MB of a
    // 64 MB library that no host reads.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--strip-all");
    }
    if !links_with_rust_lld() {
        return;
    }
    // Where each function landed, beside the library (`<target>/<profile>/libuv_ffi.map`): read
    // by `link_order.py` and by the test that checks the file against the build.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let map = profile_dir.join("libuv_ffi.map");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Map={}", map.display());
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = manifest_dir.join(ORDER_FILE);
    if std::env::var_os("UV_FFI_NO_LINK_ORDER").is_none() && order.is_file() {
        let order = order.display();
        println!("cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={order}");
        // Names the file holds that this build does not (another version's) are expected.
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc links with its own LLD: its default for x86_64 Linux (GNU) since Rust 1.90,
/// unless the build's flags or configuration choose a linker.
fn links_with_rust_lld() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let chosen = ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|word| flags.contains(word));
    target == "x86_64-unknown-linux-gnu"
        && !chosen
        // Set by cargo when its configuration names a linker.
        && std::env::var_os("RUSTC_LINKER").is_none()
}
