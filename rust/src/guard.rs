//! The boundary: JSON in, JSON envelope out, and no panic crosses into C.
//!
//! Every reply is `{"ok": true, "value": ...}` or `{"ok": false, "error": {...}}`. Errors travel
//! in the reply itself rather than in a thread-local slot, because the work runs on the engine's
//! own threads.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, FfiError};

/// The reply used when even serialising an error fails (it cannot, but C must get valid JSON).
const LAST_RESORT: &str = r#"{"ok":false,"error":{"kind":"internal","message":"failed to serialise the reply","hints":[],"exit_code":1}}"#;

#[derive(Serialize)]
struct Ok<'a, T: Serialize> {
    ok: bool,
    value: &'a T,
}

#[derive(Serialize)]
struct Err<'a> {
    ok: bool,
    error: &'a FfiError,
}

/// Serialise an outcome as the reply envelope, ready for C.
///
/// It is written into this thread's buffer, then copied into an allocation of exactly its
/// size: a `String` grown while writing, then made a `CString`, would reallocate three or four
/// times per reply.
pub fn envelope<T: Serialize>(outcome: &Result<T, FfiError>) -> CString {
    thread_local! {
        static WRITTEN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    WRITTEN.with_borrow_mut(|written| {
        written.clear();
        let serialised = match outcome {
            Result::Ok(value) => serde_json::to_writer(&mut *written, &Ok { ok: true, value }),
            Result::Err(error) => serde_json::to_writer(&mut *written, &Err { ok: false, error }),
        };
        let reply = match serialised {
            Result::Ok(()) => c_string(written),
            Result::Err(_) => last_resort(),
        };
        if written.capacity() > KEEP_WRITTEN {
            // A large reply (a long listing) once does not stay resident.
            *written = Vec::new();
        }
        reply
    })
}

/// The largest buffer [`envelope`] keeps between replies.
const KEEP_WRITTEN: usize = 64 * 1024;

/// A copy of `bytes` with a NUL after them, in one allocation of that size. JSON never contains
/// a raw NUL, but be safe if it somehow does.
fn c_string(bytes: &[u8]) -> CString {
    let mut copy = Vec::with_capacity(bytes.len() + 1);
    copy.extend_from_slice(bytes);
    copy.push(0);
    CString::from_vec_with_nul(copy).unwrap_or_else(|_| last_resort())
}

fn last_resort() -> CString {
    CString::new(LAST_RESORT).expect("constant has no NUL")
}

/// Read a borrowed, NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `input` must be NULL or point to a NUL-terminated string that lives for the call.
pub unsafe fn read_input<'a>(input: *const c_char) -> Result<&'a str, FfiError> {
    if input.is_null() {
        return Err(FfiError::new(
            ErrorKind::InvalidJson,
            "The request is a NULL pointer",
        ));
    }
    // SAFETY: the caller promises a NUL-terminated string alive for the call.
    let bytes = unsafe { CStr::from_ptr(input) };
    bytes.to_str().map_err(|err| {
        FfiError::new(
            ErrorKind::InvalidJson,
            format!("The request is not UTF-8: {err}"),
        )
    })
}

/// Parse a request, run `op`, and return the envelope. Panics become `{"kind": "panic"}`.
pub fn call_str<Req, Resp>(
    input: Result<&str, FfiError>,
    op: impl FnOnce(Req) -> Result<Resp, FfiError>,
) -> CString
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    call_text(input, |text| op(parse_request(text)?))
}

/// Run `op` on the request's text (it reads the request itself) and return the envelope.
/// Panics become `{"kind": "panic"}`.
pub fn call_text<Resp: Serialize>(
    input: Result<&str, FfiError>,
    op: impl FnOnce(&str) -> Result<Resp, FfiError>,
) -> CString {
    let _inside = enter();
    let outcome = catch_unwind(AssertUnwindSafe(|| op(input?)))
        .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())));
    catch_unwind(AssertUnwindSafe(|| envelope(&outcome))).unwrap_or_else(|_| last_resort())
}

/// A request: a JSON object of `Req`'s fields.
pub fn parse_request<Req: DeserializeOwned>(text: &str) -> Result<Req, FfiError> {
    // Every request is a JSON object: serde would also read an array positionally, field by
    // field, which no caller means.
    if !text.trim_start().starts_with('{') {
        return Err(FfiError::new(
            ErrorKind::InvalidJson,
            "Invalid request: expected a JSON object",
        ));
    }
    serde_json::from_str(text)
        .map_err(|err| FfiError::new(ErrorKind::InvalidJson, format!("Invalid request: {err}")))
}

/// The C-facing wrapper of [`call_str`]: the returned string belongs to the caller, who frees it
/// with `uv_ffi_string_free`.
///
/// # Safety
/// As for [`read_input`].
pub unsafe fn call<Req, Resp>(
    input: *const c_char,
    op: impl FnOnce(Req) -> Result<Resp, FfiError>,
) -> *mut c_char
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    // SAFETY: forwarded from the caller.
    call_str(unsafe { read_input(input) }, op).into_raw()
}

/// A request's text, for an op that reads it itself (see [`call_on_text`]): a `Req`, as JSON.
pub struct RequestText<'a, Req> {
    pub text: &'a str,
    request: std::marker::PhantomData<Req>,
}

/// The C-facing wrapper of [`call_text`], for an op that reads its `Req` itself (to keep what
/// it read, say).
///
/// # Safety
/// As for [`read_input`].
pub unsafe fn call_on_text<Req, Resp: Serialize>(
    input: *const c_char,
    op: impl FnOnce(RequestText<'_, Req>) -> Result<Resp, FfiError>,
) -> *mut c_char {
    let op = |text: &str| {
        op(RequestText {
            text,
            request: std::marker::PhantomData,
        })
    };
    // SAFETY: forwarded from the caller.
    call_text(unsafe { read_input(input) }, op).into_raw()
}

/// Describe a caught panic payload.
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> FfiError {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    FfiError::new(ErrorKind::Panic, format!("The engine panicked: {detail}"))
}

/// Set up what must be in place before any entry point runs, once per process: the scoped
/// panic hook and the fork handlers. Returns a guard that marks this thread as inside a call
/// of this library until it is dropped.
pub fn enter() -> Inside {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        install_scoped_panic_hook();
        crate::fork::install_handlers();
    });
    DEPTH.with(|depth| depth.set(depth.get() + 1));
    Inside(())
}

thread_local! {
    /// How deep this thread is inside the library's entry points.
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as running a call of this library (see [`enter`]).
pub struct Inside(());

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Whether a panic on the current thread is this library's: raised inside one of its calls, or
/// on one of its threads (the engine thread and its runtime's and rayon pool's threads) or
/// uv's (the resolver's, the cache reader's).
fn panic_is_ours() -> bool {
    DEPTH.with(std::cell::Cell::get) > 0
        || std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("uv-"))
}

/// A panic of this library is caught and reported in the reply, so it stays off the host's
/// terminal (unless `UV_FFI_LOG=1`); every other panic in the process goes to the hook that was
/// there before, untouched.
fn install_scoped_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !panic_is_ours() || crate::logging::enabled() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Panics seen by the hook that was in place before the library's.
    static SEEN_BY_HOST_HOOK: AtomicUsize = AtomicUsize::new(0);

    fn panic_on_a_thread(name: &str, inside_a_call: bool) {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _inside = inside_a_call.then(enter);
                let _ = std::panic::catch_unwind(|| panic!("test panic"));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn only_the_librarys_own_panics_are_kept_from_the_hosts_hook() {
        std::panic::set_hook(Box::new(|_| {
            SEEN_BY_HOST_HOOK.fetch_add(1, Ordering::SeqCst);
        }));
        drop(enter()); // installs the library's hook on top of the host's
        let before = SEEN_BY_HOST_HOOK.load(Ordering::SeqCst);
        panic_on_a_thread("host-worker", false);
        assert_eq!(SEEN_BY_HOST_HOOK.load(Ordering::SeqCst), before + 1);
        panic_on_a_thread("host-worker", true);
        panic_on_a_thread("uv-ffi-engine", false);
        assert_eq!(SEEN_BY_HOST_HOOK.load(Ordering::SeqCst), before + 1);
        panic_on_a_thread("another-host-thread", false);
        assert_eq!(SEEN_BY_HOST_HOOK.load(Ordering::SeqCst), before + 2);
    }
}
