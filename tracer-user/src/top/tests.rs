//! The view rendered on a test buffer: the 80×24 layout, sorting, filtering, the banner,
//! the keys, and the screen without colour.

use std::time::Duration;

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::Color,
};

use super::{
    apply_snapshot, colour_allowed,
    sink::banner,
    view::{KeyAction, SortKey, ViewState, render},
    window::Window,
};
use crate::model::{
    Finding, LockKind, LockRef, fixtures,
    live::{
        BUCKET_BOUNDS_NS, Buckets, LiveLock, LiveThread, LiveWait, LockStacks, TargetSnapshot,
        TopSnapshot,
    },
};

fn lock_ref(addr: u64, name: &str) -> LockRef {
    LockRef {
        addr,
        name: Some(name.to_owned()),
        location: None,
        name_source: None,
    }
}

/// A lock with `contentions` and `waits` waits of `ns` each, cumulative.
fn live_lock(addr: u64, name: &str, contentions: u64, waits: u64, ns: u64) -> LiveLock {
    let mut wait = Buckets::default();
    for (i, bound) in BUCKET_BOUNDS_NS.iter().enumerate() {
        if ns <= *bound {
            wait.le[i] = waits;
        }
    }
    wait.count = waits;
    wait.sum_ns = u128::from(waits) * u128::from(ns);
    LiveLock {
        lock: lock_ref(addr, name),
        kind: LockKind::Mutex,
        contentions,
        wait,
        hold: None,
    }
}

fn thread(tid: u32, name: &str) -> LiveThread {
    LiveThread {
        tid,
        name: name.to_owned(),
        goid: None,
    }
}

/// Three locks: `hot_lock` waited on most, `busy_lock` contended most often (short
/// waits), `slow_lock` with the longest waits; two threads wait for `hot_lock` now, held
/// by T101.
fn snapshot(dropped: u64) -> TopSnapshot {
    TopSnapshot {
        target: TargetSnapshot {
            pid: 4242,
            comm: "hot_cold".to_owned(),
            attached: true,
            locks: vec![
                live_lock(0x1000, "hot_lock", 500, 400, 2_000_000),
                live_lock(0x2000, "busy_lock", 9_000, 9_000, 2_000),
                live_lock(0x3000, "slow_lock", 3, 3, 200_000_000),
            ],
            other: Vec::new(),
            deadlocks: 0,
            lock_order_inversions: 0,
            stuck_locks: 0,
            events: 123_456,
            dropped,
            sleep_sample_period: 1,
        },
        waits: vec![
            LiveWait {
                waiter: thread(102, "hot_1"),
                lock: lock_ref(0x1000, "hot_lock"),
                waited_ns: 3_000_000,
                holders: vec![thread(101, "hot_0")],
            },
            LiveWait {
                waiter: thread(103, "hot_2"),
                lock: lock_ref(0x1000, "hot_lock"),
                waited_ns: 1_000_000,
                holders: vec![thread(101, "hot_0")],
            },
        ],
        waits_left_out: 0,
        stacks: None,
        // Held with nobody waiting: the holder column shows it all the same.
        holders: vec![(0x3000, thread(105, "owner"))],
    }
}

fn state_with(snapshot: &TopSnapshot, colour: bool) -> ViewState {
    let mut state = ViewState::new("4242 (hot_cold)".to_owned(), 5, colour);
    let mut window = Window::new(Duration::from_secs(5));
    apply_snapshot(&mut state, &mut window, Duration::from_secs(2), snapshot);
    state
}

fn draw(state: &ViewState) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| render(frame, state)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// The lock names of the table's rows, top to bottom.
fn table_order(screen: &[String]) -> Vec<String> {
    screen
        .iter()
        .skip_while(|l| !l.starts_with("LOCK"))
        .skip(1)
        .take_while(|l| l.ends_with('-') || l.contains("_lock"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name.ends_with("_lock"))
        .collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Guards the 80×24 layout: header with the dropped count, the table with its columns
/// and the hot lock first, the holder and waiters now, the chains pane, the keys.
#[test]
fn the_screen_fits_80_by_24_with_every_part() {
    let screen = lines(&draw(&state_with(&snapshot(7), true)));
    assert_eq!(screen.len(), 24);
    assert!(screen.iter().all(|l| l.chars().count() <= 80));
    assert!(
        screen[0].contains("tracer top 4242 (hot_cold)"),
        "{screen:#?}"
    );
    assert!(screen[0].contains("window 5s"), "{screen:#?}");
    assert!(screen[0].contains("dropped 7"), "{screen:#?}");
    let header = screen.iter().position(|l| l.starts_with("LOCK")).unwrap();
    for column in ["WAIT", "CONT/S", "P50", "P99", "MAX", "WTR", "HOLDER"] {
        assert!(screen[header].contains(column), "{}", screen[header]);
    }
    let hot = &screen[header + 1];
    assert!(hot.starts_with("hot_lock"), "{screen:#?}");
    // 400 waits of 2 ms: 800 ms of wait; 500 contentions over 2 s.
    assert!(hot.contains("800ms"), "{hot}");
    assert!(hot.contains("250.0") || hot.contains("250"), "{hot}");
    assert!(hot.contains("<2.50ms"), "{hot}");
    assert!(hot.contains(" 2 T101 hot_0"), "{hot}");
    let slow = screen.iter().find(|l| l.starts_with("slow_lock")).unwrap();
    assert!(slow.ends_with(" 0 T105 owner"), "{slow}");
    let busy = screen.iter().find(|l| l.starts_with("busy_lock")).unwrap();
    assert!(busy.ends_with(" 0 -"), "{busy}");
    let chains = screen
        .iter()
        .position(|l| l.contains("wait-for chains now"))
        .unwrap();
    assert_eq!(screen[chains + 1], "T101 hot_0 runs");
    assert_eq!(screen[chains + 2], "  T102 hot_1 waits 3.00ms for hot_lock");
    assert_eq!(screen[chains + 3], "  T103 hot_2 waits 1.00ms for hot_lock");
    assert!(screen[23].contains("q quit"), "{screen:#?}");
}

/// Guards the sort keys: each orders the table by its column (wait: hot 800 ms, slow
/// 600 ms, busy 18 ms; contentions: busy, hot, slow; max: slow's 200 ms first; waiters
/// now: hot, then the rest by wait).
#[test]
fn sort_keys_reorder_the_table() {
    let mut state = state_with(&snapshot(0), true);
    let order = |state: &ViewState| table_order(&lines(&draw(state)));
    assert_eq!(order(&state), ["hot_lock", "slow_lock", "busy_lock"]);
    assert_eq!(state.on_key(key(KeyCode::Char('c'))), KeyAction::Redraw);
    assert_eq!(state.sort, SortKey::Contentions);
    assert_eq!(order(&state), ["busy_lock", "hot_lock", "slow_lock"]);
    state.on_key(key(KeyCode::Char('m')));
    assert_eq!(order(&state), ["slow_lock", "hot_lock", "busy_lock"]);
    state.on_key(key(KeyCode::Char('n')));
    assert_eq!(order(&state), ["hot_lock", "slow_lock", "busy_lock"]);
    // `s` cycles through every key and back.
    let mut seen = vec![state.sort];
    for _ in 0..5 {
        state.on_key(key(KeyCode::Char('s')));
        seen.push(state.sort);
    }
    assert_eq!(seen.first(), seen.last());
    seen.sort_by_key(|k| format!("{k:?}"));
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

/// Guards the filter: `/` then text keeps the locks whose name contains it (any case),
/// Esc clears it, and a filter that matches nothing says so.
#[test]
fn the_filter_keeps_matching_locks() {
    let mut state = state_with(&snapshot(0), true);
    state.on_key(key(KeyCode::Char('/')));
    for c in "SLO".chars() {
        state.on_key(key(KeyCode::Char(c)));
    }
    let screen = lines(&draw(&state));
    assert_eq!(table_order(&screen), ["slow_lock"]);
    assert!(screen[23].starts_with("filter: SLO_"), "{}", screen[23]);
    state.on_key(key(KeyCode::Enter));
    // Keys are sort keys again once the filter is kept.
    assert_eq!(state.on_key(key(KeyCode::Char('q'))), KeyAction::Quit);
    state.on_key(key(KeyCode::Char('/')));
    state.on_key(key(KeyCode::Char('z')));
    let screen = lines(&draw(&state));
    assert!(
        screen
            .iter()
            .any(|l| l.contains("no lock matches \"SLOz\"")),
        "{screen:#?}"
    );
    state.on_key(key(KeyCode::Esc));
    assert_eq!(table_order(&lines(&draw(&state))).len(), 3);
}

/// Guards the banner: a finding shows on the second line, and stays.
#[test]
fn a_finding_shows_as_a_banner() {
    let mut state = state_with(&snapshot(0), true);
    let line = banner(&Finding::Deadlock(fixtures::deadlock())).unwrap();
    assert!(line.starts_with("DEADLOCK: "), "{line}");
    state.banner = Some(line);
    state.findings = 1;
    let buffer = draw(&state);
    let screen = lines(&buffer);
    assert!(screen[1].starts_with("!! DEADLOCK: "), "{screen:#?}");
    // Two lines for it: the cycle's second thread is on the screen too.
    let banner_text = format!("{} {}", screen[1], screen[2]);
    let fixture = fixtures::deadlock();
    for entry in &fixture.cycle {
        assert!(
            banner_text.contains(&format!("T{}", entry.tid)),
            "{banner_text}"
        );
    }
    assert!(screen[3].starts_with("LOCK "), "{screen:#?}");
    assert_eq!(buffer[(0, 1)].fg, Color::Red);
    // A harmless inversion (orders that cannot meet) is no alarm.
    let mut harmless = fixtures::inversion();
    harmless.harmless = true;
    assert_eq!(banner(&Finding::LockOrderInversion(harmless)), None);
    let inversion = banner(&Finding::LockOrderInversion(fixtures::inversion())).unwrap();
    assert!(
        inversion.starts_with("LOCK-ORDER INVERSION: "),
        "{inversion}"
    );
}

/// Guards the screen without colour: no cell has a colour, yet the selected row and the
/// banner still stand out (reversed video).
#[test]
fn without_colour_no_cell_is_coloured() {
    let mut state = state_with(&snapshot(3), false);
    state.banner = Some("DEADLOCK: x".to_owned());
    let buffer = draw(&state);
    for cell in &buffer.content {
        assert_eq!(cell.fg, Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, Color::Reset, "{cell:?}");
    }
    let screen = lines(&buffer);
    let header = screen.iter().position(|l| l.starts_with("LOCK")).unwrap();
    let selected = &buffer[(0, u16::try_from(header + 1).unwrap())];
    assert!(
        selected
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    assert!(!colour_allowed(Some("1".as_ref()), Some("xterm".as_ref())));
    assert!(!colour_allowed(None, Some("dumb".as_ref())));
    assert!(!colour_allowed(None, None));
    assert!(colour_allowed(
        Some("".as_ref()),
        Some("xterm-256color".as_ref())
    ));
}

/// Guards the stacks pane: Enter asks for the selected lock's stacks, which show with
/// the holder's; Esc goes back to the chains.
#[test]
fn enter_opens_the_selected_locks_stacks() {
    let mut state = state_with(&snapshot(0), true);
    state.on_key(key(KeyCode::Down));
    assert_eq!(state.selected_addr(), Some(0x3000));
    assert_eq!(state.on_key(key(KeyCode::Enter)), KeyAction::Refresh);
    let screen = lines(&draw(&state));
    assert!(
        screen.iter().any(|l| l.contains("asking the tracer")),
        "{screen:#?}"
    );
    let mut with_stacks = snapshot(0);
    with_stacks.stacks = Some(LockStacks {
        addr: 0x3000,
        waiters: vec![vec![
            "pthread_mutex_lock".to_owned(),
            "slow_path".to_owned(),
        ]],
        holders: vec![(thread(101, "hot_0"), vec!["holder_fn".to_owned()])],
    });
    let mut window = Window::new(Duration::from_secs(5));
    apply_snapshot(
        &mut state,
        &mut window,
        Duration::from_secs(3),
        &with_stacks,
    );
    let screen = lines(&draw(&state));
    assert!(
        screen.iter().any(|l| l.contains("slow_lock (0x3000)")),
        "{screen:#?}"
    );
    assert!(screen.iter().any(|l| l == "  slow_path"), "{screen:#?}");
    assert!(
        screen.iter().any(|l| l == "held by T101 hot_0:"),
        "{screen:#?}"
    );
    assert!(screen.iter().any(|l| l == "  holder_fn"), "{screen:#?}");
    state.on_key(key(KeyCode::Esc));
    let screen = lines(&draw(&state));
    assert!(
        screen.iter().any(|l| l.contains("wait-for chains now")),
        "{screen:#?}"
    );
}

/// Guards Ctrl-C in raw mode (no SIGINT comes): it quits, even while typing a filter.
#[test]
fn ctrl_c_quits_even_in_the_filter() {
    let mut state = state_with(&snapshot(0), true);
    state.on_key(key(KeyCode::Char('/')));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(state.on_key(ctrl_c), KeyAction::Quit);
}
