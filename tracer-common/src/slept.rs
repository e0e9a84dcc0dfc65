//! [`SleptRecord`]: the one record of a futex wait that slept and was sent lean
//! ([`EventKind::FutexSlept`](crate::EventKind::FutexSlept)): when wait ends are timed at
//! switch-in ([`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`](crate::GLOBAL_WAIT_ENDS_AT_SWITCH_IN)) and
//! the wait is not one of the sampled ones ([`GLOBAL_LEAN_WAITS`](crate::GLOBAL_LEAN_WAITS)).

/// The record of an [`EventKind::FutexSlept`](crate::EventKind::FutexSlept): a wait that
/// went to sleep without a [`WaitRecord`](crate::WaitRecord) (no lock memory, no stack:
/// reading them at the sleep is what costs a lock-bound target, and the sleep is on the
/// lock's hand-over path), sent once it is over, with its start and end. A wait that
/// sleeps long is read from userspace instead (the `OPEN_SLEEPS` table and the target's
/// memory), while it still sleeps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleptRecord {
    /// `EventKind::FutexSlept` as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread that slept.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when it went to sleep, and when it was switched back in.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The futex word (for `futex_waitv`, the first word waited on).
    pub addr: u64,
    /// User stack pointer and instruction pointer at the system call.
    pub user_sp: u64,
    pub user_ip: u64,
    /// Futex command (see [`futex_cmd`](crate::futex_cmd)) and expected value.
    pub op: u32,
    pub val: u32,
    /// How many sleeping waits this one stands for: the sampling period it was taken
    /// under ([`MAP_SLEEP_SAMPLING`](crate::MAP_SLEEP_SAMPLING)).
    pub weight: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}

/// Size of [`SleptRecord`] on the wire.
pub const SLEPT_RECORD_SIZE: usize = 64;
/// Size of the records of builds before sampling ([`SleptRecord`] without `weight` and
/// `pad`), which recordings may hold: read as a weight of 1.
pub const SLEPT_RECORD_SIZE_UNWEIGHTED: usize = 56;
const _: () = assert!(core::mem::size_of::<SleptRecord>() == SLEPT_RECORD_SIZE);

/// [`GLOBAL_LEAN_WAITS`](crate::GLOBAL_LEAN_WAITS): every sleeping wait is sent as a
/// [`WaitRecord`](crate::WaitRecord) (`tracer attach`).
pub const LEAN_WAITS_NONE: u32 = 0;
/// [`GLOBAL_LEAN_WAITS`](crate::GLOBAL_LEAN_WAITS): the waits the stack sampler takes
/// ([`StackSampler`](crate::StackSampler): the first on a word, then one in
/// [`STACK_SAMPLE_EVERY`](crate::STACK_SAMPLE_EVERY)) are sent as a
/// [`WaitRecord`](crate::WaitRecord), the others as a [`SleptRecord`] (`tracer serve`).
pub const LEAN_WAITS_UNSAMPLED: u32 = 1;
/// [`GLOBAL_LEAN_WAITS`](crate::GLOBAL_LEAN_WAITS): every sleeping wait is sent as a
/// [`SleptRecord`] (for tests of the userspace side of long lean waits).
pub const LEAN_WAITS_ALL: u32 = 2;
