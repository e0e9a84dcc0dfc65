//! [`WaitRecord`]: the record of a futex wait
//! ([`EventKind::FutexWait`](crate::EventKind::FutexWait)), sent when the waiting thread
//! goes to sleep.
use crate::{EVENT_SIZE, Event};

/// Number of 64-bit words of user stack copied from the stack pointer at each futex wait.
///
/// glibc is built without frame pointers, so a frame-pointer walk from inside a futex
/// call skips `pthread_mutex_lock` and, worse, the application function that called it.
/// Those return addresses sit within a few dozen bytes of the user stack pointer, so
/// userspace recovers them by scanning this window for addresses that follow a call
/// instruction, then continues with the frame-pointer chain.
pub const STACK_WINDOW_WORDS: usize = 32;

/// The record of an [`EventKind::FutexWait`](crate::EventKind::FutexWait): the common
/// fields and the lock memory ([`Event`]), plus the top of the user stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitRecord {
    pub event: Event,
    /// User stack pointer at the syscall.
    pub user_sp: u64,
    /// User instruction pointer at the syscall.
    pub user_ip: u64,
    /// Number of valid words in `window`.
    pub window_words: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
    /// User stack from `user_sp` upwards.
    pub window: [u64; STACK_WINDOW_WORDS],
}

/// Size of [`WaitRecord`] on the wire.
pub const WAIT_RECORD_SIZE: usize = EVENT_SIZE + 24 + STACK_WINDOW_WORDS * 8;
const _: () = assert!(core::mem::size_of::<WaitRecord>() == WAIT_RECORD_SIZE);
