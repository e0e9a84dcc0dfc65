//! Empty programs on the same hooks as the real ones. Only `cargo xtask bench` attaches
//! them (through the hidden `tracer floor` command), to measure what the hooks cost
//! before we do any work in them: the floor our overhead is judged against.
use aya_ebpf::{
    macros::{btf_tracepoint, uprobe, uretprobe},
    programs::{BtfTracePointContext, ProbeContext, RetProbeContext},
};

#[btf_tracepoint(function = "sys_exit")]
pub(crate) fn noop_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_switch")]
pub(crate) fn noop_sched_switch(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[uprobe]
pub(crate) fn noop_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub(crate) fn noop_uretprobe(_ctx: RetProbeContext) -> u32 {
    0
}
