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
//! `drawn_sleep`), a switch-out of a thread that may have a sleep to end, and an
//! exit (to `sleep_ends`). It reads the process's period in `SWITCH_PERIODS`, and
//! its count of open sleeps in that process's own map, found in `SWITCH_OPEN_SLEEPS`.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use tracer_common::{
    OPEN_SLEEP_SLOTS_LEN, SwitchLookup, hand_off, switch_lookup, switch_table_index,
};

use crate::{
    helpers::switch_out,
    maps::{SWITCH_OPEN_SLEEPS, SWITCH_PERIODS, SWITCH_PROGRAMS, SWITCH_TABLE, SWITCH_TARGETS},
    sleep_sampling,
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
    let Some(hand_off) = hand_off(out, || draws(slot), || may_have_open(slot, host_tid)) else {
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

/// The draw for a sleep of the process at `slot`, under its period.
#[inline(always)]
fn draws(slot: u32) -> bool {
    sleep_sampling::drawn(SWITCH_PERIODS.get(slot).copied().unwrap_or(0))
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
