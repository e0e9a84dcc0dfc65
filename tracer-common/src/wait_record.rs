//! [`WaitRecord`]: the record of a futex wait
//! ([`EventKind::FutexWait`](crate::EventKind::FutexWait)), sent when the waiting thread
//! goes to sleep.
use crate::{EVENT_SIZE, Event};

/// Number of 64-bit words of user stack copied from the stack pointer at each futex wait.
///
/// glibc is built without frame pointers, so a frame-pointer walk from inside a futex
/// call skips `pthread_mutex_lock` and, worse, the application function that called it.
/// Those return addresses sit within a few dozen bytes of the user stack pointer, so
/// userspace recovers them by unwinding this window with the objects' call frame
/// information (`.eh_frame`), then continues with the frame-pointer chain.
pub const STACK_WINDOW_WORDS: usize = 32;

/// A futex wait's timeout as the call gave it: the `struct timespec` its timeout
/// argument points to, and how to read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutArg {
    /// [`TimeoutClock`](crate::TimeoutClock) as `u32`, or [`TIMEOUT_NONE`] (the wait has
    /// no timeout) or [`TIMEOUT_UNREADABLE`] (it has one, which could not be read).
    pub clock: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
    /// The `struct timespec`: seconds and nanoseconds (0 unless `clock` is a clock).
    pub sec: i64,
    pub nsec: i64,
}

/// [`WaitTimeoutArg::clock`] of a wait without a timeout.
pub const TIMEOUT_NONE: u32 = 0;
/// [`WaitTimeoutArg::clock`] of a wait whose timeout could not be read.
pub const TIMEOUT_UNREADABLE: u32 = 0xff;

impl WaitTimeoutArg {
    /// A wait without a timeout.
    pub const NONE: Self = Self {
        clock: TIMEOUT_NONE,
        pad: 0,
        sec: 0,
        nsec: 0,
    };
}
const _: () = assert!(core::mem::size_of::<WaitTimeoutArg>() == 24);

/// The record of an [`EventKind::FutexWait`](crate::EventKind::FutexWait): the common
/// fields and the lock memory ([`Event`]), plus the top of the user stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitRecord {
    pub event: Event,
    /// The wait's timeout (before the stack part, which userspace may leave in the
    /// record's bytes).
    pub timeout: WaitTimeoutArg,
    /// User stack pointer at the syscall.
    pub user_sp: u64,
    /// User instruction pointer at the syscall.
    pub user_ip: u64,
    /// Number of valid words in `window`.
    pub window_words: u32,
    /// How many sleeping waits this one stands for: the sampling period it was taken
    /// under ([`MAP_SLEEP_SAMPLING`](crate::MAP_SLEEP_SAMPLING)); 0 (records of older
    /// builds) reads as 1.
    pub weight: u32,
    /// User stack from `user_sp` upwards.
    pub window: [u64; STACK_WINDOW_WORDS],
}

/// Size of [`WaitRecord`] on the wire.
pub const WAIT_RECORD_SIZE: usize = EVENT_SIZE + 24 + 24 + STACK_WINDOW_WORDS * 8;
const _: () = assert!(core::mem::size_of::<WaitRecord>() == WAIT_RECORD_SIZE);
