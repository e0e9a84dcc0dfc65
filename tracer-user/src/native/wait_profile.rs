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
    /// By (lock address, kernel stack id or `WINDOW_ONLY_STACK`).
    entries: HashMap<(u64, u32), ProfileEntry>,
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
        let Some((stack_key, window)) = stack else {
            let entry = self.unsampled.entry(lock).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(ns);
            return;
        };
        let len = self.entries.len();
        match self.entries.get_mut(&(lock, stack_key)) {
            Some(entry) => {
                entry.count += 1;
                entry.delay_ns = entry.delay_ns.saturating_add(ns);
            }
            None if len < MAX_PROFILE_ENTRIES => {
                self.entries.insert(
                    (lock, stack_key),
                    ProfileEntry {
                        count: 1,
                        delay_ns: ns,
                        window: Box::new(*window),
                    },
                );
            }
            None => self.overflowed += 1,
        }
    }

    /// The stacks the window's waits came from, as [`Self::spread_unsampled`] gives them
    /// (a window-only stack with no id), each once per lock.
    pub fn stacks(&self) -> impl Iterator<Item = (StackId, &StackWindow)> + '_ {
        self.entries.iter().map(|(&(_, stack_key), entry)| {
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
        for (&(lock, _), entry) in &entries {
            *sampled_per_lock.entry(lock).or_default() += entry.count;
        }
        let mut out = Vec::with_capacity(entries.len() + unsampled.len());
        for ((lock, stack_key), mut entry) in entries {
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

/// Released holds remembered per lock at most, for [`HolderProfiles`]: past that the
/// table starts again (a wait whose holder's release was forgotten counts as one whose
/// holder is not known).
pub const MAX_RELEASED_HOLDS: usize = 65_536;

/// A hold released while holder profiles were collected: when, and where the lock had
/// been taken (the acquisition's kernel stack id and the lock call's return address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleasedHold {
    pub released_ns: u64,
    pub stack: StackId,
    pub call_site: u64,
}

/// Holder profiles (`tracer attach --holds --pprof`): each lock wait's time charged to
/// the stack that had taken the lock the waiter waited for, as Go's mutex profile does.
///
/// At a wait's end the hold it waited out has just been released (the release wakes the
/// waiter), so that hold is remembered per lock from its release; a wait that began after
/// the last release waited for the lock's current holder instead.
#[derive(Clone, Debug, Default)]
pub struct HolderProfiles {
    /// By the id their requester gave.
    pub(super) profiles: Vec<(u64, WaitProfile)>,
    /// The last hold released on each lock, while a profile is open.
    released: HashMap<u64, ReleasedHold>,
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
        self.released.insert(lock, hold);
    }

    /// The hold of `lock` released last, if it was released at or after `since_ns` (so a
    /// wait that began then waited it out).
    #[must_use]
    pub fn released_since(&self, lock: u64, since_ns: u64) -> Option<ReleasedHold> {
        self.released
            .get(&lock)
            .copied()
            .filter(|h| h.released_ns >= since_ns)
    }

    /// Charges a wait of `ns` on `lock` to `holder` (its acquisition's stack id and call
    /// site), or to the lock's unknown holder.
    pub fn record(&mut self, lock: u64, holder: Option<(StackId, u64)>, ns: u64) {
        let window = holder.map(|(_, call_site)| StackWindow {
            ip: call_site,
            ..StackWindow::EMPTY
        });
        let stack = holder
            .zip(window.as_ref())
            .map(|((id, _), window)| (id.unwrap_or(super::analysis::WINDOW_ONLY_STACK), window));
        for (_, profile) in &mut self.profiles {
            profile.record(lock, stack, ns);
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
        p.record(0x10, Some((1, &window(0xb))), 100);
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
        let hold = |released_ns, call_site| ReleasedHold {
            released_ns,
            stack: Some(7),
            call_site,
        };
        h.on_release(0x10, hold(5, 0xa));
        h.start(1);
        assert_eq!(
            h.released_since(0x10, 0),
            None,
            "released before the profile"
        );
        h.on_release(0x10, hold(100, 0xb));
        assert_eq!(h.released_since(0x10, 50), Some(hold(100, 0xb)));
        assert_eq!(
            h.released_since(0x10, 101),
            None,
            "released before the wait"
        );
        h.record(0x10, Some((Some(7), 0xb)), 40);
        h.record(0x10, Some((Some(7), 0xb)), 60);
        let out = h.finish(1).unwrap().spread_unsampled();
        assert_eq!(out.len(), 1);
        let (lock, stack, entry) = &out[0];
        assert_eq!((*lock, *stack), (0x10, Some(Some(7))));
        assert_eq!(
            (entry.count, entry.delay_ns, entry.window.ip),
            (2, 100, 0xb)
        );
        assert!(h.is_empty());
    }
}
