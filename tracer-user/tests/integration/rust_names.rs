//! The `Type.field` names of Rust `std` locks in heap objects, from a real `rustc -O -g`
//! build (issue 18, point 4): no root needed, the tracer's table is read from the
//! binary. The live naming is checked by `rust_locks` (root).

use std::{path::Path, process::Command};

use tracer_user::lock_names::LockOwners;

use crate::{rust_toolchain, tools};

/// `(start, end, demangled name)` of the functions `nm` lists in `exe`.
fn functions(exe: &Path) -> Vec<(u64, u64, String)> {
    let out = tools::output(
        Command::new("nm")
            .args(["-C", "-S", "--defined-only"])
            .arg(exe),
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

/// Guards against: a Rust heap lock named by the wrong field or type (the offset of the
/// futex word inside `Mutex<T>`/`RwLock<T>`, fields reordered by rustc, the register
/// traced through the cold block of the contended call), a lock named where nothing
/// proves it (a static's lock, a function given a `&Mutex` itself), and names from a
/// stripped build.
#[test]
fn rust_heap_locks_are_named_by_type_and_field_at_their_slow_path_calls() {
    let (_dir, exe) = rust_toolchain::build_rustc_target("rust_std_locks");
    let data = std::fs::read(&exe).expect("read the target");
    let owners = LockOwners::rust(&data);
    let functions = functions(&exe);
    let function_of = |pc: u64| {
        functions
            .iter()
            .find(|(start, end, _)| *start < pc && pc <= *end)
            .map(|(_, _, name)| name.as_str())
    };
    let mut named: Vec<(&str, &str)> = owners
        .iter()
        .map(|(pc, name)| (function_of(pc).unwrap_or("?"), name))
        .collect();
    named.sort_unstable();
    // The functions that lock a field of `store: &Store` (`rust_std_locks.rs`), each
    // through one slow-path call, and nothing else: `hold_hot` and the table functions
    // lock statics, `take_second` and `worker` a `&Mutex` they were given.
    assert_eq!(
        named,
        vec![
            ("rust_std_locks::count_hit", "rust_std_locks::Store.hits"),
            ("rust_std_locks::hold_store", "rust_std_locks::Store.log"),
            ("rust_std_locks::read_index", "rust_std_locks::Store.index"),
            ("rust_std_locks::write_index", "rust_std_locks::Store.index"),
        ],
        "{owners:#?}"
    );
    let stripped = rust_toolchain::stripped_copy(&exe);
    let stripped = std::fs::read(&stripped).expect("read the stripped target");
    assert!(LockOwners::rust(&stripped).is_empty());
}
