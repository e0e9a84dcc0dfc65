//! Standard error held back while the view owns the screen.
//!
//! The session, the logger and the panic message write to standard error; on the view's
//! screen a line would land among the table and stay there (ratatui redraws only the
//! cells it changed). While the view is up, file descriptor 2 points to an in-memory file;
//! when the view ends (the terminal restored first), it points back and what was held is
//! written out.

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// Bytes of held messages written out at most: a flood would only bury the last lines.
const MAX_REPLAYED: u64 = 64 * 1024;

/// Holds standard error until dropped.
#[derive(Debug)]
pub struct HeldStderr {
    /// The descriptor standard error had (a copy).
    saved: OwnedFd,
    /// Where it goes meanwhile.
    held: File,
}

impl HeldStderr {
    /// Points standard error to an in-memory file.
    ///
    /// # Errors
    /// When the kernel refuses the file or the descriptors.
    pub fn hold() -> io::Result<Self> {
        // SAFETY: a NUL-terminated name and valid flags; no other pointer.
        let fd = unsafe { libc::memfd_create(c"tracer-top-stderr".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created here and belongs to nothing else.
        let held = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: descriptor 2 is a plain integer argument; a copy of it is returned.
        let saved = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `saved` was just created here and belongs to nothing else.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // SAFETY: both descriptors are open; 2 is replaced atomically.
        if unsafe { libc::dup2(held.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { saved, held })
    }
}

impl Drop for HeldStderr {
    fn drop(&mut self) {
        // SAFETY: both descriptors are open; 2 gets its own back.
        if unsafe { libc::dup2(self.saved.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return;
        }
        let mut held = Vec::new();
        if self.held.seek(SeekFrom::Start(0)).is_ok() {
            // What cannot be read back is lost, as a message to a closed terminal would be.
            let _ = (&self.held).take(MAX_REPLAYED).read_to_end(&mut held);
        }
        let _ = io::stderr().write_all(&held);
    }
}
