//! Every function the library exports. Each one takes a borrowed UTF-8 JSON request and returns
//! a UTF-8 JSON envelope that the caller owns and frees with `uv_ffi_string_free`.
//! The declarations live in `include/uv_ffi.h`; keep the two in step.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int};

use crate::guard::{self, call};
use crate::ops;

/// Library and ABI version. Request: `{}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_info(request: *const c_char) -> *mut c_char {
    // SAFETY: the caller passes NULL or a NUL-terminated string alive for the call.
    unsafe { call(request, ops::info) }
}

/// Tokenize and parse a command without running it. Request: `{"command": str}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_parse(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::parse) }
}

/// Run a command. Request: `{"command": str, "cwd"?: str, "check"?: bool, "heal"?: bool}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_run(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { guard::call_on_text(request, ops::run_text) }
}

/// Read an environment's view. Request: `{"python"?: str, "check"?: bool}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_view_get(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::view_get) }
}

/// Apply a known delta to a view. Request: `{"python"?: str, "installed": [[n, v]], "removed": [[n, v]]}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_view_patch(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::view_patch) }
}

/// Drop a view so the next use rescans. Request: `{"python"?: str}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_view_invalidate(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::view_invalidate) }
}

/// Stamps of the folders a view is built from. Request: `{"python"?: str}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_view_fingerprint(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::view_fingerprint) }
}

/// Make the next resolution revalidate every index page. Request: `{}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_index_clear(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::index_clear) }
}

/// Panic on the engine thread (for tests of the boundary). Request: `{}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_debug_panic(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::debug_panic) }
}

/// Forget the views of `--target` folders. Request: `{"target"?: str}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_view_forget(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::view_forget) }
}

/// Empty the stash of swapped-out versions. Request: `{"python"?: str, "target"?: str}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_stash_clear(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::stash_clear) }
}

/// Carry out a plan kept by `uv_ffi_run` with `"plan": true`. Request: `{"plan_id": int}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_plan_apply(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::plan_apply) }
}

/// Drop a kept plan. Request: `{"plan_id": int}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_plan_discard(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::plan_discard) }
}

/// The progress of the running call, from any thread. Request: `{"stop"?: bool}`.
///
/// # Safety
/// `request` is NULL or a NUL-terminated string valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_progress(request: *const c_char) -> *mut c_char {
    // SAFETY: as above.
    unsafe { call(request, ops::progress_poll) }
}

/// Free a string returned by any `uv_ffi_*` function. NULL is allowed.
///
/// # Safety
/// `text` is NULL or a reply of this library that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uv_ffi_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: `text` came from `CString::into_raw` in this library and is freed once.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// `out_json` or `cmd` is NULL, or `max_out` is below [`MIN_OUT`]; nothing was run.
pub const UV_FFI_ERR_INVALID_ARGUMENT: c_int = -1;
/// The command ran but its changelog does not fit in `max_out` bytes.
pub const UV_FFI_ERR_BUFFER_TOO_SMALL: c_int = -2;
/// The smallest buffer accepted, large enough for the buffer-too-small reply itself.
pub const MIN_OUT: c_int = 64;

/// Upstream-compatible entry point: run `cmd`, write `{"installed": [[n, v]], "removed": [[n, v]],
/// "error": str, "stdout"?: str}` into `out_json` (NUL-terminated, never more than `max_out`
/// bytes) and return the exit code.
///
/// # Safety
/// `cmd` is NULL or a NUL-terminated string valid during the call; `out_json` is NULL or
/// points to at least `max_out` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn omnipkg_uv_run_c(
    cmd: *const c_char,
    out_json: *mut c_char,
    max_out: c_int,
) -> c_int {
    if cmd.is_null() || out_json.is_null() || max_out < MIN_OUT {
        return UV_FFI_ERR_INVALID_ARGUMENT;
    }
    let _inside = guard::enter();
    let outcome = std::panic::catch_unwind(|| {
        // SAFETY: `cmd` is non-NULL and NUL-terminated per the contract.
        let line = unsafe { guard::read_input(cmd) }?;
        ops::run(ops::RunRequest::with_defaults(line.to_string()))
    })
    .unwrap_or_else(|payload| Err(guard::panic_error(payload.as_ref())));
    let capacity = usize::try_from(max_out).unwrap_or(0);
    let (code, text) = upstream_reply(outcome, capacity);
    let bytes = text.as_bytes();
    let len = bytes.len().min(capacity - 1);
    // SAFETY: `out_json` points to at least `max_out` writable bytes, and `len + 1 <= max_out`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out_json.cast::<u8>(), len);
        *out_json.add(len) = 0;
    }
    code
}

/// The upstream reply `{"installed", "removed", "error", "stdout"?}` for an outcome, with its
/// exit code, or the buffer-too-small reply (`-2`) when it does not fit in `capacity` bytes
/// (NUL included). `stdout` travels only when the command printed something and it fits.
fn upstream_reply(
    outcome: Result<crate::install::InstallReply, crate::error::FfiError>,
    capacity: usize,
) -> (c_int, String) {
    let (code, installed, removed, error, stdout) = match outcome {
        Ok(reply) => (
            reply.exit_code,
            reply.installed,
            reply.removed,
            String::new(),
            reply.stdout,
        ),
        Err(err) => (
            err.exit_code,
            Vec::new(),
            Vec::new(),
            err.message,
            err.stdout.unwrap_or_default(),
        ),
    };
    let mut reply = serde_json::json!({"installed": installed, "removed": removed, "error": error});
    let mut text = reply.to_string();
    if !stdout.is_empty() {
        reply["stdout"] = serde_json::Value::String(stdout);
        let with_stdout = reply.to_string();
        if with_stdout.len() < capacity {
            text = with_stdout;
        }
    }
    if text.len() < capacity {
        return (code, text);
    }
    let needed = text.len() + 1;
    (
        UV_FFI_ERR_BUFFER_TOO_SMALL,
        format!(r#"{{"error":"buffer_too_small","needed":{needed}}}"#),
    )
}
