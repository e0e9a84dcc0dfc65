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
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use tracer_common::{SwitchLookup, switch_lookup, switch_table_index};

use crate::maps::{SWITCH_PROGRAMS, SWITCH_TABLE, SWITCH_TARGETS};

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn switch_dispatch(ctx: BtfTracePointContext) -> i32 {
    match try_switch_dispatch(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_switch_dispatch(ctx: &BtfTracePointContext) -> Result<(), ()> {
    // `current` is still the thread being switched out.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
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
    // SAFETY: the slots of `SWITCH_PROGRAMS` hold only `futex_sleep` programs, loaded for
    // this same hook (the kernel refuses others), which take this context as it is. A
    // call that fails (its slot just emptied) returns here, and nothing follows. A torn
    // or stale table entry can only name another served process's program, whose own
    // target filter then lets the switch go.
    unsafe { SWITCH_PROGRAMS.tail_call(ctx, slot) };
    Ok(())
}
