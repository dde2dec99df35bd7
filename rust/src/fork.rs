//! Fork safety: a child forked while another thread is inside a call must neither hang nor see
//! state copied in the middle of a change.
//!
//! `pthread_atfork` handlers take every lock of this library before the fork (so no lock is
//! held by a thread that will not exist in the child, and no state is mid-change), and release
//! them afterwards in both processes. In the child the parent's engine is forgotten without
//! running its destructors (its threads do not exist there); the child's first call starts a
//! fresh engine of its own. A fork waits for a call that is running to finish.
//!
//! The forking thread's random generator is reseeded in the child. `tempfile` draws the names
//! of its temporary files from it, and uv renames such a file into place and then drops it, which
//! removes whatever now has its old name. Two children of one parent would otherwise draw the
//! same names in the same shared cache folder, and one child would delete the other's file
//! (a pool's interpreter query failed with "failed to rename file ... No such file").
//!
//! The child's installs use the fresh engine's own rayon pool. uv's command line in a child
//! would use rayon's global pool, whose threads stayed in the parent, so those commands are
//! refused there with a clear error (`fallback.rs`).

use std::cell::RefCell;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::engine::{self, Engine, Handle};

/// The process that installed the handlers: a different pid means this is a forked child.
static FIRST_PID: AtomicU32 = AtomicU32::new(0);

/// The locks held across a fork, by the forking thread.
struct Held {
    _parse: crate::request::ParserLocks,
    _probe: crate::config::ProbeLock,
    handle: MutexGuard<'static, Option<Handle>>,
    engine: MutexGuard<'static, Option<Engine>>,
    _progress: crate::progress::LogLock,
    _requests: crate::parsed::KeptLock,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Register the handlers, once per process however often it is called (the first call into the
/// library calls it). Twice would take every lock twice before a fork: a deadlock.
pub fn install_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        FIRST_PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: the three functions are `extern "C"`, never unwind and live for the whole
        // process.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            );
        }
    });
}

/// True in a process forked from the one whose engine ran first.
pub fn in_forked_child() -> bool {
    let first = FIRST_PID.load(Ordering::Relaxed);
    first != 0 && first != std::process::id()
}

/// Always the same order; the only code path that holds two of these at once (a call holding
/// the engine records progress) takes them in this order too, so this cannot deadlock.
extern "C" fn before_fork() {
    let held = std::panic::catch_unwind(|| Held {
        _parse: crate::request::lock_parser(),
        _probe: crate::config::lock_probe(),
        handle: engine::lock_handle(),
        engine: engine::lock_engine(),
        _progress: crate::progress::lock_log(),
        _requests: crate::parsed::lock_kept(),
    });
    if let Ok(held) = held {
        HELD.with(|slot| *slot.borrow_mut() = Some(held));
    }
}

/// Give this thread's generator a state no other child of the parent has: the pid decides it.
fn reseed_random_names() {
    let pid = u64::from(std::process::id());
    fastrand::seed(fastrand::get_seed() ^ pid.wrapping_mul(0x9E37_79B9_7F4A_7C15));
}

extern "C" fn after_fork_parent() {
    let _ = std::panic::catch_unwind(|| HELD.with(|slot| drop(slot.borrow_mut().take())));
}

extern "C" fn after_fork_child() {
    let _ = std::panic::catch_unwind(|| {
        reseed_random_names();
        HELD.with(|slot| {
            if let Some(mut held) = slot.borrow_mut().take() {
                engine::forget_parent_engine(&mut held.handle, &mut held.engine);
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The name `tempfile` gives the next temporary file made in `folder` by this thread.
    fn next_temporary_name(folder: &Path) -> String {
        std::fs::create_dir_all(folder).unwrap();
        let file = tempfile::Builder::new().tempfile_in(folder).unwrap();
        file.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_forked_child_draws_other_temporary_names_than_its_parent() {
        super::install_handlers();
        let scratch = tempfile::tempdir().unwrap();
        // The thread's generator exists before the fork, as in a host whose call made a file.
        next_temporary_name(&scratch.path().join("before"));
        let child_report = scratch.path().join("child.txt");
        // SAFETY: the child only makes a file, writes one and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let name = next_temporary_name(&scratch.path().join("child"));
            let written = std::fs::write(&child_report, name).is_ok();
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(if written { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        let parent_name = next_temporary_name(&scratch.path().join("parent"));
        let mut status = 0;
        // SAFETY: waits for the child made above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let child_name = std::fs::read_to_string(&child_report).unwrap();
        assert!(child_name.starts_with(".tmp"), "{child_name}");
        assert_ne!(child_name, parent_name);
    }
}
