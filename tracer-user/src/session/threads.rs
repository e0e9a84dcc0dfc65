//! The target's threads as the session knows them, for telling a real owner TID in a
//! lock's memory from a stale or garbage word.
use std::{cell::RefCell, collections::HashSet, sync::Arc, time::Instant};

use super::DRAIN_INTERVAL;
use crate::target::TargetProcess;

/// The target's threads, refreshed from `/proc` when an unknown TID shows up (at most
/// once per drain interval, so a burst of bogus owner fields costs one directory read).
pub(super) struct ThreadSet {
    target: Arc<dyn TargetProcess>,
    inner: RefCell<(HashSet<u32>, Instant)>,
}

impl ThreadSet {
    pub(super) fn new(target: Arc<dyn TargetProcess>) -> Self {
        let tids = target
            .thread_ids()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Self {
            target,
            inner: RefCell::new((tids, Instant::now())),
        }
    }

    pub(super) fn contains(&self, tid: u32) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner.0.contains(&tid) {
            return true;
        }
        if inner.1.elapsed() >= DRAIN_INTERVAL {
            inner.0 = self
                .target
                .thread_ids()
                .unwrap_or_default()
                .into_iter()
                .collect();
            inner.1 = Instant::now();
        }
        inner.0.contains(&tid)
    }
}
