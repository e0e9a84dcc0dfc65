//! `tracer record` and `tracer report`: a live trace's findings and summary kept in a
//! file (`docs/recording-format.md`), and reported from it later, on any machine, through
//! the same sinks as a live run.
//!
//! What is recorded is what the sinks received: every finding, named as the live run
//! named it (threads, locks, stack frames with `file:line`), the moment it was reported,
//! then the summary. So a report needs neither the target, its files nor the kernel, and
//! gives the same output as the live run (`--format text|json`). The recording is written
//! chunk by chunk as the trace goes (`format`), so a recorder killed mid-trace leaves the
//! findings it had reported; `report` gives those and says the file was cut short.
//!
//! Not recorded (yet): the ring-buffer records themselves and the target's answers, which
//! a re-analysis with other settings would need.

pub mod codec;
pub mod format;
pub mod replay;
pub mod tape;

use std::{
    fs::File,
    io::{self, BufWriter},
    path::Path,
};

use thiserror::Error;

pub use self::format::{Cut, FORMAT_VERSION, FormatError, Header, Recording};
use self::{format::RecordingWriter, tape::TapeChunk};
use crate::{
    model::{Finding, Summary, graph::GraphSnapshot},
    sinks::Sink,
    target::{
        TargetProcess,
        facts::{kernel_release, process_started_at_s},
    },
};

/// The header of a recording of `target` starting now: the tracer's version and what
/// identifies the target (name, executable and its build id, start time, kernel).
#[must_use]
pub fn header_of(target: &dyn TargetProcess, holds: bool) -> Header {
    let pid = target.pid();
    let executable = target.executable().ok();
    let build_id = executable.as_ref().and_then(|exe| build_id_hex(&exe.data));
    Header {
        tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
        recorded_at_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        pid,
        comm: target.thread_name(pid).unwrap_or_default(),
        exe: executable.and_then(|exe| exe.path),
        build_id,
        started_at_s: process_started_at_s(pid),
        kernel: kernel_release(),
        holds,
    }
}

/// The GNU build id of the ELF file `data`, hex; `None` when it has none.
fn build_id_hex(data: &[u8]) -> Option<String> {
    use std::fmt::Write as _;

    use object::Object as _;
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    let mut hex = String::with_capacity(id.len() * 2);
    for byte in id {
        let _ = write!(hex, "{byte:02x}");
    }
    Some(hex)
}

/// The sink of `tracer record`: writes each finding and the summary to the recording as
/// they come.
pub struct RecordingSink {
    writer: RecordingWriter<BufWriter<File>>,
    findings: usize,
}

impl RecordingSink {
    /// Creates (or replaces) the recording at `path`, starting with `header`.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(path: &Path, header: &Header) -> io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        Ok(Self {
            writer: RecordingWriter::start(file, header)?,
            findings: 0,
        })
    }

    /// Findings recorded so far.
    #[must_use]
    pub fn findings(&self) -> usize {
        self.findings
    }
}

impl Sink for RecordingSink {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.findings += 1;
        self.writer.finding(finding)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.writer.summary(summary)
    }

    fn wants_graphs(&self) -> bool {
        true
    }

    fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        self.writer.graph(graph)
    }

    fn wants_tape(&self) -> bool {
        true
    }

    fn tape(&mut self, chunk: TapeChunk<'_>) -> io::Result<()> {
        match chunk {
            TapeChunk::Setup(setup) => self.writer.setup(setup),
            TapeChunk::Items { count, encoded } => self.writer.tape_encoded(count, encoded),
            TapeChunk::Names(names) => self.writer.names(names),
            TapeChunk::Profiles(profiles) => self.writer.profiles(profiles),
        }
    }
}

/// Two sinks given the same findings and summary: `tracer record --print` records and
/// prints.
pub struct Tee<'a, 'b> {
    pub first: &'a mut dyn Sink,
    pub second: Option<&'a mut (dyn Sink + 'b)>,
}

impl Sink for Tee<'_, '_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.first.finding(finding)?;
        match self.second.as_deref_mut() {
            Some(second) => second.finding(finding),
            None => Ok(()),
        }
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.first.summary(summary)?;
        match self.second.as_deref_mut() {
            Some(second) => second.summary(summary),
            None => Ok(()),
        }
    }

    fn wants_graphs(&self) -> bool {
        self.first.wants_graphs() || self.second.as_deref().is_some_and(Sink::wants_graphs)
    }

    fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        self.first.graph(graph)?;
        match self.second.as_deref_mut() {
            Some(second) => second.graph(graph),
            None => Ok(()),
        }
    }

    fn wants_tape(&self) -> bool {
        self.first.wants_tape() || self.second.as_deref().is_some_and(Sink::wants_tape)
    }

    fn tape(&mut self, chunk: TapeChunk<'_>) -> io::Result<()> {
        self.first.tape(chunk)?;
        match self.second.as_deref_mut() {
            Some(second) => second.tape(chunk),
            None => Ok(()),
        }
    }
}

/// Why `tracer report` cannot report a file. The messages name the file and stand alone
/// (no cause follows them).
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a tracer recording")]
    NotARecording { path: String },
    #[error("{path}: recording version {found} is newer than this tracer's {supported}")]
    NewerVersion {
        path: String,
        found: u16,
        supported: u16,
    },
    #[error("cannot write the report")]
    Output(#[source] io::Error),
}

/// What `tracer report` made of a recording besides what went to the sink.
#[derive(Debug)]
pub struct Reported {
    /// For the reader: who recorded what, whether the summary was analysed again from
    /// the tape, whether the recording was cut short.
    pub notes: Vec<String>,
    /// The whole run's contention profiles, when the tape was played.
    pub profiles: Option<crate::exports::ExportProfiles>,
    /// Whether acquisitions were traced (a holder profile is among the profiles).
    pub holds: bool,
}

/// Reports the recording at `path` to `sink`: its findings, then its summary. When the
/// recording has an analysis tape of a native target, the summary's lock table, totals
/// and the profiles come from playing the tape again (`replay`); a Go target's, or an
/// older recording's, summary is the one recorded.
///
/// # Errors
/// When the file cannot be read, is no recording, is of a newer format, or the report
/// cannot be written.
pub fn report(path: &Path, sink: &mut dyn Sink) -> Result<Reported, ReportError> {
    let recording = open(path)?;
    report_recording(path, &recording, sink)
}

/// Reads the recording at `path`, as far as it is intact.
///
/// # Errors
/// When the file cannot be read, is no recording, or is of a newer format.
pub fn open(path: &Path) -> Result<Recording, ReportError> {
    let shown = path.display().to_string();
    let bytes = read_recording_file(path).map_err(|source| ReportError::Read {
        path: shown.clone(),
        source,
    })?;
    format::read(&bytes).map_err(|err| match err {
        FormatError::NotARecording => ReportError::NotARecording { path: shown },
        FormatError::NewerVersion { found, supported } => ReportError::NewerVersion {
            path: shown,
            found,
            supported,
        },
    })
}

/// [`report`] of a recording read already from `path`: each finding followed by the
/// graphs the live run drew right after it (to a sink that wants graphs).
///
/// # Errors
/// When the report cannot be written.
pub fn report_recording(
    path: &Path,
    recording: &Recording,
    sink: &mut dyn Sink,
) -> Result<Reported, ReportError> {
    let shown = path.display().to_string();
    let graphs_after = |before: usize| {
        recording
            .graphs
            .iter()
            .filter(move |(b, _)| *b == before)
            .map(|(_, g)| g)
    };
    let wants_graphs = sink.wants_graphs();
    for (i, finding) in recording.findings.iter().enumerate() {
        if i == 0 && wants_graphs {
            for graph in graphs_after(0) {
                sink.graph(graph).map_err(ReportError::Output)?;
            }
        }
        sink.finding(finding).map_err(ReportError::Output)?;
        if wants_graphs {
            for graph in graphs_after(i + 1) {
                sink.graph(graph).map_err(ReportError::Output)?;
            }
        }
    }
    if wants_graphs && recording.findings.is_empty() {
        for graph in graphs_after(0) {
            sink.graph(graph).map_err(ReportError::Output)?;
        }
    }
    let mut notes = report_notes(&shown, recording);
    let header = recording.header.clone().unwrap_or_default();
    let replayed = recording
        .setup
        .as_ref()
        .filter(|setup| !setup.go)
        .map(|setup| {
            let start_unix_ns = header.recorded_at_s.saturating_mul(1_000_000_000);
            replay::replay(
                setup,
                &recording.tape,
                &recording.names,
                (header.pid, &header.comm, start_unix_ns),
            )
        });
    if recording.setup.as_ref().is_some_and(|setup| setup.go) {
        notes.push(format!(
            "the target was a Go program: its goroutines' lock waits were modelled from its live memory, which the tape does not hold, so the summary {}",
            if recording.profiles.is_some() {
                "and the profiles are the ones the live run recorded at its end"
            } else {
                "is the recorded one, and no profile was recorded (the recording stops before the end of the trace)"
            }
        ));
    }
    let summary = match (&replayed, recording.summary.clone()) {
        (Some(replayed), recorded) => {
            notes.push(format!(
                "summary and profiles analysed again from the recording's tape ({} records){}",
                recording
                    .tape
                    .iter()
                    .filter(|item| matches!(item, tape::TapeItem::Record(_)))
                    .count(),
                if replayed.complete {
                    ""
                } else {
                    ", which stops before the end of the trace: its waits still open count up to its last record"
                }
            ));
            Some(replayed_summary(
                replayed,
                recorded,
                &header,
                &recording.findings,
            ))
        }
        (None, recorded) => recorded,
    };
    if let Some(summary) = &summary {
        sink.summary(summary).map_err(ReportError::Output)?;
    }
    Ok(Reported {
        notes,
        holds: recording
            .setup
            .as_ref()
            .map_or(header.holds, |s| s.lock_uprobes),
        profiles: replayed
            .map(|r| r.profiles)
            .or_else(|| recording.profiles.clone()),
    })
}

/// The summary of a played tape: the lock table and the totals from the replay; the
/// rest (notes, findings counts, namespace PID) from the recorded summary, or, for a
/// recording cut short, from its header and findings.
fn replayed_summary(
    replayed: &replay::Replayed,
    recorded: Option<Summary>,
    header: &Header,
    findings: &[Finding],
) -> Summary {
    let mut summary = recorded.unwrap_or_else(|| Summary {
        pid: header.pid,
        ns_pid: None,
        duration_ns: replayed.duration_ns,
        events: 0,
        dropped: 0,
        futex_wakes: 0,
        futex_waits: 0,
        brief_lock_waits: 0,
        deadlocks: findings
            .iter()
            .filter(|f| matches!(f, Finding::Deadlock(_)))
            .count(),
        timed_cycles: 0,
        lock_order_inversions: findings
            .iter()
            .filter(|f| matches!(f, Finding::LockOrderInversion(i) if !i.harmless))
            .count(),
        locks: Vec::new(),
        other_locks: None,
        filtered_out: None,
        notes: vec![
            "the recording was cut short: this summary was analysed from its tape up to the cut, and the live run's notes were not recorded".to_owned(),
        ],
    });
    summary.locks.clone_from(&replayed.locks);
    summary.other_locks.clone_from(&replayed.other_locks);
    summary.events = replayed.events;
    summary.brief_lock_waits = replayed.brief_lock_waits;
    if let Some(counters) = replayed.counters {
        summary.dropped = counters.dropped;
        summary.futex_wakes = counters.futex_wakes;
        summary.futex_waits = counters.futex_waits;
    }
    if replayed.decode_errors > 0 {
        summary.notes.push(format!(
            "{} recorded record(s) did not decode and were left out of the replay",
            replayed.decode_errors
        ));
    }
    summary
}

/// The bytes of the file at `path`, all of them when it starts like a recording, else
/// only its first bytes (enough to refuse it: a foreign file may be huge).
fn read_recording_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(format::MAGIC.len() as u64)
        .read_to_end(&mut bytes)?;
    if bytes == format::MAGIC {
        file.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// What the reader is told besides the report: whose trace it is, and whether (and
/// where) the recording stops short of its summary.
fn report_notes(path: &str, recording: &Recording) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(h) = &recording.header {
        let exe = h.exe.as_deref().unwrap_or("executable unknown");
        let build_id = h
            .build_id
            .as_deref()
            .map(|id| format!(", build id {id}"))
            .unwrap_or_default();
        notes.push(format!(
            "recording of process {} ({}, {exe}{build_id}) on Linux {}, by tracer {} (format {})",
            h.pid, h.comm, h.kernel, h.tracer_version, recording.version
        ));
    }
    let found = recording.findings.len();
    match &recording.cut {
        None => {}
        Some(Cut::Truncated { at }) => notes.push(format!(
            "{path} is truncated at byte {at} (the recorder stopped while writing it): {found} finding(s) recorded before that are reported; the summary was not recorded{}",
            if recording.setup.is_some() && recording.summary.is_none() {
                " (the one reported is analysed from the tape up to the cut)"
            } else {
                ""
            }
        )),
        Some(Cut::Damaged { at, why }) => notes.push(format!(
            "{path} is damaged at byte {at} ({why}): {found} finding(s) recorded before that are reported; nothing after it is"
        )),
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::fixtures, sinks::JsonSink};

    /// Guards `tracer report` end to end on a file: a complete recording gives the same
    /// JSON lines the recording sink was given, and a truncated one the findings before
    /// the cut plus a note saying so.
    #[test]
    fn report_gives_what_the_recorder_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.rec");
        let header = Header {
            pid: 77,
            comm: "abba".to_owned(),
            ..Header::default()
        };
        let finding = Finding::Deadlock(fixtures::deadlock());
        let summary = fixtures::summary();
        let mut live = Vec::new();
        {
            let mut sink = RecordingSink::create(&path, &header).unwrap();
            let mut json = JsonSink::new(&mut live);
            for s in [&mut sink as &mut dyn Sink, &mut json] {
                s.finding(&finding).unwrap();
                s.summary(&summary).unwrap();
            }
            assert_eq!(sink.findings(), 1);
        }
        let mut replayed = Vec::new();
        let notes = report(&path, &mut JsonSink::new(&mut replayed))
            .unwrap()
            .notes;
        assert_eq!(
            String::from_utf8(replayed).unwrap(),
            String::from_utf8(live.clone()).unwrap()
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("recording of process 77 (abba,"),
            "{notes:?}"
        );

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let mut replayed = Vec::new();
        let notes = report(&path, &mut JsonSink::new(&mut replayed))
            .unwrap()
            .notes;
        let first_line = String::from_utf8(live)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            String::from_utf8(replayed).unwrap(),
            format!("{first_line}\n")
        );
        assert!(
            notes[1].contains("is truncated at byte") && notes[1].contains("1 finding(s)"),
            "{notes:?}"
        );

        std::fs::write(&path, b"").unwrap();
        let err = report(&path, &mut JsonSink::new(&mut Vec::new())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a tracer recording", path.display())
        );
    }
}
