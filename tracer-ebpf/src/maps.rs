//! Every map and load-time global of the eBPF object. Names come from `tracer-common`
//! constants (checked by the userspace test that inspects the built object).
use aya_ebpf::{
    Global, btf_maps,
    macros::{btf_map, map},
    maps::{
        Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf, StackTrace,
    },
};
use tracer_common::{
    BriefWaits, COUNTER_SLOTS, CpuBriefWaits, OPEN_SLEEP_SLOTS_LEN, OPEN_SLEEPS_MAX_ENTRIES,
    OVERFLOW_STACKS_MAX_ENTRIES, OpenSleep, PendingLock, STACK_SAMPLER_SLOTS, STACKS_MAX_ENTRIES,
    SWITCH_PROGRAM_SLOTS, SWITCH_SLOTS, SWITCH_TABLE_LEN, StackSampler,
};

/// TGID of the traced process; set with `EbpfLoader::override_global` before load.
#[unsafe(no_mangle)]
pub(crate) static TARGET_TGID: Global<u32> = Global::new(0);

/// Device and inode of the tracer's PID namespace when it is not the host's (0 and 0
/// otherwise); set before load. See `helpers::target_tid`.
#[unsafe(no_mangle)]
pub(crate) static TARGET_PIDNS_DEV: Global<u64> = Global::new(0);
/// See [`TARGET_PIDNS_DEV`].
#[unsafe(no_mangle)]
pub(crate) static TARGET_PIDNS_INO: Global<u64> = Global::new(0);

/// Offset of `goid` in the Go runtime's `g`; set before load when the target is Go.
#[unsafe(no_mangle)]
pub(crate) static GO_GOID_OFFSET: Global<u64> = Global::new(0);

/// Nonzero turns on the programs' `aya-log` diagnostics (`crate::diag`); set before load.
#[unsafe(no_mangle)]
pub(crate) static DIAGNOSTICS: Global<u32> = Global::new(0);

/// Nonzero times a futex wait's end when its thread is switched back in, with no
/// `sys_exit` program (`tracer_common::GLOBAL_WAIT_ENDS_AT_SWITCH_IN`); set before load.
#[unsafe(no_mangle)]
pub(crate) static WAIT_ENDS_AT_SWITCH_IN: Global<u32> = Global::new(0);

/// With `WAIT_ENDS_AT_SWITCH_IN`: which sleeping waits go out lean, as one `SleptRecord`
/// once over (`tracer_common::GLOBAL_LEAN_WAITS`); set before load.
#[unsafe(no_mangle)]
pub(crate) static LEAN_WAITS: Global<u32> = Global::new(0);

/// With `WAIT_ENDS_AT_SWITCH_IN`: the offset of `se.sum_exec_runtime` in the kernel's
/// `struct task_struct` (`tracer_common::GLOBAL_TASK_RUNTIME_OFFSET`); set before load.
#[unsafe(no_mangle)]
pub(crate) static TASK_RUNTIME_OFFSET: Global<u64> = Global::new(0);

/// The offset of `nvcsw` (the count of a thread's voluntary switches) in the kernel's
/// `struct task_struct`, for the dispatcher's draw (`tracer_common::GLOBAL_TASK_NVCSW_OFFSET`);
/// set before the dispatcher's load.
#[unsafe(no_mangle)]
pub(crate) static TASK_NVCSW_OFFSET: Global<u64> = Global::new(0);

/// Fixed-size `Event` records. 16 MiB: at ~1M events/s and a 20 ms drain interval the
/// reader needs ~2.6 MiB, so a stalled reader still has several hundred ms of slack
/// before records are dropped (and counted).
#[map(name = "EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// 1 while the reader drains on its own timer, 0 (the initial value) while it sleeps
/// until a record comes; read before each submit (see `helpers::submit_flags`).
#[map(name = "READER_POLLS")]
pub(crate) static READER_POLLS: Array<u32> = Array::with_max_entries(1, 0);

/// The sampling period of sleeping futex waits while wait ends are timed at switch-in
/// (`tracer_common::MAP_SLEEP_SAMPLING`); set by the reader while the trace runs.
#[map(name = "SLEEP_SAMPLING")]
pub(crate) static SLEEP_SAMPLING: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `tracer_common::Counter`.
#[map(name = "COUNTERS")]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// User stacks at futex waits and lock calls, deduplicated by the kernel.
#[map(name = "STACKS")]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX_ENTRIES, 0);

/// Stacks whose bucket in `STACKS` holds another stack (`tracer_common::StackSlot`).
#[map(name = "OVERFLOW_STACKS")]
pub(crate) static OVERFLOW_STACKS: StackTrace =
    StackTrace::with_max_entries(OVERFLOW_STACKS_MAX_ENTRIES, 0);

/// This CPU's runs of sleeping waits on a few futex words, one per slot
/// (`StackSampler::slot_of`), which decide whether the next wait on a word carries its
/// stack (`tracer_common::STACK_SAMPLE_EVERY`).
#[map(name = "STACK_SAMPLER")]
pub(crate) static STACK_SAMPLER: PerCpuArray<StackSampler> =
    PerCpuArray::with_max_entries(STACK_SAMPLER_SLOTS, 0);

/// Lock calls between entry and return uprobe, keyed by TID (`--holds` only).
///
/// Each thread keeps its entry from one call to the next and the return only marks it
/// consumed: rewriting an entry in place costs one lookup, where an insert at entry and
/// a delete at return each take the bucket lock and go through the element free list.
/// LRU, so the entries of exited threads are
/// recycled instead of filling the map.
#[map(name = "PENDING_LOCKS")]
pub(crate) static PENDING_LOCKS: LruHashMap<u32, PendingLock> =
    LruHashMap::with_max_entries(64 * 1024, 0);

/// Each target thread's last futex wait that slept, by the thread's `task_struct`
/// address, while wait ends are timed at switch-in (`WAIT_ENDS_AT_SWITCH_IN`; see
/// `open_sleeps`): written when the thread goes to sleep in a wait, its end (the
/// switch back in) worked out and sent at its next switch-out; removed when the thread
/// exits.
/// Not LRU: an evicted sleep would never end. Not preallocated: each served target loads
/// its own, and most have far fewer threads than the cap.
#[map(name = "OPEN_SLEEPS")]
pub(crate) static OPEN_SLEEPS: HashMap<u64, OpenSleep> = HashMap::with_max_entries(
    OPEN_SLEEPS_MAX_ENTRIES,
    aya_ebpf::bindings::BPF_F_NO_PREALLOC,
);

/// How many of the target's threads have an open sleep in [`OPEN_SLEEPS`], by slot of
/// their host TID (`tracer_common::MAP_OPEN_SLEEP_SLOTS`; see `open_sleeps`). Counters,
/// not bits: threads of one slot go to sleep and wake on different CPUs at once.
#[map(name = "OPEN_SLEEP_SLOTS")]
pub(crate) static OPEN_SLEEP_SLOTS: Array<u64> = Array::with_max_entries(OPEN_SLEEP_SLOTS_LEN, 0);

/// Waits that returned without sleeping, added up per futex word and CPU (per CPU, so
/// threads of one lock on different CPUs never share a cache line or need atomics).
/// Not LRU: a word's totals must not vanish; when full, new words are counted in
/// `Counter::BriefWaitsUntracked`.
#[map(name = "BRIEF_WAITS")]
pub(crate) static BRIEF_WAITS: PerCpuHashMap<u64, BriefWaits> =
    PerCpuHashMap::with_max_entries(16 * 1024, 0);

/// This CPU's running totals of waits that never slept, for the last futex word it saw
/// one on: a hot lock costs no hash lookup and update per brief wait, since the totals
/// move to `BRIEF_WAITS` only when the word changes.
#[map(name = "CPU_BRIEF_WAITS")]
pub(crate) static CPU_BRIEF_WAITS: PerCpuArray<CpuBriefWaits> = PerCpuArray::with_max_entries(1, 0);

/// The processes a serve hands its switches to (`switch_dispatch`), by host TGID: their
/// dispatcher slot. Not preallocated: only the serve's own copy is filled.
#[map(name = "SWITCH_TARGETS")]
pub(crate) static SWITCH_TARGETS: HashMap<u32, u32> =
    HashMap::with_max_entries(SWITCH_SLOTS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// The processes a serve hands its switches to, direct-mapped by host TGID
/// (`tracer_common::switch_lookup`): read before [`SWITCH_TARGETS`], which it answers
/// for most switches without a hash lookup.
#[map(name = "SWITCH_TABLE")]
pub(crate) static SWITCH_TABLE: Array<u64> = Array::with_max_entries(SWITCH_TABLE_LEN, 0);

/// Each served process's two programs, `drawn_sleep` and `sleep_ends`, at
/// `tracer_common::HandOff::program_index` of its slot (`switch_dispatch`).
#[map(name = "SWITCH_PROGRAMS")]
pub(crate) static SWITCH_PROGRAMS: ProgramArray =
    ProgramArray::with_max_entries(SWITCH_PROGRAM_SLOTS, 0);

/// Each served process's sleep sampling period, at its slot, for the dispatcher's draw,
/// and whether the dispatcher reads its counts of open sleeps as well
/// (`tracer_common::MAP_SWITCH_PERIODS`, `tracer_common::switch_period_value`); set by the
/// reader with the process's own [`SLEEP_SAMPLING`].
#[map(name = "SWITCH_PERIODS")]
pub(crate) static SWITCH_PERIODS: Array<u64> = Array::with_max_entries(SWITCH_SLOTS, 0);

/// Each served process's [`OPEN_SLEEP_SLOTS`], at its slot, for the dispatcher to tell
/// whether a switched-out thread may have a sleep to end
/// (`tracer_common::MAP_SWITCH_OPEN_SLEEPS`). An array of maps: each process's program
/// is loaded from its own copy of the object, with its own maps, and the reader puts
/// that copy's map here as it registers the process.
#[btf_map]
pub(crate) static SWITCH_OPEN_SLEEPS: btf_maps::ArrayOfMaps<
    btf_maps::Array<u64, { OPEN_SLEEP_SLOTS_LEN as usize }>,
    { SWITCH_SLOTS as usize },
> = btf_maps::ArrayOfMaps::new();
