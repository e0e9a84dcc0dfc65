//! `sched_switch` BTF raw tracepoint: a thread of the target that is in a futex wait goes
//! to sleep. Only now is its wait sent (one record with the lock memory and the stack
//! window), so the many waits that return without sleeping cost no record at all.
//!
//! The hook runs in the context of the thread being switched out, so its user stack and
//! memory are still the current ones, exactly as at `sys_enter`. A thread leaving its CPU
//! in the middle of a wait frees the per-CPU `CPU_WAIT` slot for the next thread. A wait
//! sent now needs nothing more (its end is sent whoever sees it); a preempted one moves
//! to its thread's `OPEN_WAITS` entry, so its end or its sleep finds it wherever the
//! thread resumes.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{OpenWait, OpenWaitState, syscall};

use crate::{
    helpers::{current_syscall_regs, send_wait, target_tid},
    maps::{CPU_WAIT, OPEN_WAITS},
};

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn futex_sleep(ctx: BtfTracePointContext) -> i32 {
    match try_futex_sleep(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "every hook keeps the hook/try_hook shape"
)]
fn try_futex_sleep(ctx: &BtfTracePointContext) -> Result<(), ()> {
    // `current` is still the thread being switched out.
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    // sched_switch(bool preempt, prev, next, prev_state): a preempted thread is still
    // runnable, not waiting (but may resume on another CPU).
    let preempt = ctx.arg::<u64>(0) & 0xff != 0;
    let Some(slot) = CPU_WAIT.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: `slot` points at this CPU's `OpenWait`; the thread being switched out is
    // the only one whose syscall can have written it since its last switch.
    let mut wait = unsafe { slot.read() };
    if wait.tid != tid || wait.state != OpenWaitState::Entered as u32 {
        // No wait begun on this CPU: perhaps one handed over earlier, preempted then and
        // now going to sleep.
        if !preempt {
            send_handed_over(ctx, tid);
        }
        return Ok(());
    }
    // The wait leaves this CPU with its thread.
    // SAFETY: as above.
    unsafe { (*slot).state = OpenWaitState::Idle as u32 };
    if !preempt && (!send_sleeping(ctx, tid, &mut wait) || wait.state == OpenWaitState::Sent as u32)
    {
        // Sent (or stale): nothing is left to decide at its end, which `futex_exit` sends
        // like the end of a wait it has no entry for. Skipping the per-thread entry saves
        // ~0.2 µs per sleeping wait.
        return Ok(());
    }
    // Preempted, or its record found the ring buffer full: the per-thread entry takes
    // the wait over, so its end (or its sleep) is seen wherever the thread resumes.
    // Should the hash be full (it is LRU, so only under extreme thread counts), the wait's
    // end finds no entry and is sent as the end of a wait begun before the attach.
    let _ = hand_over(tid, &wait);
    Ok(())
}

/// Sends the wait of `tid` kept in `OPEN_WAITS`, if it has begun and not been sent.
#[inline(always)]
fn send_handed_over(ctx: &BtfTracePointContext, tid: u32) {
    let Some(entry) = OPEN_WAITS.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: `entry` points at this thread's map value, sized and aligned for an
    // `OpenWait`; only this thread's programs write it, one at a time.
    let mut wait = unsafe { entry.read() };
    if wait.state != OpenWaitState::Entered as u32 {
        return;
    }
    if !send_sleeping(ctx, tid, &mut wait) {
        wait.state = OpenWaitState::Idle as u32;
    }
    // SAFETY: as above.
    unsafe { entry.write(wait) };
}

/// Sends `wait` of thread `tid`, which is going to sleep, and marks it sent; gives it a
/// start now if it was not timed from `sys_enter`. `false` if the thread is not in a
/// futex call on the wait's word after all: the entry outlived its call and must go.
///
/// The check makes sure an entry that outlived its call (say, one begun in the instant
/// between attaching `sys_enter` and `sys_exit`) is never sent while its thread sleeps
/// elsewhere: the lock memory read then would name the thread as the owner of the lock
/// it "waits" for, a false self-deadlock. The registers it reads are needed for the
/// record anyway.
#[inline(always)]
fn send_sleeping(ctx: &BtfTracePointContext, tid: u32, wait: &mut OpenWait) -> bool {
    let Some(regs) = current_syscall_regs() else {
        return false;
    };
    let in_the_call = match regs.nr {
        syscall::FUTEX | syscall::FUTEX_WAIT => regs.arg0 == wait.addr,
        syscall::FUTEX_WAITV => true,
        _ => false,
    };
    if !in_the_call {
        return false;
    }
    if wait.start_ns == 0 {
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        wait.start_ns = unsafe { bpf_ktime_get_ns() };
    }
    // A full ring buffer leaves the wait unsent (counted as dropped); a later switch of
    // the same wait tries again.
    if send_wait(ctx, tid, wait, &regs) {
        wait.state = OpenWaitState::Sent as u32;
    }
    true
}

/// Stores `wait` as the entry of `tid` in `OPEN_WAITS`, in place when it has one.
#[inline(always)]
fn hand_over(tid: u32, wait: &OpenWait) -> Result<(), ()> {
    match OPEN_WAITS.get_ptr_mut(tid) {
        // SAFETY: as in `send_handed_over`.
        Some(entry) => {
            unsafe { entry.write(*wait) };
            Ok(())
        }
        None => OPEN_WAITS.insert(tid, *wait, 0).map_err(|_| ()),
    }
}
