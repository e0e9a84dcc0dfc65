//! The tracer's vocabulary: locks, the threads and goroutines that wait for and hold them,
//! findings (deadlocks, stuck locks) and per-lock statistics, as every output sees them.
//!
//! It sits below everything that uses it: the native and Go analyses produce these types
//! (through `crate::assemble`, which resolves stacks and names), and the sinks in
//! `crate::sinks` (text, JSON, and any later output) consume them. Nothing here reads the
//! target or knows an output format, except that the serde field names are the JSON
//! contract that other tools read: fields may be added; existing ones keep their names and
//! shapes.
//!
//! - `lock`: locks as the report names them ([`LockRef`]) and their kinds.
//! - `finding`: what is reported the moment it is confirmed: deadlocks, stuck locks.
//! - `summary`: the end-of-run summary and its per-lock distributions.
//! - `graph`: snapshots of the wait-for and lock-order graphs, for pictures (`--graph`).
//! - `live`: the live state `tracer serve` publishes for metrics (cumulative counters
//!   and bucketed distributions, cardinality bounded).
//! - `profile`: the lock waits of a window by stack and lock, for pprof.
//! - `raw`: the same facts as the analyses know them (addresses, ids, timestamps, where
//!   a stack can be found), before `crate::assemble` names them.

mod finding;
pub mod graph;
pub mod live;
mod lock;
pub mod profile;
pub mod raw;
mod summary;

#[cfg(test)]
pub(crate) mod fixtures;

pub use self::{
    finding::{
        Deadlock, DeadlockEntry, Finding, HolderEvidence, HolderState, LockOrderInversion,
        OrderEdge, StuckHolder, StuckLock,
    },
    lock::{HoldMode, LockKind, LockRef, NameSource},
    summary::{FilteredLocks, LockSummary, OtherLocks, Quantiles, Summary},
};
