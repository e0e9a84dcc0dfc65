//! `tracer attach --pprof/--folded/--flamegraph`: the whole run's lock waits written as
//! files, read back by the tools they are for (`go tool pprof -raw` of Go 1.25, a
//! folded-stack parser, an XML parser), and checked against what the targets print
//! (their lock addresses) and what they do (which function waits, which one holds).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    common::{Target, assert_success, build_target, require_root, run_tracer},
    go_toolchain::{self, GoToolchain},
    serve::{RawSample, raw_samples},
    tools,
};

/// Go 1.25, whose pprof reads the profiles.
pub(crate) fn go125() -> GoToolchain {
    go_toolchain::installed()
        .into_iter()
        .find(|tc| tc.release == "go1.25")
        .expect("Go 1.25")
}

/// `go tool pprof -raw FILE`'s samples (and the text, for messages). Anything on stderr
/// fails: pprof writes there when it rejects part of a profile or tries to symbolize it
/// itself.
pub(crate) fn pprof_raw(file: &Path) -> (Vec<RawSample>, String) {
    // Go 1.24+ builds `pprof` on first use: one shared cache builds it once.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let home = tempfile::tempdir().expect("temp dir");
    let out = tools::output(
        go_toolchain::go_cmd(&go125(), &cache)
            .env("HOME", home.path())
            .env("PPROF_TMPDIR", home.path())
            .args(["tool", "pprof", "-raw"])
            .arg(file),
        "golang",
    );
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "go tool pprof -raw {}: {}\n{stderr}\n{raw}",
        file.display(),
        out.status
    );
    assert!(
        raw.contains("contentions/count delay/nanoseconds[dflt]"),
        "Go's mutex-profile sample types\n{raw}"
    );
    (raw_samples(&raw), raw)
}

/// The samples of the lock at `addr` (by its `lock_addr` label).
pub(crate) fn samples_of(samples: &[RawSample], addr: u64) -> Vec<&RawSample> {
    samples
        .iter()
        .filter(|s| s.labels.contains(&format!("lock_addr:[{addr:#x}]")))
        .collect()
}

/// The delay of `samples` whose stack has `function`, and of all of them.
pub(crate) fn delay_in(samples: &[&RawSample], function: &str) -> (u64, u64) {
    let total = samples.iter().map(|s| s.delay_ns).sum();
    let with = samples
        .iter()
        .filter(|s| s.functions.iter().any(|f| f == function))
        .map(|s| s.delay_ns)
        .sum();
    (with, total)
}

/// One line of a folded-stacks file: its frames (root first) and its count.
#[derive(Debug)]
struct FoldedLine {
    frames: Vec<String>,
    count: u64,
}

/// Parses folded stacks: every non-empty line is `frame;frame;… COUNT`.
fn parse_folded(text: &str) -> Vec<FoldedLine> {
    text.lines()
        .map(|line| {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no count: {line:?}"));
            let frames: Vec<String> = stack.split(';').map(str::to_owned).collect();
            assert!(
                frames.iter().all(|f| !f.is_empty()),
                "empty frame: {line:?}"
            );
            FoldedLine {
                frames,
                count: count
                    .parse()
                    .unwrap_or_else(|_| panic!("count of {line:?}")),
            }
        })
        .collect()
}

/// Total count per root frame (the lock).
fn totals_by_root(lines: &[FoldedLine]) -> BTreeMap<&str, u64> {
    let mut totals = BTreeMap::new();
    for line in lines {
        *totals.entry(line.frames[0].as_str()).or_default() += line.count;
    }
    totals
}

/// The root element and every `<title>` text of an XML file, from Python's XML parser
/// (which rejects a file that is not well-formed).
fn xml_root_and_titles(file: &Path) -> (String, String) {
    let script = "import sys, xml.etree.ElementTree as ET\n\
                  root = ET.parse(sys.argv[1]).getroot()\n\
                  print(root.tag)\n\
                  for t in root.iter('{http://www.w3.org/2000/svg}title'):\n    print(t.text)\n";
    let out = tools::output(
        Command::new("python3").args(["-c", script]).arg(file),
        "python3",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} is not well-formed XML: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (root, titles) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    (root.to_owned(), titles.to_owned())
}

/// Export paths in `dir`.
fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Guards the exports of a C target's run (`hot_cold`: 4 threads contend for `hot_lock`
/// in `hot_worker_main`): `go tool pprof` reads `--pprof` as a Go mutex profile whose
/// `hot_lock` samples (by the address the target printed) name `hot_worker_main` with
/// positive counts and delays; `--folded` parses line by line, `hot_lock` is the root
/// frame with the most wait, and its total is the pprof profile's delay for that lock (one
/// run, two renderings); `--flamegraph` is well-formed SVG naming `hot_worker_main`.
#[test]
fn attach_exports_a_c_targets_contention() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["30"]);
    let hot = target.lock("hot_lock");
    let dir = tempfile::tempdir().expect("temp dir");
    let (pprof, folded, svg) = (
        in_dir(dir.path(), "hot.pb.gz"),
        in_dir(dir.path(), "hot.folded"),
        in_dir(dir.path(), "hot.svg"),
    );
    let pid = target.pid().to_string();
    let out = run_tracer(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "3",
        "--pprof",
        pprof.to_str().unwrap(),
        "--folded",
        folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
    ]);
    assert_success(&out);

    let (samples, raw) = pprof_raw(&pprof);
    let hot_samples = samples_of(&samples, hot);
    assert!(
        !hot_samples.is_empty(),
        "no hot_lock ({hot:#x}) sample\n{raw}"
    );
    assert!(
        hot_samples.iter().all(|s| s.count > 0 && s.delay_ns > 0),
        "{hot_samples:?}"
    );
    assert!(
        hot_samples
            .iter()
            .all(|s| s.labels.contains("lock:[hot_lock]")),
        "the lock's name as a label: {hot_samples:?}"
    );
    let (in_worker, total) = delay_in(&hot_samples, "hot_worker_main");
    assert!(
        in_worker * 10 >= total * 9,
        "hot_lock's waits are in hot_worker_main: {in_worker} of {total} ns\n{raw}"
    );

    let text = std::fs::read_to_string(&folded).expect("folded file");
    let lines = parse_folded(&text);
    let totals = totals_by_root(&lines);
    let (top_root, top_total) = totals
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("folded lines");
    assert_eq!(*top_root, "hot_lock", "{totals:?}\n{text}");
    assert_eq!(
        *top_total, total,
        "the folded total of hot_lock is the pprof profile's delay for it\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.frames[0] == "hot_lock" && l.frames.iter().any(|f| f == "hot_worker_main")),
        "{text}"
    );

    let (root, titles) = xml_root_and_titles(&svg);
    assert_eq!(root, "{http://www.w3.org/2000/svg}svg");
    assert!(titles.contains("hot_worker_main"), "{titles}");
    assert!(titles.contains("hot_lock"), "{titles}");
}

/// Guards the holders' profile (`--holds --pprof`): in `long_hold` one thread holds
/// `slow_lock` ~2 ms at a time in `long_holder_main` while two others wait for it in
/// `short_waiter_main`. The waiters' profile must put most of the lock's wait in
/// `short_waiter_main`, and the holders' profile (written next to it as
/// `NAME.holders.pb.gz`) most of it in `long_holder_main`, over about the same total: the
/// same waits, charged to the other side. A holders' profile made of waiting stacks
/// fails the second, one missing its waits the third.
#[test]
fn holders_profile_names_the_function_that_held_the_lock() {
    require_root();
    let bin = build_target("long_hold", &[]);
    let target = Target::spawn(bin.path(), &["30"]);
    let lock = target.lock("slow_lock");
    let dir = tempfile::tempdir().expect("temp dir");
    let pprof = in_dir(dir.path(), "slow.pb.gz");
    let pid = target.pid().to_string();
    let out = run_tracer(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "3",
        "--holds",
        "--pprof",
        pprof.to_str().unwrap(),
    ]);
    assert_success(&out);
    let holders_file = in_dir(dir.path(), "slow.holders.pb.gz");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("wrote {}", holders_file.display())),
        "the holders' file is named after --pprof's"
    );

    let (waiters, raw) = pprof_raw(&pprof);
    let waiting = samples_of(&waiters, lock);
    let (in_waiter, waited) = delay_in(&waiting, "short_waiter_main");
    assert!(
        waited > 0 && in_waiter * 10 >= waited * 9,
        "slow_lock's waits are in short_waiter_main: {in_waiter} of {waited} ns\n{raw}"
    );

    let (holders, raw) = pprof_raw(&holders_file);
    let holding = samples_of(&holders, lock);
    let (in_holder, held) = delay_in(&holding, "long_holder_main");
    assert!(
        held > 0 && in_holder * 10 >= held * 8,
        "slow_lock's waits are charged to long_holder_main: {in_holder} of {held} ns\n{raw}"
    );
    assert!(
        held.abs_diff(waited) * 100 <= waited,
        "the holders' profile charges the same waits: {held} vs {waited} ns"
    );
}

/// Guards the exports of a Go target (`go_hot`: 4 goroutines contend for `sync.Mutex`
/// `hotMu` in `main.hotSection`), with `--holds`: the waiters' pprof profile has
/// `hotMu`'s samples (by the address the target printed) in `main.hotSection`, labelled
/// `go_mutex` and `main.hotMu`; the holders' profile charges `hotMu`'s waits to the
/// acquisitions in `main.hotSection`; the folded stacks have `main.hotMu` as the root
/// with the most wait.
#[test]
fn attach_exports_a_go_targets_contention() {
    require_root();
    let build_dir = tempfile::tempdir().expect("temp dir");
    let exe = go_toolchain::build(&go125(), "go_hot", build_dir.path(), false);
    let target = Target::spawn(&exe, &["30", "0"]);
    let hot = target.lock("hot");
    let dir = tempfile::tempdir().expect("temp dir");
    let (pprof, holders_file, folded) = (
        in_dir(dir.path(), "go.pb.gz"),
        in_dir(dir.path(), "go-holders.pb.gz"),
        in_dir(dir.path(), "go.folded"),
    );
    let pid = target.pid().to_string();
    let out = run_tracer(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "3",
        "--holds",
        "--pprof",
        pprof.to_str().unwrap(),
        "--pprof-holders",
        holders_file.to_str().unwrap(),
        "--folded",
        folded.to_str().unwrap(),
    ]);
    assert_success(&out);

    let (waiters, raw) = pprof_raw(&pprof);
    let waiting = samples_of(&waiters, hot);
    assert!(!waiting.is_empty(), "no hotMu ({hot:#x}) sample\n{raw}");
    assert!(
        waiting
            .iter()
            .all(|s| s.labels.contains("lock_type:[go_mutex]")
                && s.labels.contains("lock:[main.hotMu]")),
        "{waiting:?}"
    );
    let (in_section, waited) = delay_in(&waiting, "main.hotSection");
    assert!(
        waited > 0 && in_section * 10 >= waited * 9,
        "hotMu's waits are in main.hotSection: {in_section} of {waited} ns\n{raw}"
    );

    let (holders, raw) = pprof_raw(&holders_file);
    let holding = samples_of(&holders, hot);
    let (in_section, held) = delay_in(&holding, "main.hotSection");
    assert!(
        held > 0 && in_section * 10 >= held * 8,
        "hotMu's waits are charged to holds taken in main.hotSection: {in_section} of {held} ns\n{raw}"
    );

    let text = std::fs::read_to_string(&folded).expect("folded file");
    let lines = parse_folded(&text);
    let totals = totals_by_root(&lines);
    let top = totals
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(root, _)| *root);
    assert_eq!(top, Some("main.hotMu"), "{totals:?}\n{text}");
}

/// Guards bad export flags: each is one clear line and a non-zero exit before anything
/// is attached (not a failure after a whole trace): a holders' profile without
/// `--holds`, and a file in a directory that does not exist.
#[test]
fn bad_export_flags_are_one_line_errors() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["30"]);
    let pid = target.pid().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let holders = in_dir(dir.path(), "h.pb.gz");
    let missing = in_dir(dir.path(), "no/such/dir/f.folded");
    for (args, says) in [
        (
            vec!["--pprof-holders", holders.to_str().unwrap()],
            "holders are known only with --holds".to_owned(),
        ),
        (
            vec!["--holds", "--folded", missing.to_str().unwrap()],
            format!("cannot write {}: no such directory", missing.display()),
        ),
    ] {
        let mut all = vec!["attach", "--pid", &pid, "--duration", "1"];
        all.extend(args);
        let out = run_tracer(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{all:?}: {stderr}");
        assert!(
            stderr.starts_with("tracer: error: ") && stderr.contains(&says),
            "{all:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{all:?}: traced anyway");
        assert!(!holders.exists() && !missing.exists());
    }
}
