//! Diagnostics: `aya-log` messages about paths the programs should not take (a full ring
//! buffer, target memory that cannot be read, a stack the kernel would not record…),
//! sent only when the loader turned them on (`tracer attach --bpf-log` sets the global
//! `DIAGNOSTICS`). Most of these paths are also counted, and the counts reach the report;
//! the messages say which thread, address or error, for whoever debugs the tracer.
//!
//! `DIAGNOSTICS` lives in `.rodata`, which the loader freezes: the verifier knows its
//! value and, while it is 0, never walks a branch that logs, and drops it from the
//! program as dead code. Each function here tests the flag first (inlined at the call
//! site); the message itself is built in a function of its own, a BPF-to-BPF call, so
//! that its code and stack stay out of the hooks' own. Callers only call these on the
//! unexpected path, never on the hot one.
//!
//! aya-log-ebpf 0.2 reserves each message in its own ring buffer (`AYA_LOGS`): the
//! context argument its macros take is only evaluated, never used, so `&()` stands in
//! for it where a helper has no context at hand.
use aya_log_ebpf::{debug, warn};
use tracer_common::{GoOp, NativeSiteOp};

use crate::maps::DIAGNOSTICS;

/// Whether diagnostics are on (a load-time constant to the verifier).
#[inline(always)]
fn enabled() -> bool {
    DIAGNOSTICS.load() != 0
}

/// The ring buffer was full: a record of `kind` (an `EventKind`) was dropped (and
/// counted).
#[inline(always)]
pub(crate) fn record_dropped(kind: u32) {
    #[inline(never)]
    fn log(kind: u32) {
        warn!(&(), "ring buffer full: dropped a record of kind {}", kind);
    }
    if enabled() {
        log(kind);
    }
}

/// `bpf_get_stackid` refused the stack in both stack maps (counted).
#[inline(always)]
pub(crate) fn stack_refused(errno: i32) {
    #[inline(never)]
    fn log(errno: i32) {
        warn!(
            &(),
            "no user stack recorded: bpf_get_stackid failed with {}", errno
        );
    }
    if enabled() {
        log(errno);
    }
}

/// Neither copy of the lock memory around futex word `addr` could be read: the record
/// goes out without it. (A wait that failed with `EFAULT` has no readable word at all.)
#[inline(always)]
pub(crate) fn lock_memory_unreadable(tid: u32, addr: u64) {
    #[inline(never)]
    fn log(tid: u32, addr: u64) {
        debug!(
            &(),
            "thread {}: cannot read the lock memory around futex word 0x{:x}", tid, addr
        );
    }
    if enabled() {
        log(tid, addr);
    }
}

/// Not even a quarter of the stack window above user stack pointer `sp` could be read.
#[inline(always)]
pub(crate) fn stack_window_unreadable(sp: u64) {
    #[inline(never)]
    fn log(sp: u64) {
        warn!(&(), "cannot read the user stack at 0x{:x}", sp);
    }
    if enabled() {
        log(sp);
    }
}

/// The waiters array of a `futex_waitv` call could not be read: the call is not traced.
#[inline(always)]
pub(crate) fn waitv_unreadable(waiters: u64) {
    #[inline(never)]
    fn log(waiters: u64) {
        warn!(
            &(),
            "cannot read the futex_waitv array at 0x{:x}: wait not traced", waiters
        );
    }
    if enabled() {
        log(waiters);
    }
}

/// The registers a sleeping thread entered its system call with were not available.
#[inline(always)]
pub(crate) fn no_syscall_regs(tid: u32) {
    #[inline(never)]
    fn log(tid: u32) {
        warn!(
            &(),
            "thread {}: no saved system call registers: wait not traced", tid
        );
    }
    if enabled() {
        log(tid);
    }
}

/// `BRIEF_WAITS` had no room for futex word `addr`: `count` brief waits were only counted
/// as untracked.
#[inline(always)]
pub(crate) fn brief_waits_full(addr: u64, count: u64) {
    #[inline(never)]
    fn log(addr: u64, count: u64) {
        warn!(
            &(),
            "BRIEF_WAITS full: {} brief waits on futex word 0x{:x} counted as untracked",
            count,
            addr
        );
    }
    if enabled() {
        log(addr, count);
    }
}

/// A lock call of thread `tid` returned without its entry having been seen (counted).
#[inline(always)]
pub(crate) fn unmatched_return(tid: u32) {
    #[inline(never)]
    fn log(tid: u32) {
        warn!(
            &(),
            "thread {}: lock call returned without a recorded entry: acquisition not sent", tid
        );
    }
    if enabled() {
        log(tid);
    }
}

/// Thread `tid`'s lock call could not be remembered until its return (`PENDING_LOCKS`).
#[inline(always)]
pub(crate) fn pending_lock_lost(tid: u32, errno: i32) {
    #[inline(never)]
    fn log(tid: u32, errno: i32) {
        warn!(
            &(),
            "thread {}: cannot record a lock call in PENDING_LOCKS (error {})", tid, errno
        );
    }
    if enabled() {
        log(tid, errno);
    }
}

/// Reports the op `op` of the Go lock site at `pc` if it is no `GoOp` nor `NativeSiteOp` (the site still
/// sends its record; userspace counts it as undecodable). The check itself only runs
/// when diagnostics are on.
#[inline(always)]
pub(crate) fn check_go_op(op: u32, pc: u64) {
    #[inline(never)]
    fn log(op: u32, pc: u64) {
        warn!(
            &(),
            "Go lock site at 0x{:x}: unknown op {} in its attach cookie", pc, op
        );
    }
    if enabled() && GoOp::try_from(op).is_err() && NativeSiteOp::try_from(op).is_err() {
        log(op, pc);
    }
}

/// The `goid` of the goroutine whose `g` is at `g` could not be read: the record names
/// the goroutine by `g` alone.
#[inline(always)]
pub(crate) fn goid_unreadable(g: u64) {
    #[inline(never)]
    fn log(g: u64) {
        warn!(&(), "cannot read the goid of the goroutine at 0x{:x}", g);
    }
    if enabled() {
        log(g);
    }
}
