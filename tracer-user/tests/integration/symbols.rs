//! Root integration tests: names and stacks when the target's program changes or has no
//! path (issue 16 points 7–9): an `exec` during the trace, a program run from a memfd.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    Target, as_strs, assert_success, build_target, deadlocks, describe, json_attach_args,
    json_lines, lock_by_addr, name_of, parse_hex, require_root, run_tracer, summary,
};

/// The `key=value` facts a program printed after the first `ready` (the program the target
/// executed prints its own), waiting up to `timeout` for its `ready`.
fn facts_after_exec(target: &mut Target, timeout: Duration) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = target.later_lines();
        if lines.iter().any(|l| l == "ready") {
            return lines
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the executed program printed no `ready`: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex_fact(facts: &HashMap<String, String>, key: &str) -> u64 {
    facts
        .get(key)
        .and_then(|v| parse_hex(v))
        .unwrap_or_else(|| panic!("no address fact {key}: {facts:?}"))
}

fn notes(summary: &Value) -> Vec<&str> {
    summary["notes"]
        .as_array()
        .expect("notes array")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Guards against: names lost, or taken from the wrong program, after the target
/// `exec`s another program during the trace (issue 16 point 8). `exec_contend` contends
/// `first_lock`, then executes `abba`, which deadlocks on `lock_a`/`lock_b`. The deadlock
/// must name the new program's locks (at the addresses it printed), the summary must
/// still name `first_lock` from the old program (its stacks and name from its own
/// symbols), and a note must say which program was executed and that symbols were
/// reloaded. Checked to fail before the fix: the deadlock's locks were named from the old
/// program's symbols (no names), and the note said only "names may be wrong".
#[test]
fn exec_reloads_symbols_and_keeps_the_old_programs_names() {
    require_root();
    let contend = build_target("exec_contend", &[]);
    let abba = build_target("abba", &[]);
    let abba_path = abba.path().to_str().expect("utf-8 path");
    let mut target = Target::spawn(contend.path(), &["1500", abba_path]);
    let first_lock = target.lock("first_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 5, &[])));
    assert_success(&out);
    let facts = facts_after_exec(&mut target, Duration::from_secs(2));
    let (lock_a, lock_b) = (
        hex_fact(&facts, "lock.lock_a"),
        hex_fact(&facts, "lock.lock_b"),
    );
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock\n{}", describe(&out));
    for entry in found[0]["cycle"].as_array().expect("cycle") {
        let held = parse_hex(entry["holds"]["addr"].as_str().unwrap()).unwrap();
        let (want_held, want_name) = if held == lock_a {
            (lock_a, "lock_a")
        } else {
            (lock_b, "lock_b")
        };
        assert_eq!(held, want_held, "{entry:#}");
        assert_eq!(
            name_of(&entry["holds"]),
            Some(want_name),
            "the new program's lock, named from its symbols\n{}",
            describe(&out)
        );
        let stack: Vec<&str> = entry["stack"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            stack.iter().any(|f| f.contains("worker_")),
            "the new program's frames: {stack:?}"
        );
    }
    let s = summary(&values);
    let old = lock_by_addr(s, first_lock)
        .unwrap_or_else(|| panic!("first_lock in the summary\n{}", describe(&out)));
    assert_eq!(
        name_of(old),
        Some("first_lock"),
        "the old program's lock, named from its own symbols: {old:#}"
    );
    let old_stack: Vec<&str> = old["top_waiter_stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        old_stack.iter().any(|f| f.contains("contender_main")),
        "the old program's stack, from its own symbols: {old_stack:?}"
    );
    for (addr, name) in [(lock_a, "lock_a"), (lock_b, "lock_b")] {
        let lock = lock_by_addr(s, addr).unwrap_or_else(|| panic!("{name} in the summary"));
        assert_eq!(name_of(lock), Some(name), "{lock:#}");
    }
    let notes = notes(s);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("the target executed {abba_path}"))
                && n.contains("symbols were reloaded from it")),
        "the exec note: {notes:?}"
    );
}
