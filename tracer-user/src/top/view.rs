//! The view's state and its rendering: pure functions of [`ViewState`], drawn on any
//! ratatui backend (the terminal, or a test buffer).
//!
//! Layout, top to bottom, for 80×24 and up: a header (target, window, events, dropped
//! records: always visible), a banner line (the latest finding, or the keys), the lock
//! table, a pane (the wait-for chains, or the selected lock's stacks), and a footer
//! (the filter being typed, or the keys).

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
};

use super::{
    chains::ChainLine,
    format::{bound, duration, fit, per_second},
    window::{BucketBound, WindowLock},
};
use crate::model::live::LockStacks;

/// What the table is sorted by, most first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Total wait time in the window.
    Wait,
    /// Contentions per second.
    Contentions,
    /// 99th percentile wait.
    P99,
    /// Longest wait.
    Max,
    /// Threads waiting now.
    Waiters,
}

impl SortKey {
    /// The next key `s` moves to.
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            Self::Wait => Self::Contentions,
            Self::Contentions => Self::P99,
            Self::P99 => Self::Max,
            Self::Max => Self::Waiters,
            Self::Waiters => Self::Wait,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Wait => "wait",
            Self::Contentions => "cont/s",
            Self::P99 => "p99",
            Self::Max => "max",
            Self::Waiters => "waiters",
        }
    }
}

/// One row of the table: a lock over the window, and who waits for and holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The lock over the window.
    pub lock: WindowLock,
    /// Threads waiting for it now.
    pub waiters_now: usize,
    /// Who holds it now, when known ("T12 name").
    pub holder_now: Option<String>,
}

/// Everything the screen shows.
#[derive(Clone, Debug)]
pub struct ViewState {
    /// The target: "PID (comm)".
    pub target: String,
    /// The window's length in seconds.
    pub window_secs: u64,
    /// Records received from the kernel.
    pub events: u64,
    /// Records the kernel dropped.
    pub dropped: u64,
    /// The locks, in the session's order (sorted for display by [`ViewState::visible`]).
    pub rows: Vec<Row>,
    /// The wait-for chains now.
    pub chains: Vec<ChainLine>,
    /// Waits left out of the chains (cap).
    pub waits_left_out: usize,
    /// The latest finding, one line, and how many there were.
    pub banner: Option<String>,
    /// Findings so far.
    pub findings: u64,
    /// The table's order.
    pub sort: SortKey,
    /// Only locks whose label contains this (case-insensitive).
    pub filter: String,
    /// Whether keys go to the filter.
    pub editing_filter: bool,
    /// The selected row among the visible ones.
    pub selected: usize,
    /// Whether the pane shows the selected lock's stacks.
    pub detail: bool,
    /// The stacks of the lock the detail pane shows.
    pub stacks: Option<LockStacks>,
    /// Colours allowed (`NO_COLOR` unset, a terminal that has them).
    pub colour: bool,
    /// Why the trace ended, when it did.
    pub ended: Option<String>,
}

impl ViewState {
    /// An empty view of `target`.
    #[must_use]
    pub fn new(target: String, window_secs: u64, colour: bool) -> Self {
        Self {
            target,
            window_secs,
            events: 0,
            dropped: 0,
            rows: Vec::new(),
            chains: Vec::new(),
            waits_left_out: 0,
            banner: None,
            findings: 0,
            sort: SortKey::Wait,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            detail: false,
            stacks: None,
            colour,
            ended: None,
        }
    }

    /// The rows shown: filtered, then sorted by the sort key (ties: more wait, then
    /// the address, so the order is stable from one refresh to the next).
    #[must_use]
    pub fn visible(&self) -> Vec<&Row> {
        let filter = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| filter.is_empty() || r.lock.label.to_lowercase().contains(&filter))
            .collect();
        let key = |r: &Row| -> (u128, u128) {
            let order = |b: Option<BucketBound>| match b {
                None => 0,
                Some(BucketBound::AtMost(ns)) => u128::from(ns),
                Some(BucketBound::Beyond) => u128::MAX,
            };
            let first = match self.sort {
                SortKey::Wait => r.lock.wait_ns,
                SortKey::Contentions => u128::from(r.lock.contentions_per_10s),
                SortKey::P99 => order(r.lock.p99),
                SortKey::Max => order(r.lock.max),
                SortKey::Waiters => r.waiters_now as u128,
            };
            (first, r.lock.wait_ns)
        };
        rows.sort_by(|a, b| key(b).cmp(&key(a)).then(a.lock.addr.cmp(&b.lock.addr)));
        rows
    }

    /// The address of the selected lock, if any row is shown.
    #[must_use]
    pub fn selected_addr(&self) -> Option<u64> {
        let rows = self.visible();
        rows.get(self.selected.min(rows.len().saturating_sub(1)))
            .map(|r| r.lock.addr)
    }

    /// Applies a key; returns what the loop should do.
    pub fn on_key(&mut self, key: KeyEvent) -> KeyAction {
        if key.kind == KeyEventKind::Release {
            return KeyAction::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return KeyAction::Quit;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => return KeyAction::None,
            }
            self.selected = 0;
            return KeyAction::Redraw;
        }
        match key.code {
            KeyCode::Char('q') => return KeyAction::Quit,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('w') => self.sort = SortKey::Wait,
            KeyCode::Char('c') => self.sort = SortKey::Contentions,
            KeyCode::Char('p') => self.sort = SortKey::P99,
            KeyCode::Char('m') => self.sort = SortKey::Max,
            KeyCode::Char('n') => self.sort = SortKey::Waiters,
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.visible().len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Enter | KeyCode::Char('o') => {
                self.detail = !self.detail;
                if !self.detail {
                    self.stacks = None;
                }
                return KeyAction::Refresh;
            }
            KeyCode::Esc => {
                self.detail = false;
                self.stacks = None;
            }
            _ => return KeyAction::None,
        }
        KeyAction::Redraw
    }
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing changed.
    None,
    /// Draw again.
    Redraw,
    /// Ask the session for fresh data now (the stacks of a lock just opened).
    Refresh,
    /// Leave.
    Quit,
}

/// Column widths of the table (80 columns with the spaces between them).
const LOCK_WIDTH: usize = 20;

/// Draws `state` on `frame`.
pub fn render(frame: &mut Frame<'_>, state: &ViewState) {
    let area = frame.area();
    let pane_height = if state.detail { 10 } else { 7 };
    // A finding gets two lines: a deadlock's threads and locks rarely fit in 80 columns.
    let banner_height = if state.banner.is_some() { 2 } else { 1 };
    let [header, banner, table, pane, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(3),
        Constraint::Length(pane_height),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(state)), header);
    frame.render_widget(
        Paragraph::new(banner_line(state)).wrap(Wrap { trim: false }),
        banner,
    );
    render_table(frame, table, state);
    render_pane(frame, pane, state);
    frame.render_widget(Paragraph::new(footer_line(state)), footer);
}

fn style(state: &ViewState, colour: Color, modifier: Modifier) -> Style {
    let style = Style::default().add_modifier(modifier);
    if state.colour {
        style.fg(colour)
    } else {
        style
    }
}

fn header_line(state: &ViewState) -> Line<'static> {
    let dropped = format!("dropped {}", state.dropped);
    let dropped_style = if state.dropped > 0 {
        style(state, Color::Red, Modifier::BOLD)
    } else {
        Style::default()
    };
    let mut spans = vec![
        Span::styled(
            format!("tracer top {}", state.target),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  window {}s  events {}  ",
            state.window_secs,
            crate::units::count(state.events)
        )),
        Span::styled(dropped, dropped_style),
    ];
    if let Some(ended) = &state.ended {
        spans.push(Span::raw(format!("  [{ended}]")));
    }
    Line::from(spans)
}

fn banner_line(state: &ViewState) -> Line<'static> {
    match &state.banner {
        Some(banner) => Line::from(Span::styled(
            format!("!! {banner} ({} found)", state.findings),
            style(state, Color::Red, Modifier::BOLD | Modifier::REVERSED),
        )),
        None => Line::from(Span::raw(format!(
            "sorted by {}; percentiles over the window from bucket bounds",
            state.sort.name()
        ))),
    }
}

fn render_table(frame: &mut Frame<'_>, area: Rect, state: &ViewState) {
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<LOCK_WIDTH$} {:>7} {:>7} {:>7} {:>7} {:>7} {:>3} {}",
            "LOCK", "WAIT", "CONT/S", "P50", "P99", "MAX", "WTR", "HOLDER"
        ),
        Style::default().add_modifier(Modifier::REVERSED),
    ))];
    let rows = state.visible();
    let room = usize::from(area.height).saturating_sub(1);
    let selected = state.selected.min(rows.len().saturating_sub(1));
    // Scroll so the selected row stays on screen.
    let first = (selected + 1).saturating_sub(room);
    for (i, row) in rows.iter().enumerate().skip(first).take(room) {
        let text = format!(
            "{:<LOCK_WIDTH$} {:>7} {:>7} {:>7} {:>7} {:>7} {:>3} {}",
            fit(&row.lock.label, LOCK_WIDTH),
            duration(row.lock.wait_ns),
            per_second(row.lock.contentions_per_10s),
            bound(row.lock.p50),
            bound(row.lock.p99),
            bound(row.lock.max),
            row.waiters_now.min(999),
            fit(row.holder_now.as_deref().unwrap_or("-"), 14),
        );
        let line_style = if i == selected {
            style(state, Color::Yellow, Modifier::REVERSED)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(text, line_style)));
    }
    if rows.is_empty() {
        lines.push(Line::from(if state.filter.is_empty() {
            "no contended lock yet".to_owned()
        } else {
            format!("no lock matches \"{}\"", state.filter)
        }));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_pane(frame: &mut Frame<'_>, area: Rect, state: &ViewState) {
    let (title, lines) = if state.detail {
        stacks_pane(state)
    } else {
        let mut lines: Vec<Line<'static>> = state
            .chains
            .iter()
            .map(|c| Line::from(format!("{}{}", "  ".repeat(c.depth), c.text)))
            .collect();
        if lines.is_empty() {
            lines.push(Line::from("nobody waits now"));
        }
        if state.waits_left_out > 0 {
            lines.push(Line::from(format!(
                "({} more waits not shown)",
                state.waits_left_out
            )));
        }
        ("wait-for chains now".to_owned(), lines)
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn stacks_pane(state: &ViewState) -> (String, Vec<Line<'static>>) {
    let Some(addr) = state.selected_addr() else {
        return ("stacks".to_owned(), vec![Line::from("no lock selected")]);
    };
    let label = state
        .rows
        .iter()
        .find(|r| r.lock.addr == addr)
        .map_or_else(|| format!("{addr:#x}"), |r| r.lock.label.clone());
    let title = format!("{label} ({addr:#x}): top waiter and holder stacks (Esc closes)");
    let Some(stacks) = state.stacks.as_ref().filter(|s| s.addr == addr) else {
        return (title, vec![Line::from("asking the tracer...")]);
    };
    let mut lines = Vec::new();
    for (i, stack) in stacks.waiters.iter().enumerate() {
        lines.push(Line::from(format!("waiter stack {}:", i + 1)));
        lines.extend(stack.iter().take(4).map(|f| Line::from(format!("  {f}"))));
    }
    if stacks.waiters.is_empty() {
        lines.push(Line::from("no waiter stack sampled"));
    }
    for (holder, stack) in &stacks.holders {
        lines.push(Line::from(format!(
            "held by {}:",
            super::format::live_thread(holder)
        )));
        lines.extend(stack.iter().take(4).map(|f| Line::from(format!("  {f}"))));
        if stack.is_empty() {
            lines.push(Line::from("  (stack known with --holds)"));
        }
    }
    (title, lines)
}

fn footer_line(state: &ViewState) -> Line<'static> {
    if state.editing_filter {
        return Line::from(format!(
            "filter: {}_  (Enter keeps, Esc clears)",
            state.filter
        ));
    }
    let filter = if state.filter.is_empty() {
        String::new()
    } else {
        format!(" [filter \"{}\"]", state.filter)
    };
    Line::from(Span::styled(
        format!("q quit  s/w/c/p/m/n sort  / filter  Enter stacks  j/k move{filter}"),
        style(state, Color::Cyan, Modifier::empty()),
    ))
}
