//! The view's sink: findings become banner lines, sent to the view's thread the moment
//! the session confirms them; the summary's notes are kept for after the view closes.

use std::{io, sync::mpsc};

use super::format::{duration, thread};
use crate::{
    model::{Finding, LockRef, Summary},
    sinks::Sink,
};

/// Sends each finding to the view as one line.
#[derive(Debug)]
pub struct TopSink {
    alerts: mpsc::Sender<String>,
    /// The summary's notes, once the trace ended.
    pub notes: Vec<String>,
}

impl TopSink {
    /// A sink sending to `alerts`.
    #[must_use]
    pub fn new(alerts: mpsc::Sender<String>) -> Self {
        Self {
            alerts,
            notes: Vec::new(),
        }
    }
}

impl Sink for TopSink {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        if let Some(line) = banner(finding) {
            // The view may have gone (quitting): nothing left to show it to.
            let _ = self.alerts.send(line);
        }
        Ok(())
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.notes.clone_from(&summary.notes);
        Ok(())
    }
}

/// A finding as the banner says it; `None` for what is no danger (a lock-order inversion
/// whose orders cannot meet).
#[must_use]
pub fn banner(finding: &Finding) -> Option<String> {
    match finding {
        Finding::Deadlock(deadlock) => {
            let what = if deadlock.will_time_out {
                "CYCLE OF TIMED WAITS"
            } else {
                "DEADLOCK"
            };
            let path: Vec<String> = deadlock
                .cycle
                .iter()
                .map(|e| format!("{} waits {}", thread(e.tid, &e.thread), e.waits_for.label()))
                .collect();
            Some(format!("{what}: {}", path.join(", ")))
        }
        Finding::StuckLock(stuck) => Some(format!(
            "STUCK LOCK: {} held {}",
            stuck.lock.label(),
            duration(u128::from(stuck.held_ns))
        )),
        Finding::LockOrderInversion(inversion) if !inversion.harmless => {
            let mut locks: Vec<String> = inversion.locks.iter().map(LockRef::label).collect();
            if let Some(first) = locks.first().cloned() {
                locks.push(first);
            }
            Some(format!("LOCK-ORDER INVERSION: {}", locks.join(" -> ")))
        }
        Finding::LockOrderInversion(_) => None,
    }
}
