//! Exports of a run's contention profile (`--pprof`, `--folded`, `--flamegraph`): files
//! that `go tool pprof`, flame-graph tools and a browser open.
//!
//! The input is an assembled [`ContentionProfile`] (every frame named), from a live
//! attach (a profile window open from attach to the end) or from anything else that has
//! one (`tracer report`): [`write_exports`] takes the profiles and the paths and writes
//! the files, nothing else.
//!
//! - pprof: [`crate::pprof::encode_gzipped`], Go's mutex-profile sample types over the
//!   waiting stacks, lock names as labels. With `--holds` a second profile charges each
//!   wait to the stack that had taken the lock it waited for (what Go's mutex profile
//!   shows), written to [`holders_path`] of the `--pprof` file unless a path is given.
//! - folded: [`render_folded`], one line per (lock, stack): the lock's label as the root
//!   frame, then the stack outermost first, then the total wait in nanoseconds.
//! - flame graph: [`render_flamegraph`], the folded lines drawn as an SVG by `inferno`.
//!
//! Rendering is pure; only [`write_exports`] touches the file system.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use crate::{
    model::profile::ContentionProfile,
    pprof::{self, PprofError},
};

/// Where each export goes; `None`: not asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportPaths {
    /// The waiting stacks' pprof profile (`--pprof`).
    pub pprof: Option<PathBuf>,
    /// The holders' pprof profile (with `--holds`).
    pub pprof_holders: Option<PathBuf>,
    /// Folded stacks (`--folded`).
    pub folded: Option<PathBuf>,
    /// The SVG flame graph (`--flamegraph`).
    pub flamegraph: Option<PathBuf>,
}

impl ExportPaths {
    /// The exports of a run from its flags: `--pprof`, `--pprof-holders`, `--folded`,
    /// `--flamegraph`. With `holds` (the run knows who held each lock), a `--pprof` file
    /// gets a holders' profile next to it ([`holders_path`]) unless `--pprof-holders`
    /// names one.
    ///
    /// # Errors
    ///
    /// `--pprof-holders` without `holds`; a file whose directory does not exist (found
    /// before tracing, not after).
    pub fn from_flags(
        pprof: Option<PathBuf>,
        pprof_holders: Option<PathBuf>,
        folded: Option<PathBuf>,
        flamegraph: Option<PathBuf>,
        holds: bool,
    ) -> Result<Self, ExportError> {
        if let (Some(path), false) = (&pprof_holders, holds) {
            return Err(ExportError::NoHolders { path: path.clone() });
        }
        let pprof_holders =
            pprof_holders.or_else(|| pprof.as_deref().filter(|_| holds).map(holders_path));
        let paths = Self {
            pprof,
            pprof_holders,
            folded,
            flamegraph,
        };
        for path in paths.paths() {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(ExportError::NoDirectory {
                    path: path.to_owned(),
                });
            }
        }
        Ok(paths)
    }

    /// Whether no export was asked for.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pprof.is_none()
            && self.pprof_holders.is_none()
            && self.folded.is_none()
            && self.flamegraph.is_none()
    }

    /// Every path asked for.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [
            &self.pprof,
            &self.pprof_holders,
            &self.folded,
            &self.flamegraph,
        ]
        .into_iter()
        .filter_map(|p| p.as_deref())
    }
}

/// The profiles of a run to export.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportProfiles {
    /// Lock waits by waiting stack and lock.
    pub waiters: ContentionProfile,
    /// Lock waits by the stack that had taken the lock waited for, and lock (`--holds`).
    pub holders: Option<ContentionProfile>,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot encode the pprof profile")]
    Pprof(#[source] PprofError),
    #[error("cannot draw the flame graph")]
    Flamegraph(#[source] io::Error),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: no such directory", path.display())]
    NoDirectory { path: PathBuf },
    /// `--pprof-holders` without a holders profile (no `--holds`).
    #[error("no holder profile to write to {}: holders are known only with --holds", path.display())]
    NoHolders { path: PathBuf },
}

/// The default path of the holders' profile: `.holders` inserted before the `--pprof`
/// file's extensions (`mutex.pb.gz` → `mutex.holders.pb.gz`, `out` → `out.holders`).
#[must_use]
pub fn holders_path(pprof: &Path) -> PathBuf {
    let Some(name) = pprof.file_name().and_then(|n| n.to_str()) else {
        let mut p = pprof.as_os_str().to_owned();
        p.push(".holders");
        return PathBuf::from(p);
    };
    // A leading dot is part of the name (`.profile`), not an extension.
    let (dot, rest) = name.split_at(usize::from(name.starts_with('.')));
    let new_name = match rest.split_once('.') {
        Some((stem, extensions)) => format!("{dot}{stem}.holders.{extensions}"),
        None => format!("{name}.holders"),
    };
    pprof.with_file_name(new_name)
}

/// A frame's name as one folded-stack frame: `;` separates frames and a line ends the
/// stack, so neither may appear inside one.
fn folded_frame(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The profile as folded stacks: `lock;outermost;…;innermost N`, N the waits' total
/// time in nanoseconds. Identical lines (the same lock label and function names from
/// different addresses) are merged; samples with no wait time are left out (flame graphs
/// draw nothing for them). Sorted, one line each, ending in a newline.
#[must_use]
pub fn render_folded(profile: &ContentionProfile) -> String {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for sample in &profile.samples {
        if sample.delay_ns == 0 {
            continue;
        }
        let mut stack = folded_frame(&sample.lock);
        for frame in sample.frames.iter().rev() {
            stack.push(';');
            stack.push_str(&folded_frame(&frame.function));
        }
        let total = lines.entry(stack).or_default();
        *total = total.saturating_add(sample.delay_ns);
    }
    let mut out = String::new();
    for (stack, ns) in lines {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&ns.to_string());
        out.push('\n');
    }
    out
}

/// Folded stacks drawn as an SVG flame graph (`inferno`), widths in wait time. With no
/// line, the SVG says there was no input.
///
/// # Errors
///
/// [`ExportError::Flamegraph`] if `inferno` fails to draw a non-empty input.
pub fn render_flamegraph(folded: &str, title: &str) -> Result<Vec<u8>, ExportError> {
    let mut options = inferno::flamegraph::Options::default();
    title.clone_into(&mut options.title);
    "ns".clone_into(&mut options.count_name);
    "lock wait".clone_into(&mut options.name_type);
    let mut svg = Vec::new();
    match inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg) {
        Ok(()) => Ok(svg),
        // inferno still writes a complete SVG saying so.
        Err(_) if folded.trim().is_empty() => Ok(svg),
        Err(err) => Err(ExportError::Flamegraph(err)),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    std::fs::write(path, bytes).map_err(|source| ExportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes the exports `paths` asks for from `profiles`; returns the files written.
///
/// # Errors
///
/// The first export that cannot be encoded or written; a holders path with no holders
/// profile.
pub fn write_exports(
    paths: &ExportPaths,
    profiles: &ExportProfiles,
) -> Result<Vec<PathBuf>, ExportError> {
    let mut written = Vec::new();
    if let Some(path) = &paths.pprof {
        let bytes = pprof::encode_gzipped(&profiles.waiters).map_err(ExportError::Pprof)?;
        write_file(path, &bytes)?;
        written.push(path.clone());
    }
    if let Some(path) = &paths.pprof_holders {
        let holders = profiles
            .holders
            .as_ref()
            .ok_or_else(|| ExportError::NoHolders { path: path.clone() })?;
        let bytes = pprof::encode_gzipped(holders).map_err(ExportError::Pprof)?;
        write_file(path, &bytes)?;
        written.push(path.clone());
    }
    let folded = (paths.folded.is_some() || paths.flamegraph.is_some())
        .then(|| render_folded(&profiles.waiters));
    if let (Some(path), Some(folded)) = (&paths.folded, &folded) {
        write_file(path, folded.as_bytes())?;
        written.push(path.clone());
    }
    if let (Some(path), Some(folded)) = (&paths.flamegraph, &folded) {
        let svg = render_flamegraph(folded, "Lock wait time by lock and waiting stack")?;
        write_file(path, &svg)?;
        written.push(path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::profile::{ProfileFrame, ProfileSample};

    fn frame(function: &str, address: u64) -> ProfileFrame {
        ProfileFrame {
            function: function.to_owned(),
            file: None,
            line: None,
            object: None,
            address,
        }
    }

    fn sample(lock: &str, frames: &[(&str, u64)], delay_ns: u64) -> ProfileSample {
        ProfileSample {
            frames: frames.iter().map(|&(f, a)| frame(f, a)).collect(),
            lock: lock.to_owned(),
            lock_addr: 0x1000,
            lock_kind: "mutex",
            pid: 1,
            comm: "t".to_owned(),
            contentions: 1,
            delay_ns,
        }
    }

    /// Parses folded text back into (frames, value) per line.
    fn parse(folded: &str) -> Vec<(Vec<String>, u64)> {
        folded
            .lines()
            .map(|line| {
                let (stack, n) = line.rsplit_once(' ').unwrap();
                (
                    stack.split(';').map(str::to_owned).collect(),
                    n.parse().unwrap(),
                )
            })
            .collect()
    }

    /// Guards the folded format: the lock is the root frame, then the stack outermost
    /// first (the model keeps it innermost first), then the total wait in ns; the same
    /// names from other addresses merge into one line.
    #[test]
    fn folded_lines_are_lock_then_outermost_to_innermost() {
        let profile = ContentionProfile {
            samples: vec![
                sample(
                    "hot_lock",
                    &[
                        ("pthread_mutex_lock", 1),
                        ("worker", 2),
                        ("start_thread", 3),
                    ],
                    700,
                ),
                sample(
                    "hot_lock",
                    &[
                        ("pthread_mutex_lock", 1),
                        ("worker", 9),
                        ("start_thread", 3),
                    ],
                    300,
                ),
                sample("cold_lock", &[("pthread_mutex_lock", 1), ("rare", 4)], 5),
            ],
            ..ContentionProfile::default()
        };
        let lines = parse(&render_folded(&profile));
        assert_eq!(
            lines,
            vec![
                (
                    vec![
                        "cold_lock".into(),
                        "rare".into(),
                        "pthread_mutex_lock".into()
                    ],
                    5
                ),
                (
                    vec![
                        "hot_lock".into(),
                        "start_thread".into(),
                        "worker".into(),
                        "pthread_mutex_lock".into()
                    ],
                    1000
                ),
            ]
        );
    }

    /// Guards the format's separators: a `;` or a newline inside a name would split a
    /// frame or a line, and a sample with no wait time is no line.
    #[test]
    fn folded_names_cannot_break_the_format() {
        let profile = ContentionProfile {
            samples: vec![
                sample("map<k; v>", &[("f\nx", 1), ("[u8; 8]::g", 2)], 10),
                sample("idle", &[("h", 1)], 0),
            ],
            ..ContentionProfile::default()
        };
        let folded = render_folded(&profile);
        assert_eq!(folded, "map<k: v>;[u8: 8]::g;f x 10\n");
    }

    /// Guards the flame graph: an SVG that names the frames, and one for no input too.
    #[test]
    fn flamegraph_is_an_svg_naming_the_frames() {
        let svg = render_flamegraph("hot_lock;main;worker 1000\n", "t").unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("worker") && svg.contains("hot_lock"));
        let empty = String::from_utf8(render_flamegraph("", "t").unwrap()).unwrap();
        assert!(empty.contains("<svg"), "{empty}");
    }

    /// Guards the flags' checks: a holders' profile only with `--holds` (named after the
    /// `--pprof` file unless given), and a missing directory found before the trace.
    #[test]
    fn export_flags_are_checked_before_tracing() {
        let p = |s: &str| Some(PathBuf::from(s));
        let paths = ExportPaths::from_flags(p("m.pb.gz"), None, None, None, true).unwrap();
        assert_eq!(paths.pprof_holders, p("m.holders.pb.gz"));
        let paths = ExportPaths::from_flags(p("m.pb.gz"), None, None, None, false).unwrap();
        assert_eq!(paths.pprof_holders, None);
        let paths =
            ExportPaths::from_flags(p("m.pb.gz"), p("/tmp/h.pb.gz"), None, None, true).unwrap();
        assert_eq!(paths.pprof_holders, p("/tmp/h.pb.gz"));
        assert!(matches!(
            ExportPaths::from_flags(None, p("h.pb.gz"), None, None, false),
            Err(ExportError::NoHolders { .. })
        ));
        assert!(matches!(
            ExportPaths::from_flags(None, None, p("/no/such/dir/f.folded"), None, false),
            Err(ExportError::NoDirectory { .. })
        ));
        assert!(
            ExportPaths::from_flags(None, None, None, None, false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn holders_path_goes_before_the_extensions() {
        for (given, expected) in [
            ("mutex.pb.gz", "mutex.holders.pb.gz"),
            ("/tmp/out/p.pprof", "/tmp/out/p.holders.pprof"),
            ("profile", "profile.holders"),
            ("/d.x/.prof", "/d.x/.prof.holders"),
            ("/d/.prof.gz", "/d/.prof.holders.gz"),
        ] {
            assert_eq!(
                holders_path(Path::new(given)),
                Path::new(expected),
                "{given}"
            );
        }
    }

    /// Guards `write_exports`: each file asked for is written (the pprof one gzipped),
    /// and a holders path without a holders profile is an error, not a silent skip.
    #[test]
    fn exports_write_the_files_asked_for() {
        let dir = std::env::temp_dir().join(format!("tracer-exports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let profiles = ExportProfiles {
            waiters: ContentionProfile {
                samples: vec![sample("l", &[("f", 1)], 3)],
                ..ContentionProfile::default()
            },
            holders: None,
        };
        let paths = ExportPaths {
            pprof: Some(dir.join("p.pb.gz")),
            folded: Some(dir.join("f.folded")),
            ..ExportPaths::default()
        };
        let written = write_exports(&paths, &profiles).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(
            std::fs::read(dir.join("p.pb.gz")).unwrap()[..2],
            [0x1f, 0x8b]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("f.folded")).unwrap(),
            "l;f 3\n"
        );
        let holders = ExportPaths {
            pprof_holders: Some(dir.join("h.pb.gz")),
            ..ExportPaths::default()
        };
        assert!(matches!(
            write_exports(&holders, &profiles),
            Err(ExportError::NoHolders { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
