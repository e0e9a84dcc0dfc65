//! The `Type.field` names of C heap locks (issue 18, point 2), from real `gcc -g` builds
//! of `order_heap_classes.c` at `-O0`, `-O2` and `-O2 -fno-plt`: no root needed, the
//! tracer's table is read from the binary. The live naming is checked by `lock_order`
//! (root).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tracer_user::lock_names::LockOwners;

use crate::tools;

/// `(start, end, name)` of the functions `nm` lists in `exe`.
fn functions(exe: &Path) -> Vec<(u64, u64, String)> {
    let out = tools::output(
        Command::new("nm").args(["-S", "--defined-only"]).arg(exe),
        "binutils",
    );
    assert!(out.status.success(), "nm failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let start = u64::from_str_radix(parts.next()?, 16).ok()?;
            let size = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            matches!(kind, "t" | "T").then(|| (start, start + size, name.to_owned()))
        })
        .collect()
}

/// Builds `tests/targets/order_heap_classes.c` with `flags` into `dir`.
fn build(dir: &Path, flags: &[&str]) -> PathBuf {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets");
    let exe = dir.join(format!("order_heap_classes{}", flags.join("")));
    let out = tools::output(
        Command::new("gcc")
            .args(["-g", "-pthread", "-Wall"])
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(targets.join("order_heap_classes.c")),
        "gcc",
    );
    assert!(
        out.status.success(),
        "gcc {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The (function, lock name) pairs of the table, sorted, and how many call sites each
/// function has in it.
fn named_calls(exe: &Path) -> Vec<(String, String)> {
    let data = std::fs::read(exe).expect("read the target");
    let owners = LockOwners::c(&data);
    let functions = functions(exe);
    let mut named: Vec<(String, String)> = owners
        .iter()
        .map(|(pc, name)| {
            let function = functions
                .iter()
                .find(|(start, end, _)| *start < pc && pc <= *end)
                .map_or("?", |(_, _, name)| name.as_str());
            (function.to_owned(), name.to_owned())
        })
        .collect();
    named.sort_unstable();
    named
}

/// Guards against: a C heap lock named by the wrong struct or field (offsets of fields
/// before the mutex, a mutex inside a nested anonymous struct, a rwlock), a name lost
/// where two paths join before the lock call (`?:`), a name lost
/// at some optimization level (`-O0` keeps the pointer in a stack slot, `-O2` in
/// registers, `-fno-plt` calls through the GOT), a lock named where nothing proves it
/// (a global's mutex, a bare `pthread_mutex_t *` parameter), and names from a stripped
/// build.
#[test]
fn c_heap_locks_are_named_by_type_and_field_at_their_lock_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Each lock call of the functions that lock a field of a struct they point to, and
    // nothing else: `lock_bare` and `lock_global` lock a bare pointer and a global.
    let expected: Vec<(String, String)> = [
        ("cache_then_store", "cache.mu"),
        ("cache_then_store", "store.mu"),
        ("count", "tally.inner.mu"),
        ("lock_in_order", "store.mu"),
        ("lock_in_order", "store.mu"),
        ("read_account", "account.rw"),
        ("store_then_cache", "cache.mu"),
        ("store_then_cache", "store.mu"),
    ]
    .iter()
    .map(|&(f, n)| (f.to_owned(), n.to_owned()))
    .collect();
    for flags in [
        &["-O0"][..],
        &["-O2"],
        &["-O2", "-fno-plt"],
        &["-O1", "-fno-omit-frame-pointer"],
    ] {
        let exe = build(dir.path(), flags);
        assert_eq!(named_calls(&exe), expected, "gcc {flags:?}");
        let stripped = dir.path().join("stripped");
        let out = tools::output(
            Command::new("strip").arg("-o").arg(&stripped).arg(&exe),
            "binutils",
        );
        assert!(out.status.success(), "strip failed");
        let data = std::fs::read(&stripped).expect("read the stripped target");
        assert!(LockOwners::c(&data).is_empty(), "stripped, gcc {flags:?}");
    }
}
