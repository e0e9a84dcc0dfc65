//! `sched_switch` BTF raw tracepoint: a thread of the target that is in a futex wait goes
//! to sleep. Only now is its wait sent (one record with the lock memory and the stack
//! window), so the many waits that return without sleeping cost no record at all.
//!
//! The hook runs in the context of the thread being switched out, so its user stack and
//! memory are still the current ones, exactly as at `sys_enter`.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use tracer_common::{
    Counter, Event, EventKind, OpenWaitState, STACK_ID_NO_FRAME_CHAIN, WaitRecord,
};

use crate::{
    helpers::{
        copy_stack_window, count, frame_chain_starts, snapshot_around, target_tid, user_stack_id,
    },
    maps::{EVENTS, OPEN_WAITS},
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
    // Code built without frame pointers (glibc's lock paths) leaves any value in `rbp`;
    // a frame walk from there faults and costs ~1 µs for frames the window already has.
    let stack_id = if frame_chain_starts(wait.user_sp, wait.user_bp) {
        user_stack_id(ctx)
    } else {
        STACK_ID_NO_FRAME_CHAIN
    };
    // Reserve in place: a wait record is too large to build on the 512-byte BPF stack.
    let Some(mut entry) = EVENTS.reserve::<WaitRecord>(0) else {
        // Left `Entered`: `futex_exit` then counts it among the brief waits.
        count(Counter::Dropped);
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, exclusively owned ring-buffer slot of
    // `size_of::<WaitRecord>()` bytes; every field is written before submit.
    unsafe {
        (*record).event = Event::ZERO;
        (*record).event.kind = EventKind::FutexWait as u32;
        (*record).event.tid = tid;
        (*record).event.ts_ns = wait.start_ns;
        (*record).event.addr = wait.addr;
        (*record).event.op = wait.op;
        (*record).event.val = wait.val;
        (*record).event.stack_id = stack_id;
        snapshot_around(&mut (*record).event, wait.addr);
        (*record).user_sp = wait.user_sp;
        (*record).user_ip = wait.user_ip;
        (*record).pad = 0;
        (*record).window_words = copy_stack_window(&mut (*record).window, wait.user_sp);
    }
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    // SAFETY: as above.
    unsafe { (*slot).state = OpenWaitState::Sent as u32 };
    Ok(())
}
