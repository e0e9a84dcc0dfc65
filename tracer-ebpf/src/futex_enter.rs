//! `sys_enter` BTF raw tracepoint: a thread of the target starts a futex wait, or wakes
//! waiters (a per-CPU count; no event, userspace needs no per-call decision for wakes).
//!
//! A wait start only fills this CPU's `CPU_WAIT` entry: the record (stack window, lock
//! memory, user registers) is sent by `futex_sleep` if the thread really goes to sleep,
//! and waits that return at once are added up by `futex_exit` (see
//! `tracer_common::OpenWait`). Only one wait in `BRIEF_WAIT_TIMING_PERIOD` reads the
//! clock here.
//!
//! Why `tp_btf/sys_enter` and not `syscalls:sys_enter_futex`: measured on the 4-thread
//! lock workload, the BTF raw tracepoint costs about half as much per call (+142 ns vs
//! +287 ns for an empty program), and its arguments come straight from `pt_regs`.
use aya_ebpf::{
    bindings::pt_regs, helpers::bpf_ktime_get_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{
    BRIEF_WAIT_TIMING_PERIOD, Counter, OpenWait, OpenWaitState, futex_cmd, syscall,
};

use crate::{
    helpers::{count, count_n, read_user, target_tid},
    maps::CPU_WAIT,
};

#[btf_tracepoint(function = "sys_enter")]
pub(crate) fn futex_enter(ctx: BtfTracePointContext) -> i32 {
    match try_futex_enter(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

/// The first three syscall arguments, read straight from the saved registers.
#[inline(always)]
pub(crate) fn syscall_args(regs: *const pt_regs) -> [u64; 3] {
    // SAFETY: `regs` is the tracepoint's BTF-typed `struct pt_regs *`; the verifier checks
    // each load against the kernel's BTF layout, which `pt_regs` mirrors for x86-64.
    unsafe { [(*regs).rdi, (*regs).rsi, (*regs).rdx] }
}

fn try_futex_enter(ctx: &BtfTracePointContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let nr: i64 = ctx.arg(1);
    let regs: *const pt_regs = ctx.arg(0);
    let (uaddr, cmd, val) = match nr {
        syscall::FUTEX => {
            let [uaddr, op, val] = syscall_args(regs);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "futex op and val are 32-bit ints"
            )]
            let (cmd, val) = (op as u32 & futex_cmd::CMD_MASK, val as u32);
            if futex_cmd::is_wake(cmd) {
                count(Counter::FutexWakes);
                return Ok(());
            }
            if !futex_cmd::is_wait(cmd) {
                return Ok(());
            }
            (uaddr, cmd, val)
        }
        syscall::FUTEX_WAIT => {
            let [uaddr, val, _mask] = syscall_args(regs);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "the expected value is 32-bit"
            )]
            (uaddr, futex_cmd::WAIT2, val as u32)
        }
        syscall::FUTEX_WAITV => {
            // futex_waitv(struct futex_waitv *waiters, ...): report the first word waited on.
            let [waiters, _nr, _flags] = syscall_args(regs);
            let first: [u64; 2] = read_user(waiters)?;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "futex_waitv.val holds a u32 value"
            )]
            (first[1], futex_cmd::WAITV, first[0] as u32)
        }
        syscall::FUTEX_WAKE => {
            count(Counter::FutexWakes);
            return Ok(());
        }
        _ => return Ok(()),
    };
    let waits = count_n(Counter::FutexWaits, 1);
    let wait = OpenWait {
        addr: uaddr,
        start_ns: if waits.is_multiple_of(BRIEF_WAIT_TIMING_PERIOD) {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            unsafe { bpf_ktime_get_ns() }
        } else {
            0
        },
        op: cmd,
        val,
        state: OpenWaitState::Entered as u32,
        tid,
    };
    let slot = CPU_WAIT.get_ptr_mut(0).ok_or(())?;
    // SAFETY: `slot` points at this CPU's `OpenWait`; the thread running here is the only
    // one that can be inside a syscall on this CPU, and a thread that leaves the CPU
    // mid-wait has its wait moved out first (`futex_sleep`).
    unsafe { slot.write(wait) };
    Ok(())
}
