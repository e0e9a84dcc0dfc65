//! [`WaitEndRecord`]: the record of a futex wait's end
//! ([`EventKind::FutexWaitDone`](crate::EventKind::FutexWaitDone)).

/// The record of an [`EventKind::FutexWaitDone`](crate::EventKind::FutexWaitDone): a
/// futex wait returned. One goes out per sleeping wait (and per wait woken before it
/// slept), so it is kept to the fields an end needs: 48 bytes in the ring buffer with its
/// header instead of 136, fewer cache lines for `sys_exit` to write and the reader to
/// read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitEndRecord {
    /// `EventKind::FutexWaitDone` as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread whose wait ended.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the call returned.
    pub ts_ns: u64,
    /// The futex word (for `futex_waitv`, the first word waited on).
    pub addr: u64,
    /// The call's return value, sign-extended.
    pub ret: i64,
    /// Futex command (see [`futex_cmd`](crate::futex_cmd)) and expected value.
    pub op: u32,
    pub val: u32,
}

impl WaitEndRecord {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        ret: 0,
        op: 0,
        val: 0,
    };
}

/// Size of [`WaitEndRecord`] on the wire.
pub const WAIT_END_RECORD_SIZE: usize = 40;
const _: () = assert!(core::mem::size_of::<WaitEndRecord>() == WAIT_END_RECORD_SIZE);
