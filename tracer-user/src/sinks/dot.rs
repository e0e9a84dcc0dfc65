//! `--graph FILE`: the graph snapshots as Graphviz DOT, one `digraph` per snapshot in one
//! file, in the order they came (each finding's, then the end's), and each rendered to
//! `FILE.N.svg` (N from 1) when Graphviz's `dot` is installed.
//!
//! Threads and goroutines are ellipses, locks boxes; a wait is an edge thread → lock
//! ("waits for"), a hold lock → thread ("held by"), so a wait-for cycle is a cycle of the
//! picture; a lock-order edge goes from the lock held to the lock then taken. What lies
//! on a cycle is drawn red and thick.

use std::{
    fmt::Write as _,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::Sink;
use crate::{
    model::{
        Finding, Summary,
        graph::{EdgeKind, GraphSnapshot, NodeKind},
    },
    recording::tape::TapeChunk,
};

/// The most graphs one file gets: a run that keeps finding things would otherwise grow
/// it without bound (each further one is counted in a closing comment).
pub const MAX_GRAPHS: usize = 256;

/// `s` as a DOT quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const HIGHLIGHT: &str = ", color=\"red\", fontcolor=\"red\", penwidth=2.5";

/// `graph` as one DOT `digraph`, the `number`-th of its file.
#[must_use]
pub fn render_dot(graph: &GraphSnapshot, number: usize) -> String {
    let mut out = String::new();
    let mut title = graph.title.clone();
    if graph.edges_left_out > 0 {
        let _ = write!(title, " ({} more edges left out)", graph.edges_left_out);
    }
    let _ = writeln!(out, "digraph {} {{", quoted(&format!("graph{number}")));
    let _ = writeln!(out, "  label={}; labelloc=t;", quoted(&title));
    let _ = writeln!(
        out,
        "  node [fontname=\"Helvetica\"]; edge [fontname=\"Helvetica\"];"
    );
    for node in &graph.nodes {
        let shape = match node.kind {
            NodeKind::Thread => "ellipse",
            NodeKind::Goroutine => "ellipse, style=dashed",
            NodeKind::Lock => "box",
        };
        let _ = writeln!(
            out,
            "  {} [shape={shape}, label={}{}];",
            quoted(&node.id),
            quoted(&node.label),
            if node.highlighted { HIGHLIGHT } else { "" }
        );
    }
    for edge in &graph.edges {
        let what = match edge.kind {
            EdgeKind::WaitsFor => "waits for".to_owned(),
            EdgeKind::HeldBy => "held by".to_owned(),
            EdgeKind::Order => match &edge.label {
                Some(by) => format!("then taken by {by}"),
                None => "then taken".to_owned(),
            },
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{}];",
            quoted(&edge.from),
            quoted(&edge.to),
            quoted(&what),
            if edge.highlighted { HIGHLIGHT } else { "" }
        );
    }
    out.push_str("}\n");
    out
}

/// Where the `number`-th graph of `path` is rendered: `FILE.N.svg`.
#[must_use]
pub fn svg_path(path: &Path, number: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{number}.svg"));
    PathBuf::from(name)
}

/// Writes graphs to a DOT file, and each to SVG while `dot` runs.
pub struct DotSink {
    path: PathBuf,
    out: BufWriter<File>,
    written: usize,
    left_out: usize,
    /// Render SVG: on until `dot` is missing or fails (said once on stderr).
    svg: bool,
}

impl DotSink {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(File::create(path)?),
            written: 0,
            left_out: 0,
            svg: true,
        })
    }

    /// Renders `dot_text` to `svg` with Graphviz.
    fn render_svg(dot_text: &str, svg: &Path) -> Result<(), String> {
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .arg("-o")
            .arg(svg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    "Graphviz's dot is not installed (Debian: apt-get install graphviz)".to_owned()
                }
                _ => format!("cannot run Graphviz's dot: {e}"),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(dot_text.as_bytes())
                .map_err(|e| format!("cannot feed Graphviz's dot: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("Graphviz's dot: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "Graphviz's dot failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Adds `graph` to the file (flushed at once: a killed tracer keeps what it drew).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn add(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        if self.written >= MAX_GRAPHS {
            self.left_out += 1;
            return Ok(());
        }
        self.written += 1;
        let text = render_dot(graph, self.written);
        writeln!(self.out, "// {}: {}", self.written, graph.title)?;
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        if self.svg {
            let svg = svg_path(&self.path, self.written);
            if let Err(why) = Self::render_svg(&text, &svg) {
                eprintln!(
                    "tracer: note: --graph: no SVG: {why}; the DOT is in {}",
                    self.path.display()
                );
                self.svg = false;
            }
        }
        Ok(())
    }

    /// Ends the file: says how many graphs were left out, if any.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.left_out > 0 {
            writeln!(
                self.out,
                "// {} more graphs left out (at most {MAX_GRAPHS} per file)",
                self.left_out
            )?;
        }
        self.out.flush()
    }
}

/// A sink that passes findings and the summary to `inner` and draws the graphs with
/// `dot` when given (`--graph`).
pub struct WithGraphs<'a> {
    inner: &'a mut dyn Sink,
    dot: Option<DotSink>,
    /// Draw each finding's own graph (its cycle) as it passes: for a source that has no
    /// graph snapshots (`tracer report` of a recording, which keeps findings only).
    from_findings: bool,
}

impl<'a> WithGraphs<'a> {
    /// `inner`, plus the graphs the session gives drawn in `dot`.
    pub fn new(inner: &'a mut dyn Sink, dot: Option<DotSink>) -> Self {
        Self {
            inner,
            dot,
            from_findings: false,
        }
    }

    /// `inner`, plus each deadlock's cycle, each inversion's orders and each stuck
    /// lock's holder and waiters drawn in `dot` from the findings themselves (no session
    /// behind: `tracer report`).
    pub fn from_findings(inner: &'a mut dyn Sink, dot: Option<DotSink>) -> Self {
        Self {
            inner,
            dot,
            from_findings: true,
        }
    }
}

impl Sink for WithGraphs<'_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.inner.finding(finding)?;
        if self.from_findings
            && let Some(dot) = &mut self.dot
        {
            match finding {
                Finding::Deadlock(d) => {
                    dot.add(&GraphSnapshot::of_deadlock(
                        GraphSnapshot::deadlock_title(d),
                        d,
                    ))?;
                }
                Finding::LockOrderInversion(inversion) => {
                    dot.add(&GraphSnapshot::of_inversion(
                        "lock-order inversion",
                        inversion,
                    ))?;
                }
                Finding::StuckLock(stuck) => {
                    dot.add(&GraphSnapshot::of_stuck_lock(
                        GraphSnapshot::stuck_title(stuck),
                        stuck,
                    ))?;
                }
            }
        }
        Ok(())
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        if let Some(dot) = &mut self.dot {
            dot.finish()?;
        }
        self.inner.summary(summary)
    }

    fn wants_tape(&self) -> bool {
        self.inner.wants_tape()
    }

    fn tape(&mut self, chunk: TapeChunk<'_>) -> io::Result<()> {
        self.inner.tape(chunk)
    }

    fn wants_graphs(&self) -> bool {
        self.dot.is_some() || self.inner.wants_graphs()
    }

    fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        if let Some(dot) = &mut self.dot {
            dot.add(graph)?;
        }
        self.inner.graph(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{fixtures, graph::EdgeKind};

    #[test]
    fn names_are_escaped() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("two\nlines\r"), r#""two\nlines""#);
        let mut g = GraphSnapshot::new("a \"quoted\" title");
        let t = g.thread(7, None, "evil\"name");
        let l = g.lock(&fixtures::lock(0x10, Some("ns::Lock<\"x\">")));
        g.edge(t, l, EdgeKind::WaitsFor, None);
        let dot = render_dot(&g, 1);
        assert!(dot.contains(r#"label="a \"quoted\" title""#), "{dot}");
        assert!(
            dot.contains(r#""t7" [shape=ellipse, label="evil\"name (7)"];"#),
            "{dot}"
        );
        assert!(dot.contains(r#"label="ns::Lock<\"x\"> (0x10)""#), "{dot}");
        assert!(
            dot.contains(r#""t7" -> "l0x10" [label="waits for"];"#),
            "{dot}"
        );
    }

    #[test]
    fn the_cycle_is_highlighted_and_the_rest_not() {
        let mut g = GraphSnapshot::of_deadlock("deadlock 1", &fixtures::deadlock());
        // A bystander waiting on lock_a: drawn, not highlighted.
        let t = g.thread(99, None, "bystander");
        let l = g.lock(&fixtures::lock(0x55d0_aa00, Some("lock_a")));
        g.edge(t, l, EdgeKind::WaitsFor, None);
        g.highlight_cycles();
        let dot = render_dot(&g, 2);
        assert!(dot.starts_with("digraph \"graph2\" {\n"), "{dot}");
        let line = |needle: &str| {
            dot.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle}: {dot}"))
                .to_owned()
        };
        assert!(line(r#""t1234" ["#).contains("color=\"red\""));
        assert!(line(r#""t1234" -> "l0x55d0bb00""#).contains("penwidth=2.5"));
        assert!(line(r#""l0x55d0aa00" -> "t1234" [label="held by""#).contains("red"));
        assert!(!line(r#""t99" ["#).contains("red"));
        assert!(!line(r#""t99" -> "#).contains("red"));
        assert!(dot.trim_end().ends_with('}'));
    }

    #[test]
    fn order_edges_say_who() {
        let g = GraphSnapshot::of_inversion("inversion", &fixtures::inversion());
        let dot = render_dot(&g, 1);
        assert!(
            dot.contains(
                r#""l0x55d0aa00" -> "l0x55d0bb00" [label="then taken by worker-a (1234)""#
            ),
            "{dot}"
        );
    }

    #[test]
    fn findings_draw_themselves_without_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.dot");
        let mut dot = DotSink::create(&path).unwrap();
        dot.svg = false;
        let mut json = Vec::new();
        let mut inner = super::super::JsonSink::new(&mut json);
        {
            let mut sink = WithGraphs::from_findings(&mut inner, Some(dot));
            sink.finding(&Finding::Deadlock(fixtures::deadlock()))
                .unwrap();
            sink.finding(&Finding::LockOrderInversion(fixtures::inversion()))
                .unwrap();
            sink.summary(&fixtures::summary()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("// 1: deadlock: worker-a (1234)"), "{text}");
        assert!(text.contains("// 2: lock-order inversion"), "{text}");
        drop(inner);
        assert_eq!(String::from_utf8(json).unwrap().lines().count(), 3);
    }

    #[test]
    fn a_file_of_several_digraphs_and_svg_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.dot");
        let mut sink = DotSink::create(&path).unwrap();
        sink.svg = false;
        sink.add(&GraphSnapshot::of_deadlock(
            "deadlock 1",
            &fixtures::deadlock(),
        ))
        .unwrap();
        sink.add(&GraphSnapshot::new("wait-for graph at the end"))
            .unwrap();
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("digraph ").count(), 2, "{text}");
        assert!(text.contains("// 2: wait-for graph at the end"), "{text}");
        assert_eq!(svg_path(&path, 2), dir.path().join("g.dot.2.svg"));
    }
}
