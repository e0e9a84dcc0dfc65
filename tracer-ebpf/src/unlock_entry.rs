//! Uprobe on the entry of `pthread_mutex_unlock` and `pthread_rwlock_unlock` (`--holds`
//! only): the lock is released by this thread.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{EventKind, LockOp, LockRecord};

use crate::{
    helpers::{emit_lock, target_tid},
    maps::PENDING_LOCKS,
};

#[uprobe]
pub(crate) fn unlock_entry(ctx: ProbeContext) -> u32 {
    match try_unlock_entry(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_unlock_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let addr: u64 = ctx.arg(0).ok_or(())?;
    // SAFETY: the helper only reads the attach cookie of the running program.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the cookie is a LockOp (u32)"
    )]
    let op = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    forget_stale_pending(tid, addr);
    emit_lock(&LockRecord {
        kind: EventKind::LockReleased as u32,
        tid,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        addr,
        op,
        ..LockRecord::ZERO
    });
    Ok(())
}

/// A thread that unlocks `addr` is inside no lock call on it: a lock call on `addr` still
/// in flight for the thread is one whose return was never seen (it entered between the
/// links of the entry and the return probes, at attach). Left there, every later call on
/// the same lock from the same frame would read as nested in it (`lock_entry`) and never
/// be reported: the thread's holds of that lock would stay unknown for the whole trace. A
/// condvar wait is the exception: musl's releases its mutex through
/// `pthread_mutex_unlock`, inside the wait.
#[inline(always)]
fn forget_stale_pending(tid: u32, addr: u64) {
    if let Some(slot) = PENDING_LOCKS.get_ptr_mut(tid) {
        // SAFETY: `slot` points at this thread's map value, sized and aligned for a
        // `PendingLock`; only this thread's lock programs write it, one at a time.
        unsafe {
            if (*slot).op != 0 && (*slot).addr == addr && (*slot).op != LockOp::CondWait as u32 {
                (*slot).op = 0;
                (*slot).depth = 0;
                (*slot).caller = 0;
            }
        }
    }
}
