//! Futex waits that never slept, added up in the kernel: the values of
//! [`MAP_BRIEF_WAITS`](crate::MAP_BRIEF_WAITS) and
//! [`MAP_CPU_BRIEF_WAITS`](crate::MAP_CPU_BRIEF_WAITS).

/// Waits on one futex word that returned without sleeping (`EAGAIN`: the word changed
/// while the waiter entered the kernel), added up on one CPU since the attach
/// ([`MAP_BRIEF_WAITS`](crate::MAP_BRIEF_WAITS)). Userspace sums the CPUs and folds the
/// growth into the lock's statistics. Counted, not timed: timing them needs a hook on
/// every system call's entry (see `tracer-ebpf/src/futex_sleep.rs`), and each lasts
/// about one system call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BriefWaits {
    pub count: u64,
    /// Futex command and expected value of the latest such wait, for classifying the word.
    pub op: u32,
    pub val: u32,
}
const _: () = assert!(core::mem::size_of::<BriefWaits>() == 16);

impl BriefWaits {
    /// No waits.
    pub const ZERO: Self = Self {
        count: 0,
        op: 0,
        val: 0,
    };
}

/// This CPU's running [`BriefWaits`] for futex word `addr`
/// ([`MAP_CPU_BRIEF_WAITS`](crate::MAP_CPU_BRIEF_WAITS)): not yet moved to the word's
/// entry in [`MAP_BRIEF_WAITS`](crate::MAP_BRIEF_WAITS). Userspace reads it after the
/// hash and adds it to the word's totals; `waits.count == 0` means empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuBriefWaits {
    pub addr: u64,
    pub waits: BriefWaits,
}
const _: () = assert!(core::mem::size_of::<CpuBriefWaits>() == 24);
