//! `sched_process_exec` BTF raw tracepoint: the target executed another program.
//!
//! It fires once the new program is in place, after the kernel ended every other thread
//! of the process, in the thread that called `execve` (which keeps the process's TGID).
//! So every record of the old program is in the ring buffer before this one, and every
//! record of the new program after it: userspace switches programs exactly at this
//! record. Rare, so it always wakes the reader.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{Counter, EventKind, ExecRecord};

use crate::{
    helpers::{count, target_tid},
    maps::EVENTS,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub(crate) fn process_exec(_ctx: BtfTracePointContext) -> i32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    let record = ExecRecord {
        kind: EventKind::Exec as u32,
        tid,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    };
    if EVENTS.output::<ExecRecord>(&record, 0).is_err() {
        // Userspace still sees the new executable at its next liveness check.
        count(Counter::Dropped);
    }
    0
}
