//! `sys_exit` BTF raw tracepoint: a futex call of a target thread returns.
//!
//! - Wakes are counted per CPU (no event: userspace needs no per-call decision).
//! - A wait that failed with `EAGAIN` never slept (the futex word had changed while the
//!   waiter entered the kernel: the lock was released meanwhile). The common case on a
//!   contended lock; it is only added to its word's running totals, with no clock read.
//! - Any other wait's end is sent, for userspace to pair with the record `futex_sleep`
//!   sent when the thread went to sleep (or the wait found blocked at attach). An end
//!   with no such start is a wait woken before it slept: userspace counts it as brief.
//! - An error other than `EAGAIN` (a timeout, a signal, the kernel refusing a PI lock
//!   with `EDEADLK`) is rare and may matter to userspace: the wait goes out whole first,
//!   in case it never slept (userspace ignores the copy if it had).
use aya_ebpf::{
    bindings::{BPF_NOEXIST, pt_regs},
    helpers::bpf_ktime_get_ns,
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{BriefWaits, Counter, EventKind, FutexCall, WaitEndRecord, WaitTimeoutArg};

use crate::{
    diag,
    futex_call::{self, syscall_args},
    helpers::{SyscallRegs, count, count_n, emit_wait_end, send_wait, target_tid},
    maps::{BRIEF_WAITS, CPU_BRIEF_WAITS},
};

/// `EAGAIN`: the futex word no longer held the expected value.
const EAGAIN: i64 = 11;

#[btf_tracepoint(function = "sys_exit")]
pub(crate) fn futex_exit(ctx: BtfTracePointContext) -> i32 {
    match try_futex_exit(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_futex_exit(ctx: &BtfTracePointContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: BTF-typed `struct pt_regs *` of the tracepoint; verifier-checked load.
    let nr = unsafe { (*regs).orig_rax }.cast_signed();
    let args = syscall_args(regs);
    let wait = match futex_call::decode(nr, args)? {
        Some(FutexCall::Wait(wait)) => wait,
        Some(FutexCall::Wake) => {
            count(Counter::FutexWakes);
            return Ok(());
        }
        // `futex_call::decode` has read a `futex_waitv` call's word already.
        Some(FutexCall::WaitV { .. }) | None => return Ok(()),
    };
    count(Counter::FutexWaits);
    let ret: i64 = ctx.arg(1);
    if ret == -EAGAIN {
        add_brief_wait(wait.addr, wait.cmd, wait.val);
        return Ok(());
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if ret < 0 {
        // SAFETY: BTF-typed `struct pt_regs *` of the tracepoint; verifier-checked loads
        // of the user registers saved at the call (only `rax` has changed since).
        let call = unsafe {
            SyscallRegs {
                nr,
                args,
                // Only the timeout needs them, and this copy carries none (below).
                more_args: [0; 3],
                sp: (*regs).rsp,
                ip: (*regs).rip,
                bp: (*regs).rbp,
            }
        };
        // An unusual end (a timeout, `EDEADLK`) is over before anyone could read the
        // thread's stack later, so it always carries it. Its timeout no longer matters:
        // the wait is over, and userspace keeps an earlier copy sent at its sleep.
        if !send_wait(
            ctx,
            tid,
            &wait,
            (now, &WaitTimeoutArg::NONE),
            &call,
            true,
            1,
        ) {
            return Ok(());
        }
    }
    emit_wait_end(&WaitEndRecord {
        kind: EventKind::FutexWaitDone as u32,
        tid,
        ts_ns: now,
        addr: wait.addr,
        ret,
        op: wait.cmd,
        val: wait.val,
    });
    Ok(())
}

/// Adds a wait that never slept to this CPU's running totals, moving the totals of the
/// previous word to its `BRIEF_WAITS` entry first if the word changed.
#[inline(always)]
fn add_brief_wait(addr: u64, op: u32, val: u32) {
    let Some(running) = CPU_BRIEF_WAITS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `running` points at this CPU's `CpuBriefWaits`, sized and aligned for it;
    // programs on one CPU do not run inside each other here (a lost update would only
    // make a statistic a little low). Userspace reads it unlocked; the count is cleared
    // before the word changes, so a torn read sees an empty entry, not one word's totals
    // under another's address.
    unsafe {
        if (*running).addr != addr {
            let previous = (*running).waits;
            if previous.count > 0 {
                flush_brief_waits((*running).addr, &previous);
            }
            (*running).waits = BriefWaits::ZERO;
            (*running).addr = addr;
        }
        let waits = &mut (*running).waits;
        waits.count += 1;
        waits.op = op;
        waits.val = val;
    }
}

/// Adds one word's running totals to its entry in this CPU's `BRIEF_WAITS`.
#[inline(always)]
fn flush_brief_waits(addr: u64, waits: &BriefWaits) {
    let totals = if let Some(totals) = BRIEF_WAITS.get_ptr_mut(addr) {
        totals
    } else {
        // Another program may insert the same word first (EEXIST): its entry serves too.
        let _ = BRIEF_WAITS.insert(addr, BriefWaits::ZERO, u64::from(BPF_NOEXIST));
        let Some(totals) = BRIEF_WAITS.get_ptr_mut(addr) else {
            count_n(Counter::BriefWaitsUntracked, waits.count);
            diag::brief_waits_full(addr, waits.count);
            return;
        };
        totals
    };
    // SAFETY: `totals` points at this CPU's copy of the word's value, sized and aligned
    // for `BriefWaits`; as in `add_brief_wait`.
    unsafe {
        (*totals).count += waits.count;
        (*totals).op = waits.op;
        (*totals).val = waits.val;
    }
}
