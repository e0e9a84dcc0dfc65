//! [`Event`]: the header of a futex wait's record ([`WaitRecord`](crate::WaitRecord)),
//! with the copy of the lock memory around the futex word.

/// Number of 32-bit words of lock memory copied at each futex wait.
pub const SNAPSHOT_WORDS: usize = 16;
/// The snapshot starts this many bytes before the futex word, so that a futex word in
/// the middle of a lock object (glibc rwlocks wait on words at offsets 8 and 12) still
/// has the object's start and owner field inside the copy.
pub const SNAPSHOT_LEAD_BYTES: u64 = 16;

/// The fixed-size header of a [`WaitRecord`](crate::WaitRecord). (It was once the only
/// record and still has fields for other kinds; the kernel sends none on its own.)
/// Fields not used by a kind are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// An [`EventKind`](crate::EventKind) as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread the event is about.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the event happened.
    pub ts_ns: u64,
    /// Futex word or lock object address in the target's address space.
    pub addr: u64,
    /// For [`EventKind::LockAcquired`](crate::EventKind::LockAcquired): when the lock
    /// call began.
    pub start_ns: u64,
    /// Syscall or function return value, sign-extended.
    pub ret: i64,
    /// Futex command (see [`futex_cmd`](crate::futex_cmd)) or [`LockOp`](crate::LockOp).
    pub op: u32,
    /// Futex expected value (`val` argument).
    pub val: u32,
    /// A stack id ([`StackSlot`](crate::StackSlot)), or a negative errno.
    pub stack_id: i32,
    /// Number of valid bytes in `snapshot` (0 when the copy failed).
    pub snapshot_len: u32,
    /// Address of `snapshot[0]` in the target
    /// ([`EventKind::FutexWait`](crate::EventKind::FutexWait)).
    pub snapshot_addr: u64,
    /// Copy of target memory starting at `snapshot_addr`.
    pub snapshot: [u32; SNAPSHOT_WORDS],
}

impl Event {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        start_ns: 0,
        ret: 0,
        op: 0,
        val: 0,
        stack_id: 0,
        snapshot_len: 0,
        snapshot_addr: 0,
        snapshot: [0; SNAPSHOT_WORDS],
    };
}

/// Size of [`Event`]; both sides assert it.
pub const EVENT_SIZE: usize = 128;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::align_of::<Event>() == 8);
