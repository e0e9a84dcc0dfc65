//! Contention profiles as pprof: the gzipped `profile.proto` that Go's
//! `/debug/pprof/mutex` serves, so that `go tool pprof`, Parca and Pyroscope read the
//! tracer's lock waits like a Go program's mutex profile.
//!
//! What a reader sees, and why:
//! - Sample types `contentions/count` and `delay/nanoseconds`, in that order, period type
//!   `contentions/count` with period 1: exactly Go's mutex profile, so tools that know
//!   Go's profiles (Pyroscope's `mutex` type, `-sample_index=delay`) take ours as one.
//!   `delay` is the default sample type, the one a reader shows first, as lock time is
//!   what one looks at first.
//! - The stack as recorded, leaf first (`location_id[0]` is the innermost frame), one
//!   location per distinct frame, one function per distinct (name, file).
//! - The lock is not a frame but sample labels (`lock`, `lock_addr`, `lock_type`, `comm`,
//!   numeric `pid`), so flame graphs stay stacks of code, and one can still filter or
//!   group by lock (`go tool pprof -tagfocus=lock=…`, `-tags`).
//! - One mapping per object. The frames are already named by the tracer, from the
//!   target's own files: every mapping says so (`has_functions` and the rest), or a
//!   reader would symbolize the addresses again against whatever files it finds on its
//!   own machine. Frames whose object is unknown share a last, nameless catch-all
//!   mapping, as Go's runtime does when it knows no mappings: with no mapping at all,
//!   `go tool pprof` adds one of its own and tries (and fails) to symbolize it.
//!
//! Pure: no I/O, no aya; the `tracer serve` endpoint writes the bytes.

mod proto;

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use prost::Message;
use rustc_hash::FxHashMap;

use crate::model::profile::{ContentionProfile, ProfileFrame, ProfileSample};

/// Why a profile could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    /// Compressing into memory failed (flate2 reports it as I/O).
    #[error("cannot gzip the pprof profile")]
    Gzip(#[source] std::io::Error),
}

/// The profile as raw (uncompressed) `profile.proto` bytes.
#[must_use]
pub fn encode(profile: &ContentionProfile) -> Vec<u8> {
    build(profile).encode_to_vec()
}

/// The profile as gzipped `profile.proto` bytes, what `/debug/pprof/*` endpoints serve
/// and every pprof reader accepts.
///
/// # Errors
///
/// [`PprofError::Gzip`] if the compressor fails.
pub fn encode_gzipped(profile: &ContentionProfile) -> Result<Vec<u8>, PprofError> {
    let raw = encode(profile);
    let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::default());
    gz.write_all(&raw).map_err(PprofError::Gzip)?;
    gz.finish().map_err(PprofError::Gzip)
}

/// Go's names for a mutex profile's values; `DELAY` is also the default sample type.
const CONTENTIONS: &str = "contentions";
const COUNT: &str = "count";
const DELAY: &str = "delay";
const NANOSECONDS: &str = "nanoseconds";

/// A `u64` count or time as pprof's `int64`, pinned at `i64::MAX` rather than wrapped
/// to a negative value (which readers would subtract).
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A table length as the next 1-based id. Lengths fit in `u64` on every target we build
/// for; saturating keeps this total.
fn next_id(len: usize) -> u64 {
    u64::try_from(len).map_or(u64::MAX, |n| n.saturating_add(1))
}

/// The profile's strings, each once, with "" at index 0 as `profile.proto` requires.
struct StringTable {
    strings: Vec<String>,
    index: FxHashMap<String, i64>,
}

impl StringTable {
    fn new() -> Self {
        let mut table = StringTable {
            strings: Vec::new(),
            index: FxHashMap::default(),
        };
        table.intern("");
        table
    }

    /// The index of `s`, added if new.
    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        // A Vec holds at most isize::MAX items, so this never saturates.
        let i = i64::try_from(self.strings.len()).unwrap_or(i64::MAX);
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// The tables of a profile under construction; the maps borrow from the model profile.
struct Builder<'p> {
    strings: StringTable,
    mappings: Vec<proto::Mapping>,
    mapping_ids: FxHashMap<&'p str, u64>,
    /// The catch-all mapping of frames with no known object; 0 (no mapping) while no
    /// frame needs it.
    unknown_mapping_id: u64,
    functions: Vec<proto::Function>,
    function_ids: FxHashMap<(&'p str, Option<&'p str>), u64>,
    locations: Vec<proto::Location>,
    location_ids: FxHashMap<&'p ProfileFrame, u64>,
}

fn build(profile: &ContentionProfile) -> proto::Profile {
    let mut b = Builder {
        strings: StringTable::new(),
        mappings: Vec::new(),
        mapping_ids: FxHashMap::default(),
        unknown_mapping_id: 0,
        functions: Vec::new(),
        function_ids: FxHashMap::default(),
        locations: Vec::new(),
        location_ids: FxHashMap::default(),
    };
    let contentions = proto::ValueType {
        r#type: b.strings.intern(CONTENTIONS),
        unit: b.strings.intern(COUNT),
    };
    let delay = proto::ValueType {
        r#type: b.strings.intern(DELAY),
        unit: b.strings.intern(NANOSECONDS),
    };
    b.add_mappings(profile);
    let samples = profile.samples.iter().map(|s| b.sample(s)).collect();
    let comment = profile
        .comments
        .iter()
        .map(|c| b.strings.intern(c))
        .collect();
    proto::Profile {
        default_sample_type: delay.r#type,
        sample_type: vec![contentions.clone(), delay],
        period_type: Some(contentions),
        period: 1,
        sample: samples,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        time_nanos: saturating_i64(profile.start_unix_ns),
        duration_nanos: saturating_i64(profile.duration_ns),
        comment,
        string_table: b.strings.strings,
    }
}

impl<'p> Builder<'p> {
    /// One mapping per object, spanning the addresses seen in it; then the catch-all,
    /// if needed.
    ///
    /// `profile.proto` wants the main binary first (readers title the profile with it):
    /// that is the first object, in order of appearance, that is not a shared library,
    /// pprof's own guess. A profile of several programs has several; the first is as good
    /// a title as any. The others keep their order of appearance.
    ///
    /// The catch-all comes last, at 0/0, for `go tool pprof`'s sake: it merges a mapping
    /// into the one before it when that one ends where it starts and either is nameless.
    /// Every named mapping ends above 0, so the catch-all never merges.
    fn add_mappings(&mut self, profile: &'p ContentionProfile) {
        /// An object and the span of its addresses in the profile, end exclusive.
        struct Span<'o> {
            object: &'o str,
            start: u64,
            limit: u64,
        }
        let mut spans: Vec<Span<'p>> = Vec::new();
        let mut span_of: FxHashMap<&'p str, usize> = FxHashMap::default();
        let mut any_unknown = false;
        for frame in profile.samples.iter().flat_map(|s| &s.frames) {
            let Some(object) = frame.object.as_deref() else {
                any_unknown = true;
                continue;
            };
            let limit = frame.address.saturating_add(1);
            if let Some(span) = span_of.get(object).and_then(|&i| spans.get_mut(i)) {
                span.start = span.start.min(frame.address);
                span.limit = span.limit.max(limit);
            } else {
                span_of.insert(object, spans.len());
                spans.push(Span {
                    object,
                    start: frame.address,
                    limit,
                });
            }
        }
        if let Some(main) = spans
            .iter()
            .position(|s| !looks_like_shared_library(s.object))
        {
            let main = spans.remove(main);
            spans.insert(0, main);
        }
        for span in spans {
            let id = next_id(self.mappings.len());
            let filename = self.strings.intern(span.object);
            self.mappings
                .push(symbolized_mapping(id, span.start, span.limit, filename));
            self.mapping_ids.insert(span.object, id);
        }
        if any_unknown {
            let id = next_id(self.mappings.len());
            self.mappings.push(symbolized_mapping(id, 0, 0, 0));
            self.unknown_mapping_id = id;
        }
    }

    fn sample(&mut self, sample: &'p ProfileSample) -> proto::Sample {
        let location_id = sample.frames.iter().map(|f| self.location(f)).collect();
        let mut label = vec![
            self.string_label("lock", &sample.lock),
            self.string_label("lock_addr", &format!("{:#x}", sample.lock_addr)),
            self.string_label("lock_type", sample.lock_kind),
            self.string_label("comm", &sample.comm),
        ];
        label.push(proto::Label {
            key: self.strings.intern("pid"),
            num: i64::from(sample.pid),
            ..proto::Label::default()
        });
        proto::Sample {
            location_id,
            value: vec![
                saturating_i64(sample.contentions),
                saturating_i64(sample.delay_ns),
            ],
            label,
        }
    }

    fn string_label(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label {
            key: self.strings.intern(key),
            str: self.strings.intern(value),
            ..proto::Label::default()
        }
    }

    /// The location of `frame`: one per distinct frame (its address included), so the
    /// same return address reached again is one node in a reader's graph.
    fn location(&mut self, frame: &'p ProfileFrame) -> u64 {
        if let Some(&id) = self.location_ids.get(frame) {
            return id;
        }
        let function_id = self.function(frame);
        let mapping_id = match frame.object.as_deref() {
            Some(object) => self.mapping_ids.get(object).copied().unwrap_or(0),
            None => self.unknown_mapping_id,
        };
        let id = next_id(self.locations.len());
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address: frame.address,
            line: vec![proto::Line {
                function_id,
                line: frame.line.map_or(0, i64::from),
            }],
        });
        self.location_ids.insert(frame, id);
        id
    }

    /// The function of `frame`: one per (name, file), shared by all its lines.
    fn function(&mut self, frame: &'p ProfileFrame) -> u64 {
        let key = (frame.function.as_str(), frame.file.as_deref());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let name = self.strings.intern(&frame.function);
        let filename = frame.file.as_deref().map_or(0, |f| self.strings.intern(f));
        let id = next_id(self.functions.len());
        self.functions.push(proto::Function {
            id,
            name,
            system_name: name,
            filename,
        });
        self.function_ids.insert(key, id);
        id
    }
}

/// Whether `path` names a shared library (`libc.so.6`, `libfoo.so`, `libbar.so_1`): the
/// test pprof uses to tell the main binary from the libraries.
fn looks_like_shared_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.match_indices(".so").any(|(at, so)| {
        let rest = name.get(at + so.len()..).unwrap_or_default();
        let mut rest = rest.chars();
        match rest.next() {
            None => true,
            Some('.' | '_') => rest.next().is_some_and(|c| c.is_ascii_digit()),
            Some(_) => false,
        }
    })
}

/// A mapping whose locations the tracer has already named (see the module comment).
fn symbolized_mapping(id: u64, start: u64, limit: u64, filename: i64) -> proto::Mapping {
    proto::Mapping {
        id,
        memory_start: start,
        memory_limit: limit,
        filename,
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
        ..proto::Mapping::default()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

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

    const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    const BIN: &str = "/srv/app/server";

    /// Two waiting stacks that share their two outer frames and the lock function, plus
    /// `main.worker` reached again at another return address, and a frame of an unknown
    /// object.
    fn two_sample_profile() -> ContentionProfile {
        let lock = frame(
            "pthread_mutex_lock",
            None,
            None,
            Some(LIBC),
            0x7f00_0000_1234,
        );
        let worker_a = frame(
            "main.worker",
            Some("/src/main.c"),
            Some(42),
            Some(BIN),
            0x40_1100,
        );
        let worker_b = frame(
            "main.worker",
            Some("/src/main.c"),
            Some(57),
            Some(BIN),
            0x40_1180,
        );
        let start = frame(
            "start_thread",
            Some("pthread_create.c"),
            Some(447),
            Some(LIBC),
            0x7f00_0000_0100,
        );
        let jit = frame("0x9000dead", None, None, None, 0x9000_dead);
        ContentionProfile {
            start_unix_ns: 1_700_000_000_123_456_789,
            duration_ns: 10_000_000_000,
            samples: vec![
                ProfileSample {
                    frames: vec![lock.clone(), worker_a, start.clone()],
                    lock: "queue.mu".to_owned(),
                    lock_addr: 0x5555_0000_1000,
                    lock_kind: "mutex",
                    pid: 4242,
                    comm: "server".to_owned(),
                    contentions: 7,
                    delay_ns: 3_500_000,
                },
                ProfileSample {
                    frames: vec![lock, worker_b, jit, start],
                    lock: "cache.mu".to_owned(),
                    lock_addr: 0x5555_0000_2000,
                    lock_kind: "rwlock",
                    pid: 4243,
                    comm: "server".to_owned(),
                    contentions: 2,
                    delay_ns: 900,
                },
            ],
            comments: vec!["3 waits had no stack".to_owned()],
        }
    }

    fn decode(bytes: &[u8]) -> proto::Profile {
        proto::Profile::decode(bytes).expect("decodes as profile.proto")
    }

    fn s(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[usize::try_from(i).unwrap()]
    }

    fn location(p: &proto::Profile, id: u64) -> &proto::Location {
        p.location
            .iter()
            .find(|l| l.id == id)
            .expect("location id resolves")
    }

    fn function(p: &proto::Profile, id: u64) -> &proto::Function {
        p.function
            .iter()
            .find(|f| f.id == id)
            .expect("function id resolves")
    }

    /// (function, file, line, mapping file) of each frame of a sample, leaf first.
    fn stack(p: &proto::Profile, sample: &proto::Sample) -> Vec<(String, String, i64, String)> {
        sample
            .location_id
            .iter()
            .map(|&id| {
                let loc = location(p, id);
                assert_eq!(loc.line.len(), 1, "one line per location");
                let f = function(p, loc.line[0].function_id);
                assert_eq!(f.system_name, f.name);
                let mapping = p
                    .mapping
                    .iter()
                    .find(|m| m.id == loc.mapping_id)
                    .expect("every location has a mapping");
                assert!(
                    mapping.memory_limit == 0
                        || (mapping.memory_start..mapping.memory_limit).contains(&loc.address),
                    "address {:#x} outside its mapping",
                    loc.address
                );
                (
                    s(p, f.name).to_owned(),
                    s(p, f.filename).to_owned(),
                    loc.line[0].line,
                    s(p, mapping.filename).to_owned(),
                )
            })
            .collect()
    }

    /// key -> string value, or the number for numeric labels.
    fn labels(p: &proto::Profile, sample: &proto::Sample) -> Vec<(String, String)> {
        sample
            .label
            .iter()
            .map(|l| {
                let value = if l.str == 0 {
                    l.num.to_string()
                } else {
                    s(p, l.str).to_owned()
                };
                (s(p, l.key).to_owned(), value)
            })
            .collect()
    }

    #[test]
    fn header_is_gos_mutex_profile() {
        let profile = two_sample_profile();
        let p = decode(&encode(&profile));
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| (s(&p, t.r#type), s(&p, t.unit)))
            .collect();
        assert_eq!(types, [("contentions", "count"), ("delay", "nanoseconds")]);
        let period = p.period_type.as_ref().expect("period type");
        assert_eq!(
            (s(&p, period.r#type), s(&p, period.unit)),
            ("contentions", "count")
        );
        assert_eq!(p.period, 1);
        assert_eq!(s(&p, p.default_sample_type), "delay");
        assert_eq!(u64::try_from(p.time_nanos).unwrap(), profile.start_unix_ns);
        assert_eq!(
            u64::try_from(p.duration_nanos).unwrap(),
            profile.duration_ns
        );
        let comments: Vec<_> = p.comment.iter().map(|&c| s(&p, c)).collect();
        assert_eq!(comments, ["3 waits had no stack"]);
    }

    #[test]
    fn string_table_starts_empty_and_has_no_duplicates() {
        let p = decode(&encode(&two_sample_profile()));
        assert_eq!(p.string_table[0], "");
        let mut sorted = p.string_table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.string_table.len(), "{:?}", p.string_table);
        // "server" is the comm of both samples, "main.worker" names two locations, libc is
        // a mapping and a function's file: each is in the table once.
        for word in ["server", "main.worker", "/src/main.c", LIBC] {
            assert_eq!(
                p.string_table.iter().filter(|x| *x == word).count(),
                1,
                "{word}"
            );
        }
    }

    #[test]
    fn samples_keep_values_stacks_and_labels() {
        let profile = two_sample_profile();
        let p = decode(&encode(&profile));
        assert_eq!(p.sample.len(), 2);
        for (got, want) in p.sample.iter().zip(&profile.samples) {
            assert_eq!(
                got.value,
                [
                    i64::try_from(want.contentions).unwrap(),
                    i64::try_from(want.delay_ns).unwrap()
                ]
            );
            let want_stack: Vec<_> = want
                .frames
                .iter()
                .map(|f| {
                    (
                        f.function.clone(),
                        f.file.clone().unwrap_or_default(),
                        f.line.map_or(0, i64::from),
                        f.object.clone().unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(stack(&p, got), want_stack, "leaf first, as recorded");
            let addresses: Vec<_> = got
                .location_id
                .iter()
                .map(|&id| location(&p, id).address)
                .collect();
            let want_addresses: Vec<_> = want.frames.iter().map(|f| f.address).collect();
            assert_eq!(addresses, want_addresses);
            let want_labels = vec![
                ("lock".to_owned(), want.lock.clone()),
                ("lock_addr".to_owned(), format!("{:#x}", want.lock_addr)),
                ("lock_type".to_owned(), want.lock_kind.to_owned()),
                ("comm".to_owned(), want.comm.clone()),
                ("pid".to_owned(), want.pid.to_string()),
            ];
            assert_eq!(labels(&p, got), want_labels);
        }
        assert_eq!(s(&p, p.sample[1].label[1].str), "0x555500002000");
    }

    #[test]
    fn shared_frames_share_locations_and_functions() {
        let p = decode(&encode(&two_sample_profile()));
        let (a, b) = (&p.sample[0].location_id, &p.sample[1].location_id);
        assert_eq!(
            a[0], b[0],
            "pthread_mutex_lock at one address: one location"
        );
        assert_eq!(a[2], b[3], "start_thread: one location");
        assert_ne!(a[1], b[1], "main.worker at two addresses: two locations");
        // 3 + 4 frames, 2 repeated: 5 locations; main.worker's two share a function.
        assert_eq!(p.location.len(), 5);
        assert_eq!(p.function.len(), 4);
        assert_eq!(
            location(&p, a[1]).line[0].function_id,
            location(&p, b[1]).line[0].function_id
        );
        let ids: Vec<_> = p.location.iter().map(|l| l.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5], "ids are 1-based and dense");
    }

    #[test]
    fn one_mapping_per_object_and_a_last_catch_all() {
        let p = decode(&encode(&two_sample_profile()));
        let files: Vec<_> = p.mapping.iter().map(|m| s(&p, m.filename)).collect();
        assert_eq!(files, [BIN, LIBC, ""], "main binary first, catch-all last");
        assert!(p.mapping.iter().all(|m| m.has_functions
            && m.has_filenames
            && m.has_line_numbers
            && m.has_inline_frames));
        // libc's span covers both its addresses.
        assert_eq!(
            (p.mapping[1].memory_start, p.mapping[1].memory_limit),
            (0x7f00_0000_0100, 0x7f00_0000_1235)
        );
        assert_eq!(
            (p.mapping[2].memory_start, p.mapping[2].memory_limit),
            (0, 0)
        );
        let jit = location(&p, p.sample[1].location_id[2]);
        assert_eq!(jit.mapping_id, p.mapping[2].id);
    }

    #[test]
    fn no_catch_all_when_every_object_is_known() {
        let mut profile = two_sample_profile();
        profile.samples[1].frames.remove(2);
        let p = decode(&encode(&profile));
        assert_eq!(p.mapping.len(), 2);
        assert!(p.location.iter().all(|l| l.mapping_id != 0));
    }

    #[test]
    fn shared_libraries_are_told_from_programs() {
        for lib in [
            LIBC,
            "/lib64/ld-linux-x86-64.so.2",
            "libfoo.so",
            "/opt/libbar.so_1",
            "libpthread-2.31.so",
        ] {
            assert!(looks_like_shared_library(lib), "{lib}");
        }
        for program in [
            BIN,
            "/usr/bin/python3.11",
            "/srv/so.many/app",
            "/opt/x.solver",
            "lib.so.x",
        ] {
            assert!(!looks_like_shared_library(program), "{program}");
        }
    }

    #[test]
    fn main_binary_stays_first_among_libraries_only() {
        let mut profile = two_sample_profile();
        for frame in profile.samples.iter_mut().flat_map(|s| &mut s.frames) {
            if frame.object.as_deref() == Some(BIN) {
                frame.object = Some("/usr/lib/libapp.so".to_owned());
            }
        }
        let p = decode(&encode(&profile));
        let files: Vec<_> = p.mapping.iter().map(|m| s(&p, m.filename)).collect();
        assert_eq!(
            files,
            [LIBC, "/usr/lib/libapp.so", ""],
            "order of appearance"
        );
    }

    #[test]
    fn values_beyond_int64_saturate() {
        let mut profile = two_sample_profile();
        profile.samples[0].delay_ns = u64::MAX;
        profile.start_unix_ns = u64::MAX;
        let p = decode(&encode(&profile));
        assert_eq!(p.sample[0].value[1], i64::MAX);
        assert_eq!(p.time_nanos, i64::MAX);
    }

    #[test]
    fn empty_profile_encodes_and_decodes() {
        let profile = ContentionProfile::default();
        let p = decode(&encode(&profile));
        assert!(
            p.sample.is_empty()
                && p.location.is_empty()
                && p.function.is_empty()
                && p.mapping.is_empty()
        );
        assert_eq!(
            p.string_table,
            ["", "contentions", "count", "delay", "nanoseconds"]
        );
        assert_eq!(p.sample_type.len(), 2);
        assert_eq!(s(&p, p.default_sample_type), "delay");
    }

    #[test]
    fn gzipped_is_the_raw_encoding_compressed() {
        let profile = two_sample_profile();
        let gz = encode_gzipped(&profile).unwrap();
        assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip magic");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, encode(&profile));
    }
}
