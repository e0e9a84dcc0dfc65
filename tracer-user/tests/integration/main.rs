//! The integration tests of `tracer-user`: one test binary, one module per feature.
//!
//! Without privileges (always run, `cargo test -p tracer-user --test integration`): the
//! Go binary analysis on real Go binaries built with every Go toolchain we install, and
//! the pprof output read by those toolchains' pprof.
//! - [`go_symbols`]: the pclntab parser (`go::sym`) against what the Go runtime prints.
//! - [`go_probe_sites`]: the lock probe sites and their names (`go::probe`) against the
//!   pclntab, DWARF and objdump.
//! - [`go_goroutine_layout`]: the goroutine reader's `runtime.g` layout and `allgs`
//!   location (`go::goroutines`) against DWARF and the symbol table.
//! - [`go_defers`]: what deferred closures unlock and the open-coded defer info
//!   (`go::defers`), against the Go source and DWARF.
//! - [`go_frame_holds`]: the locks parked frames hold by their variables
//!   (`go::frame_holds`), from the code of `go_abba`, against the Go source.
//! - [`pprof_export`]: contention profiles as pprof (`tracer_user::pprof`), read back by
//!   `go tool pprof` of each Go toolchain.
//! - [`metrics_exposition`]: the Prometheus exposition (`metrics`) of a multi-target
//!   scrape, checked by `promtool check metrics`.
//!
//! As root, behind the `root-tests` feature: the real `tracer` attached to live targets
//! (`cargo xtask test` runs them, or as root `cargo test -p tracer-user --features
//! root-tests --test integration -- --test-threads=1`).
//! - [`deadlock`]: deadlock detection on C targets.
//! - [`contention`]: contention statistics on C targets.
//! - [`errors`]: bad input to `tracer attach`.
//! - [`exit_status`]: the exit status says what was found (deadlock, stuck lock,
//!   inversion, nothing).
//! - [`filters`]: `--lock`, `--type`, `--min-wait` on the summary's table.
//! - [`graph`]: `--graph`: a deadlock's wait-for graph as DOT, read back.
//! - [`exports`]: `attach --pprof/--folded/--flamegraph` read back by `go tool pprof`, a
//!   folded-stack parser and an XML parser, for C and Go targets, waiters and holders.
//! - [`bpf_log`]: the eBPF programs' diagnostics (`--bpf-log`).
//! - [`lifecycle`]: how a trace ends, and that no probe outlives the tracer.
//! - [`go_attach`]: Go targets (goroutines and `sync` locks).
//! - [`go_parked`]: Go lock trouble that formed before the attach.
//! - [`go_service`]: the futex view of Go programs, on a real stripped Go service
//!   (Debian's prometheus) and a stripped cgo target.
//! - [`go_goroutines`]: goroutines parked on locks read from a live Go process's runtime
//!   data (`go::goroutines`, no tracer).
//! - [`go_defers_live`]: lock holders from pending deferred unlocks on live goroutines.
//! - [`pidns`]: targets in their own PID namespace (containers).
//! - [`timed`]: cycles of timed lock waits, which time out rather than deadlock.
//! - [`top`]: `tracer top` driven in a real terminal (tmux, 80×24): the hot lock first,
//!   its stacks, and a clean quit.
//! - [`musl`]: programs on musl (contention, deadlocks, rwlocks; dynamic and static).
//! - [`lock_order`]: lock-order inversions (potential deadlocks) predicted from traced
//!   acquisitions, C and Go, and the orders that must not be reported.
//! - [`recording`]: `tracer record` and `tracer report`: a recording reported after the
//!   target is gone equals the live run; truncated recordings; files that are none.
//! - [`rust_locks`]: Rust programs: `std` mutexes and rwlocks, `parking_lot` through its
//!   slow paths, a deadlock among `std` mutexes with the holders their stacks name.
//! - [`memory`]: the tracer's memory stays bounded with 100 000 distinct contended locks.
//! - [`serve`]: `tracer serve` scraped by a real Prometheus, read by `go tool pprof`,
//!   following a restarted service (`--exe`) and a cgroup; its start-up errors.
//! - [`serve_soak`]: `tracer serve` over minutes of targets that start and exit: no
//!   memory, descriptor, program or series left behind, no target lost.
//! - [`stripped`]: names of stripped programs, from `.dynsym`, from debug files found by
//!   build id (`--debug-dir`) or `.gnu_debuglink`, else `object+offset`, and the notes
//!   saying which.
//! - [`symbols`]: names and stacks when the program changes (`exec`) or has no path
//!   (memfd), and frames that must not be there.
//! - [`capabilities`]: the capabilities `deploy/capabilities.txt` lists (and the
//!   manifests under `deploy/` grant) are enough for a non-root tracer, and each is needed.
//!
//! Support: [`common`] (building and running C targets and the tracer, reading its report),
//! [`go_toolchain`] (building Go targets), [`tools`] (a missing gcc, Go, promtool or other
//! tool fails the test with a one-line hint; no test skips).

#[cfg(feature = "root-tests")]
mod common;
mod go_toolchain;
mod tools;

#[cfg(feature = "root-tests")]
mod bpf_log;
mod c_names;
#[cfg(feature = "root-tests")]
mod capabilities;
#[cfg(feature = "root-tests")]
mod contention;
#[cfg(feature = "root-tests")]
mod deadlock;
#[cfg(feature = "root-tests")]
mod errors;
#[cfg(feature = "root-tests")]
mod exit_status;
#[cfg(feature = "root-tests")]
mod exports;
#[cfg(feature = "root-tests")]
mod filters;
#[cfg(feature = "root-tests")]
mod go_attach;
mod go_defers;
#[cfg(feature = "root-tests")]
mod go_defers_live;
mod go_frame_holds;
mod go_goroutine_layout;
#[cfg(feature = "root-tests")]
mod go_goroutines;
#[cfg(feature = "root-tests")]
mod go_parked;
mod go_probe_sites;
#[cfg(feature = "root-tests")]
mod go_service;
mod go_symbols;
#[cfg(feature = "root-tests")]
mod graph;
#[cfg(feature = "root-tests")]
mod lifecycle;
#[cfg(feature = "root-tests")]
mod lock_order;
#[cfg(feature = "root-tests")]
mod memory;
mod metrics_exposition;
#[cfg(feature = "root-tests")]
mod musl;
#[cfg(feature = "root-tests")]
mod pidns;
mod pprof_export;
#[cfg(feature = "root-tests")]
mod recording;
#[cfg(feature = "root-tests")]
mod rust_locks;
mod rust_names;
mod rust_toolchain;
#[cfg(feature = "root-tests")]
mod serve;
#[cfg(feature = "root-tests")]
mod serve_soak;
#[cfg(feature = "root-tests")]
mod stripped;
#[cfg(feature = "root-tests")]
mod symbols;
#[cfg(feature = "root-tests")]
mod timed;
#[cfg(feature = "root-tests")]
mod top;
