//! [`ExecRecord`]: the record of the target replacing its program
//! ([`EventKind::Exec`](crate::EventKind::Exec)).

/// The record of an [`EventKind::Exec`](crate::EventKind::Exec): a thread of the target
/// completed an `execve`. By then the kernel has ended every other thread of the process,
/// so in the ring buffer every record of the old program comes before this one and every
/// record of the new program after it: the reader switches programs (symbols, lock
/// state) exactly there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    /// `EventKind::Exec` as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread that executed the program (now the process's leader).
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the new program was in place.
    pub ts_ns: u64,
}

/// Size of [`ExecRecord`] on the wire.
pub const EXEC_RECORD_SIZE: usize = 16;
const _: () = assert!(core::mem::size_of::<ExecRecord>() == EXEC_RECORD_SIZE);
