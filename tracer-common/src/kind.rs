//! The kind tag every ring-buffer record starts with.

/// A `u32` on the wire that names no known variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValue(pub u32);

/// What a ring-buffer record reports: its first field. Each kind goes out in a record
/// layout of its own, told apart by size (see the crate documentation).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A thread went to sleep in a waiting futex op; sent as a
    /// [`WaitRecord`](crate::WaitRecord). `addr` = futex word, `op` = command, `val` =
    /// expected value, `snapshot` = memory around the word, `stack_id` = user stack.
    FutexWait = 1,
    /// The same thread left that futex op; sent as a
    /// [`WaitEndRecord`](crate::WaitEndRecord). `addr`, `op` as at entry; `ret` = syscall
    /// result.
    FutexWaitDone = 2,
    /// A lock function returned success (`--holds`); sent as a
    /// [`LockRecord`](crate::LockRecord). `addr` = lock object, `op` =
    /// [`LockOp`](crate::LockOp), `start_ns` = when the call began, `stack_id` = user stack
    /// at the call.
    LockAcquired = 3,
    /// An unlock function was entered (`--holds`); sent as a
    /// [`LockRecord`](crate::LockRecord). `addr` = lock object, `op` =
    /// [`LockOp`](crate::LockOp).
    LockReleased = 4,
    /// A Go lock probe site fired; sent as a [`GoEvent`](crate::GoEvent), `op` =
    /// [`GoOp`](crate::GoOp).
    GoLock = 5,
    /// The target executed another program; sent as an
    /// [`ExecRecord`](crate::ExecRecord).
    Exec = 6,
    /// A thread of the target slept in a futex wait sent without a
    /// [`WaitRecord`](crate::WaitRecord), and was switched back in; sent as a
    /// [`SleptRecord`](crate::SleptRecord) (`tracer serve`'s lean waits).
    FutexSlept = 7,
}

impl TryFrom<u32> for EventKind {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::FutexWait,
            2 => Self::FutexWaitDone,
            3 => Self::LockAcquired,
            4 => Self::LockReleased,
            5 => Self::GoLock,
            6 => Self::Exec,
            7 => Self::FutexSlept,
            other => return Err(UnknownValue(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_reject_unknown() {
        for kind in [
            EventKind::FutexWait,
            EventKind::FutexWaitDone,
            EventKind::LockAcquired,
            EventKind::LockReleased,
            EventKind::GoLock,
            EventKind::Exec,
            EventKind::FutexSlept,
        ] {
            assert_eq!(EventKind::try_from(kind as u32), Ok(kind));
        }
        assert_eq!(EventKind::try_from(0), Err(UnknownValue(0)));
        assert_eq!(EventKind::try_from(99), Err(UnknownValue(99)));
    }
}
