//! Root integration tests: `tracer record` and `tracer report`. A recording made of a
//! live trace (whose report `record --print json` also prints as it goes) must report,
//! after the target is gone, exactly what that live trace reported: the same deadlock,
//! stuck lock and histogram lines, checked against the target's own facts; a recording
//! cut short reports its intact part with a note; a file that is no recording is one
//! error line.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{
        Names, Target, Tracer, addr_of, as_strs, assert_cycle, assert_success, build_target,
        deadlocks, describe, json_lines, locks, name_of, require_root, run_tracer, summary,
        tracer_bin, u64_field,
    },
    go_attach::{START_MS, check_rwleak_report, go_builds},
};

const ABBA: [(&str, &str, &str); 2] = [
    ("worker_a", "lock_a", "lock_b"),
    ("worker_b", "lock_b", "lock_a"),
];

/// `record --pid PID --duration SECS -o FILE --print FORMAT EXTRA…`.
fn recording_args(pid: u32, secs: u64, file: &Path, print: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "record",
        "--pid",
        &pid.to_string(),
        "--duration",
        &secs.to_string(),
        "-o",
        &file.display().to_string(),
        "--print",
        print,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// Runs the recorder to its end: its output, after checking it succeeded and said where
/// it recorded.
fn record_output(args: &[String]) -> Output {
    let out = run_tracer(&as_strs(args));
    assert_success(&out);
    let file = &args[args.iter().position(|a| a == "-o").expect("-o") + 1];
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("and the summary to {file}")),
        "the recorder says where it recorded\n{}",
        describe(&out)
    );
    out
}

/// `record … --print json`, run to its end: the live report's JSON lines.
fn record(pid: u32, secs: u64, file: &Path, extra: &[&str]) -> Vec<Value> {
    json_lines(&record_output(&recording_args(pid, secs, file, "json", extra)).stdout)
}

/// `tracer report FILE --format json`, as output (no tracer attaches: it never hangs).
fn report(file: &Path) -> Output {
    let out = Command::new(tracer_bin())
        .args(["report", &file.display().to_string(), "--format", "json"])
        .output()
        .expect("run tracer report");
    eprintln!("report {}:\n{}", file.display(), describe(&out));
    out
}

/// SIGKILLs `target` and reaps it: the report must not need it.
fn kill_target(target: &mut Target) {
    let status = Command::new("kill")
        .args(["-9", &target.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert!(
        target.wait_exit(Duration::from_secs(5)).is_some(),
        "the target did not die"
    );
}

fn temp_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-recording-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}

/// The ends of the chunks of the recording `bytes`, walked by the framing
/// `docs/recording-format.md` documents (10-byte preamble; each chunk a kind byte, a
/// little-endian `u32` length, a `u32` CRC, the payload), with each chunk's kind.
fn chunk_ends(bytes: &[u8]) -> Vec<(u8, usize)> {
    assert_eq!(&bytes[..8], b"TRACERRC", "the documented magic");
    let mut at = 10;
    let mut ends = Vec::new();
    while at < bytes.len() {
        let kind = bytes[at];
        let len = u32::from_le_bytes([bytes[at + 1], bytes[at + 2], bytes[at + 3], bytes[at + 4]])
            as usize;
        at += 9 + len;
        ends.push((kind, at));
    }
    assert_eq!(at, bytes.len(), "chunks end exactly at the file's end");
    ends
}

/// Asserts the report `out` of a recording cut short: success, the JSON lines of the
/// findings complete before the cut (equal to the live run's first ones), the note saying
/// it was truncated and, when the cut left the tape's setup (`tape`), one summary
/// analysed from the tape up to the cut, else none.
fn assert_truncated_report(out: &Output, live: &[Value], findings: usize, what: &str) {
    // The exit status says what the intact part found (README, "Exit status").
    let expected = if live[..findings].iter().any(|f| f["kind"] == "deadlock") {
        3
    } else {
        0
    };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{what}\n{}",
        describe(out)
    );
    let replayed = json_lines(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let from_tape = stderr.contains("analysed from the tape up to the cut");
    let (found, rest) = replayed.split_at(replayed.len().min(findings));
    assert_eq!(found, &live[..findings], "{what}\n{}", describe(out));
    if from_tape {
        assert!(
            rest.len() == 1 && rest[0]["kind"] == "summary",
            "{what}: one summary from the tape\n{}",
            describe(out)
        );
    } else {
        assert!(rest.is_empty(), "{what}: no summary\n{}", describe(out));
    }
    assert!(
        stderr.contains("is truncated at byte")
            && stderr.contains(&format!("{findings} finding(s) recorded before that")),
        "{what}: the note on the cut\n{}",
        describe(out)
    );
}

/// Chunk kinds (`docs/recording-format.md`).
const HEADER: u8 = 1;
const FINDING: u8 = 2;
const SUMMARY: u8 = 3;
const SETUP: u8 = 4;
const TAPE: u8 = 5;

/// Guards `record`/`report` on a native deadlock: a recording of the ABBA deadlock,
/// reported after the target was killed, must give exactly the live run's JSON lines
/// (the cycle's threads, locks, names, stacks, and the summary's histograms), and that
/// cycle must be the one the target printed. Then, cut inside each chunk (the header, the
/// deadlock, the summary), it must report the findings complete before the cut with the
/// truncation note, and never fail. Fails on any lossy field in the encoding, a finding
/// lost or duplicated, or a truncated file refused.
#[test]
fn recorded_abba_deadlock_reports_like_the_live_run() {
    require_root();
    let bin = build_target("abba", &[]);
    let mut target = Target::spawn(bin.path(), &[]);
    let tids = [target.tid("worker_a"), target.tid("worker_b")];
    target.wait_in_futex(&tids, Duration::from_secs(5));
    let (_dir, file) = temp_file("abba.rec");
    let live = record(target.pid(), 2, &file, &[]);
    // The text report too (its stacks carry `file:line`, which JSON leaves out).
    let text_file = file.with_extension("text.rec");
    let live_text = record_output(&recording_args(target.pid(), 2, &text_file, "text", &[]));
    kill_target(&mut target);
    let out = Command::new(tracer_bin())
        .args(["report", &text_file.display().to_string()])
        .output()
        .expect("run tracer report");
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&live_text.stdout),
        "the text report differs from the live run's"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(abba.c:"),
        "{}",
        describe(&out)
    );
    let out = report(&file);
    assert_success(&out);
    let replayed = json_lines(&out.stdout);
    assert_eq!(replayed, live, "the report differs from the live run");
    let found = deadlocks(&replayed);
    assert_eq!(found.len(), 1, "{}", describe(&out));
    assert_cycle(&target, found[0], &ABBA, Names::Symbols);
    let s = summary(&replayed);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("recording of process {} (abba", target.pid()))
            && stderr.contains(&bin.path().display().to_string()),
        "the report names what was recorded\n{}",
        describe(&out)
    );

    let bytes = std::fs::read(&file).unwrap();
    let ends = chunk_ends(&bytes);
    let kinds: Vec<u8> = ends.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds.first(), Some(&HEADER), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&SUMMARY), "{kinds:?}");
    assert_eq!(
        ends.iter().filter(|(k, _)| *k == FINDING).count(),
        1,
        "the deadlock, once: {kinds:?}"
    );
    assert!(
        kinds.contains(&SETUP) && kinds.contains(&TAPE),
        "the analysis tape: {kinds:?}"
    );
    let cut_file = file.with_extension("cut");
    let mut start = 10;
    for (i, &(_, end)) in ends.iter().enumerate() {
        for cut in [start + 1, usize::midpoint(start, end), end - 1] {
            std::fs::write(&cut_file, &bytes[..cut]).unwrap();
            // The deadlock is reported only once its chunk is complete.
            let findings = usize::from(kinds[..i].contains(&FINDING));
            assert_truncated_report(
                &report(&cut_file),
                &live,
                findings,
                &format!("cut at {cut}"),
            );
        }
        start = end;
    }
}

/// Guards a recorder killed mid-trace (SIGKILL, no chance to finish): what it recorded
/// before, the deadlock it had reported, must be reported from the file, equal to the line
/// it printed live, with the note that the recording was truncated.
#[test]
fn killed_recorder_leaves_a_reportable_recording() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    let tids = [target.tid("worker_a"), target.tid("worker_b")];
    target.wait_in_futex(&tids, Duration::from_secs(5));
    let (_dir, file) = temp_file("killed.rec");
    let mut tracer = Tracer::spawn(&[
        "record",
        "--pid",
        &target.pid().to_string(),
        "-o",
        &file.display().to_string(),
        "--print",
        "json",
    ]);
    let printed = tracer
        .wait_for_line(Duration::from_secs(10), |l| l.contains("\"deadlock\""))
        .expect("the recorder reports the deadlock");
    tracer.kill9();
    let deadlock: Value = serde_json::from_str(&printed).unwrap();
    let out = report(&file);
    assert_truncated_report(&out, std::slice::from_ref(&deadlock), 1, "recorder killed");
    assert_cycle(&target, &deadlock, &ABBA, Names::Symbols);
}

/// Guards the histograms of a recording: a contended lock (`hot_cold`, with `--holds` for
/// hold times too) recorded and reported after the target exited gives the live run's
/// summary to the nanosecond (counts, percentiles, totals, wait and hold), with
/// `hot_lock`, at the address the target printed, first.
#[test]
fn recorded_contention_reports_the_live_histograms() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let mut target = Target::spawn(bin.path(), &["4"]);
    let hot = target.lock("hot_lock");
    let (_dir, file) = temp_file("hot.rec");
    let live = record(target.pid(), 2, &file, &["--holds"]);
    kill_target(&mut target);
    let out = report(&file);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("summary and profiles analysed again from the recording's tape"),
        "the summary comes from playing the tape\n{}",
        describe(&out)
    );
    let replayed = json_lines(&out.stdout);
    assert_eq!(replayed, live, "the report differs from the live run");
    let s = summary(&replayed);
    let first = locks(s).first().expect("locks in the summary");
    assert_eq!(addr_of(&first["addr"]), hot, "{s:#}");
    assert_eq!(name_of(first), Some("hot_lock"));
    assert!(u64_field(first, "contentions") > 100, "{first:#}");
    assert!(u64_field(&first["hold_ns"], "count") > 0, "{first:#}");
}

/// Guards the exports of `tracer report` and the tape of a recording cut short: the
/// pprof profiles analysed from a recording of `hot_cold` (after the target exited) must
/// be read by `go tool pprof`, with the hot lock's waits in the function that waited for
/// it (`hot_worker_main`) and a holders' profile; folded stacks with the lock at the root.
/// Then the same recording cut in the middle of its tape must report a summary analysed up
/// to the cut: the hot lock first, with fewer contentions than the whole run's. Fails if
/// the tape or its names are lost, or if a cut tape reports nothing.
#[test]
fn report_exports_and_cut_tapes_come_from_the_recorded_events() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let mut target = Target::spawn(bin.path(), &["4"]);
    let hot = target.lock("hot_lock");
    let (dir, file) = temp_file("hot.rec");
    let live = record(target.pid(), 2, &file, &["--holds"]);
    kill_target(&mut target);
    let pprof = dir.path().join("hot.pb.gz");
    let folded = dir.path().join("hot.folded");
    let out = run_tracer(&[
        "report",
        &file.display().to_string(),
        "--pprof",
        &pprof.display().to_string(),
        "--folded",
        &folded.display().to_string(),
    ]);
    assert_success(&out);
    let (samples, raw) = crate::exports::pprof_raw(&pprof);
    let waiting = crate::exports::samples_of(&samples, hot);
    let (in_worker, total) = crate::exports::delay_in(&waiting, "hot_worker_main");
    assert!(
        total > 0 && in_worker * 10 >= total * 9,
        "the hot lock's waits are in hot_worker_main: {in_worker} of {total} ns\n{raw}"
    );
    let holders = dir.path().join("hot.holders.pb.gz");
    let (held, raw) = crate::exports::pprof_raw(&holders);
    assert!(
        !crate::exports::samples_of(&held, hot).is_empty(),
        "the holders' profile has the hot lock\n{raw}"
    );
    let folded = std::fs::read_to_string(&folded).unwrap();
    assert!(
        folded.lines().any(|l| l.starts_with("hot_lock;")),
        "the lock is the root frame\n{folded}"
    );

    let bytes = std::fs::read(&file).unwrap();
    let ends = chunk_ends(&bytes);
    let tapes: Vec<usize> = ends
        .iter()
        .filter(|(kind, _)| *kind == TAPE)
        .map(|&(_, end)| end)
        .collect();
    assert!(tapes.len() >= 2, "a tape chunk a second: {ends:?}");
    let cut_file = file.with_extension("cut");
    std::fs::write(&cut_file, &bytes[..tapes[0] + 3]).unwrap();
    let out = report(&cut_file);
    assert_truncated_report(&out, &live, 0, "cut after the first tape chunk");
    let cut = json_lines(&out.stdout);
    let first = locks(summary(&cut))
        .first()
        .cloned()
        .expect("locks up to the cut");
    let whole = locks(summary(&live)).first().cloned().expect("locks");
    assert_eq!(addr_of(&first["addr"]), hot, "{first:#}");
    let (part, all) = (
        u64_field(&first, "contentions"),
        u64_field(&whole, "contentions"),
    );
    assert!(part > 0 && part < all, "{part} of {all} contentions");
}

/// Guards `record`/`report` on a Go stuck lock (`go_rwleak`, the write lock leaked by a
/// goroutine that exited): the report of the recording, made after the target was
/// killed, equals the live run's lines and passes the same checks against the target's
/// facts as a live attach (holder goroutine, where it took the lock, waiters).
#[test]
fn recorded_go_stuck_lock_reports_like_the_live_run() {
    require_root();
    let (_dir, builds) = go_builds("go_rwleak", false);
    for build in &builds {
        let mut target = Target::spawn(&build.path, &["exits", START_MS]);
        let (_rec_dir, file) = temp_file("rwleak.rec");
        let live = record(target.pid(), 6, &file, &["--holds"]);
        kill_target(&mut target);
        let out = report(&file);
        assert_success(&out);
        let replayed = json_lines(&out.stdout);
        assert_eq!(
            replayed, live,
            "[{}] the report differs from the live run",
            build.label
        );
        let what = format!("[{} report]\n{}", build.label, describe(&out));
        check_rwleak_report(&target, build, &replayed, "exited", 1_000_000_000, &what);
    }
}

/// Guards `record`'s bad input: no such process is one error line, and no file is left
/// behind (a report of it would say nothing true).
#[test]
fn record_of_no_process_is_one_error_line_and_no_file() {
    require_root();
    let (_dir, file) = temp_file("none.rec");
    // PIDs never reach this (pid_max is at most 2^22).
    let out = run_tracer(&[
        "record",
        "--pid",
        "2147483647",
        "-o",
        &file.display().to_string(),
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tracer: error: no such process: 2147483647\n"
    );
    assert!(!file.exists(), "a recording of nothing was left behind");
}

/// Guards the refusal of files that are no recording: a random file, an empty file and a
/// recording of a newer format each give one error line naming the file, nothing on
/// stdout, and a non-zero exit (never a panic or a partial report).
#[test]
fn foreign_and_newer_files_are_one_error_line() {
    require_root();
    let (_dir, random) = temp_file("random.bin");
    let mut noise = vec![0u8; 4096];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(&random, noise).unwrap();
    let empty = random.with_file_name("empty.rec");
    std::fs::write(&empty, b"").unwrap();
    let newer = random.with_file_name("newer.rec");
    let mut bytes = b"TRACERRC".to_vec();
    bytes.extend_from_slice(&999u16.to_le_bytes());
    std::fs::write(&newer, bytes).unwrap();
    for (file, message) in [
        (
            &random,
            format!("{} is not a tracer recording", random.display()),
        ),
        (
            &empty,
            format!("{} is not a tracer recording", empty.display()),
        ),
        (
            &newer,
            format!(
                "{}: recording version 999 is newer than this tracer's 2",
                newer.display()
            ),
        ),
    ] {
        let out = report(file);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(out.stdout.is_empty(), "{}", describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("tracer: error: {message}\n")
        );
    }
}

/// Guards `tracer report`'s exports of a Go target, whose goroutines' waits are not on
/// the tape (the Go lock model reads the live memory): the recording keeps the live run's
/// named profiles, and `report --pprof` after the target is gone must write a profile
/// `go tool pprof` reads, with `hotMu`'s waits (at the address `go_hot` printed) in
/// `main.hotSection`. Fails if a Go recording's report has no profile to export.
#[test]
fn report_exports_a_recorded_go_targets_profiles() {
    require_root();
    let build_dir = tempfile::tempdir().expect("temp dir");
    let exe =
        crate::go_toolchain::build(&crate::exports::go125(), "go_hot", build_dir.path(), false);
    let mut target = Target::spawn(&exe, &["30", "0"]);
    let hot = target.lock("hot");
    let (dir, file) = temp_file("go_hot.rec");
    let live = record(target.pid(), 3, &file, &[]);
    kill_target(&mut target);
    let pprof = dir.path().join("go.pb.gz");
    let out = run_tracer(&[
        "report",
        &file.display().to_string(),
        "--format",
        "json",
        "--pprof",
        &pprof.display().to_string(),
    ]);
    assert_success(&out);
    assert_eq!(json_lines(&out.stdout), live, "the recorded summary");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the profiles are the ones the live run recorded"),
        "{}",
        describe(&out)
    );
    let (samples, raw) = crate::exports::pprof_raw(&pprof);
    let waiting = crate::exports::samples_of(&samples, hot);
    let (in_section, waited) = crate::exports::delay_in(&waiting, "main.hotSection");
    assert!(
        waited > 0 && in_section * 10 >= waited * 9,
        "hotMu's waits are in main.hotSection: {in_section} of {waited} ns\n{raw}"
    );
}
