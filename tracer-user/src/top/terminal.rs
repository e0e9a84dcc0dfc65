//! The view's thread: the terminal and its event loop, kept thin. It asks the session for
//! a snapshot about once a second (and when a lock's stacks are opened), folds it into the
//! [`ViewState`] and draws; keys go to [`ViewState::on_key`].
//!
//! The terminal is taken over only once the session answered (it attached): an attach
//! that fails leaves the terminal as it was, for the error line. Whatever ends the view
//! (a key, the session ending, an error), the terminal is restored.

use std::{
    io,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{self, Event};
use tokio::sync::{mpsc, oneshot};

use super::{
    TopSettings, apply_snapshot,
    stderr::HeldStderr,
    view::{KeyAction, ViewState, render},
    window::Window,
};
use crate::{model::live::TopSnapshot, session::LiveRequest};

/// How often the view refreshes.
const REFRESH: Duration = Duration::from_secs(1);

/// How the view ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewEnd {
    /// The user quit: the session was asked to stop.
    Quit,
    /// The session ended on its own (or never attached).
    SessionEnded,
}

/// Restores the terminal when dropped, however the loop is left.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the view until a key quits it or the session ends.
///
/// # Errors
/// When the terminal cannot be set up or drawn on.
pub fn run_view(
    requests: &mpsc::UnboundedSender<LiveRequest>,
    alerts: &std_mpsc::Receiver<String>,
    settings: &TopSettings,
) -> io::Result<ViewEnd> {
    let started = Instant::now();
    let mut window = Window::new(settings.window);
    let Some(first) = ask(requests, None) else {
        return Ok(ViewEnd::SessionEnded);
    };
    let mut state = ViewState::new(
        format!("{} ({})", first.target.pid, first.target.comm),
        settings.window.as_secs(),
        settings.colour,
    );
    apply_snapshot(&mut state, &mut window, started.elapsed(), &first);
    // Dropped in reverse order: the terminal is restored, then what was written to
    // standard error meanwhile comes out on it. Without a memfd, messages may smear the
    // screen, which is no reason to refuse the view.
    let _held = HeldStderr::hold().ok();
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut next_refresh = Instant::now() + REFRESH;
    loop {
        while let Ok(alert) = alerts.try_recv() {
            state.findings += 1;
            state.banner = Some(alert);
        }
        terminal.draw(|frame| render(frame, &state))?;
        let mut refresh = false;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                match state.on_key(key) {
                    KeyAction::Quit => {
                        // The session detaches every probe and ends; the caller waits
                        // for it.
                        let _ = requests.send(LiveRequest::Stop);
                        return Ok(ViewEnd::Quit);
                    }
                    KeyAction::Refresh => refresh = true,
                    KeyAction::Redraw | KeyAction::None => {}
                }
            }
        } else {
            refresh = true;
        }
        if refresh {
            let stacks_for = state.detail.then(|| state.selected_addr()).flatten();
            let Some(snapshot) = ask(requests, stacks_for) else {
                return Ok(ViewEnd::SessionEnded);
            };
            apply_snapshot(&mut state, &mut window, started.elapsed(), &snapshot);
            next_refresh = Instant::now() + REFRESH;
        }
    }
}

/// Asks the session for a snapshot (with `stacks_for`'s stacks) and waits for it; `None`
/// once the session has ended.
fn ask(
    requests: &mpsc::UnboundedSender<LiveRequest>,
    stacks_for: Option<u64>,
) -> Option<TopSnapshot> {
    let (reply, answer) = oneshot::channel();
    requests.send(LiveRequest::Top { stacks_for, reply }).ok()?;
    answer.blocking_recv().ok()
}
