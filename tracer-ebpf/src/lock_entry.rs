//! Uprobe on the entry of glibc's lock-acquiring functions (`--holds` only). Remembers
//! the lock address, the op (from the attach cookie) and the stack until the function
//! returns, when `lock_return` decides whether the lock was taken.
//!
//! Also on `pthread_cond_*wait(cond, mutex)`: the mutex is released right here (glibc
//! unlocks it internally) and `lock_return` reports it held again.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{EventKind, LockOp, LockRecord, PendingLock, STACK_ID_NO_FRAME_CHAIN};

use crate::{
    diag,
    helpers::{emit_lock, frame_chain_starts, target_tid, user_stack_id},
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
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let cond_wait = cookie == LockOp::CondWait as u64;
    // The lock is the first argument, the mutex of a condvar wait the second. Both are
    // read at fixed offsets (volatile, so they are not merged into one load at a computed
    // offset, which the verifier refuses on the context pointer) and chosen by value.
    // SAFETY: `ctx.regs` is the uprobe's saved registers, valid for the whole program.
    let (first, second) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.regs).rdi),
            core::ptr::read_volatile(&raw const (*ctx.regs).rsi),
        )
    };
    let addr = if cond_wait { second } else { first };
    // SAFETY: reading the ProbeContext's saved registers, valid for the whole program.
    let (sp, bp) = unsafe { ((*ctx.regs).rsp, (*ctx.regs).rbp) };
    if let Some(slot) = PENDING_LOCKS.get_ptr_mut(tid) {
        // SAFETY: `slot` points at this thread's map value, sized and aligned for a
        // `PendingLock`; only this thread's lock programs write it, one at a time.
        let outer = unsafe { slot.read() };
        if outer.op != 0 && outer.addr == addr && sp <= outer.entry_sp {
            // A lock function called by the one in flight, on the same lock, from deeper
            // in (or, for a tail call, the same) stack: musl's `pthread_mutex_lock` →
            // `pthread_mutex_timedlock` → `pthread_mutex_trylock`, its condvar waits
            // relocking their mutex. The outermost call is the program's: keep its op,
            // start and call site, and let `lock_return` skip this call's return.
            // SAFETY: as above.
            unsafe { (*slot).depth = outer.depth.saturating_add(1) };
            return Ok(());
        }
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if cond_wait {
        emit_lock(&LockRecord {
            kind: EventKind::LockReleased as u32,
            tid,
            ts_ns: now,
            addr,
            op: LockOp::CondWait as u32,
            ..LockRecord::ZERO
        });
    }
    // At a function's first instruction `[sp]` is the return address: the call site.
    // SAFETY: bpf_probe_read_user checks the user address and fails cleanly on a fault.
    let caller = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    let pending = PendingLock {
        addr,
        start_ns: now,
        caller,
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the cookie is a LockOp (u32)"
        )]
        op: cookie as u32,
        stack_id: if frame_chain_starts(sp, bp) {
            user_stack_id(ctx)
        } else {
            STACK_ID_NO_FRAME_CHAIN
        },
        entry_sp: sp,
        depth: 0,
        pad: 0,
    };
    match PENDING_LOCKS.get_ptr_mut(tid) {
        // SAFETY: `slot` points at this thread's map value, sized and aligned for a
        // `PendingLock`; only this thread's lock programs write it, and they run one at
        // a time on the thread's CPU.
        Some(slot) => unsafe { slot.write(pending) },
        // The thread's first lock call (or its entry was recycled): create it.
        None => PENDING_LOCKS.insert(tid, pending, 0).map_err(|errno| {
            diag::pending_lock_lost(tid, errno);
        })?,
    }
    Ok(())
}
