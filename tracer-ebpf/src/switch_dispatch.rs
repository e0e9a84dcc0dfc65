//! `sched_switch` BTF raw tracepoint, once for all the processes a `tracer serve` traces:
//! hands a switch of a served process's thread to that target's own `futex_sleep`
//! program, by a tail call through `SWITCH_PROGRAMS` at the target's slot in
//! `SWITCH_TARGETS`. Every context switch of the host then pays one program and one
//! lookup however many processes are served, where each target attaching its own
//! program made it pay one program per target (BENCHMARKS.md, part (k)).
//!
//! Keyed by the host's TGID (`bpf_get_current_pid_tgid`), which stays valid through a
//! thread's last switch-out (`futex_sleep` must see that one). So only a serve in the
//! host's PID namespace, which knows its targets' host TGIDs, loads it; elsewhere each
//! target attaches its own `futex_sleep`.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};

use crate::maps::{SWITCH_PROGRAMS, SWITCH_TARGETS};

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn switch_dispatch(ctx: BtfTracePointContext) -> i32 {
    match try_switch_dispatch(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_switch_dispatch(ctx: &BtfTracePointContext) -> Result<(), ()> {
    // `current` is still the thread being switched out.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is a plain `u32`, copied out before anything else touches the
    // map.
    let slot = *unsafe { SWITCH_TARGETS.get(tgid) }.ok_or(())?;
    // SAFETY: the slots of `SWITCH_PROGRAMS` hold only `futex_sleep` programs, loaded for
    // this same hook (the kernel refuses others), which take this context as it is. A
    // call that fails (its slot just emptied) returns here, and nothing follows.
    unsafe { SWITCH_PROGRAMS.tail_call(ctx, slot) };
    Ok(())
}
