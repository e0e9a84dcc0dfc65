//! Uprobe on the entry of `pthread_mutex_unlock` and `pthread_rwlock_unlock` (`--holds`
//! only): the lock is released by this thread.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{EventKind, LockRecord};

use crate::helpers::{emit_lock, target_tid};

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
