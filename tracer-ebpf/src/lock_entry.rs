//! Uprobe on the entry of glibc's lock-acquiring functions (`--holds` only). Remembers
//! the lock address, the op (from the attach cookie) and the stack until the function
//! returns, when `lock_return` decides whether the lock was taken.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::PendingLock;

use crate::{
    helpers::{target_tid, user_stack_id},
    maps::PENDING_LOCKS,
};

#[uprobe]
pub(crate) fn lock_entry(ctx: ProbeContext) -> u32 {
    match try_lock_entry(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_lock_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let addr: u64 = ctx.arg(0).ok_or(())?;
    // SAFETY: reading the ProbeContext's saved registers, valid for the whole program.
    let sp = unsafe { (*ctx.regs).rsp };
    // At a function's first instruction `[sp]` is the return address: the call site.
    // SAFETY: bpf_probe_read_user checks the user address and fails cleanly on a fault.
    let caller = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let pending = PendingLock {
        addr,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        caller,
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the cookie is a LockOp (u32)"
        )]
        op: cookie as u32,
        stack_id: user_stack_id(ctx),
    };
    PENDING_LOCKS.insert(tid, pending, 0).map_err(|_| ())
}
