//! Names under which maps, programs and load-time globals appear in the built eBPF object.
//! Both sides use these constants, so a rename cannot silently break attachment, and a
//! userspace test checks that the built object holds each one ([`ALL_MAPS`],
//! [`ALL_PROGRAMS`], [`ALL_GLOBALS`]).

/// Name of the BPF ring buffer carrying the records (see the crate documentation).
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU `u64` array of [`Counter`](crate::Counter) slots.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the stack-trace map filled by `bpf_get_stackid` (user stacks).
pub const MAP_STACKS: &str = "STACKS";
/// Name of the smaller stack-trace map that takes a stack whose bucket in [`MAP_STACKS`]
/// already holds another one. The kernel hashes a stack to one bucket and, unless told
/// to overwrite (which would change the stack behind ids that earlier events carry),
/// refuses a second stack there with `EEXIST`; without this map such a stack was lost,
/// and a deadlock could be reported with only its innermost frames. See
/// [`StackSlot`](crate::StackSlot).
pub const MAP_OVERFLOW_STACKS: &str = "OVERFLOW_STACKS";
/// Name of the LRU hash (TID → [`PendingLock`](crate::PendingLock)) that carries a lock
/// call from its entry uprobe to its return uprobe (only used with `--holds`). A thread
/// keeps its entry between calls (`PendingLock::op` is 0 when no call is in flight).
pub const MAP_PENDING_LOCKS: &str = "PENDING_LOCKS";
/// Name of the per-CPU hash (futex word address → [`BriefWaits`](crate::BriefWaits))
/// where waits that never slept are added up in the kernel instead of sent one by one.
pub const MAP_BRIEF_WAITS: &str = "BRIEF_WAITS";
/// Name of the one-entry per-CPU array ([`CpuBriefWaits`](crate::CpuBriefWaits)) adding
/// up the waits that never slept on the futex word this CPU saw last; they move to
/// [`MAP_BRIEF_WAITS`] only when a brief wait on another word comes along, so a hot lock
/// costs no hash update per wait.
pub const MAP_CPU_BRIEF_WAITS: &str = "CPU_BRIEF_WAITS";
/// Name of the per-CPU array of [`STACK_SAMPLER_SLOTS`](crate::STACK_SAMPLER_SLOTS)
/// [`StackSampler`](crate::StackSampler)s (one per futex word's slot) that decides which
/// sleeping waits carry their stack
/// ([`STACK_SAMPLE_EVERY`](crate::STACK_SAMPLE_EVERY)).
pub const MAP_STACK_SAMPLER: &str = "STACK_SAMPLER";
/// Name of the one-entry `u32` array the reader sets to 1 while it drains on its own
/// timer (a busy target) and to 0 before it sleeps until a record comes: records are
/// submitted without waking it while it is 1.
pub const MAP_READER_POLLS: &str = "READER_POLLS";
/// Name of the hash of each target thread's last futex wait that slept
/// ([`OpenSleep`](crate::OpenSleep)), kept at `sched_switch` when wait ends are timed
/// there ([`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`]).
pub const MAP_OPEN_SLEEPS: &str = "OPEN_SLEEPS";
/// Name of the `u64` array of [`OPEN_SLEEP_SLOTS_LEN`] counters beside [`MAP_OPEN_SLEEPS`]:
/// at slot `host TID % OPEN_SLEEP_SLOTS_LEN`, how many of the target's threads there have
/// an open sleep (`addr` not 0) in the table. A thread switched out whose slot counts 0
/// has none, and the program skips the table: on a lock-bound target, that lookup was
/// most of what its switch-outs cost (BENCHMARKS.md, "Sampled sleeps"). A serve's
/// dispatcher reads it too ([`MAP_SWITCH_OPEN_SLEEPS`]), and does not hand such a
/// switch-out on at all unless it draws it.
pub const MAP_OPEN_SLEEP_SLOTS: &str = "OPEN_SLEEP_SLOTS";
/// Slots of [`MAP_OPEN_SLEEP_SLOTS`] (a power of two). Threads that share a slot only
/// cost each other a lookup.
pub const OPEN_SLEEP_SLOTS_LEN: u32 = 4096;
/// Name of the one-entry `u32` array holding the sampling period of sleeping futex
/// waits while wait ends are timed at switch-in ([`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`],
/// `tracer serve`): 0 or 1 traces every one; `P` (a power of two) traces each with
/// chance `1/P`, its records then standing for `P` waits (`weight`). The reader sets it
/// while the trace runs, from the rate of sleeps it sees, so that a target that sleeps
/// in futex calls tens of thousands of times a second costs no more than one that
/// sleeps a few thousand times ([`MAX_SLEEP_SAMPLE_PERIOD`]).
pub const MAP_SLEEP_SAMPLING: &str = "SLEEP_SAMPLING";
/// Largest period [`MAP_SLEEP_SAMPLING`] takes.
pub const MAX_SLEEP_SAMPLE_PERIOD: u32 = 1024;

/// Name of the hash of the processes a serve hands its `sched_switch` to (host TGID →
/// dispatcher slot), read by [`PROG_SWITCH_DISPATCH`].
pub const MAP_SWITCH_TARGETS: &str = "SWITCH_TARGETS";
/// Name of the dispatcher's direct-mapped table of the processes it serves, read before
/// [`MAP_SWITCH_TARGETS`] (see [`switch_lookup`](crate::switch_lookup)).
pub const MAP_SWITCH_TABLE: &str = "SWITCH_TABLE";
/// Name of the program array holding each served process's two programs for
/// [`PROG_SWITCH_DISPATCH`]'s tail calls, [`PROG_SCHED_SWITCH_DRAWN`] and
/// [`PROG_SCHED_SWITCH_ENDS`], at [`switch_program_index`](crate::switch_program_index).
pub const MAP_SWITCH_PROGRAMS: &str = "SWITCH_PROGRAMS";
/// Slots of the dispatcher: the processes one serve hands its switches to; a process
/// beyond them attaches its own program.
pub const SWITCH_SLOTS: u32 = 1024;
/// Name of the dispatcher's array of maps: at a served process's slot, that process's
/// [`MAP_OPEN_SLEEP_SLOTS`], which the dispatcher reads to know whether a thread it
/// does not draw has a sleep to end (its process's program writes it), while the
/// process's value in [`MAP_SWITCH_PERIODS`] says so
/// ([`switch_reads_counts`](crate::switch_reads_counts)).
pub const MAP_SWITCH_OPEN_SLEEPS: &str = "SWITCH_OPEN_SLEEPS";
/// Name of the dispatcher's `u64` array of each served process's
/// [`switch_period_value`](crate::switch_period_value), by slot: the
/// [`MAP_SLEEP_SAMPLING`] period under which the dispatcher draws that process's sleeps,
/// and whether it reads the process's [`MAP_SWITCH_OPEN_SLEEPS`] too.
pub const MAP_SWITCH_PERIODS: &str = "SWITCH_PERIODS";

/// Global (in `.rodata`) holding the target's TGID; set by the loader before load, so
/// every program filters on it before doing any other work.
pub const GLOBAL_TARGET_TGID: &str = "TARGET_TGID";
/// Globals holding the device and inode of the PID namespace the tracer runs in, when it
/// is not the host's (a sidecar sharing its pod's PID namespace): the programs then
/// filter with the TGID and TIDs of that namespace (`bpf_get_ns_current_pid_tgid`), which
/// `TARGET_TGID` is in. Both 0 (the host's namespace): the host's ids, one helper call
/// cheaper.
pub const GLOBAL_TARGET_PIDNS_DEV: &str = "TARGET_PIDNS_DEV";
/// See [`GLOBAL_TARGET_PIDNS_DEV`].
pub const GLOBAL_TARGET_PIDNS_INO: &str = "TARGET_PIDNS_INO";
/// Global holding the offset of `goid` in the Go runtime's `g` struct; set by the loader
/// before load (0 when the target is not a Go program: Go sites are then never attached).
pub const GLOBAL_GO_GOID_OFFSET: &str = "GO_GOID_OFFSET";
/// Global (a `u32` in `.rodata`, 0 unless the loader sets it before load) that turns on
/// the programs' diagnostics: `aya-log` messages about paths they should not take (a
/// full ring buffer, unreadable target memory, a stack the kernel would not record…).
/// Being read-only, it is a constant to the verifier, which drops every logging branch
/// as dead code while it is 0: the programs then run exactly as if there were none.
pub const GLOBAL_DIAGNOSTICS: &str = "DIAGNOSTICS";
/// Global (a `u32` in `.rodata`, 0 unless the loader sets it before load): nonzero
/// times a futex wait's end when its thread is switched back in (`sched_switch`; worked
/// out at its next switch-out, [`GLOBAL_TASK_RUNTIME_OFFSET`]), for a
/// session with no `sys_exit` program (`tracer serve`'s default: `sys_exit` alone costs
/// a lock-bound workload ~4%, BENCHMARKS.md). A constant to the verifier, like
/// [`GLOBAL_DIAGNOSTICS`]: while 0, the table of sleeping threads is dead code.
pub const GLOBAL_WAIT_ENDS_AT_SWITCH_IN: &str = "WAIT_ENDS_AT_SWITCH_IN";
/// Global (a `u32` in `.rodata`, 0 unless the loader sets it before load), with
/// [`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`] only: which sleeping waits go out as a lean
/// [`SleptRecord`](crate::SleptRecord) once over, instead of a
/// [`WaitRecord`](crate::WaitRecord) at the sleep ([`LEAN_WAITS_NONE`](crate::LEAN_WAITS_NONE),
/// [`LEAN_WAITS_UNSAMPLED`](crate::LEAN_WAITS_UNSAMPLED), [`LEAN_WAITS_ALL`](crate::LEAN_WAITS_ALL)).
pub const GLOBAL_LEAN_WAITS: &str = "LEAN_WAITS";
/// Global (a `u64` in `.rodata`), with [`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`] only: the offset
/// of `se.sum_exec_runtime` (the thread's CPU time, in nanoseconds) in the running
/// kernel's `struct task_struct`, read by the loader from the kernel's BTF. A wait's end
/// (its thread's switch-in) is worked out at the thread's next switch-out, from the
/// CPU time it used since: the switch-in itself, on the lock's hand-over path and run
/// for every thread of the host, then does nothing.
pub const GLOBAL_TASK_RUNTIME_OFFSET: &str = "TASK_RUNTIME_OFFSET";
/// Global (a `u64` in `.rodata`, set before the dispatcher's load): the offset of `nvcsw`,
/// a thread's count of voluntary switches, in the running kernel's `struct task_struct`,
/// from which the dispatcher draws sleeps ([`sleep_drawn`](crate::sleep_drawn)).
pub const GLOBAL_TASK_NVCSW_OFFSET: &str = "TASK_NVCSW_OFFSET";

/// Program on the `sys_exit` BTF raw tracepoint: futex wait ends and wake counts.
pub const PROG_SYS_EXIT: &str = "futex_exit";
/// Program on the `sched_switch` BTF raw tracepoint: a target thread in a futex wait
/// goes to sleep, which is when its wait is seen begin and is sent. (There is no
/// `sys_enter` program: see `tracer-ebpf/src/futex_sleep.rs`.)
pub const PROG_SCHED_SWITCH: &str = "futex_sleep";
/// [`PROG_SCHED_SWITCH`] as the dispatcher hands it a sleep it drew (sampled in): the
/// sleep is traced, with no draw of its own.
pub const PROG_SCHED_SWITCH_DRAWN: &str = "drawn_sleep";
/// [`PROG_SCHED_SWITCH`] as the dispatcher hands it a switch-out it did not draw, of a
/// thread that may have a sleep to end, or exits: only the end, or the forgetting.
pub const PROG_SCHED_SWITCH_ENDS: &str = "sleep_ends";
/// Program on the `sched_switch` BTF raw tracepoint, one for all the processes a serve
/// in the host's PID namespace traces: it draws the switched-out thread's sleep for its
/// process's sampling, and tail-calls that process's [`PROG_SCHED_SWITCH_DRAWN`] or
/// [`PROG_SCHED_SWITCH_ENDS`] when there is work for them
/// ([`hand_off`](crate::hand_off); [`MAP_SWITCH_TARGETS`], [`MAP_SWITCH_PROGRAMS`]).
pub const PROG_SWITCH_DISPATCH: &str = "switch_dispatch";
/// Program on the `sched_process_exec` BTF raw tracepoint: the target executed another
/// program ([`EventKind::Exec`](crate::EventKind::Exec)).
pub const PROG_PROCESS_EXEC: &str = "process_exec";
/// Uprobe on the entry of every lock-acquiring function (`--holds`).
pub const PROG_LOCK_ENTRY: &str = "lock_entry";
/// Uretprobe on the same functions (`--holds`), emits
/// [`EventKind::LockAcquired`](crate::EventKind::LockAcquired).
pub const PROG_LOCK_RETURN: &str = "lock_return";
/// Uprobe on the entry of unlock functions (`--holds`), emits
/// [`EventKind::LockReleased`](crate::EventKind::LockReleased).
pub const PROG_UNLOCK_ENTRY: &str = "unlock_entry";
/// Uprobe on every Go lock probe site (entries, returns and the instruction after each
/// inlined atomic); what it reports comes from the attach cookie
/// ([`go_cookie`](crate::go_cookie)).
pub const PROG_GO_LOCK_SITE: &str = "go_lock_site";

/// Empty programs on the same hooks, attached only by the benchmark's floor runs.
pub const PROG_NOOP_SYS_EXIT: &str = "noop_sys_exit";
pub const PROG_NOOP_SCHED_SWITCH: &str = "noop_sched_switch";
pub const PROG_NOOP_UPROBE: &str = "noop_uprobe";
pub const PROG_NOOP_URETPROBE: &str = "noop_uretprobe";

/// Every map name, for the test that checks the built object holds each one.
pub const ALL_MAPS: [&str; 17] = [
    MAP_SWITCH_OPEN_SLEEPS,
    MAP_SWITCH_PERIODS,
    MAP_SLEEP_SAMPLING,
    MAP_SWITCH_TABLE,
    MAP_OPEN_SLEEP_SLOTS,
    MAP_SWITCH_TARGETS,
    MAP_SWITCH_PROGRAMS,
    MAP_OPEN_SLEEPS,
    MAP_EVENTS,
    MAP_STACK_SAMPLER,
    MAP_READER_POLLS,
    MAP_CPU_BRIEF_WAITS,
    MAP_COUNTERS,
    MAP_STACKS,
    MAP_OVERFLOW_STACKS,
    MAP_PENDING_LOCKS,
    MAP_BRIEF_WAITS,
];
/// Every program name, for the same test.
pub const ALL_PROGRAMS: [&str; 14] = [
    PROG_SWITCH_DISPATCH,
    PROG_SCHED_SWITCH,
    PROG_SCHED_SWITCH_DRAWN,
    PROG_SCHED_SWITCH_ENDS,
    PROG_PROCESS_EXEC,
    PROG_GO_LOCK_SITE,
    PROG_SYS_EXIT,
    PROG_LOCK_ENTRY,
    PROG_LOCK_RETURN,
    PROG_UNLOCK_ENTRY,
    PROG_NOOP_SYS_EXIT,
    PROG_NOOP_SCHED_SWITCH,
    PROG_NOOP_UPROBE,
    PROG_NOOP_URETPROBE,
];
/// Every global the loader sets, for the same test.
pub const ALL_GLOBALS: [&str; 9] = [
    GLOBAL_WAIT_ENDS_AT_SWITCH_IN,
    GLOBAL_LEAN_WAITS,
    GLOBAL_TASK_RUNTIME_OFFSET,
    GLOBAL_TASK_NVCSW_OFFSET,
    GLOBAL_TARGET_TGID,
    GLOBAL_TARGET_PIDNS_DEV,
    GLOBAL_TARGET_PIDNS_INO,
    GLOBAL_GO_GOID_OFFSET,
    GLOBAL_DIAGNOSTICS,
];
