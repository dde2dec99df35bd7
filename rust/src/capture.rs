//! Capturing what uv's own command line prints, so it reaches the caller in the reply.
//!
//! uv writes through Rust's `stdout`/`stderr`, that is to file descriptors 1 and 2, with no hook
//! to redirect it. While a command runs through uv's command line, descriptors 1 and 2 are
//! pointed at anonymous temporary files and restored afterwards.
//!
//! Limits (documented in the README): the redirection is process-wide, so anything another
//! thread of the host writes to descriptor 1 or 2 during that call lands in the reply instead
//! of the terminal. C `stdio` buffers are flushed before and after, so nothing the host had
//! buffered is captured. Only one capture runs at a time (the engine thread runs one command
//! at a time).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Text a command printed.
#[derive(Debug, Default, Clone)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

/// Descriptors 1 and 2 redirected into files until [`Capture::finish`] (or drop) restores them.
pub struct Capture {
    saved: [Option<OwnedFd>; 2],
    files: [File; 2],
}

const TARGETS: [RawFd; 2] = [1, 2];

impl Capture {
    pub fn start() -> std::io::Result<Self> {
        flush_everything();
        let files = [tempfile::tempfile()?, tempfile::tempfile()?];
        let mut saved = [None, None];
        for (index, target) in TARGETS.into_iter().enumerate() {
            // SAFETY: `dup` of a descriptor number; a closed one gives -1, which is kept as None.
            let copy = unsafe { libc::dup(target) };
            // SAFETY: `copy` is a fresh descriptor owned by no one else.
            saved[index] = (copy >= 0).then(|| unsafe { OwnedFd::from_raw_fd(copy) });
            // SAFETY: both descriptors are open; dup2 replaces `target` atomically.
            if unsafe { libc::dup2(files[index].as_raw_fd(), target) } < 0 {
                let err = std::io::Error::last_os_error();
                let partial = Self { saved, files };
                drop(partial);
                return Err(err);
            }
        }
        Ok(Self { saved, files })
    }

    /// Restore descriptors 1 and 2 and return what was written to them.
    pub fn finish(mut self) -> Printed {
        self.restore();
        let [stdout, stderr] = &mut self.files;
        Printed {
            stdout: read_all(stdout),
            stderr: read_all(stderr),
        }
    }

    fn restore(&mut self) {
        flush_everything();
        for (index, target) in TARGETS.into_iter().enumerate() {
            if let Some(fd) = self.saved[index].take() {
                // SAFETY: `fd` is the descriptor saved in `start`, still open.
                unsafe { libc::dup2(fd.as_raw_fd(), target) };
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Flush Rust's and C's buffered output, so that text lands on the descriptor it was meant for.
fn flush_everything() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every open C stream; it takes the streams' own locks.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

fn read_all(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
