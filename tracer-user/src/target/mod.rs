//! The traced process, read from the outside: one typed reader, [`TargetProcess`], for
//! everything the tracer asks of the target apart from what its probes send (liveness,
//! threads and what they are blocked in, memory maps, the executable, memory), shared by
//! the native and the Go side of a session.
//!
//! [`LiveProcess`] reads a real process through `/proc` and `process_vm_readv(2)`; tests
//! substitute a made-up process (`fake::FakeProcess`), so the logic that reads the target
//! runs without root and without a target.
//!
//! Assumptions: the target is read while it runs and is never stopped, so any answer may
//! be stale by the time it is used (threads come and go, memory changes, the process may
//! exit): callers treat "gone" as a normal outcome, and what a report rests on is read
//! again to confirm it. Integers in the target's memory are in this machine's byte order
//! (the tracer runs on the target's host).

pub mod discovery;
pub mod facts;
#[cfg(test)]
pub(crate) mod fake;
mod file_bytes;
mod identity;
mod libc;
mod live;
mod procfs;

use std::{path::PathBuf, sync::Arc};

pub use self::{
    file_bytes::{FileBytes, FileSlice},
    identity::{Denied, Untraceable},
    libc::{CLibrary, LibcFlavor, UnrecognisedLibc, identify_c_library},
    live::LiveProcess,
    procfs::{
        MapEntry, ProcError, RealtimeThreads, SelfUsage, SyscallState, find_libc, is_elf_stripped,
        mapped_file, parse_maps, self_usage as procfs_self_usage,
    },
};

/// The target's executable file, as read at attach.
#[derive(Clone, Debug)]
pub struct Executable {
    /// Where it opens from here (`/proc/PID/exe`, which works across mount namespaces):
    /// the file uprobes attach to.
    pub open_path: PathBuf,
    /// Its path as the target's maps name it (where `/proc/PID/exe` points), when that
    /// link could be read.
    pub path: Option<String>,
    /// Its contents, mapped (see [`FileBytes`]): shared with what keeps parts of it
    /// for the session (the Go symbol table).
    pub data: Arc<FileBytes>,
}

/// Everything the tracer reads of the traced process, apart from what its probes send.
///
/// Answers are of the moment they are read (see the module notes). Queries about one
/// thread answer `None` when the thread is gone or unreadable; memory reads may come back
/// short where the range runs into unmapped memory.
pub trait TargetProcess: Send + Sync {
    /// Its process id.
    fn pid(&self) -> u32;

    /// Whether it exists and has not exited: a zombie (exited, not yet reaped by its
    /// parent) counts as gone, since it will never run again.
    fn is_alive(&self) -> bool;

    /// Ids of its threads, ascending.
    ///
    /// # Errors
    /// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
    fn thread_ids(&self) -> Result<Vec<u32>, ProcError>;

    /// Its threads as (host TID, TID in the target's own PID namespace) pairs, ascending
    /// by host TID. The kernel's events carry host TIDs; the target's memory (a glibc
    /// mutex's owner field, a PI futex word) holds the second, which differs when the
    /// target runs in another PID namespace (a container). Threads that exit while this
    /// is read are left out.
    ///
    /// # Errors
    /// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
    fn namespace_tids(&self) -> Result<Vec<(u32, u32)>, ProcError>;

    /// The name of its thread `tid`.
    fn thread_name(&self, tid: u32) -> Option<String>;

    /// What its thread `tid` is doing: running, or blocked in which system call (reading
    /// it needs ptrace rights over the target).
    fn syscall_state(&self, tid: u32) -> Option<SyscallState>;

    /// How many times its thread `tid` has left a CPU so far. A thread that stays asleep
    /// keeps this number: two equal reads around a check of the thread's state prove it
    /// did not run in between.
    fn context_switches(&self, tid: u32) -> Option<u64>;

    /// How many times its thread `tid` has left a CPU of its own accord (to sleep) so
    /// far: the kernel's `nvcsw`, which a thread asleep in one wait keeps.
    fn voluntary_switches(&self, tid: u32) -> Option<u64>;

    /// The real-time priority (1–99) of its thread `tid` when it runs `SCHED_FIFO` or
    /// `SCHED_RR`; `None` for any other policy.
    fn realtime_priority(&self, tid: u32) -> Option<u32>;

    /// Its memory maps, in address order.
    ///
    /// # Errors
    /// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
    fn maps(&self) -> Result<Vec<MapEntry>, ProcError>;

    /// Its executable: where it opens from here, its path, its contents (mapped).
    ///
    /// # Errors
    /// [`ProcError::Executable`] when the file cannot be read.
    fn executable(&self) -> Result<Executable, ProcError>;

    /// Where a path of its file system opens from here (through its root directory, so
    /// files of a target in another mount namespace open correctly).
    fn host_path(&self, path: &str) -> PathBuf;

    /// The identity (device, inode) of its executable (`/proc/PID/exe`) right now: another
    /// one than at attach means it `exec`ed another program. `None` when unreadable.
    fn executable_identity(&self) -> Option<(u64, u64)> {
        None
    }

    /// The directory whose entries open the files it maps by mapping (`/proc/PID/map_files`,
    /// see [`mapped_file`]): the way to a mapped file that was deleted or is a memfd.
    /// `None` when there is no such directory (a fake process).
    fn mapped_files_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Reads `buf.len()` bytes at `addr` of its memory; returns how many were read (fewer
    /// than asked when the range runs into unmapped memory).
    ///
    /// # Errors
    /// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Memory`]
    /// otherwise (nothing mapped at `addr`, no ptrace rights).
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, ProcError>;

    /// Its real-time threads right now (none when it is gone).
    fn realtime_threads(&self) -> RealtimeThreads {
        let mut found = RealtimeThreads::default();
        for tid in self.thread_ids().unwrap_or_default() {
            if let Some(priority) = self.realtime_priority(tid) {
                found.count += 1;
                found.max_priority = found.max_priority.max(priority);
            }
        }
        found
    }

    /// Fills `buf` from `addr`: whether all of it could be read.
    fn read_exact(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.read_memory(addr, buf).is_ok_and(|n| n == buf.len())
    }

    /// The `u32` at `addr`, when all four bytes are readable.
    fn read_u32(&self, addr: u64) -> Option<u32> {
        let mut bytes = [0u8; 4];
        self.read_exact(addr, &mut bytes)
            .then(|| u32::from_ne_bytes(bytes))
    }

    /// The `i32` at `addr` (glibc keeps TIDs and futex words as `int`).
    fn read_i32(&self, addr: u64) -> Option<i32> {
        let mut bytes = [0u8; 4];
        self.read_exact(addr, &mut bytes)
            .then(|| i32::from_ne_bytes(bytes))
    }

    /// The `u64` at `addr`, when all eight bytes are readable.
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read_exact(addr, &mut bytes)
            .then(|| u64::from_ne_bytes(bytes))
    }
}
