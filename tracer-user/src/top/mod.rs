//! `tracer top`: a live, full-screen view of a process's locks, like `perf top` for lock
//! contention.
//!
//! The session traces as `attach` does and answers the view's questions over the live
//! link `tracer serve` uses (`LiveRequest::Top`: the counters, the waits going on now, a
//! lock's stacks); findings reach the view through a sink ([`sink::TopSink`]), as banner
//! lines. The view runs on a thread of its own, so the session's loop never waits for
//! the terminal.
//!
//! - `window`: rates and percentiles over the sliding window, from snapshot differences.
//! - `chains`: the wait-for chains of the moment as a tree.
//! - `view`: the view's state, its keys and its rendering (pure: tested on a buffer).
//! - `format`: compact ASCII values for the columns.
//! - `sink`: findings to banner lines.
//! - `stderr`: standard error held back while the view owns the screen.
//! - `terminal`: the terminal and the event loop.

pub mod chains;
pub mod format;
pub mod sink;
pub mod stderr;
pub mod terminal;
pub mod view;
pub mod window;

use std::{ffi::OsStr, time::Duration};

use self::{
    view::{Row, ViewState},
    window::Window,
};
use crate::model::live::TopSnapshot;

/// Locks a `top` snapshot gives their own row (the rest are summed and not shown).
pub const TOP_SNAPSHOT_LOCKS: usize = 500;

/// How the view looks and computes.
#[derive(Clone, Copy, Debug)]
pub struct TopSettings {
    /// The sliding window's length.
    pub window: Duration,
    /// Whether colours may be used.
    pub colour: bool,
}

/// Whether colours may be used, from `NO_COLOR` (<https://no-color.org>: set and not
/// empty turns them off) and `TERM` (unset or `dumb`: a terminal without them).
#[must_use]
pub fn colour_allowed(no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    let dumb = term.is_none_or(|t| t.is_empty() || t == "dumb");
    !no_color && !dumb
}

/// Folds `snapshot`, taken `at` (since the view started), into `state`.
pub fn apply_snapshot(
    state: &mut ViewState,
    window: &mut Window,
    at: Duration,
    snapshot: &TopSnapshot,
) {
    window.push(at, &snapshot.target);
    state.events = snapshot.target.events;
    state.dropped = snapshot.target.dropped;
    state.rows = window
        .locks(&snapshot.target)
        .into_iter()
        .map(|lock| {
            let mut waits = snapshot.waits.iter().filter(|w| w.lock.addr == lock.addr);
            let waiters_now = waits.clone().count();
            let holder_now = waits
                .find_map(|w| w.holders.first())
                .or_else(|| {
                    snapshot
                        .holders
                        .iter()
                        .find(|(addr, _)| *addr == lock.addr)
                        .map(|(_, holder)| holder)
                })
                .map(format::live_thread);
            Row {
                lock,
                waiters_now,
                holder_now,
            }
        })
        .collect();
    state.chains = chains::wait_for_tree(&snapshot.waits);
    state.waits_left_out = snapshot.waits_left_out;
    if let Some(stacks) = &snapshot.stacks {
        state.stacks = Some(stacks.clone());
    }
}

#[cfg(test)]
mod tests;
