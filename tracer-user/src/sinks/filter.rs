//! Filters and thresholds, perf-style (`--lock NAME|ADDR`, `--type KIND`, `--min-wait
//! DURATION`): a sink wrapper that keeps the summary's per-lock table (and the stacks in
//! it) to the locks asked for, and counts the rest in the summary's `filtered_out`.
//!
//! Applied in user space, to the summary: the kernel already sends a record only for a
//! wait that sleeps (brief waits are only counted there), so a per-lock filter in the
//! kernel would save little, and the lock table must count every wait anyway.
//! Findings are never filtered: a deadlock, a stuck lock or an inversion is reported
//! whatever locks it involves, so a filter never hides one.

use std::{io, str::FromStr, time::Duration};

use thiserror::Error;

use super::Sink;
use crate::{
    model::{Finding, LockKind, LockSummary, Summary, graph::GraphSnapshot},
    recording::tape::TapeChunk,
};

/// One `--lock` value: a lock's address (`0x…`) or its name as the report prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSelector {
    /// The lock at this address.
    Addr(u64),
    /// The lock with this name (or, for an unnamed lock, this location: `prog+0x40`).
    Name(String),
}

/// A command-line filter value that could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("empty lock name")]
    EmptyLock,
    #[error("{0} is not a hexadecimal address")]
    BadAddr(String),
    #[error("unknown lock type {0:?}: one of {1}")]
    UnknownKind(String, String),
    #[error("bad duration {0:?}: a number and a unit (ns, us, ms, s), such as 50us or 2ms")]
    BadDuration(String),
}

impl FromStr for LockSelector {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(FilterError::EmptyLock);
        }
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16)
                .map(Self::Addr)
                .map_err(|_| FilterError::BadAddr(s.to_owned())),
            None => Ok(Self::Name(s.to_owned())),
        }
    }
}

/// A lock kind by its JSON name (`mutex`, `rwlock`, `go_mutex`, …), for `--type`.
///
/// # Errors
/// When `s` names no kind; the message lists them.
pub fn parse_kind(s: &str) -> Result<LockKind, FilterError> {
    LockKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = LockKind::ALL.iter().map(|k| k.as_str()).collect();
        FilterError::UnknownKind(s.to_owned(), names.join(", "))
    })
}

/// A duration such as `50us`, `2ms`, `1.5s`, `800ns` (`µs` too), for `--min-wait`.
///
/// # Errors
/// Without a unit, or not a non-negative number.
pub fn parse_duration(s: &str) -> Result<Duration, FilterError> {
    let bad = || FilterError::BadDuration(s.to_owned());
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// Which locks the summary's table keeps. Empty lists keep every lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockFilter {
    /// `--lock`: keep only these (any of them).
    pub locks: Vec<LockSelector>,
    /// `--type`: keep only these kinds (any of them).
    pub kinds: Vec<LockKind>,
    /// `--min-wait`: keep only locks that had a wait at least this long; the others'
    /// waits are counted in `filtered_out`, not reported.
    pub min_wait: Duration,
}

impl LockFilter {
    /// Whether this filter keeps every lock (no filter given).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.kinds.is_empty() && self.min_wait.is_zero()
    }

    /// Whether the table keeps `lock`.
    #[must_use]
    pub fn keeps(&self, lock: &LockSummary) -> bool {
        let selected = self.locks.is_empty()
            || self.locks.iter().any(|s| match s {
                LockSelector::Addr(addr) => lock.lock.addr == *addr,
                LockSelector::Name(name) => {
                    lock.lock.name.as_deref() == Some(name)
                        || lock.lock.location.as_deref() == Some(name)
                }
            });
        let of_kind = self.kinds.is_empty() || self.kinds.contains(&lock.kind);
        let min_wait_ns = u64::try_from(self.min_wait.as_nanos()).unwrap_or(u64::MAX);
        selected && of_kind && lock.wait_ns.max >= min_wait_ns
    }

    /// Moves the locks this filter does not keep out of `summary.locks` into
    /// `summary.filtered_out` (set whenever a filter was given, even to zeros).
    pub fn apply(&self, summary: &mut Summary) {
        if self.is_empty() {
            return;
        }
        let mut out = summary.filtered_out.unwrap_or_default();
        summary.locks.retain(|lock| {
            if self.keeps(lock) {
                return true;
            }
            out.locks += 1;
            out.contentions = out.contentions.saturating_add(lock.contentions);
            out.waits = out.waits.saturating_add(lock.wait_ns.count);
            out.wait_total_ns = out.wait_total_ns.saturating_add(lock.wait_ns.total);
            out.wait_max_ns = out.wait_max_ns.max(lock.wait_ns.max);
            false
        });
        summary.filtered_out = Some(out);
    }
}

/// Passes findings on unchanged and the summary filtered by `filter`.
pub struct FilterSink<'a> {
    inner: &'a mut dyn Sink,
    filter: LockFilter,
}

impl<'a> FilterSink<'a> {
    /// Filters what goes to `inner`.
    pub fn new(inner: &'a mut dyn Sink, filter: LockFilter) -> Self {
        Self { inner, filter }
    }
}

impl Sink for FilterSink<'_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.inner.finding(finding)
    }

    fn wants_graphs(&self) -> bool {
        self.inner.wants_graphs()
    }

    fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        self.inner.graph(graph)
    }

    fn wants_tape(&self) -> bool {
        self.inner.wants_tape()
    }

    fn tape(&mut self, chunk: TapeChunk<'_>) -> io::Result<()> {
        self.inner.tape(chunk)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        if self.filter.is_empty() {
            return self.inner.summary(summary);
        }
        let mut filtered = summary.clone();
        self.filter.apply(&mut filtered);
        self.inner.summary(&filtered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn addrs(s: &Summary) -> Vec<u64> {
        s.locks.iter().map(|l| l.lock.addr).collect()
    }

    #[test]
    fn lock_selectors() {
        assert_eq!("0x7f12ab00".parse(), Ok(LockSelector::Addr(0x7f12_ab00)));
        assert_eq!("lock_a".parse(), Ok(LockSelector::Name("lock_a".into())));
        assert_eq!(
            "0xzz".parse::<LockSelector>(),
            Err(FilterError::BadAddr("0xzz".into()))
        );
        assert_eq!("".parse::<LockSelector>(), Err(FilterError::EmptyLock));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("50µs"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("800ns"), Ok(Duration::from_nanos(800)));
        for bad in ["", "5", "ms", "2 ms", "2min", "-1ms", "1.2.3ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kinds_by_json_name() {
        assert_eq!(parse_kind("rwlock"), Ok(LockKind::RwLock));
        assert_eq!(parse_kind("go_mutex"), Ok(LockKind::GoMutex));
        let err = parse_kind("spin").unwrap_err().to_string();
        assert!(err.contains("mutex, pi_mutex, rwlock"), "{err}");
    }

    #[test]
    fn no_filter_leaves_the_summary_alone() {
        let mut s = fixtures::summary();
        LockFilter::default().apply(&mut s);
        assert_eq!(s, fixtures::summary());
        assert_eq!(s.filtered_out, None);
    }

    #[test]
    fn by_name_and_address_any_of_them() {
        let mut s = fixtures::summary();
        LockFilter {
            locks: vec![LockSelector::Name("m".into()), LockSelector::Addr(0x20)],
            ..LockFilter::default()
        }
        .apply(&mut s);
        assert_eq!(addrs(&s), vec![0x20, 0x10]);
        // The one left out is counted.
        let out = s.filtered_out.unwrap();
        assert_eq!(out.locks, 1);
        assert_eq!(out.contentions, 12_345);
        assert_eq!(out.wait_total_ns, 90_000_000_000);
    }

    #[test]
    fn by_kind() {
        let mut s = fixtures::summary();
        LockFilter {
            kinds: vec![LockKind::RwLock],
            ..LockFilter::default()
        }
        .apply(&mut s);
        assert_eq!(addrs(&s), vec![0x20]);
        assert_eq!(s.filtered_out.unwrap().locks, 2);
        assert_eq!(s.filtered_out.unwrap().contentions, 12_345 + 1);
    }

    #[test]
    fn min_wait_counts_short_waiters_without_listing_them() {
        // Max waits in the fixture: 0x20 4 us, 0x7f12ab00 10 ms, 0x10 3.4 us.
        let mut s = fixtures::summary();
        let before: u64 = s.locks.iter().map(|l| l.contentions).sum();
        LockFilter {
            min_wait: Duration::from_micros(4),
            ..LockFilter::default()
        }
        .apply(&mut s);
        assert_eq!(addrs(&s), vec![0x20, 0x7f12_ab00]);
        let out = s.filtered_out.unwrap();
        assert_eq!(out.locks, 1);
        assert_eq!(out.wait_max_ns, 3_400);
        let after: u64 = s.locks.iter().map(|l| l.contentions).sum();
        assert_eq!(after + out.contentions, before);
    }

    #[test]
    fn findings_pass_whatever_locks_they_involve() {
        let mut json = Vec::new();
        let mut inner = super::super::JsonSink::new(&mut json);
        {
            let mut sink = FilterSink::new(
                &mut inner,
                LockFilter {
                    locks: vec![LockSelector::Name("nothing_like_it".into())],
                    ..LockFilter::default()
                },
            );
            sink.finding(&Finding::Deadlock(fixtures::deadlock()))
                .unwrap();
            sink.summary(&fixtures::summary()).unwrap();
        }
        drop(inner);
        let text = String::from_utf8(json).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["kind"], "deadlock");
        assert_eq!(lines[1]["locks"].as_array().unwrap().len(), 0);
        assert_eq!(lines[1]["filtered_out"]["locks"], 3);
    }
}
