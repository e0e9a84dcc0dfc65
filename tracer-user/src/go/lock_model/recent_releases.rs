//! When each lock was last released or handed over, kept past the lock's live state.
//!
//! The model drops a lock's state as soon as nothing holds or waits for it, and with it
//! the lock's last release. With the default probes (parks and hand-overs only) a hot
//! mutex's waiters all wake now and then, so its state, and the release that says the
//! lock moves, came and went many times a second. A stuck-lock check that starts a
//! lock's clock at the later of its last release and its oldest waiter's start then had
//! no release to go by whenever it ran just after the state was made again; a goroutine
//! the goroutine snapshots saw parked on the lock twice, having woken in between, set
//! the clock back to the first sighting, and a hot `go_lockbench` mutex was reported
//! stuck (once in a hundred three-second attaches). These releases outlive the state.
//!
//! Bounded: past [`RECENT_RELEASES_CAP`] locks, the oldest are forgotten first (a lock
//! not released for long is the one a stuck-lock report is about anyway).
use rustc_hash::FxHashMap as HashMap;

/// Most locks whose last release is kept.
pub(super) const RECENT_RELEASES_CAP: usize = 16 * 1024;
/// How long a release is kept at least (while under the cap): longer than any stuck
/// threshold in use, so that the time a report gives is counted from the real release.
const MIN_HORIZON_NS: u64 = 60_000_000_000;

/// Last release (or hand-over) time by lock address.
#[derive(Clone, Debug)]
pub(super) struct RecentReleases {
    at: HashMap<u64, u64>,
    /// Releases older than this before the newest are forgotten when the cap is reached.
    horizon_ns: u64,
    newest_ns: u64,
}

impl RecentReleases {
    /// Kept for at least `stuck_after_ns` twice over, and a minute.
    pub(super) fn new(stuck_after_ns: u64) -> Self {
        Self {
            at: HashMap::default(),
            horizon_ns: stuck_after_ns.saturating_mul(2).max(MIN_HORIZON_NS),
            newest_ns: 0,
        }
    }

    /// `addr` was released or handed over at `ts_ns`.
    pub(super) fn note(&mut self, addr: u64, ts_ns: u64) {
        let last = self.at.entry(addr).or_insert(ts_ns);
        *last = (*last).max(ts_ns);
        self.newest_ns = self.newest_ns.max(ts_ns);
        if self.at.len() > RECENT_RELEASES_CAP {
            self.forget_oldest();
        }
    }

    /// When `addr` was last released, if that is kept.
    pub(super) fn last(&self, addr: u64) -> Option<u64> {
        self.at.get(&addr).copied()
    }

    /// Forgets releases older than the horizon, then, while more than half the cap are
    /// left, those older than half as long, and so on: the next prune is half a cap of
    /// new locks away, so each costs O(1) per lock noted.
    fn forget_oldest(&mut self) {
        let mut horizon = self.horizon_ns;
        loop {
            let oldest_kept = self.newest_ns.saturating_sub(horizon);
            self.at.retain(|_, &mut ts| ts >= oldest_kept);
            if self.at.len() <= RECENT_RELEASES_CAP / 2 || horizon == 0 {
                break;
            }
            horizon /= 2;
        }
    }

    /// How many locks' releases are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_release_is_kept_and_the_later_one_wins() {
        let mut r = RecentReleases::new(S);
        assert_eq!(r.last(7), None);
        r.note(7, 5 * S);
        r.note(7, 3 * S);
        assert_eq!(r.last(7), Some(5 * S));
        r.note(7, 6 * S);
        assert_eq!(r.last(7), Some(6 * S));
    }

    #[test]
    fn past_the_cap_the_oldest_releases_go_first() {
        let mut r = RecentReleases::new(S);
        let n = u64::try_from(RECENT_RELEASES_CAP).unwrap();
        // One lock a millisecond, all within the horizon: the cap forces the pruning.
        for addr in 0..=n {
            r.note(addr, addr * 1_000_000);
        }
        assert!(r.len() <= RECENT_RELEASES_CAP / 2, "{}", r.len());
        assert!(r.len() > 0);
        assert_eq!(r.last(n), Some(n * 1_000_000), "the newest is kept");
        assert_eq!(r.last(0), None, "the oldest went");
        // Old releases beyond the horizon go before any recent one.
        let mut r = RecentReleases::new(S);
        for addr in 0..n {
            r.note(addr, 0);
        }
        r.note(n, 100 * S);
        assert_eq!((r.len(), r.last(n)), (1, Some(100 * S)));
    }
}
