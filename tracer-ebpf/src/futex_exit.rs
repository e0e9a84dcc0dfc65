//! `sys_exit` BTF raw tracepoint: the futex wait of a target thread ended. The syscall's
//! arguments are still in the saved registers at exit, so no per-thread state has to be
//! kept between enter and exit: userspace pairs the two events by TID.
use aya_ebpf::{
    bindings::pt_regs, helpers::bpf_ktime_get_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{Event, EventKind, futex_cmd, syscall};

use crate::{
    futex_enter::syscall_args,
    helpers::{emit, target_tid},
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
    let mut event = Event::ZERO;
    event.kind = EventKind::FutexWaitDone as u32;
    event.tid = tid;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    event.ts_ns = unsafe { bpf_ktime_get_ns() };
    event.addr = if cmd == futex_cmd::WAITV { 0 } else { uaddr };
    event.op = cmd;
    event.ret = ctx.arg(1);
    emit(&event);
    Ok(())
}
