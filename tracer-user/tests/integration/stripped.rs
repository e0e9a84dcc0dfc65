//! Root integration tests: names of stripped native programs (issue 18 point 5). A lock or
//! frame of a stripped program is named from `.dynsym` (what it exports), else from a
//! separate debug file found by build id under a debug directory (`--debug-dir`, default
//! `/usr/lib/debug`) or by `.gnu_debuglink`, else shown as `object+offset`; the report's
//! notes say which, once per stripped object.
//!
//! `stripped_abba` deadlocks on `exported_lock` (a global, in `.dynsym` with `-rdynamic`)
//! and `hidden_lock` (a `static`, in `.symtab` only), through the static `take_second`.
//! Names and addresses are checked against what the target prints and what `nm` says of
//! the unstripped build.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{
        Target, TargetBinary, addr_of, as_strs, assert_success, build_target, deadlocks, describe,
        json_attach_args, json_lines, name_of, require_root, run_tracer, stack_of, strip_copy,
        summary,
    },
    tools,
};

/// Runs a binutils tool, failing the test with its stderr when it fails.
fn binutils(program: &str, args: &[&str]) -> String {
    let out = tools::output(Command::new(program).args(args), "binutils");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `(value, size)` of symbol `name` in the unstripped binary, as `nm -S` says: the ELF
/// virtual address a stripped copy's `object+offset` must show.
fn nm_symbol(unstripped: &Path, name: &str) -> (u64, u64) {
    let nm = binutils("nm", &["-S", path_str(unstripped)]);
    nm.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [value, size, _, symbol] if *symbol == name => Some((
                    u64::from_str_radix(value, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                )),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("{name} in nm -S {}:\n{nm}", unstripped.display()))
}

/// The build id of `path` in lowercase hex, from `readelf -n`.
fn build_id(path: &Path) -> String {
    let notes = binutils("readelf", &["-n", path_str(path)]);
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build id in {}:\n{notes}", path.display()))
        .to_owned()
}

/// `objcopy --only-keep-debug` of `exe` into `debug`.
fn split_debug_info(exe: &Path, debug: &Path) {
    fs::create_dir_all(debug.parent().expect("a directory")).expect("create debug dir");
    binutils(
        "objcopy",
        &["--only-keep-debug", path_str(exe), path_str(debug)],
    );
}

/// `stripped_abba` built with `extra` flags (always `-rdynamic`).
fn build(extra: &[&str]) -> TargetBinary {
    let mut flags = vec!["-rdynamic"];
    flags.extend_from_slice(extra);
    build_target("stripped_abba", &flags)
}

/// Starts `exe`, waits for its deadlock, and traces it with `extra` flags (JSON);
/// returns the target, the report and the deadlock found.
fn trace(exe: &Path, extra: &[&str]) -> (Target, Vec<Value>) {
    require_root();
    let target = Target::spawn(exe, &[]);
    target.wait_in_futex(
        &[target.tid("worker_a"), target.tid("worker_b")],
        Duration::from_secs(5),
    );
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, extra)));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert_eq!(
        deadlocks(&values).len(),
        1,
        "one deadlock\n{}",
        describe(&out)
    );
    (target, values)
}

/// The locks of the deadlock in `values`, by address, checked to be the two the target
/// printed, each held by one worker and awaited by the other.
fn cycle_locks<'a>(target: &Target, values: &'a [Value]) -> HashMap<u64, &'a Value> {
    let deadlock = deadlocks(values)[0];
    let mut locks = HashMap::new();
    for (thread, held, wanted) in [
        ("worker_a", "exported_lock", "hidden_lock"),
        ("worker_b", "hidden_lock", "exported_lock"),
    ] {
        let entry = deadlock["cycle"]
            .as_array()
            .expect("cycle")
            .iter()
            .find(|e| e["tid"].as_u64() == Some(target.tid(thread)))
            .unwrap_or_else(|| panic!("{thread} in the cycle: {deadlock:#}"));
        assert_eq!(
            addr_of(&entry["holds"]["addr"]),
            target.lock(held),
            "{entry:#}"
        );
        assert_eq!(
            addr_of(&entry["waits_for"]["addr"]),
            target.lock(wanted),
            "{entry:#}"
        );
        locks.insert(target.lock(held), &entry["holds"]);
    }
    locks
}

/// The report's notes.
fn notes(values: &[Value]) -> Vec<String> {
    summary(values)["notes"]
        .as_array()
        .expect("notes array")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The one note on the object at `path`; fails unless there is exactly one.
fn note_on(values: &[Value], path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    let on: Vec<String> = notes(values)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(on.len(), 1, "one note on {}: {on:?}", path.display());
    on.into_iter().next().unwrap_or_default()
}

/// Checks a trace of a stripped copy whose debug info was found (at `debug_file`): both
/// locks and every frame named, with the note naming the debug file.
fn check_named_from_debug_file(
    target: &Target,
    values: &[Value],
    stripped: &Path,
    debug_file: &Path,
) {
    let locks = cycle_locks(target, values);
    for name in ["exported_lock", "hidden_lock"] {
        let lock = locks[&target.lock(name)];
        assert_eq!(name_of(lock), Some(name), "{lock:#}");
        assert_eq!(lock.get("location"), None, "a named lock: {lock:#}");
        assert_eq!(lock["name_source"].as_str(), Some("debug_file"), "{lock:#}");
    }
    let deadlock = deadlocks(values)[0];
    for worker in ["worker_a", "worker_b"] {
        let stack = stack_of(deadlock, target.tid(worker));
        let own: Vec<&String> = stack
            .iter()
            .skip_while(|f| !f.starts_with("take_second"))
            .take(2)
            .collect();
        assert_eq!(
            own,
            ["take_second", &format!("{worker}_main")],
            "{worker}'s frames, named from the debug file: {stack:?}"
        );
    }
    assert_eq!(
        note_on(values, stripped),
        format!(
            "{}: stripped; names from debug file {}",
            stripped.display(),
            debug_file.display()
        )
    );
}

/// Guards against: a stripped program's exported lock and functions left unnamed though
/// `.dynsym` names them, a `static` lock given a made-up name, or an unnamed lock shown at
/// an `object+offset` that is not its address in the file (issue 18 point 5); and the
/// report not saying where its names came from. The stripped `-rdynamic` build must name
/// `exported_lock` and `worker_*_main` (from `.dynsym`), show `hidden_lock` as
/// `stripped_abba.stripped+VADDR` with `nm`'s value of it in the unstripped build and
/// `take_second` as an offset inside its `nm` range, and note `names from .dynsym only`
/// once for the program.
#[test]
fn stripped_program_names_exported_locks_from_dynsym() {
    let bin = build(&[]);
    let stripped = strip_copy(bin.path());
    let (target, values) = trace(&stripped, &[]);
    let locks = cycle_locks(&target, &values);
    let exported = locks[&target.lock("exported_lock")];
    assert_eq!(name_of(exported), Some("exported_lock"), "{exported:#}");
    assert_eq!(
        exported["name_source"].as_str(),
        Some("dynsym"),
        "{exported:#}"
    );
    let hidden = locks[&target.lock("hidden_lock")];
    assert_eq!(
        name_of(hidden),
        None,
        "a static of a stripped program: {hidden:#}"
    );
    assert_eq!(
        hidden.get("name_source"),
        None,
        "no name, no source: {hidden:#}"
    );
    let object = stripped
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let (hidden_vaddr, _) = nm_symbol(bin.path(), "hidden_lock");
    assert_eq!(
        hidden["location"].as_str(),
        Some(format!("{object}+{hidden_vaddr:#x}").as_str()),
        "{hidden:#}"
    );
    let (take_second, size) = nm_symbol(bin.path(), "take_second");
    let deadlock = deadlocks(&values)[0];
    for worker in ["worker_a", "worker_b"] {
        let stack = stack_of(deadlock, target.tid(worker));
        let main_at = stack
            .iter()
            .position(|f| *f == format!("{worker}_main"))
            .unwrap_or_else(|| panic!("{worker}_main, from .dynsym: {stack:?}"));
        assert!(main_at > 0, "{stack:?}");
        // The frame below it is the static `take_second`: unnamed, at its address.
        let unnamed = &stack[main_at - 1];
        let offset = unnamed
            .strip_prefix(&format!("{object}+0x"))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("take_second as {object}+0x…: {stack:?}"));
        assert!(
            (take_second..take_second + size).contains(&offset),
            "{unnamed} is not in take_second ({take_second:#x}, {size:#x} bytes): {stack:?}"
        );
        assert!(
            !stack.iter().any(|f| f.contains("take_second")),
            "{stack:?}"
        );
    }
    let note = note_on(&values, &stripped);
    assert!(
        note.starts_with(&format!(
            "{}: stripped; names from .dynsym only (no debug file found for build id {}",
            stripped.display(),
            build_id(bin.path())
        )),
        "{note}"
    );
}

/// Guards against: debug info split out of a stripped program (`objcopy
/// --only-keep-debug`, installed as `DIR/.build-id/xx/rest.debug` as Debian's `-dbgsym`
/// packages do under `/usr/lib/debug`) not being used, or `--debug-dir` being ignored
/// (issue 18 point 5). With `--debug-dir DIR`, every lock and frame is named, the static
/// ones too, with file and line in the text report, and the note names the debug file;
/// without it the same program's static lock stays unnamed.
#[test]
fn debug_file_by_build_id_in_the_debug_dir_names_everything() {
    let bin = build(&[]);
    let stripped = strip_copy(bin.path());
    let debug_dir = tempfile::tempdir().expect("temp dir");
    let id = build_id(bin.path());
    let debug_file: PathBuf = debug_dir
        .path()
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    split_debug_info(bin.path(), &debug_file);
    let dir = path_str(debug_dir.path());
    let (target, values) = trace(&stripped, &["--debug-dir", dir]);
    check_named_from_debug_file(&target, &values, &stripped, &debug_file);

    let out = run_tracer(&[
        "attach",
        "--pid",
        &target.pid().to_string(),
        "--duration",
        "2",
        "--debug-dir",
        dir,
    ]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("take_second+0x") && text.contains("(stripped_abba.c:"),
        "frames with file and line from the debug file\n{text}"
    );
    drop(target);

    let (target, values) = trace(&stripped, &[]);
    let hidden = cycle_locks(&target, &values)[&target.lock("hidden_lock")];
    assert_eq!(
        name_of(hidden),
        None,
        "no debug file outside --debug-dir: {hidden:#}"
    );
}

/// Guards against: a debug file named by the program's `.gnu_debuglink` not being found
/// (issue 18 point 5). Built without a build id, the stripped program can only find its
/// debug info through the link, in the `.debug/` directory beside it (where gdb looks);
/// every lock and frame must be named from it and the note must name it.
#[test]
fn debug_file_by_gnu_debuglink_names_everything() {
    let bin = build(&["-Wl,--build-id=none"]);
    let stripped = strip_copy(bin.path());
    let debug_file = bin
        .path()
        .parent()
        .expect("a directory")
        .join(".debug/stripped_abba.debug");
    split_debug_info(bin.path(), &debug_file);
    binutils(
        "objcopy",
        &[
            &format!("--add-gnu-debuglink={}", debug_file.display()),
            path_str(&stripped),
        ],
    );
    let (target, values) = trace(&stripped, &[]);
    check_named_from_debug_file(&target, &values, &stripped, &debug_file);
}

/// Guards against: a mistyped `--debug-dir` silently giving a report without the names
/// it was meant to bring: it is refused in one line, with a non-zero exit, before
/// anything is attached.
#[test]
fn a_debug_dir_that_is_not_a_directory_is_refused() {
    let missing = tempfile::tempdir()
        .expect("temp dir")
        .path()
        .join("missing");
    let out = run_tracer(&[
        "attach",
        "--pid",
        &std::process::id().to_string(),
        "--duration",
        "1",
        "--debug-dir",
        path_str(&missing),
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "tracer: error: --debug-dir {}: not a directory",
            missing.display()
        )
    );
    assert!(out.stdout.is_empty(), "{}", describe(&out));
}
