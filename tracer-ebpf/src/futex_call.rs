//! Decoding of the target's futex system calls from their saved registers, shared by the
//! hook that sends a wait when its thread goes to sleep (`futex_sleep`) and the one that
//! sees the call return (`futex_exit`).
use aya_ebpf::bindings::pt_regs;
use tracer_common::{futex_cmd, syscall};

use crate::helpers::read_user;

/// The system call a thread is in (or returns from), as far as the futex hooks care.
pub(crate) enum FutexCall {
    /// A waiting op: the word, the futex command (see `futex_cmd`) and expected value.
    Wait { addr: u64, cmd: u32, val: u32 },
    /// An op that wakes waiters.
    Wake,
    /// Anything else.
    Other,
}

/// The first three syscall arguments, read straight from the saved registers.
#[inline(always)]
pub(crate) fn syscall_args(regs: *const pt_regs) -> [u64; 3] {
    // SAFETY: `regs` is a BTF-typed `struct pt_regs *` (a tracepoint argument or the
    // result of `bpf_task_pt_regs`); the verifier checks each load against the kernel's
    // BTF layout, which `pt_regs` mirrors for x86-64.
    unsafe { [(*regs).rdi, (*regs).rsi, (*regs).rdx] }
}

/// Decodes syscall `nr` with arguments `args`. `Err` only if a `futex_waitv` array
/// cannot be read.
#[inline(always)]
pub(crate) fn decode(nr: i64, [arg0, arg1, arg2]: [u64; 3]) -> Result<FutexCall, ()> {
    Ok(match nr {
        syscall::FUTEX => {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "futex op and val are 32-bit ints"
            )]
            let (cmd, val) = (arg1 as u32 & futex_cmd::CMD_MASK, arg2 as u32);
            if futex_cmd::is_wait(cmd) {
                FutexCall::Wait {
                    addr: arg0,
                    cmd,
                    val,
                }
            } else if futex_cmd::is_wake(cmd) {
                FutexCall::Wake
            } else {
                FutexCall::Other
            }
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the expected value is 32-bit"
        )]
        syscall::FUTEX_WAIT => FutexCall::Wait {
            addr: arg0,
            cmd: futex_cmd::WAIT2,
            val: arg1 as u32,
        },
        syscall::FUTEX_WAITV => {
            // futex_waitv(struct futex_waitv *waiters, ...): the first word waited on
            // stands for the call (`struct futex_waitv` starts with `val`, then `uaddr`).
            let first: [u64; 2] = read_user(arg0)?;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "futex_waitv.val holds a u32 value"
            )]
            FutexCall::Wait {
                addr: first[1],
                cmd: futex_cmd::WAITV,
                val: first[0] as u32,
            }
        }
        syscall::FUTEX_WAKE => FutexCall::Wake,
        _ => FutexCall::Other,
    })
}
