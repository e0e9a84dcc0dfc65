//! `--holds` lock calls: [`LockOp`], the [`LockRecord`] sent for each acquisition and
//! release, and the [`PendingLock`] kept between a call's entry and return uprobes.
use crate::UnknownValue;

/// Which lock function a uprobe event came from (the attach cookie of the lock uprobes,
/// and `op` of a [`LockRecord`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockOp {
    MutexLock = 1,
    MutexTryLock = 2,
    MutexTimedLock = 3,
    MutexUnlock = 4,
    RwRead = 5,
    RwTryRead = 6,
    RwTimedRead = 7,
    RwWrite = 8,
    RwTryWrite = 9,
    RwTimedWrite = 10,
    RwUnlock = 11,
    /// `pthread_cond_*wait(cond, mutex)`: releases `mutex` on entry and holds it again on
    /// return. glibc does both through internal functions no uprobe on the public lock
    /// functions sees, so without this a mutex would look held for the whole condvar wait.
    CondWait = 12,
}

impl LockOp {
    /// Whether the lock is taken shared (an rwlock read side).
    #[must_use]
    pub const fn is_read(self) -> bool {
        matches!(self, Self::RwRead | Self::RwTryRead | Self::RwTimedRead)
    }

    /// Whether the op is on an rwlock rather than a mutex.
    #[must_use]
    pub const fn is_rwlock(self) -> bool {
        !matches!(
            self,
            Self::MutexLock
                | Self::MutexTryLock
                | Self::MutexTimedLock
                | Self::MutexUnlock
                | Self::CondWait
        )
    }
}

impl TryFrom<u32> for LockOp {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::MutexLock,
            2 => Self::MutexTryLock,
            3 => Self::MutexTimedLock,
            4 => Self::MutexUnlock,
            5 => Self::RwRead,
            6 => Self::RwTryRead,
            7 => Self::RwTimedRead,
            8 => Self::RwWrite,
            9 => Self::RwTryWrite,
            10 => Self::RwTimedWrite,
            11 => Self::RwUnlock,
            12 => Self::CondWait,
            other => return Err(UnknownValue(other)),
        })
    }
}

/// The record of a `--holds` lock event
/// ([`EventKind::LockAcquired`](crate::EventKind::LockAcquired) or
/// [`EventKind::LockReleased`](crate::EventKind::LockReleased)).
///
/// Its own record rather than a wait's header because these are the most frequent
/// records of a `--holds` trace (two per lock/unlock pair, written while the lock is
/// held): 56 bytes in the ring buffer with its header instead of 136 is half the copy
/// and fewer cache lines for the kernel to write and the reader to read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRecord {
    /// `EventKind::LockAcquired` or `EventKind::LockReleased` as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread that took or released the lock.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the lock call returned (acquired) or the unlock began.
    pub ts_ns: u64,
    /// The lock object's address in the target.
    pub addr: u64,
    /// Acquired: when the lock call began. Released: 0.
    pub start_ns: u64,
    /// Acquired: the call site (return address of the lock call). Released: 0.
    pub call_site: u64,
    /// A [`LockOp`] as `u32`.
    pub op: u32,
    /// Acquired: a stack id ([`StackSlot`](crate::StackSlot)) or a negative errno.
    /// Released: 0.
    pub stack_id: i32,
}

impl LockRecord {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        start_ns: 0,
        call_site: 0,
        op: 0,
        stack_id: 0,
    };
}

/// Size of [`LockRecord`] on the wire.
pub const LOCK_RECORD_SIZE: usize = 48;
const _: () = assert!(core::mem::size_of::<LockRecord>() == LOCK_RECORD_SIZE);

/// A thread's lock call in flight between its entry and return uprobes (`--holds`), or
/// its last call once returned (`op` and `caller` are then 0). The value type of
/// [`MAP_PENDING_LOCKS`](crate::MAP_PENDING_LOCKS).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLock {
    pub addr: u64,
    pub start_ns: u64,
    /// Return address of the lock call (read at `[sp]` on entry): the exact call site,
    /// which a frame-pointer walk from a function's first instruction would miss.
    pub caller: u64,
    /// The [`LockOp`] of the call in flight; 0 once its return was seen.
    pub op: u32,
    pub stack_id: i32,
    /// The stack pointer at the call's entry: a probed lock function entered on the same
    /// lock at or below it, while the call is in flight, is a call made by the lock
    /// function itself (musl's `pthread_mutex_lock` jumps to `pthread_mutex_timedlock`,
    /// which calls `pthread_mutex_trylock`), not one of the program's.
    pub entry_sp: u64,
    /// How many such inner calls are in flight: their returns are not the call's.
    pub depth: u32,
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<PendingLock>() == 48);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ops_round_trip() {
        for raw in 1..=12 {
            let op = LockOp::try_from(raw).expect("known op");
            assert_eq!(op as u32, raw);
        }
        assert!(LockOp::try_from(13).is_err());
        assert!(LockOp::RwRead.is_read() && LockOp::RwRead.is_rwlock());
        assert!(!LockOp::MutexLock.is_rwlock());
    }
}
