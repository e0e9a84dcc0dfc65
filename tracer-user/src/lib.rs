//! Userspace side of the tracer.
//!
//! Room map (one concern per module; only `probes` talks to aya):
//! - `probes`: load the eBPF object, attach futex hooks and lock uprobes, drain the ring buffer.
//! - `event`: decode raw ring-buffer records into typed events.
//! - `futex_lock`: decide what lock (if any) a futex word belongs to, and who holds it.
//! - `waitgraph`: the live wait-for graph (thread → lock → holders) and cycle search.
//! - `lockstats`: per-lock contention counters and wait/hold histograms.
//! - `analysis`: the state machine that turns events into graph updates, stats and findings.
//! - `symbols`: ELF symbol tables and DWARF lines for lock names and stacks.
//! - `gosym`: Go pclntab and build info: function names, lines and inlined frames in (stripped) Go binaries.
//! - `goprobe`: uprobe sites on the lock paths of x86-64 Go binaries (entries, `ret`s and the instruction after each inlined atomic; no uretprobes) and the runtime's `g` offsets.
//! - `golocks`: the Go lock model: goroutine holds and waits per `sync.Mutex`/`RWMutex`, stats, wait-for cycles, stuck locks.
//! - `gotrace`: the Go side of a live attach: recognise a Go target, plan its probes, report goroutine deadlocks and stuck locks.
//! - `procfs`: what `/proc` says about the target (threads, names, maps, liveness).
//! - `report`: the report's data model and its JSON and text renderings.
//! - `unwind`: user stacks from the frame-pointer chain plus the copied stack window.
//! - `session`: the tokio loop that ties a live attach together.
pub mod analysis;
pub mod event;
pub mod futex_lock;
pub mod golocks;
pub mod goprobe;
pub mod gosym;
pub mod gotrace;
pub mod lockstats;
pub mod probes;
pub mod procfs;
pub mod realtime;
pub mod report;
pub mod session;
pub mod symbols;
pub mod units;
pub mod unwind;
pub mod waitgraph;

/// An error and its causes on one line, for notes and one-line error messages.
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
