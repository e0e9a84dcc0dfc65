//! `sys_exit` BTF raw tracepoint: the futex wait of a target thread ended. A wait that
//! slept was sent by `futex_sleep` and left no entry; its end goes out as an event that
//! userspace pairs by TID, as does the end of a wait begun before the attach. A wait that
//! never slept is only added to its futex word's `BRIEF_WAITS` totals.
use aya_ebpf::{
    bindings::{BPF_NOEXIST, pt_regs},
    helpers::bpf_ktime_get_ns,
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{
    BriefWaits, Counter, Event, EventKind, OpenWait, OpenWaitState, futex_cmd, syscall,
};

/// `EAGAIN`: the futex word no longer held the expected value (the lock was released
/// while the waiter entered the kernel).
const EAGAIN: i64 = 11;

use crate::{
    futex_enter::syscall_args,
    helpers::{SyscallRegs, count_n, emit, send_wait, target_tid},
    maps::{BRIEF_WAITS, CPU_BRIEF_WAITS, CPU_WAIT, OPEN_WAITS},
};

#[btf_tracepoint(function = "sys_exit")]
pub(crate) fn futex_exit(ctx: BtfTracePointContext) -> i32 {
    match try_futex_exit(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "every hook keeps the hook/try_hook shape"
)]
fn try_futex_exit(ctx: &BtfTracePointContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: BTF-typed `struct pt_regs *` of the tracepoint; verifier-checked load.
    let nr = unsafe { (*regs).orig_rax }.cast_signed();
    let [uaddr, op, _] = syscall_args(regs);
    let cmd = match nr {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the futex op is a 32-bit int"
        )]
        syscall::FUTEX => op as u32 & futex_cmd::CMD_MASK,
        syscall::FUTEX_WAIT => futex_cmd::WAIT2,
        syscall::FUTEX_WAITV => futex_cmd::WAITV,
        _ => return Ok(()),
    };
    if !futex_cmd::is_wait(cmd) {
        return Ok(());
    }
    // A wait that was sent when it went to sleep, or began before the attach, has no
    // entry (or an idle one): its end is sent, for userspace to pair with the wait it
    // received or found blocked when it attached.
    let mut wait = take_wait(tid);
    let (state, addr) = (wait.state, wait.addr);
    let ret: i64 = ctx.arg(1);
    if state == OpenWaitState::Entered as u32 && (ret == 0 || ret == -EAGAIN) {
        // Most waits are not timed: counted without a clock read.
        let ns = if wait.start_ns == 0 {
            None
        } else {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            Some(unsafe { bpf_ktime_get_ns() }.saturating_sub(wait.start_ns))
        };
        add_brief_wait(addr, ns, cmd, wait.val);
        return Ok(());
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if state == OpenWaitState::Entered as u32 {
        // Any other outcome is rare and may matter to userspace: the kernel refusing a
        // PI lock with EDEADLK (glibc then parks the thread for good), a timeout, a
        // signal. Sent whole, start and end (an untimed one as starting now).
        if wait.start_ns == 0 {
            wait.start_ns = now;
        }
        // SAFETY: BTF-typed `struct pt_regs *` of the tracepoint; verifier-checked loads
        // of the user registers saved at the call (only `rax` has changed since).
        let call = unsafe {
            SyscallRegs {
                nr,
                arg0: uaddr,
                sp: (*regs).rsp,
                ip: (*regs).rip,
                bp: (*regs).rbp,
            }
        };
        if !send_wait(ctx, tid, &wait, &call) {
            return Ok(());
        }
    }
    let mut event = Event::ZERO;
    event.kind = EventKind::FutexWaitDone as u32;
    event.tid = tid;
    event.ts_ns = now;
    // The futex word: from the entry when the wait was traced from its start, else from
    // the arguments (`futex_waitv` has no single word there).
    event.addr = if state != OpenWaitState::Idle as u32 {
        addr
    } else if cmd == futex_cmd::WAITV {
        0
    } else {
        uaddr
    };
    event.op = cmd;
    event.ret = ret;
    emit(&event);
    Ok(())
}

/// Thread `tid`'s wait in flight, marked ended: from this CPU's slot if the thread never
/// left the CPU (the common case, no hash lookup), else from its `OPEN_WAITS` entry;
/// [`OpenWait::IDLE`] if neither holds one (it began before the attach).
#[inline(always)]
fn take_wait(tid: u32) -> OpenWait {
    if let Some(slot) = CPU_WAIT.get_ptr_mut(0) {
        // SAFETY: `slot` points at this CPU's `OpenWait`; this thread has not left the CPU
        // since writing it if the TID still matches and the wait is still `Entered`.
        unsafe {
            let wait = slot.read();
            if wait.tid == tid && wait.state == OpenWaitState::Entered as u32 {
                (*slot).state = OpenWaitState::Idle as u32;
                return wait;
            }
        }
    }
    match OPEN_WAITS.get_ptr_mut(tid) {
        // SAFETY: `entry` points at this thread's map value, sized and aligned for an
        // `OpenWait`; only this thread's programs write it, one at a time.
        Some(entry) => unsafe {
            let wait = entry.read();
            (*entry).state = OpenWaitState::Idle as u32;
            wait
        },
        None => OpenWait::IDLE,
    }
}

/// Adds a wait that never slept (lasting `ns`, if timed) to this CPU's running totals,
/// moving the totals of the previous word to its `BRIEF_WAITS` entry first if the word
/// changed.
#[inline(always)]
fn add_brief_wait(addr: u64, ns: Option<u64>, op: u32, val: u32) {
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
        if let Some(ns) = ns {
            waits.timed += 1;
            waits.total_ns += ns;
            if ns > waits.max_ns {
                waits.max_ns = ns;
            }
        }
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
            return;
        };
        totals
    };
    // SAFETY: `totals` points at this CPU's copy of the word's value, sized and aligned
    // for `BriefWaits`; as in `add_brief_wait`.
    unsafe {
        (*totals).count += waits.count;
        (*totals).timed += waits.timed;
        (*totals).total_ns += waits.total_ns;
        if waits.max_ns > (*totals).max_ns {
            (*totals).max_ns = waits.max_ns;
        }
        (*totals).op = waits.op;
        (*totals).val = waits.val;
    }
}
