//! The whole run's contention profiles, for `tracer attach --pprof/--folded/--flamegraph`:
//! a profile window (the one `tracer serve`'s `/debug/pprof/contention` uses) opened at
//! attach and closed when the trace ends, named like the findings, and handed back to be
//! written (`crate::exports::write_exports`).

use super::{Session, live::unix_now_ns, monotonic_ns};
use crate::{
    exports::ExportProfiles,
    model::profile::{HOLDER_NOT_KNOWN_FRAME, HOLDER_PROFILE_COMMENT, STACK_NOT_SAMPLED_FRAME},
};

/// The profile id of the whole run's window, apart from `tracer serve`'s (counted from 1).
const WHOLE_RUN_PROFILE: u64 = u64::MAX;

/// What the whole-run profile collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportRequest {
    /// Also a holder profile: each wait charged to the stack that had taken the lock
    /// (needs `--holds`, whose uprobes see acquisitions).
    pub holders: bool,
}

/// A whole-run profile window being collected.
#[derive(Debug)]
pub(super) struct WholeRun {
    holders: bool,
    start_unix_ns: u64,
    started_ns: u64,
}

impl Session {
    /// Opens the whole run's profile window (waits that end from now on).
    pub(super) fn open_whole_run_profile(&mut self, request: ExportRequest) {
        self.analysis.start_profile(WHOLE_RUN_PROFILE);
        if let Some(go) = self.go.as_mut() {
            go.start_profile(WHOLE_RUN_PROFILE);
        }
        if request.holders {
            self.analysis.start_holder_profile(WHOLE_RUN_PROFILE);
            if let Some(go) = self.go.as_mut() {
                go.start_holder_profile(WHOLE_RUN_PROFILE);
            }
        }
        self.whole_run = Some(WholeRun {
            holders: request.holders,
            start_unix_ns: unix_now_ns(),
            started_ns: monotonic_ns(),
        });
    }

    /// Closes the whole run's profile window: its waiter profile and, if asked for, its
    /// holder profile, named, and notes for the summary when a profile hit its memory
    /// bound. `None` if none was open.
    pub(super) fn close_whole_run_profile(&mut self) -> Option<(ExportProfiles, Vec<String>)> {
        let run = self.whole_run.take()?;
        let mut notes = Vec::new();
        let span = (
            run.start_unix_ns,
            monotonic_ns().saturating_sub(run.started_ns),
        );
        let waits = self
            .analysis
            .finish_profile(WHOLE_RUN_PROFILE)
            .unwrap_or_default();
        // A Go side replaced since the start (an exec) has no such profile: no Go waits.
        let go_waits = self
            .go
            .as_mut()
            .and_then(|go| go.finish_profile(WHOLE_RUN_PROFILE))
            .unwrap_or_default();
        notes.extend(cap_note("", waits.overflowed + go_waits.overflowed));
        let waiters = self.contention_profile((waits, go_waits), span, STACK_NOT_SAMPLED_FRAME);
        let holders = run.holders.then(|| {
            let waits = self
                .analysis
                .finish_holder_profile(WHOLE_RUN_PROFILE)
                .unwrap_or_default();
            let go_waits = self
                .go
                .as_mut()
                .and_then(|go| go.finish_holder_profile(WHOLE_RUN_PROFILE))
                .unwrap_or_default();
            notes.extend(cap_note(
                "holders' ",
                waits.overflowed + go_waits.overflowed,
            ));
            let mut profile =
                self.contention_profile((waits, go_waits), span, HOLDER_NOT_KNOWN_FRAME);
            profile.comments.push(HOLDER_PROFILE_COMMENT.to_owned());
            profile
        });
        Some((ExportProfiles { waiters, holders }, notes))
    }
}

/// The note on `left_out` waits of the `which` exported profile, when there are any.
fn cap_note(which: &str, left_out: u64) -> Option<String> {
    (left_out > 0).then(|| {
        format!(
            "{left_out} lock waits are left out of the exported {which}profile: it had {} distinct (lock, stack) pairs of native locks or {} of Go locks already (the memory bound)",
            crate::native::wait_profile::MAX_PROFILE_ENTRIES,
            crate::go::lock_model::MAX_GO_PROFILE_ENTRIES,
        )
    })
}
