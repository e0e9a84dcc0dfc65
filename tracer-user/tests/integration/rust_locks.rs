//! Root integration tests: Rust programs (issue 18, point 4). `std`'s `Mutex`/`RwLock`
//! waits on their own futex words, `parking_lot`'s contention seen through its slow
//! paths, and a deadlock among `std` mutexes, whose holders only their stacks name.
//!
//! The `std` target is built with `rustc` (std only); the `parking_lot` one is a small
//! cargo project (`tests/rust_targets/parking_lot_target`, its crate fetched from the
//! registry on first build).

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    common::{
        Target, addr_of, as_strs, assert_success, deadlocks, describe, json_attach_args,
        json_lines, lock_by_addr, name_of, require_root, run_tracer, summary, u64_field,
    },
    rust_toolchain::{build_rustc_target, rust_targets_dir, stripped_copy},
    tools,
};

/// The `parking_lot` target built with cargo (release, with debug info) into a
/// temporary target directory.
fn build_parking_lot_target() -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-parking-lot-")
        .tempdir()
        .expect("temp dir for the parking_lot target");
    let project = rust_targets_dir().join("parking_lot_target");
    let out = tools::output(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(dir.path()),
        "cargo",
    );
    assert!(
        out.status.success(),
        "cargo build of the parking_lot target failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = dir.path().join("release").join("parking_lot_target");
    (dir, exe)
}

/// The summary entry of the lock at `addr`, checked to be of `kind` and named `name`,
/// contended and timed.
fn contended_lock<'a>(s: &'a Value, addr: u64, kind: &str, name: &str, out: &str) -> &'a Value {
    let lock = lock_by_addr(s, addr)
        .unwrap_or_else(|| panic!("no lock at {addr:#x} ({name}) in the summary\n{out}"));
    assert_eq!(lock["type"], kind, "{lock:#}");
    assert_eq!(name_of(lock), Some(name), "{lock:#}");
    assert!(u64_field(lock, "contentions") > 100, "{lock:#}");
    assert!(u64_field(&lock["wait_ns"], "count") > 0, "{lock:#}");
    assert!(u64_field(&lock["wait_ns"], "total") > 0, "{lock:#}");
    lock
}

/// Guards against: a Rust `std::sync::Mutex` read with glibc's mutex layout (its data,
/// a counter, passed for an owner TID and made it a `mutex` with a false holder), or its
/// waits left as bare futex words, or a std `RwLock`'s reader waits left out; the statics
/// must be named by their demangled paths, and the locks of the heap `Store` by its type
/// and field (`rust_std_locks::Store.hits`), at the addresses the program printed.
#[test]
fn std_mutex_and_rwlock_contention_on_named_statics() {
    require_root();
    let (_dir, exe) = build_rustc_target("rust_std_locks");
    let target = Target::spawn(&exe, &["contend"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let text = describe(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    contended_lock(
        s,
        target.lock("HOT"),
        "rust_mutex",
        "rust_std_locks::HOT",
        &text,
    );
    let table = lock_by_addr(s, target.lock("TABLE"))
        .unwrap_or_else(|| panic!("no TABLE rwlock in the summary\n{text}"));
    assert_eq!(table["type"], "rust_rwlock", "{table:#}");
    assert_eq!(name_of(table), Some("rust_std_locks::TABLE"), "{table:#}");
    assert!(u64_field(table, "contentions") > 10, "{table:#}");
    for (field, kind) in [
        ("hits", "rust_mutex"),
        ("log", "rust_mutex"),
        ("index", "rust_rwlock"),
    ] {
        heap_lock(
            s,
            &target,
            field,
            kind,
            Some(&format!("rust_std_locks::Store.{field}")),
            &text,
        );
    }
    assert!(deadlocks(&values).is_empty(), "{text}");
}

/// The summary entry of the heap `Store`'s lock `field` (at the address the target
/// printed), checked to be contended, of `kind`, and named `name` (`None`: no name).
fn heap_lock(s: &Value, target: &Target, field: &str, kind: &str, name: Option<&str>, out: &str) {
    let lock = lock_by_addr(s, target.lock(&format!("store_{field}")))
        .unwrap_or_else(|| panic!("no Store.{field} lock in the summary\n{out}"));
    assert_eq!(lock["type"], kind, "{lock:#}");
    assert_eq!(name_of(lock), name, "{lock:#}");
    assert!(u64_field(lock, "contentions") > 0, "{lock:#}");
}

/// Guards against: a stripped Rust program's heap locks given a name (no DWARF: nothing
/// says which field they are) or lost; they keep the addresses the program printed.
#[test]
fn std_heap_locks_of_a_stripped_build_keep_their_address() {
    require_root();
    let (_dir, exe) = build_rustc_target("rust_std_locks");
    let stripped = stripped_copy(&exe);
    let target = Target::spawn(&stripped, &["contend"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let text = describe(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    for (field, kind) in [
        ("hits", "rust_mutex"),
        ("log", "rust_mutex"),
        ("index", "rust_rwlock"),
    ] {
        heap_lock(s, &target, field, kind, None, &text);
    }
}

/// Guards against: `parking_lot` contention lost (its threads park on words of their
/// own, which are no locks) or charged to those per-thread words instead of the lock
/// whose slow path the thread entered.
#[test]
fn parking_lot_contention_is_attributed_to_its_static() {
    require_root();
    let (_dir, exe) = build_parking_lot_target();
    let target = Target::spawn(&exe, &[]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let text = describe(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    let hot = target.lock("HOT");
    contended_lock(
        s,
        hot,
        "parking_lot_mutex",
        "parking_lot_target::HOT",
        &text,
    );
    // No per-thread parking word shows up as a lock of its own.
    let others: Vec<&Value> = crate::common::locks(s)
        .iter()
        .filter(|l| addr_of(&l["addr"]) != hot)
        .collect();
    assert!(
        others.is_empty(),
        "only HOT is contended: {others:#?}\n{text}"
    );
}

/// Guards against: missing a deadlock among Rust `std` mutexes (they keep no owner, so
/// no event names a holder), or naming a holder without evidence: each thread must be
/// reported holding the lock the other waits for, with the addresses and thread ids the
/// program printed, and `holder_evidence` saying a guard on its stack proves it.
#[test]
fn std_abba_deadlock_is_found_with_holders() {
    require_root();
    let (_dir, exe) = build_rustc_target("rust_std_locks");
    let target = Target::spawn(&exe, &["abba"]);
    let (a, b) = (target.tid("worker_a"), target.tid("worker_b"));
    target.wait_in_futex(&[a, b], Duration::from_secs(5));
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let text = describe(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock expected\n{text}");
    let cycle = found[0]["cycle"].as_array().expect("a cycle");
    assert_eq!(cycle.len(), 2, "{cycle:#?}");
    let (lock_a, lock_b) = (target.lock("LOCK_A"), target.lock("LOCK_B"));
    for entry in cycle {
        let tid = u64_field(entry, "tid");
        let (holds, waits, holds_name, waits_name) = if tid == a {
            (
                lock_a,
                lock_b,
                "rust_std_locks::LOCK_A",
                "rust_std_locks::LOCK_B",
            )
        } else {
            assert_eq!(tid, b, "{entry:#}");
            (
                lock_b,
                lock_a,
                "rust_std_locks::LOCK_B",
                "rust_std_locks::LOCK_A",
            )
        };
        assert_eq!(addr_of(&entry["holds"]["addr"]), holds, "{entry:#}");
        assert_eq!(addr_of(&entry["waits_for"]["addr"]), waits, "{entry:#}");
        assert_eq!(name_of(&entry["holds"]), Some(holds_name), "{entry:#}");
        assert_eq!(name_of(&entry["waits_for"]), Some(waits_name), "{entry:#}");
        assert_eq!(entry["holder_evidence"], "stack_guard", "{entry:#}");
    }
    assert_eq!(u64_field(summary(&values), "deadlocks"), 1);
}
