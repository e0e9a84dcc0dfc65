//! The session's clock: the one the kernel stamps events with.

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
pub(super) fn monotonic_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// How far `CLOCK_REALTIME` is ahead of `CLOCK_MONOTONIC` now, in ns: what turns a
/// wait's `CLOCK_REALTIME` deadline (`pthread_mutex_timedlock`) into the events' clock.
pub(super) fn realtime_ahead_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}

/// `clock` in ns.
fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass; CLOCK_MONOTONIC and
    // CLOCK_REALTIME always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}
