//! The sampling of sleeping futex waits (`tracer_common::MAP_SLEEP_SAMPLING`): the draw
//! `futex_sleep` makes for its own target. (`switch_dispatch` draws for the processes it
//! serves from the thread's count of voluntary switches instead:
//! `tracer_common::sleep_drawn`.)
use aya_ebpf::helpers::bpf_get_prandom_u32;

use crate::maps::SLEEP_SAMPLING;

/// Whether a sleep is traced under sampling period `period`: always for 0 or 1, else
/// with chance `1/period`. Random rather than one in `period`: threads that take turns
/// on a CPU would otherwise be sampled by their turn.
#[inline(always)]
pub(crate) fn drawn(period: u32) -> bool {
    if period <= 1 {
        return true;
    }
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let draw = unsafe { bpf_get_prandom_u32() };
    // The session's periods are powers of two: a mask, not a division, on this path.
    // (The hidden `--sleep-sample-period` may give any other.)
    let left = if period.is_power_of_two() {
        draw & (period - 1)
    } else {
        draw % period
    };
    left == 0
}

/// This target's period (`SLEEP_SAMPLING`), at least 1: how many sleeping waits a traced
/// one stands for.
#[inline(always)]
pub(crate) fn own_period() -> u32 {
    SLEEP_SAMPLING.get(0).copied().unwrap_or(0).max(1)
}
