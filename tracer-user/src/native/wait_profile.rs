//! The lock waits of a time window, by lock and waiting stack: what a contention profile
//! (`tracer serve`'s `/debug/pprof/contention?seconds=N`) is made of.
//!
//! A window exists only while someone asked for a profile, so an unprofiled trace pays
//! one emptiness check per wait end. Its memory is bounded: at most
//! [`MAX_PROFILE_ENTRIES`] (lock, stack) pairs, each keeping the stack window of its
//! first wait for naming; waits beyond that are counted, not kept.
//!
//! The kernel sends a hot lock's waits with a stack one time in
//! `STACK_SAMPLE_EVERY`; the waits sent without one are counted per lock and spread over
//! that lock's sampled stacks in proportion to their counts when the profile is read
//! ([`WaitProfile::spread_unsampled`]), as a sampling profiler scales its samples.

use rustc_hash::FxHashMap as HashMap;

use crate::event::{StackId, StackWindow};

/// (lock, stack) pairs a window keeps at most: ~300 bytes each with its stack window.
pub const MAX_PROFILE_ENTRIES: usize = 8192;

/// The waits of one (lock, stack) pair.
#[derive(Clone, Debug)]
pub struct ProfileEntry {
    /// Waits.
    pub count: u64,
    /// Their total time, in nanoseconds.
    pub delay_ns: u64,
    /// The stack window of the first of them, for naming the stack.
    pub window: Box<StackWindow>,
}

/// The waits of one window.
#[derive(Clone, Debug, Default)]
pub struct WaitProfile {
    /// By (lock address, kernel stack id or `WINDOW_ONLY_STACK`, the window's `ip`). The
    /// `ip` matters for holder profiles: a kernel stack taken at a lock function's entry
    /// misses the calling function (its return address is on the stack, not in the frame
    /// chain yet), so two callers started alike share a stack id and differ only in the
    /// call site kept as the window's `ip`.
    entries: HashMap<(u64, u32, u64), ProfileEntry>,
    /// Waits sent without a stack, by lock: (count, delay).
    unsampled: HashMap<u64, (u64, u64)>,
    /// Waits not kept: the window had [`MAX_PROFILE_ENTRIES`] pairs already.
    pub overflowed: u64,
}

impl WaitProfile {
    /// Records a wait on `lock` of `ns` nanoseconds, from `stack` (`stack_key`: its kernel
    /// id, or the key of a window-only stack) with stack window `window`; `None` for a
    /// wait sent without its stack.
    pub fn record(&mut self, lock: u64, stack: Option<(u32, &StackWindow)>, ns: u64) {
        self.record_n(lock, stack, 1, ns);
    }

    /// [`WaitProfile::record`] of `count` waits (0: a share of a wait counted elsewhere)
    /// of `ns` nanoseconds in all.
    pub fn record_n(&mut self, lock: u64, stack: Option<(u32, &StackWindow)>, count: u64, ns: u64) {
        let Some((stack_key, window)) = stack else {
            let entry = self.unsampled.entry(lock).or_default();
            entry.0 += count;
            entry.1 = entry.1.saturating_add(ns);
            return;
        };
        let len = self.entries.len();
        let key = (lock, stack_key, window.ip);
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.count += count;
                entry.delay_ns = entry.delay_ns.saturating_add(ns);
            }
            None if len < MAX_PROFILE_ENTRIES => {
                self.entries.insert(
                    key,
                    ProfileEntry {
                        count,
                        delay_ns: ns,
                        window: Box::new(*window),
                    },
                );
            }
            None => self.overflowed += count.max(1),
        }
    }

    /// The stacks the window's waits came from, as [`Self::spread_unsampled`] gives them
    /// (a window-only stack with no id), each once per lock.
    pub fn stacks(&self) -> impl Iterator<Item = (StackId, &StackWindow)> + '_ {
        self.entries.iter().map(|(&(_, stack_key, _), entry)| {
            let stack = (stack_key != super::analysis::WINDOW_ONLY_STACK).then_some(stack_key);
            (stack, &*entry.window)
        })
    }

    /// The window's waits with the unsampled ones spread over their lock's sampled stacks
    /// in proportion to each stack's count (each stack's average wait kept); a lock with
    /// no sampled stack in the window keeps them under `None`. Returns
    /// `(lock, stack id or None, entry)`: the stack id is `None` for window-only stacks
    /// and for the unsampled remainder (whose `window` is empty).
    #[must_use]
    pub fn spread_unsampled(self) -> Vec<(u64, Option<StackId>, ProfileEntry)> {
        let Self {
            entries,
            mut unsampled,
            ..
        } = self;
        let mut sampled_per_lock: HashMap<u64, u64> = HashMap::default();
        for (&(lock, _, _), entry) in &entries {
            *sampled_per_lock.entry(lock).or_default() += entry.count;
        }
        let mut out = Vec::with_capacity(entries.len() + unsampled.len());
        for ((lock, stack_key, _), mut entry) in entries {
            if let Some(&(count, delay)) = unsampled.get(&lock) {
                let sampled = sampled_per_lock.get(&lock).copied().unwrap_or(1).max(1);
                // This stack's share of the lock's unsampled waits.
                let mine = u128::from(entry.count);
                let share = |total: u64| {
                    u64::try_from(u128::from(total) * mine / u128::from(sampled))
                        .unwrap_or(u64::MAX)
                };
                entry.count += share(count);
                entry.delay_ns = entry.delay_ns.saturating_add(share(delay));
            }
            let stack = (stack_key != super::analysis::WINDOW_ONLY_STACK).then_some(stack_key);
            out.push((lock, Some(stack), entry));
        }
        unsampled.retain(|lock, _| !sampled_per_lock.contains_key(lock));
        for (lock, (count, delay_ns)) in unsampled {
            out.push((
                lock,
                None,
                ProfileEntry {
                    count,
                    delay_ns,
                    window: Box::new(StackWindow::EMPTY),
                },
            ));
        }
        out
    }
}

/// Locks whose released holds are remembered at most, for [`HolderProfiles`]: past that
/// the table starts again (a wait whose holders' releases were forgotten is charged to
/// the lock's current holder, or to an unknown one).
pub const MAX_RELEASED_HOLDS: usize = 16_384;

/// Released holds remembered per lock, the latest: a wait is charged to those it
/// overlapped, and a wait that overlapped more (a long wait on a busy lock) has the time
/// of the older ones charged to the oldest remembered.
pub const RELEASES_PER_LOCK: usize = 4;

/// A hold released while holder profiles were collected: when it was taken and released,
/// and where (the acquisition's kernel stack id and the lock call's return address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleasedHold {
    pub acquired_ns: u64,
    pub released_ns: u64,
    pub stack: StackId,
    pub call_site: u64,
}

/// Where a share of a wait's time goes in a holder profile: the holder's acquisition
/// (kernel stack id and call site), or `None` for a holder not known.
pub type Holder = Option<(StackId, u64)>;

/// Holder profiles (`tracer attach --holds --pprof`): each lock wait's time charged to
/// the stacks that had taken the lock while the waiter waited, as Go's mutex profile
/// charges waits to holders.
///
/// A wait is split over the holds released during it, each charged the time it overlapped
/// the wait (so a waiter that waited 2 ms for a long hold, then a few microseconds for
/// another waiter's brief one, is charged to the long hold, not to whichever released
/// last); the rest goes to the lock's holder when the wait ended if it is known, else to
/// the hold released last. The wait itself counts once, for the hold it overlapped most.
#[derive(Clone, Debug, Default)]
pub struct HolderProfiles {
    /// By the id their requester gave.
    pub(super) profiles: Vec<(u64, WaitProfile)>,
    /// The latest holds released on each lock, oldest first, while a profile is open.
    released: HashMap<u64, Vec<ReleasedHold>>,
}

impl HolderProfiles {
    /// Whether no holder profile is being collected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Starts collecting a holder profile under `id`.
    pub fn start(&mut self, id: u64) {
        self.profiles.push((id, WaitProfile::default()));
    }

    /// The holder profile collected under `id` so far.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<&WaitProfile> {
        self.profiles.iter().find(|(i, _)| *i == id).map(|(_, p)| p)
    }

    /// The holder profile collected under `id`, which stops collecting it.
    pub fn finish(&mut self, id: u64) -> Option<WaitProfile> {
        let at = self.profiles.iter().position(|(i, _)| *i == id)?;
        let profile = self.profiles.swap_remove(at).1;
        if self.profiles.is_empty() {
            self.released = HashMap::default();
        }
        Some(profile)
    }

    /// Remembers the release of a hold of `lock` (a no-op unless a profile is open).
    pub fn on_release(&mut self, lock: u64, hold: ReleasedHold) {
        if self.profiles.is_empty() {
            return;
        }
        if self.released.len() >= MAX_RELEASED_HOLDS && !self.released.contains_key(&lock) {
            self.released.clear();
        }
        let holds = self.released.entry(lock).or_default();
        if holds.len() >= RELEASES_PER_LOCK {
            holds.remove(0);
        }
        holds.push(hold);
    }

    /// Splits a wait on `lock` from `start_ns` to `end_ns` over the holds released
    /// during it, each with the time it overlapped the wait, oldest first; the time no
    /// remembered hold covers goes to `current` (the lock's holder at the wait's end) if
    /// known, else to the last hold released during the wait, else to an unknown holder.
    /// Returns `(holder, ns)` shares whose times add up to the wait's.
    #[must_use]
    pub fn split(
        &self,
        lock: u64,
        (start_ns, end_ns): (u64, u64),
        current: Holder,
    ) -> Vec<(Holder, u64)> {
        let wait_ns = end_ns.saturating_sub(start_ns);
        let mut shares: Vec<(Holder, u64)> = self
            .released
            .get(&lock)
            .into_iter()
            .flatten()
            .filter(|h| h.released_ns >= start_ns)
            .map(|h| {
                let from = h.acquired_ns.max(start_ns);
                let to = h.released_ns.min(end_ns);
                (Some((h.stack, h.call_site)), to.saturating_sub(from))
            })
            .collect();
        let covered: u64 = shares.iter().map(|(_, ns)| ns).sum();
        let rest = wait_ns.saturating_sub(covered);
        match (current, shares.last_mut()) {
            (Some(holder), _) => shares.push((Some(holder), rest)),
            (None, Some(last)) => last.1 += rest,
            (None, None) => shares.push((None, rest)),
        }
        shares.retain(|(_, ns)| *ns > 0);
        if shares.is_empty() {
            shares.push((current, wait_ns));
        }
        shares
    }

    /// Charges one wait on `lock` that stands for `weight` waits (a sampled one) to
    /// `shares` (from [`HolderProfiles::split`]): each its time, the wait counted once,
    /// for the largest share, both `weight` times.
    pub fn record(&mut self, lock: u64, shares: &[(Holder, u64)], weight: u64) {
        let counted = shares
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, ns))| (*ns, std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        for (i, &(holder, ns)) in shares.iter().enumerate() {
            let window = holder.map(|(_, call_site)| StackWindow {
                ip: call_site,
                ..StackWindow::EMPTY
            });
            let stack = holder.zip(window.as_ref()).map(|((id, _), window)| {
                (id.unwrap_or(super::analysis::WINDOW_ONLY_STACK), window)
            });
            let count = u64::from(Some(i) == counted) * weight;
            for (_, profile) in &mut self.profiles {
                profile.record_n(lock, stack, count, ns.saturating_mul(weight));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ip: u64) -> StackWindow {
        StackWindow {
            ip,
            ..StackWindow::EMPTY
        }
    }

    /// Guards the scaling of unsampled waits: they are spread over the lock's sampled
    /// stacks in proportion to their counts (so the profile's totals match the lock's),
    /// and a lock without a sampled stack keeps them apart.
    #[test]
    fn unsampled_waits_are_spread_over_the_locks_stacks() {
        let mut p = WaitProfile::default();
        p.record(0x10, Some((1, &window(0xa))), 100);
        p.record(0x10, Some((1, &window(0xa))), 100);
        p.record(0x10, Some((2, &window(0xc))), 300);
        for _ in 0..6 {
            p.record(0x10, None, 50);
        }
        p.record(0x20, None, 7);
        let mut out = p.spread_unsampled();
        out.sort_by_key(|(lock, stack, _)| (*lock, *stack));
        let summary: Vec<(u64, Option<StackId>, u64, u64, u64)> = out
            .iter()
            .map(|(lock, stack, e)| (*lock, *stack, e.count, e.delay_ns, e.window.ip))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0x10, Some(Some(1)), 2 + 4, 200 + 200, 0xa),
                (0x10, Some(Some(2)), 1 + 2, 300 + 100, 0xc),
                (0x20, None, 1, 7, 0),
            ]
        );
    }

    /// Guards holder profiles of callers that share a kernel stack id: a stack taken at a
    /// lock function's entry misses its caller, so two threads started alike (a holder
    /// and a waiter, both under `start_thread`) get one id. Their holds must stay apart
    /// by call site; merged, every wait went to whichever call site came first (the
    /// `long_hold` root test failed one run in several).
    #[test]
    fn holds_with_one_stack_id_stay_apart_by_call_site() {
        let mut h = HolderProfiles::default();
        h.start(1);
        h.record(0x10, &[(Some((Some(7), 0x1000)), 2_000_000)], 1);
        h.record(0x10, &[(Some((Some(7), 0x2000)), 10)], 1);
        h.record(0x10, &[(Some((Some(7), 0x1000)), 2_000_000)], 1);
        let mut out = h.finish(1).unwrap().spread_unsampled();
        out.sort_by_key(|(_, _, e)| e.window.ip);
        let by_site: Vec<(u64, u64, u64)> = out
            .iter()
            .map(|(_, _, e)| (e.window.ip, e.count, e.delay_ns))
            .collect();
        assert_eq!(by_site, vec![(0x1000, 2, 4_000_000), (0x2000, 1, 10)]);
    }

    /// Guards the window's memory bound: pairs beyond the cap are counted, not kept.
    #[test]
    fn a_window_keeps_a_bounded_number_of_pairs() {
        let mut p = WaitProfile::default();
        for lock in 0..(MAX_PROFILE_ENTRIES as u64 + 5) {
            p.record(lock, Some((1, &window(0))), 1);
        }
        assert_eq!(p.overflowed, 5);
        assert_eq!(p.spread_unsampled().len(), MAX_PROFILE_ENTRIES);
    }

    /// Guards the holder profile's choice of holder: a wait is charged to the hold
    /// released during it (the one it waited out), not to one released before it began;
    /// and nothing is remembered while no holder profile is open.
    #[test]
    fn holders_are_the_holds_released_during_the_wait() {
        let mut h = HolderProfiles::default();
        let hold = |acquired_ns, released_ns, call_site| ReleasedHold {
            acquired_ns,
            released_ns,
            stack: Some(7),
            call_site,
        };
        let holder = |call_site| Some((Some(7), call_site));
        h.on_release(0x10, hold(0, 5, 0xa));
        h.start(1);
        assert_eq!(
            h.split(0x10, (0, 40), None),
            vec![(None, 40)],
            "released before the profile: nothing known"
        );
        h.on_release(0x10, hold(10, 100, 0xb));
        assert_eq!(h.split(0x10, (50, 100), None), vec![(holder(0xb), 50)]);
        assert_eq!(
            h.split(0x10, (101, 130), holder(0xc)),
            vec![(holder(0xc), 29)],
            "released before the wait: the current holder's"
        );
        let shares = h.split(0x10, (60, 110), None);
        assert_eq!(shares, vec![(holder(0xb), 50)], "the wake-up delay too");
        h.record(0x10, &shares, 1);
        h.record(0x10, &[(holder(0xb), 40)], 1);
        let out = h.finish(1).unwrap().spread_unsampled();
        assert_eq!(out.len(), 1);
        let (lock, stack, entry) = &out[0];
        assert_eq!((*lock, *stack), (0x10, Some(Some(7))));
        assert_eq!((entry.count, entry.delay_ns, entry.window.ip), (2, 90, 0xb));
        assert!(h.is_empty());
    }

    /// Guards the split of a wait over the holds it overlapped (the `long_hold` root
    /// test): a waiter that waited out a 2 ms hold, then a brief one by another waiter
    /// released last, is charged to the long hold for its 2 ms and counted there.
    #[test]
    fn a_wait_is_split_over_the_holds_it_overlapped() {
        let mut h = HolderProfiles::default();
        h.start(1);
        let long = ReleasedHold {
            acquired_ns: 1_000,
            released_ns: 2_001_000,
            stack: Some(7),
            call_site: 0x1000,
        };
        let brief = ReleasedHold {
            acquired_ns: 2_010_000,
            released_ns: 2_011_000,
            stack: Some(7),
            call_site: 0x2000,
        };
        h.on_release(0x10, long);
        h.on_release(0x10, brief);
        let shares = h.split(0x10, (500, 2_020_000), None);
        assert_eq!(
            shares,
            vec![
                (Some((Some(7), 0x1000)), 2_000_000),
                (Some((Some(7), 0x2000)), 1_000 + 9_000 + 9_500),
            ]
        );
        h.record(0x10, &shares, 1);
        let mut out = h.finish(1).unwrap().spread_unsampled();
        out.sort_by_key(|(_, _, e)| e.window.ip);
        let counts: Vec<(u64, u64)> = out.iter().map(|(_, _, e)| (e.window.ip, e.count)).collect();
        assert_eq!(counts, vec![(0x1000, 1), (0x2000, 0)]);
    }
}
