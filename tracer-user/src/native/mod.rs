//! Native (futex-based) lock tracing: pthread mutexes, rwlocks, PI mutexes and bare futex
//! words, from the kernel's futex events and (with `--holds`) the libc lock uprobes.
//!
//! - `futex_lock`: decide what lock (if any) a futex word belongs to, and who holds it.
//! - `musl_lock`: the same for musl's mutexes and rwlocks (which keep no owner).
//! - `rust_lock`: Rust programs' `std` lock waits, `parking_lot` slow paths, and the guards
//!   on a blocked thread's stack that name a `std` mutex's holder.
//! - `go_runtime`: what a Go program's futex wait is (a runtime lock, an idle sleep) from
//!   its frames.
//! - `wait_profile`: the lock waits of a window by lock and stack, for contention profiles.
//! - `waitgraph`: the live wait-for graph (thread → lock → holders) and cycle search.
//! - `analysis`: the state machine that turns events into graph updates, stats and
//!   findings.
pub mod analysis;
pub mod futex_lock;
pub mod go_runtime;
pub mod musl_lock;
pub mod rust_lock;
pub mod wait_profile;
pub mod waitgraph;

/// Whose lock layouts the target's futex words are read with: its C library's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockLayout {
    /// glibc's (also the guess when the C library is not recognised).
    #[default]
    Glibc,
    /// musl's: mutex lock word at +4, no owner in normal mutexes and rwlocks.
    Musl,
}
