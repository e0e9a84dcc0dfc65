//! What the model is fed: [`GoLockEvent`], one Go lock probe site firing, decoded from the
//! wire record [`GoEvent`], and [`GoLockMode`], the side of a lock a goroutine holds or
//! waits for.
//!
//! Assumes the `sync.RWMutex` layout of the Go versions the probes support (`w Mutex`
//! first, `readerCount` at [`RW_READER_COUNT_OFFSET`]) and Go's `int32` arithmetic on
//! `readerCount`.
use serde::Serialize;
use tracer_common::{GoEvent, GoOp, UnknownValue};

/// Offset of `readerCount` in `sync.RWMutex` (after `w Mutex` (8 bytes), `writerSem` and
/// `readerSem`): the address `RLockFast` and `RUnlock` events carry.
pub const RW_READER_COUNT_OFFSET: u64 = 16;

/// Whether an `RLock` whose `readerCount` add saw `old` blocks (Go: `Add(1) < 0`, on an
/// `int32`).
pub(super) fn reader_blocks(old: i64) -> bool {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "readerCount is an int32; the kernel sign-extends it, and wrapping is Go's own arithmetic"
    )]
    let old = old as i32;
    old.wrapping_add(1) < 0
}

/// How a lock is held or waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum GoLockMode {
    /// Shared: the read side of an `RWMutex`.
    Read,
    /// Exclusive: a `Mutex`, or the write side of an `RWMutex`.
    Write,
}

/// Which side of which kind of lock a goroutine parks on, carried in the `value` of a
/// `SemacquireEnter` event once the tracker has classified the wait from its caller (the
/// kernel only knows the semaphore's address); `addr` then holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkSide {
    pub mode: GoLockMode,
    /// An `RWMutex` writer waiting for the readers inside to leave.
    pub drains_readers: bool,
    /// The lock is an `RWMutex` (else a `Mutex`).
    pub rw: bool,
}

impl ParkSide {
    #[must_use]
    pub fn encode(self) -> i64 {
        i64::from(self.mode == GoLockMode::Read)
            | (i64::from(self.drains_readers) << 1)
            | (i64::from(self.rw) << 2)
    }

    #[must_use]
    pub fn decode(value: i64) -> Self {
        Self {
            mode: if value & 1 == 0 {
                GoLockMode::Write
            } else {
                GoLockMode::Read
            },
            drains_readers: value & 2 != 0,
            rw: value & 4 != 0,
        }
    }
}

/// A decoded [`GoEvent`]: one Go lock probe site firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoLockEvent {
    /// What the site means.
    pub op: GoOp,
    /// Kernel TID of the thread running the goroutine.
    pub tid: u32,
    /// When the site fired (`CLOCK_MONOTONIC`, ns).
    pub ts_ns: u64,
    /// The goroutine id, 0 if it could not be read (the goroutine is then known by `g`).
    pub goid: u64,
    /// Address of the goroutine's `g`.
    pub g: u64,
    /// The lock (`readerCount` inside it for `RLockFast`/`RUnlock`), 0 at return sites.
    pub addr: u64,
    /// The probed instruction.
    pub pc: u64,
    /// Return address at entry sites, 0 elsewhere.
    pub caller: u64,
    /// The value register (the old `readerCount` for `RLockFast`).
    pub value: i64,
    /// User stack id, negative when the kernel could not record one.
    pub stack_id: i32,
}

impl TryFrom<&GoEvent> for GoLockEvent {
    type Error = UnknownValue;

    fn try_from(raw: &GoEvent) -> Result<Self, Self::Error> {
        Ok(Self {
            op: GoOp::try_from(raw.op)?,
            tid: raw.tid,
            ts_ns: raw.ts_ns,
            goid: raw.goid,
            g: raw.g,
            addr: raw.addr,
            pc: raw.pc,
            caller: raw.caller,
            value: raw.value,
            stack_id: raw.stack_id,
        })
    }
}
