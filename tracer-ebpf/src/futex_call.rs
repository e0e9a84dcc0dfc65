//! The target's futex system calls, from their saved registers, for the hook that sends a
//! wait when its thread goes to sleep (`futex_sleep`) and the one that sees the call
//! return (`futex_exit`). The decoding itself is `tracer_common::FutexCall::decode`,
//! shared with userspace's scan of the threads found blocked at attach.
use aya_ebpf::bindings::pt_regs;
use tracer_common::{FutexCall, FutexTimeout, FutexWait, TIMEOUT_UNREADABLE, WaitTimeoutArg};

use crate::{diag, helpers::read_user};

/// The first three syscall arguments, read straight from the saved registers.
#[inline(always)]
pub(crate) fn syscall_args(regs: *const pt_regs) -> [u64; 3] {
    // SAFETY: `regs` is a BTF-typed `struct pt_regs *` (a tracepoint argument or the
    // result of `bpf_task_pt_regs`); the verifier checks each load against the kernel's
    // BTF layout, which `pt_regs` mirrors for x86-64.
    unsafe { [(*regs).rdi, (*regs).rsi, (*regs).rdx] }
}

/// The fourth to sixth syscall arguments (`r10`, `r8`, `r9`: where the futex calls keep
/// their timeout and its clock).
#[inline(always)]
pub(crate) fn more_syscall_args(regs: *const pt_regs) -> [u64; 3] {
    // SAFETY: as in `syscall_args`.
    unsafe { [(*regs).r10, (*regs).r8, (*regs).r9] }
}

/// The timeout of waiting syscall `nr` with arguments `args` and `more_args`
/// ([`FutexTimeout::of_call`]), its `struct timespec` read from the target now (the call
/// is still in progress, and the kernel has read the same bytes at its start):
/// [`WaitTimeoutArg::NONE`] for a wait without one, `TIMEOUT_UNREADABLE` if the read
/// fails.
#[inline(always)]
pub(crate) fn timeout(nr: i64, [a0, a1, a2]: [u64; 3], [a3, a4, a5]: [u64; 3]) -> WaitTimeoutArg {
    let Some(FutexTimeout { addr, clock }) = FutexTimeout::of_call(nr, [a0, a1, a2, a3, a4, a5])
    else {
        return WaitTimeoutArg::NONE;
    };
    match read_user::<[i64; 2]>(addr) {
        Ok([sec, nsec]) => WaitTimeoutArg {
            clock: clock as u32,
            pad: 0,
            sec,
            nsec,
        },
        Err(()) => WaitTimeoutArg {
            clock: TIMEOUT_UNREADABLE,
            ..WaitTimeoutArg::NONE
        },
    }
}

/// Decodes syscall `nr` with arguments `args` ([`FutexCall::decode`]), reading the first
/// word of a `futex_waitv` call from the target, so a wait is always a
/// [`FutexCall::Wait`]. `Err` only if that read fails.
#[inline(always)]
pub(crate) fn decode(nr: i64, args: [u64; 3]) -> Result<Option<FutexCall>, ()> {
    match FutexCall::decode(nr, args) {
        Some(FutexCall::WaitV { waiters }) => {
            let first =
                read_user::<[u64; 2]>(waiters).inspect_err(|()| diag::waitv_unreadable(waiters))?;
            Ok(Some(FutexCall::Wait(FutexWait::of_waitv(first))))
        }
        call => Ok(call),
    }
}
