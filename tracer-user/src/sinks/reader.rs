//! Whether whatever reads the output is still there.
//!
//! A closed pipe is otherwise only seen by the next write to it (`EPIPE`), and a trace
//! may have nothing more to write for as long as it runs: `tracer attach … | head -1`
//! on a deadlocked target writes the deadlock line, then nothing until the end, so the
//! tracer would stay attached, its probes loaded, with nobody to read the report. The
//! session asks [`ReaderWatch::reader_gone`] at its periodic checks instead.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd as _},
        unix::fs::FileTypeExt as _,
    },
};

/// A watch on the reading end of the output: a duplicate of the output's descriptor,
/// polled for hang-up.
#[derive(Debug)]
pub struct ReaderWatch {
    output: File,
}

impl ReaderWatch {
    /// A watch on standard output's reader, when standard output is a pipe or a socket
    /// (a file or a terminal has no reader that goes away); `None` otherwise.
    #[must_use]
    pub fn stdout() -> Option<Self> {
        Self::of(&io::stdout())
    }

    /// A watch on the reader of `output`, when it is a pipe or a socket; `None`
    /// otherwise, or when it cannot be duplicated.
    #[must_use]
    pub fn of(output: &impl AsFd) -> Option<Self> {
        let output = File::from(output.as_fd().try_clone_to_owned().ok()?);
        let kind = output.metadata().ok()?.file_type();
        (kind.is_fifo() || kind.is_socket()).then_some(Self { output })
    }

    /// Whether the reader has gone: the kernel reports an error (a pipe whose read end
    /// is closed) or a hang-up (a socket whose peer closed) on the output. Does not wait.
    #[must_use]
    pub fn reader_gone(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.output.as_raw_fd(),
            // No event asked for: POLLERR and POLLHUP are reported regardless, and
            // asking for POLLOUT would only say that a pipe has room.
            events: 0,
            revents: 0,
        };
        // SAFETY: `poll` is one valid `pollfd` for the call's duration, and its
        // descriptor is owned by `self.output`, open while `self` lives.
        let ready = unsafe { libc::poll(&raw mut poll, 1, 0) };
        ready > 0 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the hang-up check on the `| head -1` case: a pipe is watched, its reader's
    /// close is seen without writing anything, and an open reader is not taken for gone.
    #[test]
    fn closed_pipe_reader_is_seen_without_a_write() {
        let (reader, writer) = io::pipe().unwrap();
        let watch = ReaderWatch::of(&writer).expect("a pipe is watched");
        assert!(!watch.reader_gone());
        drop(reader);
        assert!(watch.reader_gone());
    }

    /// Guards against watching a socket's reader wrongly: seen gone once the peer closes.
    #[test]
    fn closed_socket_peer_is_seen() {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let watch = ReaderWatch::of(&ours).expect("a socket is watched");
        assert!(!watch.reader_gone());
        drop(peer);
        assert!(watch.reader_gone());
    }

    /// Guards against ending a trace written to a file: a file has no reader to watch.
    #[test]
    fn regular_file_is_not_watched() {
        let file = tempfile::tempfile().unwrap();
        assert!(ReaderWatch::of(&file).is_none());
    }
}
