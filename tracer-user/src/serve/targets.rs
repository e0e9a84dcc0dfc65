//! Which processes `tracer serve` traces, traced before, or was refused: pure bookkeeping,
//! fed by the discovery scans and the sessions' ends.
//!
//! A process is named by its PID *and* its start time, so a PID reused by a new process
//! (a restarted service often gets its old PID back in a container) is a new target.

use std::{collections::BTreeMap, time::Duration};

use tokio::sync::mpsc;

use crate::{model::live::TargetSnapshot, session::LiveRequest};

/// A process: its PID and its start time (clock ticks since boot).
pub type ProcessKey = (u32, u64);

/// What the tracer knows of one process.
#[derive(Debug)]
pub enum TargetState {
    /// Traced now; its session answers questions on this channel.
    Traced {
        comm: String,
        requests: mpsc::UnboundedSender<LiveRequest>,
    },
    /// The tracer could not trace it (said once, in the log); not tried again.
    Refused,
    /// Its trace ended at `ended_at` (since the serve started); its last snapshot is
    /// kept for the grace period, so its final counts reach the scraper.
    Ended {
        ended_at: Duration,
        last: Option<Box<TargetSnapshot>>,
    },
}

/// Every process the tracer has dealt with, by [`ProcessKey`].
#[derive(Debug, Default)]
pub struct Targets {
    states: BTreeMap<ProcessKey, TargetState>,
}

impl Targets {
    /// The processes among `matching` (the ones that match the serve's selectors now)
    /// that are new: never traced, refused or ended.
    #[must_use]
    pub fn new_ones(&self, matching: &[ProcessKey]) -> Vec<ProcessKey> {
        matching
            .iter()
            .copied()
            .filter(|key| !self.states.contains_key(key))
            .collect()
    }

    /// Records that `key` is traced now.
    pub fn traced(
        &mut self,
        key: ProcessKey,
        comm: String,
        requests: mpsc::UnboundedSender<LiveRequest>,
    ) {
        self.states
            .insert(key, TargetState::Traced { comm, requests });
    }

    /// Records that `key` could not be traced.
    pub fn refused(&mut self, key: ProcessKey) {
        self.states.insert(key, TargetState::Refused);
    }

    /// Records that `key`'s trace ended at `now` with `last` as its final snapshot.
    pub fn ended(&mut self, key: ProcessKey, now: Duration, last: Option<TargetSnapshot>) {
        self.states.insert(
            key,
            TargetState::Ended {
                ended_at: now,
                last: last.map(Box::new),
            },
        );
    }

    /// Forgets the ended targets whose grace period is over at `now`, and the refused
    /// processes that no longer exist (`alive` says which do): memory stays bounded
    /// however many processes come and go.
    pub fn expire(&mut self, now: Duration, grace: Duration, alive: &dyn Fn(ProcessKey) -> bool) {
        self.states.retain(|&key, state| match state {
            TargetState::Traced { .. } => true,
            TargetState::Refused => alive(key),
            TargetState::Ended { ended_at, .. } => now.saturating_sub(*ended_at) < grace,
        });
    }

    /// The targets traced now: key, name and question channel.
    pub fn traced_now(
        &self,
    ) -> impl Iterator<Item = (ProcessKey, &str, &mpsc::UnboundedSender<LiveRequest>)> {
        self.states.iter().filter_map(|(&key, state)| match state {
            TargetState::Traced { comm, requests } => Some((key, comm.as_str(), requests)),
            _ => None,
        })
    }

    /// The final snapshots of the targets that ended within the grace period.
    pub fn ended_snapshots(&self) -> impl Iterator<Item = &TargetSnapshot> {
        self.states.values().filter_map(|state| match state {
            TargetState::Ended { last, .. } => last.as_deref(),
            _ => None,
        })
    }

    /// How many targets are traced now.
    #[must_use]
    pub fn traced_count(&self) -> usize {
        self.traced_now().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pid: u32) -> TargetSnapshot {
        TargetSnapshot {
            pid,
            comm: "svc".to_owned(),
            attached: false,
            locks: Vec::new(),
            other: Vec::new(),
            deadlocks: 0,
            lock_order_inversions: 0,
            stuck_locks: 0,
            events: 0,
            dropped: 0,
            sleep_sample_period: 1,
        }
    }

    /// Guards following a restarted service: the same PID with another start time is a
    /// new target; a process already traced, refused or ended is not attached again.
    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut targets = Targets::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        targets.traced((100, 1), "svc".to_owned(), tx);
        targets.refused((200, 1));
        targets.ended((300, 1), Duration::from_secs(1), Some(snapshot(300)));
        let new = targets.new_ones(&[(100, 1), (200, 1), (300, 1), (300, 9), (400, 1)]);
        assert_eq!(new, vec![(300, 9), (400, 1)]);
        assert_eq!(targets.traced_count(), 1);
    }

    /// Guards bounded memory over weeks: ended targets are kept for the grace period
    /// only, refused ones while they live.
    #[test]
    fn ended_targets_are_kept_for_the_grace_period() {
        let mut targets = Targets::default();
        targets.ended((300, 1), Duration::from_secs(10), Some(snapshot(300)));
        targets.refused((200, 1));
        targets.refused((201, 1));
        let grace = Duration::from_mins(1);
        targets.expire(Duration::from_secs(69), grace, &|key| key.0 == 200);
        assert_eq!(targets.ended_snapshots().count(), 1);
        assert_eq!(targets.new_ones(&[(200, 1), (201, 1)]), vec![(201, 1)]);
        targets.expire(Duration::from_secs(70), grace, &|_| true);
        assert_eq!(targets.ended_snapshots().count(), 0);
    }
}
