//! The contract between `tracer-ebpf` (kernel side) and `tracer-user` (userspace).
//!
//! Everything that crosses the boundary lives here, one module per subject, everything
//! re-exported at the crate root:
//! - `names`: the names under which maps, programs and globals appear in the built
//!   object ([`ALL_MAPS`], [`ALL_PROGRAMS`], [`ALL_GLOBALS`]).
//! - `futex`: futex system call numbers and commands, and [`FutexCall::decode`], the one
//!   decoder of a futex call's registers used by both sides, with
//!   [`FutexTimeout::of_call`], where a waiting call keeps its timeout and on which clock.
//! - The ring-buffer records, one module each: [`WaitRecord`] (a futex wait: the
//!   [`Event`] header with the lock memory, the call's timeout ([`WaitTimeoutArg`]), and
//!   the top of the user stack),
//!   [`WaitEndRecord`], [`SleptRecord`], [`LockRecord`], [`GoEvent`] and [`ExecRecord`]. Every record starts
//!   with its
//!   [`EventKind`] and has its own size, which is how the reader tells them apart
//!   ([`RECORD_SIZES`]).
//! - `go_site`: what a Go lock probe site means ([`GoOp`]), or a native one of the same
//!   program ([`NativeSiteOp`]: Rust's `parking_lot` slow paths), and its attach cookie.
//! - The values of the other maps: [`PendingLock`], [`BriefWaits`], [`OpenSleep`], [`StackSampler`],
//!   the [`Counter`] slots, and where a record's stack is kept ([`StackSlot`]).
//!
//! Records are `#[repr(C)]` with explicit padding only; each one's size is asserted.
#![no_std]

mod brief_waits;
mod counters;
mod event;
mod exec;
mod futex;
mod go_event;
mod go_site;
mod hand_off;
mod kind;
mod lock;
mod names;
mod open_sleep;
mod slept;
mod stack;
mod switch_draw;
mod switch_table;
mod wait_end;
mod wait_record;

pub use brief_waits::{BriefWaits, CpuBriefWaits};
pub use counters::{COUNTER_SLOTS, Counter};
pub use event::{EVENT_SIZE, Event, SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS};
pub use exec::{EXEC_RECORD_SIZE, ExecRecord};
pub use futex::{
    FUTEX_CLOCK_REALTIME, FUTEX_TID_MASK, FutexCall, FutexTimeout, FutexWait, TimeoutClock,
    futex_cmd, syscall,
};
pub use go_event::{GO_EVENT_SIZE, GoEvent};
pub use go_site::{GoOp, NativeSiteOp, go_cookie, pt_reg};
pub use hand_off::{HandOff, SWITCH_PROGRAM_SLOTS, SwitchOut, VoluntarySwitch, hand_off};
pub use kind::{EventKind, UnknownValue};
pub use lock::{LOCK_RECORD_SIZE, LockOp, LockRecord, PendingLock};
pub use names::{
    ALL_GLOBALS, ALL_MAPS, ALL_PROGRAMS, GLOBAL_DIAGNOSTICS, GLOBAL_GO_GOID_OFFSET,
    GLOBAL_LEAN_WAITS, GLOBAL_TARGET_PIDNS_DEV, GLOBAL_TARGET_PIDNS_INO, GLOBAL_TARGET_TGID,
    GLOBAL_TASK_NVCSW_OFFSET, GLOBAL_TASK_RUNTIME_OFFSET, GLOBAL_WAIT_ENDS_AT_SWITCH_IN,
    MAP_BRIEF_WAITS, MAP_COUNTERS, MAP_CPU_BRIEF_WAITS, MAP_EVENTS, MAP_OPEN_SLEEP_SLOTS,
    MAP_OPEN_SLEEPS, MAP_OVERFLOW_STACKS, MAP_PENDING_LOCKS, MAP_READER_POLLS, MAP_SLEEP_SAMPLING,
    MAP_STACK_SAMPLER, MAP_STACKS, MAP_SWITCH_OPEN_SLEEPS, MAP_SWITCH_PERIODS, MAP_SWITCH_PROGRAMS,
    MAP_SWITCH_TABLE, MAP_SWITCH_TARGETS, MAX_SLEEP_SAMPLE_PERIOD, OPEN_SLEEP_SLOTS_LEN,
    PROG_GO_LOCK_SITE, PROG_LOCK_ENTRY, PROG_LOCK_RETURN, PROG_NOOP_SCHED_SWITCH,
    PROG_NOOP_SYS_EXIT, PROG_NOOP_UPROBE, PROG_NOOP_URETPROBE, PROG_PROCESS_EXEC,
    PROG_SCHED_SWITCH, PROG_SCHED_SWITCH_DRAWN, PROG_SCHED_SWITCH_ENDS, PROG_SWITCH_DISPATCH,
    PROG_SYS_EXIT, PROG_UNLOCK_ENTRY, SWITCH_SLOTS,
};
pub use open_sleep::{OPEN_SLEEPS_MAX_ENTRIES, OpenSleep, sleep_is_stale};
pub use slept::{
    LEAN_WAITS_ALL, LEAN_WAITS_NONE, LEAN_WAITS_UNSAMPLED, SLEPT_RECORD_SIZE,
    SLEPT_RECORD_SIZE_UNWEIGHTED, SleptRecord,
};
pub use stack::{
    OVERFLOW_STACKS_MAX_ENTRIES, STACK_ID_NO_FRAME_CHAIN, STACK_ID_SAMPLED_OUT, STACK_SAMPLE_EVERY,
    STACK_SAMPLER_SLOTS, STACKS_MAX_ENTRIES, StackSampler, StackSlot,
};
pub use switch_draw::{
    SETTLE_MARGIN_NS, SwitchDraw, sleep_drawn, switch_draws_new, switch_period,
    switch_period_value, switch_reads_counts, switch_value_drawing_none,
};
pub use switch_table::{
    SWITCH_TABLE_LEN, SwitchLookup, switch_entry_elsewhere, switch_entry_served,
    switch_entry_unserved, switch_lookup, switch_table_index,
};
pub use wait_end::{WAIT_END_RECORD_SIZE, WaitEndRecord};
pub use wait_record::{
    STACK_WINDOW_WORDS, TIMEOUT_NONE, TIMEOUT_UNREADABLE, WAIT_RECORD_SIZE, WaitRecord,
    WaitTimeoutArg,
};

/// The size of each record the programs send: [`WaitEndRecord`], [`LockRecord`],
/// [`GoEvent`], [`WaitRecord`], [`ExecRecord`], [`SleptRecord`] (and its older size,
/// still read). The reader tells the records apart by size alone, so no two may be equal
/// (asserted below).
pub const RECORD_SIZES: [usize; 7] = [
    WAIT_END_RECORD_SIZE,
    LOCK_RECORD_SIZE,
    GO_EVENT_SIZE,
    WAIT_RECORD_SIZE,
    EXEC_RECORD_SIZE,
    SLEPT_RECORD_SIZE,
    SLEPT_RECORD_SIZE_UNWEIGHTED,
];
const _: () = {
    let mut i = 0;
    while i < RECORD_SIZES.len() {
        let mut j = i + 1;
        while j < RECORD_SIZES.len() {
            assert!(
                RECORD_SIZES[i] != RECORD_SIZES[j],
                "two records of one size"
            );
            j += 1;
        }
        i += 1;
    }
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `Event` is `repr(C)`, has no padding (the size assert pins every field's
    // place), and every bit pattern is a valid value of each field.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above: `repr(C)`, 48 bytes with no padding, plain integers.
    unsafe impl aya::Pod for super::PendingLock {}
    // SAFETY: `repr(C)`, 16 bytes pinned by an assert, no padding, plain integers.
    unsafe impl aya::Pod for super::BriefWaits {}
    // SAFETY: `repr(C)`, 24 bytes pinned by an assert, no padding, plain integers.
    unsafe impl aya::Pod for super::CpuBriefWaits {}
    // SAFETY: `repr(C)`, size pinned by an assert (explicit `pad`s, no implicit padding),
    // plain integers only.
    unsafe impl aya::Pod for super::WaitRecord {}
    // SAFETY: `repr(C)`, 24 bytes pinned by an assert, explicit `pad`, plain integers.
    unsafe impl aya::Pod for super::WaitTimeoutArg {}
    // SAFETY: `repr(C)`, 72 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::GoEvent {}
    // SAFETY: `repr(C)`, 40 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::WaitEndRecord {}
    // SAFETY: `repr(C)`, 48 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::LockRecord {}
    // SAFETY: `repr(C)`, 16 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::ExecRecord {}
    // SAFETY: `repr(C)`, 56 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::SleptRecord {}
    // SAFETY: `repr(C)`, 56 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::OpenSleep {}
}
