//! Everything the tracer knows about Go programs, in one place.
//!
//! - `sym`: the pclntab and build info: function names, lines and inlined frames in
//!   (stripped) Go binaries.
//! - `probe`: where to put uprobes on the lock paths of x86-64 Go binaries (entries, `ret`s
//!   and the instruction after each inlined atomic; no uretprobes) and the runtime's `g`
//!   offsets.
//! - `goroutines`: the goroutines of a live Go process read from the runtime's own data
//!   (`runtime.allgs`, stripped binaries too): ids, statuses, stacks of parked ones and
//!   the `sync` lock each waits for, which no probe saw when it parked before the attach.
//! - `lock_model`: the Go lock model: goroutine holds and waits per `sync.Mutex`/`RWMutex`,
//!   stats, wait-for cycles, stuck locks. Pure: events in, findings out.
//! - `defers`: who holds a `sync` lock from the deferred unlocks pending on goroutine
//!   stacks (open-coded defer slots in frames, `_defer` records), decoding the deferred
//!   closures' code to find which lock each unlocks.
//! - `frame_holds`: who holds a `sync` lock from the frames of parked goroutines: a frame
//!   stopped between an acquisition and its release, the lock's address in a stack slot
//!   (located by the function's machine code, stripped binaries too).
//! - `tracker`: the Go side of a live attach: recognise a Go target, plan its probes, turn
//!   the model's findings into report entries, checking them against the live process.
pub mod defers;
pub mod frame_holds;
pub mod goroutines;
pub mod lock_model;
pub mod parked;
pub mod probe;
pub mod sym;
pub mod tracker;
