//! Kernel side of the tracer.
//!
//! Hooks, one file each:
//! - `futex_sleep`: `sched_switch` BTF raw tracepoint: a target thread goes to sleep in
//!   a futex wait; its wait is sent now (event).
//! - `futex_exit`: `sys_exit` BTF raw tracepoint: a futex wait ends (event), or, if it
//!   never slept, is added to its futex word's totals in `BRIEF_WAITS`; wakes are
//!   counted.
//! - `futex_call`: decoding of futex calls from their registers, for both.
//! - `lock_entry` / `lock_return` / `unlock_entry`: uprobes on glibc's lock functions,
//!   only attached with `--holds`.
//! - `go_lock_site`: uprobes on Go lock paths (entries, `ret`s, after inlined atomics),
//!   attached when the target is a Go program.
//! - `process_exec`: `sched_process_exec` BTF raw tracepoint: the target executed
//!   another program (event), the point where userspace switches programs.
//! - `switch_dispatch`: `sched_switch` BTF raw tracepoint, once for every process a
//!   `tracer serve` traces: hands each served thread's switch to its target's
//!   `futex_sleep` (a tail call, to one of its two dispatched variants), so the host's
//!   switches pay one program, not one per target; it draws the sampled sleeps itself.
//! - `noop`: empty programs on the same hooks, attached only by the benchmark to
//!   measure the floor cost of the hooks themselves.
//!
//! `open_sleeps` keeps the sleeping waits for `futex_sleep` when it also times their ends
//! (no `sys_exit` program: `tracer serve`); `sleep_sampling` draws the sleeps traced. `maps` holds every map; `helpers` the small bounds-checked `unsafe` wrappers; `diag`
//! the `aya-log` messages about unexpected paths, sent only when the loader asks for them.
#![no_std]
#![no_main]
// For `atomic_xadd`: the BPF target has atomic adds (BPF_ATOMIC) but no compare-and-swap,
// so `core`'s atomic types offer no `fetch_add` there (`open_sleeps::Slot`).
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "core_intrinsics: the only way to an atomic add on the BPF target"
)]
#![expect(
    clippy::inline_always,
    reason = "helpers are a few instructions each; a BPF-to-BPF call per use would cost more than their body"
)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand each hook its context by value"
)]

mod diag;
mod futex_call;
mod futex_exit;
mod futex_sleep;
mod go_lock_site;
mod helpers;
mod lock_entry;
mod lock_return;
mod maps;
mod noop;
mod open_sleeps;
mod process_exec;
mod sleep_sampling;
mod switch_dispatch;
mod unlock_entry;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that can reach a panic, so this is never called.
    loop {}
}
