//! [`FileBytes`]: the contents of a file the tracer parses (the target's executable, the
//! objects it maps), mapped read-only instead of read into memory.
//!
//! Why: a 50 MB Go executable read into a `Vec` is 50 MB of the tracer's resident memory
//! while it is planned, and its pclntab copied out is 14 MB more for the whole session. A
//! private read-only mapping costs only the pages actually touched, those pages are the
//! page cache's (clean, dropped under memory pressure and read again), and
//! [`FileBytes::release_resident`] gives them back once planning is done. Slices of one
//! mapping ([`FileSlice`]) let the Go symbol table keep the pclntab for the session
//! without a copy.
//!
//! Caveat: a mapped file that is truncated while mapped makes reads past its new end fault
//! (`SIGBUS`). An executable cannot be written while a process runs it (`ETXTBSY`), so this
//! can only happen after the target exited, by rewriting the binary in place in the moment
//! before the tracer notices the exit and finishes its report.

use std::{fs::File, io, ops::Deref, os::fd::AsRawFd as _, sync::Arc};

/// A file's bytes: mapped from the file, or owned (tests, empty files).
pub struct FileBytes {
    backing: Backing,
}

enum Backing {
    /// `len` bytes mapped at `addr` (`PROT_READ`, `MAP_PRIVATE`), unmapped on drop.
    Mapped {
        addr: *mut libc::c_void,
        len: usize,
    },
    Owned(Vec<u8>),
}

// SAFETY: the mapping is read-only and private, never written through, and unmapped only
// when the value is dropped: sharing `&[u8]` views of it between threads is as sound as
// sharing a `Vec<u8>`'s.
unsafe impl Send for FileBytes {}
// SAFETY: as above; no method mutates the bytes.
unsafe impl Sync for FileBytes {}

impl FileBytes {
    /// Maps all of `file` read-only. An empty file is an empty value (`mmap` refuses a
    /// zero length).
    ///
    /// # Errors
    /// When the file's size cannot be read or the mapping is refused.
    pub fn map(file: &File) -> io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
        if len == 0 {
            return Ok(Self::from(Vec::new()));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) of a file descriptor we
        // hold; the result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            backing: Backing::Mapped { addr, len },
        })
    }

    /// Opens and maps the file at `path`.
    ///
    /// # Errors
    /// When it cannot be opened or mapped.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        Self::map(&File::open(path)?)
    }

    /// Drops the pages of a mapping from this process's resident memory: the next read of
    /// a byte maps its page again from the page cache (or the file). For use after a pass
    /// over most of the file, whose pages the rest of the session will not read again.
    /// Nothing happens to owned bytes.
    pub fn release_resident(&self) {
        if let Backing::Mapped { addr, len } = self.backing {
            // SAFETY: the range is exactly our mapping; `MADV_DONTNEED` on a private
            // read-only file mapping drops page-table entries only, and later reads see
            // the file's contents again (nothing was ever written to the mapping).
            let _ = unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) };
        }
    }

    /// A view of `range` of these bytes that keeps them alive; `None` when the range is
    /// not inside them.
    #[must_use]
    pub fn slice(self: &Arc<Self>, range: std::ops::Range<usize>) -> Option<FileSlice> {
        self.get(range.clone())?;
        Some(FileSlice {
            bytes: Arc::clone(self),
            range,
        })
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            backing: Backing::Owned(bytes),
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.backing {
            // SAFETY: `addr..addr + len` is mapped readable for as long as `self` lives.
            Backing::Mapped { addr, len } => unsafe {
                std::slice::from_raw_parts(addr.cast::<u8>().cast_const(), *len)
            },
            Backing::Owned(bytes) => bytes,
        }
    }
}

impl Drop for FileBytes {
    fn drop(&mut self) {
        if let Backing::Mapped { addr, len } = self.backing {
            // SAFETY: our mapping, no longer borrowed (we are being dropped).
            let _ = unsafe { libc::munmap(addr, len) };
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Mapped { .. } => "mapped",
            Backing::Owned(_) => "owned",
        };
        write!(f, "FileBytes({kind}, {} bytes)", self.len())
    }
}

/// A range of a [`FileBytes`], sharing it.
#[derive(Clone)]
pub struct FileSlice {
    bytes: Arc<FileBytes>,
    range: std::ops::Range<usize>,
}

impl FileSlice {
    /// Owned bytes as a slice of their own (for data that does not come from a file).
    #[must_use]
    pub fn copy_of(bytes: &[u8]) -> Self {
        Self {
            range: 0..bytes.len(),
            bytes: Arc::new(FileBytes::from(bytes.to_vec())),
        }
    }
}

impl Deref for FileSlice {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // The range was checked when the slice was made and the bytes never change.
        self.bytes.get(self.range.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileSlice({:?} of {:?})", self.range, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the mapping against reading other bytes than the file's, the slices against
    /// ranges outside it, and the release of resident pages against changing what is
    /// read afterwards.
    #[test]
    fn mapped_bytes_are_the_files() {
        let exe = std::env::current_exe().expect("the test binary");
        let read = std::fs::read(&exe).expect("readable test binary");
        let mapped = Arc::new(FileBytes::open(&exe).expect("mappable test binary"));
        assert_eq!(&mapped[..], &read[..]);
        let head = mapped.slice(0..4).expect("in range");
        assert_eq!(&head[..], b"\x7fELF");
        assert!(mapped.slice(0..read.len() + 1).is_none());
        mapped.release_resident();
        assert_eq!(&mapped[..], &read[..], "bytes read again after the release");
        assert_eq!(&head[..], b"\x7fELF");
        let empty = tempfile::NamedTempFile::new().expect("a temp file");
        assert!(
            FileBytes::open(empty.path())
                .expect("empty file")
                .is_empty()
        );
        assert!(FileBytes::open(std::path::Path::new("/nonexistent/file")).is_err());
        assert_eq!(&FileSlice::copy_of(b"abc")[..], b"abc");
    }
}
