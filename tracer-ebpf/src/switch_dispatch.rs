//! `sched_switch` BTF raw tracepoint, once for all the processes a `tracer serve` traces:
//! hands a switch of a served process's thread to that target's own `futex_sleep`
//! program, by a tail call through `SWITCH_PROGRAMS` at the target's slot. Every context switch of the host then pays one program and one
//! lookup however many processes are served, where each target attaching its own
//! program made it pay one program per target (BENCHMARKS.md, part (k)).
//!
//! The served processes are found in a direct-mapped table (`SWITCH_TABLE`) and, for
//! those whose table slot another holds, in a hash (`SWITCH_TARGETS`).
//!
//! Keyed by the host's TGID (`bpf_get_current_pid_tgid`), which stays valid through a
//! thread's last switch-out (`futex_sleep` must see that one). So only a serve in the
//! host's PID namespace, which knows its targets' host TGIDs, loads it; elsewhere each
//! target attaches its own `futex_sleep`.
//!
//! The dispatcher also makes each served process's sampling draw
//! (`tracer_common::hand_off`): a sleep it leaves out, of a thread with no sleep open,
//! goes no further. It hands on only a sleep it drew (to the process's
//! `drawn_sleep`), a switch-out of a thread whose last sleep it drew, and an exit (to
//! `sleep_ends`). It draws from the thread's count of voluntary switches
//! (`tracer_common::sleep_drawn`), under the process's period in `SWITCH_PERIODS`. Only
//! for a while after the period rose does it also read the process's count of open
//! sleeps, in that process's own map, found in `SWITCH_OPEN_SLEEPS`
//! (`tracer_common::SwitchDraw`). Before the serve detaches it for a while (its duty
//! cycle), it draws no new sleep for a while, and only hands on ends
//! (`tracer_common::switch_draws_new`).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use tracer_common::{
    OPEN_SLEEP_SLOTS_LEN, SwitchLookup, VoluntarySwitch, hand_off, sleep_drawn, switch_draws_new,
    switch_lookup, switch_period, switch_reads_counts, switch_table_index,
};

use crate::{
    helpers::switch_out,
    maps::{
        SWITCH_OPEN_SLEEPS, SWITCH_PERIODS, SWITCH_PROGRAMS, SWITCH_TABLE, SWITCH_TARGETS,
        TASK_NVCSW_OFFSET,
    },
};

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn switch_dispatch(ctx: BtfTracePointContext) -> i32 {
    match try_switch_dispatch(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_switch_dispatch(ctx: &BtfTracePointContext) -> Result<(), ()> {
    // `current` is still the thread being switched out.
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // A CPU's idle task: every switch to a thread woken on an idle CPU (a lock handed
    // over) comes from it, and it is never served.
    if tgid == 0 {
        return Ok(());
    }
    // The table first: an array element, where the hash costs a lookup.
    let entry = SWITCH_TABLE
        .get(switch_table_index(tgid))
        .copied()
        .unwrap_or(u64::MAX);
    let slot = match switch_lookup(entry, tgid) {
        SwitchLookup::Served(slot) => slot,
        SwitchLookup::NotServed => return Ok(()),
        // SAFETY: the value is a plain `u32`, copied out before anything else touches
        // the map.
        SwitchLookup::InHash => *unsafe { SWITCH_TARGETS.get(tgid) }.ok_or(())?,
    };
    let out = switch_out(ctx);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the lower half is the TID, a u32 by definition"
    )]
    let host_tid = pid_tgid as u32;
    let value = SWITCH_PERIODS.get(slot).copied().unwrap_or(0);
    let period = switch_period(value);
    // Read only for a draw that is not a certainty (an exit is handed on without one).
    let voluntary_switches = if period > 1 {
        task_voluntary_switches(ctx.arg(1))
    } else {
        0
    };
    let drawn = |switch| {
        let count = match switch {
            VoluntarySwitch::This => voluntary_switches,
            VoluntarySwitch::Before => voluntary_switches.wrapping_sub(1),
        };
        sleep_drawn(host_tid, count, period)
    };
    let Some(hand_off) = hand_off(out, switch_draws_new(value), drawn, || {
        switch_reads_counts(value) && may_have_open(slot, host_tid)
    }) else {
        return Ok(());
    };
    // SAFETY: the slots of `SWITCH_PROGRAMS` hold only `drawn_sleep` and
    // `sleep_ends` programs, loaded for this same hook (the kernel refuses others),
    // which take this context as it is. A call that fails (its slot just emptied)
    // returns here, and nothing follows. A torn or stale table entry can only name
    // another served process's program, whose own target filter then lets the switch go.
    unsafe { SWITCH_PROGRAMS.tail_call(ctx, hand_off.program_index(slot)) };
    Ok(())
}

/// The count of voluntary switches (`nvcsw`) of `task`, the thread being switched out:
/// the kernel has counted this switch-out already, if it is one.
#[inline(always)]
fn task_voluntary_switches(task: u64) -> u64 {
    let field = task.wrapping_add(TASK_NVCSW_OFFSET.load()) as *const u64;
    // SAFETY: `task` is `sched_switch`'s BTF-typed `struct task_struct *prev`, live for
    // the program's run, and the offset (a constant to the verifier, from a frozen
    // global) that of its `unsigned long nvcsw` in the running kernel's BTF: the
    // verifier checks this load against that type, and a fault reads 0.
    unsafe { core::ptr::read_volatile(field) }
}

/// Whether thread `host_tid` of the process at `slot` may have an open sleep: its slot
/// in the process's `OPEN_SLEEP_SLOTS` counts one (true if that map is not found).
#[inline(always)]
fn may_have_open(slot: u32, host_tid: u32) -> bool {
    let index = host_tid & (OPEN_SLEEP_SLOTS_LEN - 1);
    match SWITCH_OPEN_SLEEPS.get_value_ptr_mut(slot, &index) {
        // SAFETY: the pointer is the inner map's element, a live, aligned `u64` (arrays
        // are preallocated, and the inner map is held while the program runs). Volatile,
        // as `open_sleeps::Slot` reads it: the process's program adds to it atomically.
        Some(count) => unsafe { core::ptr::read_volatile(count) != 0 },
        None => true,
    }
}
