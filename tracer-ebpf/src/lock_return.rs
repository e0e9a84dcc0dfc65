//! Uretprobe on glibc's lock-acquiring functions (`--holds` only): on a zero return the
//! lock is now held by this thread; sends `LockAcquired` with the call's start time, so
//! userspace knows the acquisition latency, the hold start and the stack of the caller.
//! uretprobes are fine here: these are C functions on ordinary stacks (never Go code).
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::uretprobe, programs::RetProbeContext};
use tracer_common::{Counter, EventKind, LockOp, LockRecord, PendingLock};

/// `ETIMEDOUT` as `pthread_cond_timedwait` returns it.
const ETIMEDOUT: i32 = 110;

use crate::{
    diag,
    helpers::{count, emit_lock, target_tid},
    maps::PENDING_LOCKS,
};

#[uretprobe]
pub(crate) fn lock_return(ctx: RetProbeContext) -> u32 {
    match try_lock_return(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "every hook keeps the hook/try_hook shape"
)]
fn try_lock_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let Some(pending) = take_pending(tid) else {
        count(Counter::UnmatchedReturns);
        diag::unmatched_return(tid);
        return Ok(());
    };
    let ret: i32 = ctx.ret();
    // A condvar wait holds its mutex again when it returns, also after a timeout.
    let cond_wait_relocked = pending.op == LockOp::CondWait as u32 && ret == ETIMEDOUT;
    if ret != 0 && !cond_wait_relocked {
        // EBUSY from trylock, ETIMEDOUT, EDEADLK...: nothing was acquired.
        return Ok(());
    }
    emit_lock(&LockRecord {
        kind: EventKind::LockAcquired as u32,
        tid,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        addr: pending.addr,
        start_ns: pending.start_ns,
        call_site: pending.caller,
        op: pending.op,
        stack_id: pending.stack_id,
    });
    Ok(())
}

/// The thread's lock call in flight, marked consumed in place (the entry stays for the
/// thread's next call, see `PENDING_LOCKS`); `None` if no entry was seen for it.
#[inline(always)]
fn take_pending(tid: u32) -> Option<PendingLock> {
    let slot = PENDING_LOCKS.get_ptr_mut(tid)?;
    // SAFETY: `slot` points at this thread's map value, sized and aligned for a
    // `PendingLock`; only this thread's lock programs write it, one at a time.
    let pending = unsafe { slot.read() };
    if pending.op == 0 {
        return None;
    }
    // `caller` too: userspace takes a nonzero caller as "inside a lock call now".
    // SAFETY: as above.
    unsafe {
        (*slot).op = 0;
        (*slot).caller = 0;
    }
    Some(pending)
}
