//! Small wrappers shared by the hooks. Each `unsafe` block is bounds-checked and says why
//! it is sound.
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_NO_WAKEUP, bpf_pidns_info, pt_regs},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_ns_current_pid_tgid,
        bpf_probe_read_user, bpf_probe_read_user_buf, bpf_task_pt_regs,
    },
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use tracer_common::{
    Counter, Event, EventKind, FutexWait, GoEvent, LockRecord, SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS,
    STACK_ID_NO_FRAME_CHAIN, STACK_ID_SAMPLED_OUT, STACK_WINDOW_WORDS, SleptRecord, StackSampler,
    StackSlot, SwitchOut, WaitEndRecord, WaitRecord, WaitTimeoutArg,
};

use crate::{
    diag,
    futex_call::{more_syscall_args, syscall_args},
    maps::{
        COUNTERS, EVENTS, OVERFLOW_STACKS, READER_POLLS, STACK_SAMPLER, STACKS, TARGET_PIDNS_DEV,
        TARGET_PIDNS_INO, TARGET_TGID,
    },
};

/// The current thread's TID if it belongs to the target process, else `None`.
///
/// Every hook calls this first, so work for other processes stops after one helper call.
/// The ids are those of the tracer's PID namespace: the host's, or, for a tracer in a
/// container sharing its target's PID namespace (a sidecar), that namespace's
/// (`TARGET_PIDNS_*`): the ids the tracer sees in `/proc` and that `TARGET_TGID` is in. A
/// thread whose own namespace is another one is not the target's.
#[inline(always)]
pub(crate) fn target_tid() -> Option<u32> {
    let ino = TARGET_PIDNS_INO.load();
    let (process, thread) = if ino == 0 {
        let pid_tgid = bpf_get_current_pid_tgid();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "upper and lower halves are u32 by definition"
        )]
        let ids = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        ids
    } else {
        let mut ns = bpf_pidns_info { pid: 0, tgid: 0 };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the size of an 8-byte struct"
        )]
        let size = core::mem::size_of::<bpf_pidns_info>() as u32;
        // SAFETY: `ns` is a live, writable `bpf_pidns_info` and the size passed is its
        // own; the helper only writes it (and zeroes it on failure).
        let failed =
            unsafe { bpf_get_ns_current_pid_tgid(TARGET_PIDNS_DEV.load(), ino, &raw mut ns, size) }
                != 0;
        if failed {
            return None;
        }
        (ns.tgid, ns.pid)
    };
    (process == TARGET_TGID.load()).then_some(thread)
}

/// Reads a `T` from the target's memory at `addr`; `Err` if the address faults.
#[inline(always)]
pub(crate) fn read_user<T>(addr: u64) -> Result<T, ()> {
    // SAFETY: bpf_probe_read_user validates the user address itself and fails cleanly
    // on a fault; it writes into a kernel-side `T` it returns by value.
    unsafe { bpf_probe_read_user(addr as *const T) }.map_err(|_| ())
}

/// Adds one to a per-CPU counter slot.
#[inline(always)]
pub(crate) fn count(counter: Counter) {
    count_n(counter, 1);
}

/// Adds `n` to a per-CPU counter slot; returns its new value on this CPU (0 if the slot is
/// missing, which cannot happen for a `Counter`).
#[inline(always)]
pub(crate) fn count_n(counter: Counter, n: u64) -> u64 {
    match COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: `slot` points at this CPU's element of a per-CPU array; BPF programs on
        // one CPU do not preempt each other on the same slot for these tracing hooks
        // (a lost increment would only make a statistic a little lower).
        Some(slot) => unsafe {
            *slot += n;
            *slot
        },
        None => 0,
    }
}

/// Ring-buffer submit flags. While the reader drains on its own timer (a busy target),
/// `BPF_RB_NO_WAKEUP`: a wakeup would only cut its batching pause short (it listens for
/// records only when idle), and costs the producing CPU an `irq_work` and the reader an
/// extra switch (BENCHMARKS.md, "Measurements behind the design").
/// Otherwise none, i.e. the kernel's adaptive wakeup: the first record after the reader
/// caught up wakes it, so an idle reader sleeps until something happens, and never one
/// wakeup per event (that changed the target's own lock scheduling).
#[inline(always)]
fn submit_flags() -> u64 {
    match READER_POLLS.get(0) {
        Some(&polls) if polls != 0 => u64::from(BPF_RB_NO_WAKEUP),
        _ => 0,
    }
}

/// Counts a record of `kind` (an `EventKind`) the ring buffer had no room for.
#[inline(always)]
fn dropped(kind: u32) {
    count(Counter::Dropped);
    diag::record_dropped(kind);
}

/// Sends a futex wait's end to the ring buffer (see [`submit_flags`] for the wakeup). A
/// full buffer drops the record and counts it; we never wait.
#[inline(always)]
pub(crate) fn emit_wait_end(record: &WaitEndRecord) {
    if EVENTS
        .output::<WaitEndRecord>(record, submit_flags())
        .is_err()
    {
        dropped(record.kind);
    }
}

/// Sends a lean futex wait, once over; same rules as [`emit_wait_end`].
#[inline(always)]
pub(crate) fn emit_slept(record: &SleptRecord) {
    if EVENTS
        .output::<SleptRecord>(record, submit_flags())
        .is_err()
    {
        dropped(record.kind);
    }
}

/// Sends a Go lock-site record; same rules as [`emit_wait_end`].
#[inline(always)]
pub(crate) fn emit_go(event: &GoEvent) {
    if EVENTS.output::<GoEvent>(event, submit_flags()).is_err() {
        dropped(event.kind);
    }
}

/// Sends a `--holds` lock record; same rules as [`emit_wait_end`].
#[inline(always)]
pub(crate) fn emit_lock(record: &LockRecord) {
    if EVENTS.output::<LockRecord>(record, submit_flags()).is_err() {
        dropped(record.kind);
    }
}

/// Farthest the caller's frame pointer may lie above the stack pointer at a function's
/// first instruction: the caller's whole frame fits in it unless it holds more than this
/// in locals. Generous, since a frame pointer rejected here loses the caller's stack.
const MAX_CALLER_FRAME_BYTES: u64 = 16 * 1024 * 1024;

/// Whether `bp`, at a function's first instruction (stack pointer `sp`), can be the
/// caller's frame pointer: 8-aligned and a little above `sp` on the same stack.
///
/// Code built without frame pointers (plain `-O2` builds, most distributions' packages)
/// keeps any value in `rbp`: zero, small integers, pointers to globals or the heap. The
/// kernel's frame-pointer walk then follows `[rbp]` as if it were a frame and soon takes
/// a page fault on a bogus address; `perf record` shows that fault's exception fixup as
/// most of what `bpf_get_stackid` costs per lock call on such code (BENCHMARKS.md,
/// "Measurements behind the design"). The stack it
/// returns is the probed function plus "return addresses" read from wherever `rbp`
/// pointed: nothing the call site (`[sp]`, always sent) does not already say better.
#[inline(always)]
pub(crate) fn frame_chain_starts(sp: u64, bp: u64) -> bool {
    bp > sp && bp - sp <= MAX_CALLER_FRAME_BYTES && bp.is_multiple_of(8)
}

/// User stack id for the current thread ([`StackSlot`]), or the negative errno (counted).
///
/// A stack whose bucket in `STACKS` holds another stack is refused there (`EEXIST`) and
/// goes to `OVERFLOW_STACKS`; only then is the walk done twice.
#[inline(always)]
pub(crate) fn user_stack_id<C: StackIdContext>(ctx: &C) -> i32 {
    let flags = u64::from(BPF_F_USER_STACK);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap,
        reason = "ids are below the maps' max_entries (16k and 4k)"
    )]
    let id = match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => Ok(id as i32),
        Err(_) => ctx
            .get_stackid(&OVERFLOW_STACKS, flags)
            .map(|id| StackSlot::overflow_stack_id(id as u32) as i32),
    };
    id.unwrap_or_else(|errno| {
        count(Counter::StackErrors);
        diag::stack_refused(errno);
        errno
    })
}

/// Copies the target memory around a futex word into `event.snapshot`, so userspace can
/// tell a glibc mutex (owner TID beside the word) or rwlock (writer TID a few words on)
/// from a condition variable or semaphore, without reading the target later when the
/// state has moved on. Starts `SNAPSHOT_LEAD_BYTES` before the word; if that crosses into
/// an unmapped page, retries from the word itself.
#[inline(always)]
fn snapshot_around(event: &mut Event, uaddr: u64) {
    const BYTES: usize = SNAPSHOT_WORDS * 4;
    #[expect(clippy::cast_possible_truncation, reason = "a 64-byte constant")]
    const SNAPSHOT_BYTES: u32 = BYTES as u32;
    // SAFETY: `snapshot` is a `[u32; SNAPSHOT_WORDS]`, so viewing it as `BYTES` bytes stays
    // inside the array, and u8 has no alignment or validity requirements.
    let dst =
        unsafe { core::slice::from_raw_parts_mut(event.snapshot.as_mut_ptr().cast::<u8>(), BYTES) };
    let lead = uaddr.wrapping_sub(SNAPSHOT_LEAD_BYTES);
    for start in [lead, uaddr] {
        // SAFETY: bpf_probe_read_user checks the user address itself and fails cleanly
        // on a fault; `dst` is a valid kernel buffer of exactly `BYTES` bytes.
        if unsafe { bpf_probe_read_user_buf(start as *const u8, dst) }.is_ok() {
            event.snapshot_addr = start;
            event.snapshot_len = SNAPSHOT_BYTES;
            return;
        }
    }
    diag::lock_memory_unreadable(event.tid, uaddr);
}

/// Copies the top of the user stack (from `sp` upwards) into `window`; returns how many
/// words are valid. Near the top of a stack mapping the full window may cross its end,
/// so a quarter window is tried next.
#[inline(always)]
fn copy_stack_window(window: &mut [u64; STACK_WINDOW_WORDS], sp: u64) -> u32 {
    const FULL: usize = STACK_WINDOW_WORDS * 8;
    #[expect(clippy::cast_possible_truncation, reason = "a 32-word constant")]
    const WINDOW_WORDS: u32 = STACK_WINDOW_WORDS as u32;
    // SAFETY: viewing the `[u64; STACK_WINDOW_WORDS]` as FULL bytes stays inside it.
    let bytes = unsafe { core::slice::from_raw_parts_mut(window.as_mut_ptr().cast::<u8>(), FULL) };
    // SAFETY: bpf_probe_read_user checks the user address and fails cleanly on a fault.
    if unsafe { bpf_probe_read_user_buf(sp as *const u8, bytes) }.is_ok() {
        return WINDOW_WORDS;
    }
    let (quarter, _) = bytes.split_at_mut(FULL / 4);
    // SAFETY: as above, on the first quarter of the buffer.
    if unsafe { bpf_probe_read_user_buf(sp as *const u8, quarter) }.is_ok() {
        return WINDOW_WORDS / 4;
    }
    diag::stack_window_unreadable(sp);
    0
}

/// The user registers a thread entered its current system call with.
#[derive(Clone, Copy)]
pub(crate) struct SyscallRegs {
    /// System call number.
    pub(crate) nr: i64,
    /// The first three arguments.
    pub(crate) args: [u64; 3],
    /// The next three (a futex wait's timeout and its clock).
    pub(crate) more_args: [u64; 3],
    /// Where the stack window starts, the syscall's address, and the frame pointer that
    /// decides whether a frame walk is worth it.
    pub(crate) sp: u64,
    pub(crate) ip: u64,
    pub(crate) bp: u64,
}

/// The current thread's [`SyscallRegs`], from the registers the kernel saved at entry
/// (unchanged while the thread is inside the call); `None` if unavailable.
#[inline(always)]
pub(crate) fn current_syscall_regs() -> Option<SyscallRegs> {
    // SAFETY: no preconditions; returns the current task as a BTF-typed pointer.
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: `task` is the current task, a trusted BTF pointer as the helper requires.
    let regs = unsafe { bpf_task_pt_regs(task) } as *const pt_regs;
    if regs.is_null() {
        return None;
    }
    let args = syscall_args(regs);
    let more_args = more_syscall_args(regs);
    // SAFETY: `regs` is the helper's BTF-typed `struct pt_regs *`; the verifier checks
    // each load against the kernel's BTF layout, which `pt_regs` mirrors for x86-64.
    unsafe {
        Some(SyscallRegs {
            nr: (*regs).orig_rax.cast_signed(),
            args,
            more_args,
            sp: (*regs).rsp,
            ip: (*regs).rip,
            bp: (*regs).rbp,
        })
    }
}

/// How the thread `sched_switch` switches out leaves its CPU, from the hook's
/// arguments: `sched_switch(bool preempt, prev, next, unsigned int prev_state)`.
#[inline(always)]
pub(crate) fn switch_out(ctx: &BtfTracePointContext) -> SwitchOut {
    SwitchOut::of(ctx.arg::<u64>(0) & 0xff != 0, ctx.arg::<u64>(3))
}

/// Whether this CPU's next sleeping wait, on futex word `addr`, carries its stack
/// (`tracer_common::STACK_SAMPLE_EVERY`); `true` if the sampler cannot be read.
#[inline(always)]
pub(crate) fn takes_stack(addr: u64) -> bool {
    match STACK_SAMPLER.get_ptr_mut(StackSampler::slot_of(addr)) {
        // SAFETY: the pointer is this CPU's `StackSampler` for the word's slot (the map
        // bounds-checks the index), sized and aligned for it;
        // programs on one CPU do not interleave here, and a lost update would only shift
        // which wait of a run is sampled.
        Some(sampler) => unsafe { (*sampler).take(addr) },
        None => true,
    }
}

/// Sends thread `tid`'s futex wait, begun at `start_ns`, with its `timeout`, as a
/// `FutexWait` record: the lock memory around the futex word and the top of the user
/// stack (from `regs`, the thread's registers at the call), read now (the thread is still inside the futex call,
/// so both are as they were when it began). Without `with_stack` the record carries no
/// stack window or stack id ([`STACK_ID_SAMPLED_OUT`]). `false` if the ring buffer was
/// full (counted as dropped).
#[inline(always)]
pub(crate) fn send_wait<C: StackIdContext>(
    ctx: &C,
    tid: u32,
    wait: &FutexWait,
    (start_ns, timeout): (u64, &WaitTimeoutArg),
    regs: &SyscallRegs,
    with_stack: bool,
    weight: u32,
) -> bool {
    // Code built without frame pointers (glibc's lock paths) leaves any value in `rbp`;
    // a frame walk from there faults, for frames the window already has.
    let stack_id = if !with_stack {
        STACK_ID_SAMPLED_OUT
    } else if frame_chain_starts(regs.sp, regs.bp) {
        user_stack_id(ctx)
    } else {
        STACK_ID_NO_FRAME_CHAIN
    };
    // Reserve in place: a wait record is too large to build on the 512-byte BPF stack.
    let Some(mut entry) = EVENTS.reserve::<WaitRecord>(0) else {
        dropped(EventKind::FutexWait as u32);
        return false;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, exclusively owned ring-buffer slot of
    // `size_of::<WaitRecord>()` bytes; every field is written before submit.
    unsafe {
        (*record).event = Event::ZERO;
        (*record).event.kind = EventKind::FutexWait as u32;
        (*record).event.tid = tid;
        (*record).event.ts_ns = start_ns;
        (*record).event.addr = wait.addr;
        (*record).event.op = wait.cmd;
        (*record).event.val = wait.val;
        (*record).event.stack_id = stack_id;
        snapshot_around(&mut (*record).event, wait.addr);
        (*record).timeout = *timeout;
        (*record).user_sp = regs.sp;
        (*record).user_ip = regs.ip;
        (*record).weight = weight;
        // The words of a wait sent without its stack are left unwritten (and unread:
        // userspace reads `window_words` of them), sparing the record's cache lines.
        (*record).window_words = if with_stack {
            copy_stack_window(&mut (*record).window, regs.sp)
        } else {
            0
        };
    }
    entry.submit(submit_flags());
    true
}
