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
    let pending = match take_pending(tid) {
        Taken::Outermost(pending) => pending,
        // The return of a lock function the call in flight made itself (see
        // `PendingLock::depth`): the call's own return is still to come.
        Taken::Inner => return Ok(()),
        Taken::Missing => {
            count(Counter::UnmatchedReturns);
            diag::unmatched_return(tid);
            return Ok(());
        }
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

/// What a return finds of the thread's lock call in flight.
enum Taken {
    /// The call, marked consumed in place (the entry stays for the thread's next call,
    /// see `PENDING_LOCKS`).
    Outermost(PendingLock),
    /// An inner call's return (see `PendingLock::depth`), now counted off.
    Inner,
    /// No entry was seen for it.
    Missing,
}

/// The thread's lock call in flight, for a return (see [`Taken`]).
#[inline(always)]
fn take_pending(tid: u32) -> Taken {
    let Some(slot) = PENDING_LOCKS.get_ptr_mut(tid) else {
        return Taken::Missing;
    };
    // SAFETY: `slot` points at this thread's map value, sized and aligned for a
    // `PendingLock`; only this thread's lock programs write it, one at a time.
    let pending = unsafe { slot.read() };
    if pending.op == 0 {
        return Taken::Missing;
    }
    if pending.depth > 0 {
        // SAFETY: as above.
        unsafe { (*slot).depth = pending.depth - 1 };
        return Taken::Inner;
    }
    // `caller` too: userspace takes a nonzero caller as "inside a lock call now".
    // SAFETY: as above.
    unsafe {
        (*slot).op = 0;
        (*slot).caller = 0;
    }
    Taken::Outermost(pending)
}
