//! Userspace side of the tracer.
//!
//! Room map (one concern per module; only `probes` talks to aya):
//! - `probes`: load the eBPF object, attach futex hooks and lock uprobes, drain the ring buffer.
//! - `event`: decode raw ring-buffer records into typed events.
//! - `native`: native locks from futex events: what lock a futex word is and who holds it,
//!   the wait-for graph, and the analysis state machine.
//! - `go`: everything about Go programs: pclntab and build info, probe-site planning, the
//!   Go lock model and the live Go tracker.
//! - `lock_names`: names of locks from DWARF, Go's and Rust's: field paths of globals,
//!   `Type.field` of locks in heap objects from the code that takes them.
//! - `lock_order`: the lock-order graph: potential deadlocks (inversions) from the order
//!   locks are taken in.
//! - `lockstats`: per-lock contention counters and wait/hold histograms.
//! - `model`: the vocabulary every output sees: locks, findings (deadlocks, stuck locks),
//!   the summary, and their raw form as the analyses produce them.
//! - `assemble`: the one place raw findings and statistics become report values, with
//!   every lock, thread and stack frame named.
//! - `sinks`: outputs (text, JSON, DOT pictures of the graphs), each consuming findings
//!   and the summary; wrappers that filter the summary and count findings for the exit
//!   status.
//! - `exports`: a run's contention profile written as files: pprof, folded stacks, an
//!   SVG flame graph (for `attach` and `report`).
//! - `pprof`: contention profiles encoded as gzipped pprof, like Go's `/debug/pprof/mutex`.
//! - `metrics`: the Prometheus text exposition of live snapshots and the tracer's own
//!   state (pure: snapshots in, text out).
//! - `symbols`: ELF symbol tables and DWARF lines for lock names and stacks.
//! - `target`: the traced process read from the outside (`/proc`, its memory): threads,
//!   names, maps, liveness.
//! - `unwind`: user stacks from the frame-pointer chain plus the copied stack window.
//! - `realtime`: draining at a real-time priority, and the note when the target's
//!   real-time threads starved the tracer.
//! - `recording`: `tracer record`'s file (findings and summary as a live run reports them,
//!   with the target's identity) and `tracer report`, which replays it through the sinks.
//! - `session`: the tokio loop that ties a live attach together.
//! - `serve`: `tracer serve`, the sidecar: target discovery, one session per target, the
//!   HTTP endpoint (metrics, pprof, health).
//! - `top`: `tracer top`, the live full-screen view (ratatui): rates and percentiles over
//!   a sliding window of live snapshots, the wait-for chains, findings as banners.
pub mod assemble;
pub mod event;
pub mod exports;
pub mod go;
pub mod lock_names;
pub mod lock_order;
pub mod lockstats;
pub mod metrics;
pub mod model;
pub mod native;
pub mod pprof;
pub mod probes;
pub mod realtime;
pub mod recording;
pub mod serve;
pub mod session;
pub mod sinks;
pub mod symbols;
pub mod target;
pub mod top;
pub mod units;
pub mod unwind;

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
