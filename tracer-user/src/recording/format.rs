//! The recording's framing (see `docs/recording-format.md`): a magic and a version, then
//! chunks, each `kind: u8`, `len: u32`, `crc32: u32` (of the kind byte and the payload),
//! payload. Written chunk by chunk, each with one `write`, so a recorder killed mid-write
//! leaves a file whose complete chunks all read back. Pure code over byte slices and
//! `Write`: no files here.

use std::io::{self, Write};

use thiserror::Error;

use super::{
    codec::{self, DecodeError, Input, Wire},
    tape::{TapeItem, TapeNames, TapeSetup},
};
use crate::{
    exports::ExportProfiles,
    model::{Finding, Summary, graph::GraphSnapshot},
};

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"TRACERRC";
/// The version this tracer writes, and the newest it reads. Raised whenever an encoding
/// changes (a field added to a model value, a new chunk kind older tracers must not skip).
pub const FORMAT_VERSION: u16 = 2;
/// Magic and version.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 2;
/// Kind, length and CRC before each payload.
pub const CHUNK_HEAD_LEN: usize = 1 + 4 + 4;
/// Longest payload read back: a longer length is damage, not data.
const MAX_PAYLOAD: usize = 64 << 20;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    /// The [`Header`]: always the first chunk.
    Header = 1,
    /// A [`Finding`], as the live run reported it.
    Finding = 2,
    /// The [`Summary`] at the trace's end: the last chunk of a complete recording.
    Summary = 3,
    /// The analysis's [`TapeSetup`] (version 2): right after the header, when the
    /// recording has a tape.
    Setup = 4,
    /// A run of [`TapeItem`]s (version 2), in the order the session applied them.
    Tape = 5,
    /// [`TapeNames`] given since the last such chunk (version 2).
    Names = 6,
    /// The live run's named [`ExportProfiles`] (version 2), before the summary: a Go
    /// target's.
    Profiles = 7,
    /// A [`GraphSnapshot`] the live run drew (version 2): the wait-for graph right after
    /// a finding, and the graphs at the end.
    Graph = 8,
}

impl ChunkKind {
    fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Header),
            2 => Some(Self::Finding),
            3 => Some(Self::Summary),
            4 => Some(Self::Setup),
            5 => Some(Self::Tape),
            6 => Some(Self::Names),
            7 => Some(Self::Profiles),
            8 => Some(Self::Graph),
            _ => None,
        }
    }
}

/// Who recorded what: the first chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The recording tracer's version (`CARGO_PKG_VERSION`).
    pub tracer_version: String,
    /// When the recording started, seconds since the Unix epoch.
    pub recorded_at_s: u64,
    /// The traced process.
    pub pid: u32,
    /// Its name (`comm`).
    pub comm: String,
    /// Its executable's path, as `/proc/PID/exe` names it.
    pub exe: Option<String>,
    /// The executable's GNU build id, hex.
    pub build_id: Option<String>,
    /// When the process started, seconds since the Unix epoch.
    pub started_at_s: Option<u64>,
    /// The kernel release it ran on (`uname -r`).
    pub kernel: String,
    /// Whether the trace took hold times (`--holds`).
    pub holds: bool,
}

impl Wire for Header {
    fn put(&self, out: &mut Vec<u8>) {
        self.tracer_version.put(out);
        self.recorded_at_s.put(out);
        self.pid.put(out);
        self.comm.put(out);
        self.exe.put(out);
        self.build_id.put(out);
        self.started_at_s.put(out);
        self.kernel.put(out);
        self.holds.put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            tracer_version: Wire::get(input)?,
            recorded_at_s: Wire::get(input)?,
            pid: Wire::get(input)?,
            comm: Wire::get(input)?,
            exe: Wire::get(input)?,
            build_id: Wire::get(input)?,
            started_at_s: Wire::get(input)?,
            kernel: Wire::get(input)?,
            holds: Wire::get(input)?,
        })
    }
}

/// Writes a recording to `out`, one chunk per call, flushed.
pub struct RecordingWriter<W: Write> {
    out: W,
}

impl<W: Write> RecordingWriter<W> {
    /// Starts a recording: the magic, the version and `header`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn start(mut out: W, header: &Header) -> io::Result<Self> {
        let mut preamble = MAGIC.to_vec();
        preamble.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        preamble.extend_from_slice(&chunk(ChunkKind::Header, &codec::encode(header)));
        out.write_all(&preamble)?;
        out.flush()?;
        Ok(Self { out })
    }

    /// Appends `finding`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.write(ChunkKind::Finding, &codec::encode(finding))
    }

    /// Appends the summary: the recording is complete.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.write(ChunkKind::Summary, &codec::encode(summary))
    }

    /// Appends the analysis's setup: the recording has a tape.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn setup(&mut self, setup: &TapeSetup) -> io::Result<()> {
        self.write(ChunkKind::Setup, &codec::encode(setup))
    }

    /// Appends a run of `count` tape items, encoded one after the other in `encoded`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn tape_encoded(&mut self, count: u32, encoded: &[u8]) -> io::Result<()> {
        let mut payload = Vec::with_capacity(4 + encoded.len());
        payload.extend_from_slice(&count.to_le_bytes());
        payload.extend_from_slice(encoded);
        self.write(ChunkKind::Tape, &deflate(&payload)?)
    }

    /// Appends the live run's named profiles.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn profiles(&mut self, profiles: &ExportProfiles) -> io::Result<()> {
        self.write(ChunkKind::Profiles, &deflate(&codec::encode(profiles))?)
    }

    /// Appends a graph the live run drew.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        self.write(ChunkKind::Graph, &deflate(&codec::encode(graph))?)
    }

    /// Appends names given since the last names.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn names(&mut self, names: &TapeNames) -> io::Result<()> {
        self.write(ChunkKind::Names, &codec::encode(names))
    }

    fn write(&mut self, kind: ChunkKind, payload: &[u8]) -> io::Result<()> {
        self.out.write_all(&chunk(kind, payload))?;
        self.out.flush()
    }
}

/// A tape chunk's payload, compressed (DEFLATE, zlib framing): the records' stack
/// windows are mostly zero words, and a busy target sends ~100 000 records a second.
fn deflate(payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(payload)?;
    encoder.finish()
}

/// A tape chunk's payload, decompressed; at most [`MAX_PAYLOAD`] bytes of it.
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, DecodeError> {
    use std::io::Read as _;
    let mut payload = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|_| DecodeError::Compressed)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::Compressed);
    }
    Ok(payload)
}

/// One framed chunk.
fn chunk(kind: ChunkKind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHUNK_HEAD_LEN + payload.len());
    bytes.push(kind as u8);
    bytes.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    bytes.extend_from_slice(&crc(kind as u8, payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn crc(kind: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    hasher.finalize()
}

/// A file that cannot be reported at all.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    /// Empty, or another kind of file.
    #[error("not a tracer recording")]
    NotARecording,
    #[error("recording version {found} is newer than this tracer's {supported}")]
    NewerVersion { found: u16, supported: u16 },
}

/// Why a recording ends before its summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The file ends inside a chunk, or before the summary: the recorder stopped
    /// mid-write (killed, or a full disk).
    Truncated { at: usize },
    /// A chunk at `at` does not check (CRC, length, kind, or its payload does not
    /// decode): nothing from there on is believed.
    Damaged { at: usize, why: String },
}

/// What a recording holds, as far as it is intact.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub version: u16,
    /// `None` only when the file was cut before its header.
    pub header: Option<Header>,
    pub findings: Vec<Finding>,
    pub summary: Option<Summary>,
    /// The analysis's setup, when the recording has a tape (version 2).
    pub setup: Option<TapeSetup>,
    /// The tape's items, in order, as far as they are intact.
    pub tape: Vec<TapeItem>,
    /// The names of all the names chunks.
    pub names: TapeNames,
    /// The live run's named profiles, when recorded (a Go target's).
    pub profiles: Option<ExportProfiles>,
    /// The graphs the live run drew, each with how many findings came before it.
    pub graphs: Vec<(usize, GraphSnapshot)>,
    /// Set when the recording does not end with its summary.
    pub cut: Option<Cut>,
}

/// Reads the recording in `bytes`: every intact chunk, and where and why it stops short
/// of its summary if it does.
///
/// # Errors
/// When `bytes` are no recording (wrong magic, empty) or of a newer version.
pub fn read(bytes: &[u8]) -> Result<Recording, FormatError> {
    let magic = bytes.get(..MAGIC.len());
    if magic != Some(&MAGIC[..]) {
        // A file cut inside the magic itself is indistinguishable from a foreign one,
        // except for an empty prefix of the magic, which only a recorder can leave.
        return Err(FormatError::NotARecording);
    }
    let mut recording = Recording {
        version: FORMAT_VERSION,
        header: None,
        findings: Vec::new(),
        summary: None,
        setup: None,
        tape: Vec::new(),
        names: TapeNames::default(),
        profiles: None,
        graphs: Vec::new(),
        cut: None,
    };
    let Some(version) = bytes.get(MAGIC.len()..PREAMBLE_LEN) else {
        recording.cut = Some(Cut::Truncated { at: bytes.len() });
        return Ok(recording);
    };
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version > FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(FormatError::NotARecording);
    }
    recording.version = version;
    let mut at = PREAMBLE_LEN;
    loop {
        if at == bytes.len() {
            recording.cut = Some(Cut::Truncated { at });
            return Ok(recording);
        }
        let chunk = match next_chunk(bytes, at) {
            Ok(chunk) => chunk,
            Err(cut) => {
                recording.cut = Some(cut);
                return Ok(recording);
            }
        };
        let damaged = |why: String| Cut::Damaged { at, why };
        let Some(stored) = store(&mut recording, &chunk) else {
            let kind = chunk.kind;
            recording.cut = Some(damaged(format!("a {kind:?} chunk out of place")));
            return Ok(recording);
        };
        if let Err(why) = stored {
            recording.cut = Some(damaged(format!("{:?} chunk: {why}", chunk.kind)));
            return Ok(recording);
        }
        at = chunk.end;
        if recording.summary.is_some() {
            // The summary ends a recording; anything after it was not written by a
            // recorder.
            if at != bytes.len() {
                recording.cut = Some(Cut::Damaged {
                    at,
                    why: "bytes after the summary".to_owned(),
                });
            }
            return Ok(recording);
        }
    }
}

/// Adds `chunk` to `recording`; `None` when such a chunk cannot come here (a second
/// header, anything before the header, tape before its setup).
fn store(recording: &mut Recording, chunk: &Chunk<'_>) -> Option<Result<(), DecodeError>> {
    let first = recording.header.is_none();
    let payload = chunk.payload;
    Some(match (chunk.kind, first) {
        (ChunkKind::Header, true) => codec::decode(payload).map(|h| {
            recording.header = Some(h);
        }),
        (ChunkKind::Finding, false) => codec::decode(payload).map(|f| {
            recording.findings.push(f);
        }),
        (ChunkKind::Summary, false) => codec::decode(payload).map(|s| {
            recording.summary = Some(s);
        }),
        (ChunkKind::Setup, false) if recording.setup.is_none() => codec::decode(payload).map(|s| {
            recording.setup = Some(s);
        }),
        (ChunkKind::Tape, false) if recording.setup.is_some() => inflate(payload)
            .and_then(|payload| codec::decode::<Vec<TapeItem>>(&payload))
            .map(|items| {
                recording.tape.extend(items);
            }),
        (ChunkKind::Profiles, false) if recording.profiles.is_none() => inflate(payload)
            .and_then(|payload| codec::decode::<ExportProfiles>(&payload))
            .map(|profiles| {
                recording.profiles = Some(profiles);
            }),
        (ChunkKind::Graph, false) => inflate(payload)
            .and_then(|payload| codec::decode::<GraphSnapshot>(&payload))
            .map(|graph| {
                recording.graphs.push((recording.findings.len(), graph));
            }),
        (ChunkKind::Names, false) if recording.setup.is_some() => {
            codec::decode::<TapeNames>(payload).map(|names| {
                recording.names.locks.extend(names.locks);
                recording.names.stacks.extend(names.stacks);
            })
        }
        _ => return None,
    })
}

struct Chunk<'a> {
    kind: ChunkKind,
    payload: &'a [u8],
    end: usize,
}

/// The chunk at `at` of `bytes`, checked.
fn next_chunk(bytes: &[u8], at: usize) -> Result<Chunk<'_>, Cut> {
    let Some(head) = bytes.get(at..at + CHUNK_HEAD_LEN) else {
        return Err(Cut::Truncated { at });
    };
    let damaged = |why: &str| Cut::Damaged {
        at,
        why: why.to_owned(),
    };
    let kind_byte = head[0];
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let want_crc = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    let Some(kind) = ChunkKind::from_u8(kind_byte) else {
        return Err(damaged("unknown chunk kind"));
    };
    if len > MAX_PAYLOAD {
        return Err(damaged("chunk length out of range"));
    }
    let start = at + CHUNK_HEAD_LEN;
    let Some(payload) = bytes.get(start..start + len) else {
        return Err(Cut::Truncated { at });
    };
    if crc(kind_byte, payload) != want_crc {
        return Err(damaged("CRC mismatch"));
    }
    Ok(Chunk {
        kind,
        payload,
        end: start + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn header() -> Header {
        Header {
            tracer_version: "0.1.0".to_owned(),
            recorded_at_s: 1_700_000_000,
            pid: 1234,
            comm: "abba".to_owned(),
            exe: Some("/tmp/abba".to_owned()),
            build_id: Some("ab12".to_owned()),
            started_at_s: Some(1_699_999_999),
            kernel: "6.1.0".to_owned(),
            holds: true,
        }
    }

    /// A complete recording: the header, two findings and the summary, with the offsets
    /// where each chunk ends.
    fn complete() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut writer = RecordingWriter::start(&mut bytes, &header()).unwrap();
        writer
            .finding(&Finding::Deadlock(fixtures::deadlock()))
            .unwrap();
        ends.push(writer.out.len());
        writer
            .finding(&Finding::LockOrderInversion(fixtures::inversion()))
            .unwrap();
        ends.push(writer.out.len());
        writer.summary(&fixtures::summary()).unwrap();
        ends.push(writer.out.len());
        (bytes, ends)
    }

    /// Guards the report's input: a complete recording reads back whole and equal.
    #[test]
    fn complete_recording_round_trips() {
        let (bytes, _) = complete();
        let recording = read(&bytes).unwrap();
        assert_eq!(recording.header, Some(header()));
        assert_eq!(recording.findings.len(), 2);
        assert_eq!(
            recording.findings[0],
            Finding::Deadlock(fixtures::deadlock())
        );
        assert_eq!(recording.summary, Some(fixtures::summary()));
        assert_eq!(recording.cut, None);
    }

    /// Guards "a killed recorder leaves a valid prefix": cut at every byte, the
    /// recording gives exactly the chunks completed before the cut, and says it was
    /// truncated (never an error, never a damaged chunk).
    #[test]
    fn every_truncation_keeps_the_complete_chunks() {
        let (bytes, ends) = complete();
        for cut in MAGIC.len()..bytes.len() {
            let recording = read(&bytes[..cut]).unwrap();
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(recording.findings.len(), whole.min(2), "cut at {cut}");
            assert_eq!(recording.summary, None, "cut at {cut}");
            assert!(
                matches!(recording.cut, Some(Cut::Truncated { at }) if at <= cut),
                "cut at {cut}: {:?}",
                recording.cut
            );
        }
    }

    /// Guards the one-line errors: empty, short and foreign files are not recordings, and
    /// a newer version is refused by number; a flipped payload byte is damage, reported
    /// with the chunks before it.
    #[test]
    fn foreign_newer_and_damaged_files() {
        assert_eq!(read(b""), Err(FormatError::NotARecording));
        assert_eq!(read(b"TRACE"), Err(FormatError::NotARecording));
        assert_eq!(
            read(b"\x7fELF\x02\x01\x01\0\0\0"),
            Err(FormatError::NotARecording)
        );
        let (mut bytes, ends) = complete();
        let mut newer = bytes.clone();
        newer[MAGIC.len()..PREAMBLE_LEN].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(
            read(&newer),
            Err(FormatError::NewerVersion {
                found: FORMAT_VERSION + 1,
                supported: FORMAT_VERSION
            })
        );
        // A byte inside the second finding's payload.
        bytes[ends[0] + CHUNK_HEAD_LEN + 3] ^= 0x40;
        let recording = read(&bytes).unwrap();
        assert_eq!(recording.findings.len(), 1);
        assert_eq!(recording.summary, None);
        assert!(
            matches!(&recording.cut, Some(Cut::Damaged { at, why }) if *at == ends[0] && why == "CRC mismatch"),
            "{:?}",
            recording.cut
        );
    }
}
