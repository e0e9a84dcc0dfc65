//! `tracer_user::pprof` read back by Go's own pprof: a contention profile with two lock
//! waits is encoded with [`encode_gzipped`], and `go tool pprof` of every Go toolchain we
//! install (1.19 and 1.25, two releases of the vendored reader) must read it as a Go mutex
//! profile, with the stacks, values, labels and mappings the model profile has. No root
//! needed.
//!
//! The expected values are computed from the model profile, never written down, so an
//! encoding that loses, swaps or mislabels anything fails here.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use tracer_user::{
    model::profile::{ContentionProfile, ProfileFrame, ProfileSample},
    pprof::encode_gzipped,
};

use crate::{
    go_toolchain::{GoToolchain, go_cmd, installed},
    tools,
};

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const BIN: &str = "/srv/app/server";
/// 2024-01-02 03:04:05.000000006 UTC, and how Go prints it in UTC.
const START_UNIX_NS: u64 = 1_704_164_645_000_000_006;
const START_PRINTED: &str = "2024-01-02 03:04:05.000000006 +0000 UTC";

fn frame(
    function: &str,
    file: Option<&str>,
    line: Option<u32>,
    object: Option<&str>,
    address: u64,
) -> ProfileFrame {
    ProfileFrame {
        function: function.to_owned(),
        file: file.map(str::to_owned),
        line,
        object: object.map(str::to_owned),
        address,
    }
}

/// Two waits on two locks from two threads: they share the lock call and the thread
/// entry (one location each), and the second has a frame of an unknown object. No value
/// has a space, so pprof's `[a b]` label lists parse unambiguously.
fn two_waits() -> ContentionProfile {
    let lock = frame(
        "pthread_mutex_lock",
        None,
        None,
        Some(LIBC),
        0x7f3a_0009_a0f0,
    );
    let start = frame(
        "start_thread",
        Some("./nptl/pthread_create.c"),
        Some(447),
        Some(LIBC),
        0x7f3a_0009_4ac3,
    );
    ContentionProfile {
        start_unix_ns: START_UNIX_NS,
        duration_ns: 10_000_000_000,
        samples: vec![
            ProfileSample {
                frames: vec![
                    lock.clone(),
                    frame(
                        "main.worker",
                        Some("/src/worker.c"),
                        Some(42),
                        Some(BIN),
                        0x40_1186,
                    ),
                    start.clone(),
                ],
                lock: "queue.mu".to_owned(),
                lock_addr: 0x5555_5555_8040,
                lock_kind: "mutex",
                pid: 4242,
                comm: "worker".to_owned(),
                contentions: 7,
                delay_ns: 3_500_000,
            },
            ProfileSample {
                frames: vec![
                    lock,
                    frame(
                        "main.flush",
                        Some("/src/flush.c"),
                        Some(17),
                        Some(BIN),
                        0x40_1234,
                    ),
                    frame("jit_stub", None, None, None, 0x7f3a_1000_0010),
                    start,
                ],
                lock: "cache.mu".to_owned(),
                lock_addr: 0x5555_5555_8080,
                lock_kind: "rwlock",
                pid: 4243,
                comm: "flusher".to_owned(),
                contentions: 2,
                delay_ns: 900_000,
            },
        ],
        comments: vec!["1 wait had no stack".to_owned()],
    }
}

/// The labels a sample should carry, as pprof prints them.
fn expected_labels(sample: &ProfileSample) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("lock".to_owned(), sample.lock.clone()),
        ("lock_addr".to_owned(), format!("{:#x}", sample.lock_addr)),
        ("lock_type".to_owned(), sample.lock_kind.to_owned()),
        ("comm".to_owned(), sample.comm.clone()),
        ("pid".to_owned(), sample.pid.to_string()),
    ])
}

/// Writes the profile where `go tool pprof` reads it.
fn write_profile(dir: &Path, profile: &ContentionProfile) -> PathBuf {
    let path = dir.join("contention.pb.gz");
    std::fs::write(&path, encode_gzipped(profile).expect("encode")).expect("write profile");
    path
}

/// `go tool pprof ARGS FILE`'s output. Anything on stderr fails the test: pprof writes
/// there when it tries to symbolize the addresses itself (a mapping not marked
/// symbolized) or rejects part of the profile.
fn pprof(tc: &GoToolchain, file: &Path, args: &[&str]) -> String {
    // Go 1.24+ builds `pprof` on first use: one shared cache builds it once.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let mut cmd = go_cmd(tc, &cache);
    cmd.env("TZ", "UTC")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file);
    let out = tools::output(&mut cmd, "golang-1.19-go");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{} tool pprof {args:?}: {}\n{stderr}",
        tc.release,
        out.status
    );
    String::from_utf8(out.stdout).expect("utf-8 pprof output")
}

/// `go tool pprof -raw`: the profile as pprof decoded it.
#[derive(Debug, Default)]
struct RawProfile {
    /// The lines before the samples, `Key: value`, in order.
    header: Vec<(String, String)>,
    /// `contentions/count delay/nanoseconds[dflt]`.
    sample_types: String,
    samples: Vec<RawSample>,
    locations: BTreeMap<u64, RawLocation>,
    mappings: BTreeMap<u64, RawMapping>,
}

#[derive(Debug, Default)]
struct RawSample {
    values: Vec<i64>,
    location_ids: Vec<u64>,
    /// String and numeric labels alike.
    labels: BTreeMap<String, String>,
}

#[derive(Debug)]
struct RawLocation {
    address: u64,
    mapping_id: Option<u64>,
    function: String,
    file: String,
    line: i64,
}

#[derive(Debug)]
struct RawMapping {
    start: u64,
    limit: u64,
    file: String,
    flags: String,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("hex {s:?}"))
}

/// Parses `-raw` output (pprof's `Profile.String`). Go 1.19 prints a location's line as
/// `file:line`, later releases as `file:line:column`.
fn parse_raw(text: &str, with_column: bool) -> RawProfile {
    #[derive(PartialEq)]
    enum Section {
        Header,
        SampleTypes,
        Samples,
        Locations,
        Mappings,
    }
    let mut raw = RawProfile::default();
    let mut section = Section::Header;
    for line in text.lines() {
        match (line, &section) {
            ("Samples:", _) => section = Section::SampleTypes,
            ("Locations", _) => section = Section::Locations,
            ("Mappings", _) => section = Section::Mappings,
            (_, Section::Header) => {
                let (key, value) = line.split_once(": ").expect("Key: value header line");
                raw.header.push((key.to_owned(), value.to_owned()));
            }
            (_, Section::SampleTypes) => {
                line.clone_into(&mut raw.sample_types);
                section = Section::Samples;
            }
            (_, Section::Samples) => {
                let (before, after) = line.split_once(':').expect("sample or label line");
                let values: Result<Vec<i64>, _> =
                    before.split_whitespace().map(str::parse).collect();
                match values {
                    Ok(values) if !values.is_empty() => raw.samples.push(RawSample {
                        values,
                        location_ids: after
                            .split_whitespace()
                            .map(|id| id.parse().expect("location id"))
                            .collect(),
                        labels: BTreeMap::new(),
                    }),
                    _ => {
                        let sample = raw.samples.last_mut().expect("labels follow a sample");
                        for label in line.split_whitespace() {
                            let (key, value) = label.split_once(':').expect("key:[value]");
                            let value = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
                            let value = value.expect("one [value]").to_owned();
                            assert!(
                                sample.labels.insert(key.to_owned(), value).is_none(),
                                "label {key} twice"
                            );
                        }
                    }
                }
            }
            (_, Section::Locations) => {
                let tokens: Vec<&str> = line.split_whitespace().collect();
                let id = tokens[0].strip_suffix(':');
                let id = id.unwrap_or_else(|| panic!("one line per location: {line:?}"));
                let (mapping_id, rest) = match tokens[2].strip_prefix("M=") {
                    Some(m) => (Some(m.parse().expect("mapping id")), &tokens[3..]),
                    None => (None, &tokens[2..]),
                };
                let [function, file_line, start_line] = rest else {
                    panic!("function file:line s=N expected: {line:?}")
                };
                assert_eq!(*start_line, "s=0", "no start line was given");
                let mut parts = file_line.rsplitn(if with_column { 3 } else { 2 }, ':');
                if with_column {
                    assert_eq!(parts.next(), Some("0"), "no column was given");
                }
                let line_no = parts.next().expect("line").parse().expect("line number");
                let location = RawLocation {
                    address: hex(tokens[1]),
                    mapping_id,
                    function: (*function).to_owned(),
                    file: parts.next().expect("file").to_owned(),
                    line: line_no,
                };
                raw.locations.insert(id.parse().expect("id"), location);
            }
            (_, Section::Mappings) => {
                let tokens: Vec<&str> = line.split_whitespace().collect();
                let range: Vec<u64> = tokens[1].split('/').map(hex).collect();
                let (flags, names): (Vec<&str>, Vec<&str>) =
                    tokens[2..].iter().partition(|t| t.starts_with('['));
                let mapping = RawMapping {
                    start: range[0],
                    limit: range[1],
                    file: names.first().copied().unwrap_or_default().to_owned(),
                    flags: flags.concat(),
                };
                let id = tokens[0].strip_suffix(':').expect("id:");
                raw.mappings.insert(id.parse().expect("id"), mapping);
            }
        }
    }
    raw
}

/// Guards the encoding as a whole: pprof must decode what the model says, field by field:
/// the Go mutex profile header, each sample's values, leaf-first stack (function, file,
/// line, address, object) and labels, one location per distinct frame, and mappings that
/// are marked symbolized, main binary first, unknown objects in a nameless one.
#[test]
fn raw_dump_is_the_model_profile() {
    let profile = two_waits();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_profile(dir.path(), &profile);
    for tc in installed() {
        let text = pprof(&tc, &file, &["-raw"]);
        let raw = parse_raw(&text, tc.release != "go1.19");
        let release = tc.release;

        let mut header = vec![];
        for comment in &profile.comments {
            header.push(("Comment".to_owned(), comment.clone()));
        }
        header.extend([
            ("PeriodType".to_owned(), "contentions count".to_owned()),
            ("Period".to_owned(), "1".to_owned()),
            ("Time".to_owned(), START_PRINTED.to_owned()),
            (
                "Duration".to_owned(),
                format!("{}s", profile.duration_ns / 1_000_000_000),
            ),
        ]);
        assert_eq!(raw.header, header, "{release}\n{text}");
        assert_eq!(
            raw.sample_types, "contentions/count delay/nanoseconds[dflt]",
            "{release}: Go's mutex sample types, delay the default"
        );

        assert_eq!(
            raw.samples.len(),
            profile.samples.len(),
            "{release}\n{text}"
        );
        for want in &profile.samples {
            let got = raw
                .samples
                .iter()
                .find(|s| s.labels.get("lock") == Some(&want.lock))
                .unwrap_or_else(|| panic!("{release}: no sample of {}\n{text}", want.lock));
            let values = [want.contentions, want.delay_ns].map(|v| i64::try_from(v).unwrap());
            assert_eq!(got.values, values, "{release}: {}", want.lock);
            assert_eq!(got.labels, expected_labels(want), "{release}");
            let stack: Vec<_> = got
                .location_ids
                .iter()
                .map(|id| {
                    let loc = raw.locations.get(id).expect("sample location is listed");
                    let mapping = loc.mapping_id.and_then(|m| raw.mappings.get(&m));
                    let mapping = mapping.expect("every location has a listed mapping");
                    assert!(
                        mapping.limit == 0 || (mapping.start..mapping.limit).contains(&loc.address),
                        "{release}: {loc:?} outside {mapping:?}"
                    );
                    (
                        loc.function.clone(),
                        loc.file.clone(),
                        loc.line,
                        loc.address,
                        mapping.file.clone(),
                    )
                })
                .collect();
            let want_stack: Vec<_> = want
                .frames
                .iter()
                .map(|f| {
                    (
                        f.function.clone(),
                        f.file.clone().unwrap_or_default(),
                        f.line.map_or(0, i64::from),
                        f.address,
                        f.object.clone().unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(
                stack, want_stack,
                "{release}: stack of {}, leaf first",
                want.lock
            );
        }

        let distinct_frames: BTreeSet<_> = profile
            .samples
            .iter()
            .flat_map(|s| &s.frames)
            .map(|f| (f.address, &f.function))
            .collect();
        assert_eq!(
            raw.locations.len(),
            distinct_frames.len(),
            "{release}: shared frames"
        );
        let files: Vec<_> = raw.mappings.values().map(|m| m.file.as_str()).collect();
        assert_eq!(files, [BIN, LIBC, ""], "{release}: main binary first");
        for mapping in raw.mappings.values() {
            assert_eq!(mapping.flags, "[FN][FL][LN][IN]", "{release}: {mapping:?}");
        }
    }
}

/// Per function: (flat, cum) of one sample value, as `-top` computes them: flat is the
/// value of the samples whose leaf it is, cum of the samples whose stack it is in.
fn expected_top(
    profile: &ContentionProfile,
    value: fn(&ProfileSample) -> u64,
) -> BTreeMap<String, (u64, u64)> {
    let mut top: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for sample in &profile.samples {
        let functions: BTreeSet<_> = sample.frames.iter().map(|f| &f.function).collect();
        for function in functions {
            top.entry(function.clone()).or_default().1 += value(sample);
        }
        if let Some(leaf) = sample.frames.first() {
            top.entry(leaf.function.clone()).or_default().0 += value(sample);
        }
    }
    top
}

/// Parses `-top`: the `Type:` and `File:` header lines, and each function's (flat, cum),
/// values with their `unit` suffix removed.
fn parse_top(text: &str, unit: &str) -> (String, String, BTreeMap<String, (u64, u64)>) {
    let header = |key: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(key));
        line.unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_owned()
    };
    let value = |v: &str| -> u64 {
        let v = v.strip_suffix(unit).unwrap_or(v);
        v.parse()
            .unwrap_or_else(|_| panic!("value {v:?} in\n{text}"))
    };
    let rows = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1);
    let mut top = BTreeMap::new();
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let [flat, _, _, cum, _, function] = cols[..] else {
            panic!("flat flat% sum% cum cum% name expected: {row:?}")
        };
        top.insert(function.to_owned(), (value(flat), value(cum)));
    }
    (header("Type: "), header("File: "), top)
}

/// Guards the sample types as readers select them: `-sample_index=delay` and
/// `contentions` must each give the per-function totals of that value (a swap, a lost
/// sample or a wrong leaf changes them), a run without it shows delay, and the profile is
/// titled with the main binary. (pprof falls back to the last sample type, delay, when
/// none is the default: `[dflt]` in [`raw_dump_is_the_model_profile`] guards that field.)
#[test]
fn top_by_delay_and_by_contentions() {
    let profile = two_waits();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_profile(dir.path(), &profile);
    let main_binary = Path::new(BIN).file_name().unwrap().to_str().unwrap();
    for tc in installed() {
        let release = tc.release;
        // Every node shown, values in plain nanoseconds.
        let all = ["-top", "-nodefraction=0", "-nodecount=100"];
        let by_delay = pprof(
            &tc,
            &file,
            &[&all[..], &["-sample_index=delay", "-unit=ns"]].concat(),
        );
        let (kind, title, top) = parse_top(&by_delay, "ns");
        assert_eq!(
            (kind.as_str(), title.as_str()),
            ("delay", main_binary),
            "{release}"
        );
        assert_eq!(
            top,
            expected_top(&profile, |s| s.delay_ns),
            "{release}\n{by_delay}"
        );

        let by_count = pprof(
            &tc,
            &file,
            &[&all[..], &["-sample_index=contentions"]].concat(),
        );
        let (kind, _, top) = parse_top(&by_count, "");
        assert_eq!(kind, "contentions", "{release}");
        assert_eq!(
            top,
            expected_top(&profile, |s| s.contentions),
            "{release}\n{by_count}"
        );

        // No -sample_index: the default sample type's values.
        let default = pprof(&tc, &file, &[&all[..], &["-unit=ns"]].concat());
        let (kind, _, top) = parse_top(&default, "ns");
        assert_eq!(
            top,
            expected_top(&profile, |s| s.delay_ns),
            "{release}\n{default}"
        );
        assert_eq!(kind, "delay", "{release}: default sample type");
    }
}

/// Guards the lock as sample labels: `-traces` prints each sample's labels above its
/// stack, so each wait must show its own lock, address, type, thread name and pid,
/// above its own stack and delay.
#[test]
fn traces_show_each_wait_with_its_lock() {
    let profile = two_waits();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_profile(dir.path(), &profile);
    for tc in installed() {
        let release = tc.release;
        let text = pprof(&tc, &file, &["-traces", "-sample_index=delay", "-unit=ns"]);
        let separator = "-----------+-------------------------------------------------------";
        // (labels, stack, value) per trace.
        let mut traces = Vec::new();
        for block in text.split(separator).skip(1) {
            let mut labels = BTreeMap::new();
            let mut stack = Vec::new();
            let mut value = None;
            for line in block.lines().filter(|l| !l.trim().is_empty()) {
                if let Some((key, v)) = line.split_once(":  ") {
                    labels.insert(key.trim().to_owned(), v.trim().to_owned());
                } else if value.is_none() {
                    let (v, function) = line.trim().split_once(' ').expect("value function");
                    value = Some(
                        v.strip_suffix("ns")
                            .expect("ns")
                            .parse::<u64>()
                            .expect("value"),
                    );
                    stack.push(function.trim().to_owned());
                } else {
                    stack.push(line.trim().to_owned());
                }
            }
            if !stack.is_empty() {
                traces.push((labels, stack, value));
            }
        }
        assert_eq!(traces.len(), profile.samples.len(), "{release}\n{text}");
        for want in &profile.samples {
            let got = traces
                .iter()
                .find(|(labels, ..)| labels.get("lock") == Some(&want.lock))
                .unwrap_or_else(|| panic!("{release}: no trace with lock {}\n{text}", want.lock));
            assert_eq!(got.0, expected_labels(want), "{release}");
            let functions: Vec<_> = want.frames.iter().map(|f| f.function.clone()).collect();
            assert_eq!(got.1, functions, "{release}: stack of {}", want.lock);
            assert_eq!(
                got.2,
                Some(want.delay_ns),
                "{release}: delay of {}",
                want.lock
            );
        }
    }
}
