//! `sched_switch` BTF raw tracepoint: a thread of the target goes to sleep inside a futex
//! wait. This is where a wait is seen begin: the record (lock memory, user registers and,
//! for a sample of the waits, the stack: `tracer_common::STACK_SAMPLE_EVERY`) goes out
//! now, timed from now, with the call's timeout (read from its argument: the kernel read
//! the same `struct timespec` when the call began).
//!
//! There is no `sys_enter` hook: every system call of every process would pay for it
//! (BENCHMARKS.md, "Measurements behind the design"), and a futex wait needs nothing from
//! its entry that its sleep does not have: the hook runs in the context of the thread being switched out, whose saved
//! registers still hold the call and its arguments, and whose user stack and memory are
//! as they were when the call began. Waits that return without sleeping are seen only at
//! their end (`futex_exit`), so they are counted but not timed.
//!
//! With `LEAN_WAITS` as well (`tracer serve`), only the waits the stack sampler takes go
//! out as a record at the sleep; the others are only written to the table, and go out as
//! one small `SleptRecord` with their end: reading the lock memory and the stack at the
//! sleep is what costs a lock-bound target most (BENCHMARKS.md, "What each futex hook
//! costs"), and the sleep is on the lock's hand-over path. Userspace reads a lean wait that
//! sleeps long from the table and the target's memory, while it sleeps.
//!
//! With `WAIT_ENDS_AT_SWITCH_IN`, the reader may also sample sleeps (`SLEEP_SAMPLING`):
//! a target that sleeps in futex calls tens of thousands of times a second would
//! otherwise pay for each (BENCHMARKS.md, "Sampled sleeps"). A sleep left out is
//! decided before its registers are read, and leaves nothing: no record, no entry in the
//! table; the reader finds such a sleep from `/proc` if it lasts. A traced one carries
//! the period as its weight.
//!
//! By default the hook keeps no state: a thread that sleeps twice in one call (a
//! spurious wakeup) sends its wait twice, and userspace keeps the first; the end comes
//! from `futex_exit`. With `WAIT_ENDS_AT_SWITCH_IN` (a session with no `sys_exit`
//! program: `tracer serve`'s default) the hook also times ends, at the waiting thread's
//! switch back in, worked out at its next switch-out (`open_sleeps`). What only `sys_exit` sees is then not seen: waits
//! that returned without sleeping, wakes, and the return value.
//!
//! Three programs of this one hook: `futex_sleep` draws its sleeps itself (attached on
//! its own); a `tracer serve` in the host's PID namespace loads the other two, which its
//! dispatcher (`switch_dispatch`) tail-calls after making the draw:
//! `drawn_sleep` for a sleep it drew, `sleep_ends` for a switch-out that
//! only ends an open sleep or forgets an exited thread (`tracer_common::hand_off`).
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{Counter, FutexCall, LEAN_WAITS_ALL, LEAN_WAITS_NONE, SwitchOut};

use crate::{
    diag, futex_call,
    helpers::{count, current_syscall_regs, send_wait, switch_out, takes_stack, target_tid},
    maps::{LEAN_WAITS, WAIT_ENDS_AT_SWITCH_IN},
    open_sleeps::{self, Sleep, Slot, SwitchOutClock},
    sleep_sampling,
};

/// Who decides whether a sleep is traced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Draw {
    /// This program, under its target's period (`SLEEP_SAMPLING`).
    Own,
    /// The dispatcher, which drew this sleep: it is traced.
    Drawn,
    /// The dispatcher, which did not draw this switch-out: only an open sleep's end or
    /// an exit is handled.
    EndsOnly,
}

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn futex_sleep(ctx: BtfTracePointContext) -> i32 {
    match try_futex_sleep(&ctx, Draw::Own) {
        Ok(()) | Err(()) => 0,
    }
}

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn drawn_sleep(ctx: BtfTracePointContext) -> i32 {
    match try_futex_sleep(&ctx, Draw::Drawn) {
        Ok(()) | Err(()) => 0,
    }
}

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn sleep_ends(ctx: BtfTracePointContext) -> i32 {
    match try_futex_sleep(&ctx, Draw::EndsOnly) {
        Ok(()) | Err(()) => 0,
    }
}

/// Inlined into each program, so that each is compiled for its `draw`.
#[inline(always)]
fn try_futex_sleep(ctx: &BtfTracePointContext, draw: Draw) -> Result<(), ()> {
    let ends_at_switch_in = WAIT_ENDS_AT_SWITCH_IN.load() != 0;
    // sched_switch(bool preempt, prev, next, unsigned int prev_state).
    let task: u64 = ctx.arg(1);
    let out = switch_out(ctx);
    if ends_at_switch_in && out == SwitchOut::Exits {
        // Any exiting thread, before the target's filter (see `forget_exited`).
        open_sleeps::forget_exited(task);
        return Ok(());
    }
    // Before the target's filter: only the target's threads have entries in the table
    // (the filter let them in when they went to sleep), so for any other thread this
    // finds none, and every switch-out of the target's threads must come here.
    let (slot, entry, clock) = if ends_at_switch_in {
        let slot = Slot::of_current();
        let (entry, clock) = open_sleeps::switched_out(task, slot, out);
        (slot, entry, clock)
    } else {
        (Slot::UNUSED, core::ptr::null_mut(), SwitchOutClock::UNREAD)
    };
    // A preempted thread, or one leaving the CPU in state TASK_RUNNING (a
    // `cond_resched`), is still runnable, not waiting. (Without ends timed here, an exit
    // is not a wait either.)
    if out != SwitchOut::Sleeps {
        return Ok(());
    }
    // Before anything else is read, the filter's helper call included: a sleep left out
    // costs no more than the table's slot and the draw.
    let weight = match draw {
        Draw::Own if ends_at_switch_in => {
            let period = sleep_sampling::own_period();
            if !sleep_sampling::drawn(period) {
                return Ok(());
            }
            period
        }
        Draw::Own => 1,
        // Under the period the dispatcher drew with, which the reader sets with this one.
        Draw::Drawn => sleep_sampling::own_period(),
        Draw::EndsOnly => return Ok(()),
    };
    // `current` is still the thread being switched out.
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let Some(regs) = current_syscall_regs() else {
        diag::no_syscall_regs(tid);
        return Err(());
    };
    let Some(FutexCall::Wait(wait)) = futex_call::decode(regs.nr, regs.args)? else {
        return Ok(());
    };
    let clock = if clock.now_ns != 0 {
        clock
    } else if ends_at_switch_in {
        SwitchOutClock::read(task)
    } else {
        SwitchOutClock {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            now_ns: unsafe { bpf_ktime_get_ns() },
            runtime_ns: 0,
        }
    };
    let sleep = Sleep {
        task,
        tid,
        clock,
        sp: regs.sp,
        ip: regs.ip,
        weight,
    };
    let lean_waits = if ends_at_switch_in {
        LEAN_WAITS.load()
    } else {
        LEAN_WAITS_NONE
    };
    let with_stack = lean_waits != LEAN_WAITS_ALL && takes_stack(wait.addr);
    if lean_waits != LEAN_WAITS_NONE && !with_stack {
        count(Counter::FutexWaits);
        open_sleeps::note_sleep(entry, slot, &sleep, &wait, true);
        return Ok(());
    }
    let timeout = futex_call::timeout(regs.nr, regs.args, regs.more_args);
    // A full ring buffer drops the record (counted): the wait's end then finds no start
    // and counts as a brief wait in userspace.
    let sent = send_wait(
        ctx,
        tid,
        &wait,
        (clock.now_ns, &timeout),
        &regs,
        with_stack,
        weight,
    );
    if ends_at_switch_in && sent {
        count(Counter::FutexWaits);
        open_sleeps::note_sleep(entry, slot, &sleep, &wait, false);
    }
    Ok(())
}
