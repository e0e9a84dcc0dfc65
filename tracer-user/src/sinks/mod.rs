//! Outputs: each sink consumes the findings and the summary of `crate::model` as they come.
//!
//! A sink only renders; it never looks at the target or the analysis, so adding an output
//! (metrics, pprof, recordings, a live view) is a new sink and nothing else.

pub mod dot;
pub mod filter;
mod json;
pub mod outcome;
mod reader;
mod text;

use std::io::{self, Write};

pub use self::{
    dot::{DotSink, WithGraphs, render_dot},
    filter::{FilterSink, LockFilter},
    json::JsonSink,
    outcome::{Outcome, OutcomeSink},
    reader::ReaderWatch,
    text::TextSink,
};
use crate::{
    model::{Finding, Summary, graph::GraphSnapshot},
    recording::tape::TapeChunk,
};

/// A consumer of the tracer's output.
pub trait Sink {
    /// A finding, the moment it is confirmed.
    ///
    /// # Errors
    /// When the output cannot be written (a closed pipe, a full disk).
    fn finding(&mut self, finding: &Finding) -> io::Result<()>;

    /// The summary, once, when the trace ends.
    ///
    /// # Errors
    /// When the output cannot be written.
    fn summary(&mut self, summary: &Summary) -> io::Result<()>;

    /// Whether this sink draws graphs: the session builds a [`GraphSnapshot`] (which
    /// costs naming every lock in it) only for a sink that does.
    fn wants_graphs(&self) -> bool {
        false
    }

    /// A graph as it stood at a finding (right after it) or at the end (right before
    /// the summary); only when [`Sink::wants_graphs`].
    ///
    /// # Errors
    /// When the output cannot be written.
    fn graph(&mut self, _graph: &GraphSnapshot) -> io::Result<()> {
        Ok(())
    }

    /// Whether this sink keeps the analysis tape (`tracer record`): the session records
    /// one (which costs a copy of every record, and naming what the analysis saw) only
    /// for a sink that does.
    fn wants_tape(&self) -> bool {
        false
    }

    /// A chunk of the analysis tape; only when [`Sink::wants_tape`].
    ///
    /// # Errors
    /// When the output cannot be written.
    fn tape(&mut self, _chunk: TapeChunk<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// The formats `tracer attach --format` writes to standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For a human.
    Text,
    /// Newline-delimited JSON.
    Json,
}

/// Locks the text summary shows by default (`--top`).
pub const DEFAULT_TOP_LOCKS: usize = 20;

/// The sink that writes `format` to `out`; the text summary table shows the `top_locks`
/// most waited-on locks (all with `None`), JSON always all.
#[must_use]
pub fn for_format(
    format: Format,
    top_locks: Option<usize>,
    out: &mut dyn Write,
) -> Box<dyn Sink + '_> {
    match format {
        Format::Text => Box::new(TextSink::new(out).with_top_locks(top_locks)),
        Format::Json => Box::new(JsonSink::new(out)),
    }
}
