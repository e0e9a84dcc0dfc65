//! `sched_switch` BTF raw tracepoint: a thread of the target that is in a futex wait goes
//! to sleep. Only now is its wait sent (one record with the lock memory and the stack
//! window), so the many waits that return without sleeping cost no record at all.
//!
//! The hook runs in the context of the thread being switched out, so its user stack and
//! memory are still the current ones, exactly as at `sys_enter`.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::OpenWaitState;

use crate::{
    helpers::{send_wait, target_tid},
    maps::OPEN_WAITS,
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
    // runnable, not waiting.
    let preempt: u64 = ctx.arg(0);
    if preempt & 0xff != 0 {
        return Ok(());
    }
    let Some(slot) = OPEN_WAITS.get_ptr_mut(tid) else {
        return Ok(());
    };
    // SAFETY: `slot` points at this thread's map value, sized and aligned for an
    // `OpenWait`; only this thread's programs write it, one at a time.
    let wait = unsafe { slot.read() };
    if wait.state != OpenWaitState::Entered as u32 {
        return Ok(());
    }
    if !send_wait(ctx, tid, &wait) {
        // Left `Entered`: `futex_exit` then counts it among the brief waits.
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { (*slot).state = OpenWaitState::Sent as u32 };
    Ok(())
}
