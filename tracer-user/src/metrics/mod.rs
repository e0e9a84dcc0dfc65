//! The Prometheus text exposition of what `tracer serve` traces: per-lock wait and hold
//! histograms and contention counters, per-target counters, and the tracer's own state.
//!
//! Pure: it reads [`TargetSnapshot`]s (taken by the sessions) and a [`TracerState`]
//! (gathered by the caller) and returns text; it never reads a target or `/proc`.
//!
//! The data arrives already aggregated: cumulative counters and bucketed distributions,
//! with the label cardinality bounded where the snapshots are made (`model::live`). So
//! instead of live metric objects that the tracer would update on every event, the
//! snapshots are handed to the official client (`prometheus-client`) as a
//! [`Collector`], a view whose `encode` writes them out on each scrape; the client owns
//! the format (names, label escaping, float formatting, histogram series).
//!
//! The format is the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]), the one every
//! Prometheus version scrapes and `promtool check metrics` lints. The client's
//! `OpenMetrics` encoder is not used: `OpenMetrics`' `info` type is not valid in 0.0.4
//! (`promtool` rejects it), while the 0.0.4 encoder writes the build info as the usual
//! `_info` gauge.

use std::{collections::HashMap, fmt};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet, prometheus_text},
    metrics::MetricType,
    registry::Registry,
};

use crate::model::live::{BUCKET_BOUNDS_NS, Buckets, TargetSnapshot};

/// The HTTP `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `lock` label of the per-kind aggregates of a target's other locks; a lock that is
/// itself called so is told apart by its address (see [`lock_labels`]).
const OTHER_LOCKS_LABEL: &str = "other";

/// The tracer's own state, as the caller knows it at the scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct TracerState {
    /// Targets it traces now.
    pub targets_attached: u64,
    /// CPU time it has used, user and system (`target::procfs_self_usage`).
    pub cpu_seconds: f64,
    /// Its resident memory (`target::procfs_self_usage`).
    pub resident_bytes: u64,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// Targets it was not allowed or able to trace.
    pub targets_refused_total: u64,
    /// Attaches to targets since it started.
    pub attaches_total: u64,
    /// The duty cycle's factor of the shared `sched_switch` hook (`serve::hook_duty`):
    /// attached one slice in this many; 1 always.
    pub sched_switch_duty_factor: u64,
}

/// Failure to render the exposition.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The client's encoder failed (it reports no more than that).
    #[error("cannot encode the metrics in the Prometheus text format")]
    Encode(#[source] fmt::Error),
}

/// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]) of `targets` and the
/// tracer's own state.
///
/// Families without a series are left out (no targets: no per-target or lock families; no
/// hold times traced: no hold histogram). When two snapshots have the same `pid` and
/// `comm` (a pid reused while the exited target's series are kept), only one is written,
/// the attached one, because a repeated series makes Prometheus drop samples.
///
/// # Errors
/// [`MetricsError::Encode`] when the client's encoder fails.
pub fn render(targets: &[TargetSnapshot], tracer: &TracerState) -> Result<String, MetricsError> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition::new(targets, tracer)));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).map_err(MetricsError::Encode)?;
    Ok(text)
}

/// Labels of a target's series.
type TargetLabels = [(&'static str, String); 2];
/// Labels of a lock's series.
type LockLabels = [(&'static str, String); 4];

/// Bucket upper bounds and the values in each (not cumulative: the client adds them up),
/// the last bound `+Inf`.
type BucketCounts = [(f64, u64); BUCKET_BOUNDS_NS.len() + 1];

/// One distribution in the units of the exposition.
#[derive(Debug)]
struct Histogram {
    /// Sum of the values, in seconds.
    sum_seconds: f64,
    /// Number of values.
    count: u64,
    /// The values per bucket.
    buckets: BucketCounts,
}

impl Histogram {
    /// Converts a snapshot's cumulative nanosecond buckets. The cumulative counts are
    /// made monotonic and `count` at least the last of them (a snapshot should already
    /// be so), so the series always form a valid histogram: `+Inf` equals `_count`.
    fn from_buckets(buckets: &Buckets) -> Self {
        let mut counts: BucketCounts = [(f64::INFINITY, 0); BUCKET_BOUNDS_NS.len() + 1];
        let mut below = 0u64;
        for ((slot, bound_ns), cumulative) in
            counts.iter_mut().zip(BUCKET_BOUNDS_NS).zip(buckets.le)
        {
            let cumulative = cumulative.max(below);
            *slot = (ns_to_seconds(u128::from(bound_ns)), cumulative - below);
            below = cumulative;
        }
        let count = buckets.count.max(below);
        counts[BUCKET_BOUNDS_NS.len()] = (f64::INFINITY, count - below);
        Self {
            sum_seconds: ns_to_seconds(buckets.sum_ns),
            count,
            buckets: counts,
        }
    }
}

/// Nanoseconds as seconds, the base unit Prometheus names its durations in.
#[expect(
    clippy::cast_precision_loss,
    reason = "an f64 keeps 15 significant digits, far more than a scrape needs"
)]
fn ns_to_seconds(ns: u128) -> f64 {
    ns as f64 / 1e9
}

/// One lock's series (or one kind's `other` aggregate).
#[derive(Debug)]
struct LockSeries {
    labels: LockLabels,
    contentions: u64,
    wait: Histogram,
    hold: Option<Histogram>,
}

/// One target's own series.
#[derive(Debug)]
struct TargetSeries {
    labels: TargetLabels,
    deadlocks: u64,
    lock_order_inversions: u64,
    stuck_locks: u64,
    events: u64,
    dropped: u64,
    sleep_sample_period: u32,
    attached: bool,
}

/// The snapshots as the collector writes them: labels made and units converted once.
///
/// It owns its data because the client's [`Collector`] must be `'static` (registries
/// usually live for the whole program); the copy is small, cardinality being bounded.
#[derive(Debug)]
struct Exposition {
    locks: Vec<LockSeries>,
    targets: Vec<TargetSeries>,
    tracer: TracerState,
}

impl Exposition {
    fn new(snapshots: &[TargetSnapshot], tracer: &TracerState) -> Self {
        let mut locks = Vec::new();
        let mut targets = Vec::new();
        for snapshot in distinct_targets(snapshots) {
            let pid = snapshot.pid.to_string();
            let lock_names = lock_labels(snapshot);
            for (live, name) in snapshot.locks.iter().zip(lock_names) {
                locks.push(LockSeries {
                    labels: [
                        ("pid", pid.clone()),
                        ("comm", snapshot.comm.clone()),
                        ("lock", name),
                        ("type", live.kind.as_str().to_owned()),
                    ],
                    contentions: live.contentions,
                    wait: Histogram::from_buckets(&live.wait),
                    hold: live.hold.as_ref().map(Histogram::from_buckets),
                });
            }
            for other in &snapshot.other {
                locks.push(LockSeries {
                    labels: [
                        ("pid", pid.clone()),
                        ("comm", snapshot.comm.clone()),
                        ("lock", OTHER_LOCKS_LABEL.to_owned()),
                        ("type", other.kind.as_str().to_owned()),
                    ],
                    contentions: other.contentions,
                    wait: Histogram::from_buckets(&other.wait),
                    hold: other.hold.as_ref().map(Histogram::from_buckets),
                });
            }
            targets.push(TargetSeries {
                labels: [("pid", pid), ("comm", snapshot.comm.clone())],
                deadlocks: snapshot.deadlocks,
                lock_order_inversions: snapshot.lock_order_inversions,
                stuck_locks: snapshot.stuck_locks,
                events: snapshot.events,
                dropped: snapshot.dropped,
                sleep_sample_period: snapshot.sleep_sample_period,
                attached: snapshot.attached,
            });
        }
        Self {
            locks,
            targets,
            tracer: tracer.clone(),
        }
    }
}

/// The snapshots with one per (`pid`, `comm`): the attached one when there is one, else
/// the first. In their order otherwise.
fn distinct_targets(snapshots: &[TargetSnapshot]) -> Vec<&TargetSnapshot> {
    let mut chosen: HashMap<(u32, &str), usize> = HashMap::new();
    for (index, snapshot) in snapshots.iter().enumerate() {
        chosen
            .entry((snapshot.pid, snapshot.comm.as_str()))
            .and_modify(|kept| {
                if snapshot.attached && !snapshots[*kept].attached {
                    *kept = index;
                }
            })
            .or_insert(index);
    }
    snapshots
        .iter()
        .enumerate()
        .filter(|(index, snapshot)| {
            chosen.get(&(snapshot.pid, snapshot.comm.as_str())) == Some(index)
        })
        .map(|(_, snapshot)| snapshot)
        .collect()
}

/// The `lock` label of each of a target's top locks: [`crate::model::LockRef::label`]
/// (its name, else where it lies, else its address), unless that label would repeat
/// another series' label of the target: two locks can share a name (statics of the same
/// name in two files) or a location (`[stack]`), and a lock can be called `other`. Those
/// get the name with the address (`name (0x…)`), so each series stays distinct.
fn lock_labels(snapshot: &TargetSnapshot) -> Vec<String> {
    let plain: Vec<String> = snapshot
        .locks
        .iter()
        .map(|live| live.lock.label())
        .collect();
    let mut uses: HashMap<(&str, &'static str), usize> = HashMap::new();
    for (label, live) in plain.iter().zip(&snapshot.locks) {
        *uses
            .entry((label.as_str(), live.kind.as_str()))
            .or_default() += 1;
    }
    plain
        .iter()
        .zip(&snapshot.locks)
        .map(|(label, live)| {
            let repeated = uses.get(&(label.as_str(), live.kind.as_str())) != Some(&1);
            if repeated || label == OTHER_LOCKS_LABEL {
                live.lock.to_string()
            } else {
                label.clone()
            }
        })
        .collect()
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_locks(&mut encoder)?;
        self.encode_targets(&mut encoder)?;
        self.encode_tracer(&mut encoder)
    }
}

impl Exposition {
    fn encode_locks(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        histogram_family(
            encoder,
            "tracer_lock_wait_seconds",
            "Time threads waited for a lock (the waits that slept), since the attach; \
             lock=\"other\" sums a target's locks without their own series, per type.",
            self.locks.iter().map(|s| (&s.labels, &s.wait)),
        )?;
        histogram_family(
            encoder,
            "tracer_lock_hold_seconds",
            "Time a lock was held once acquired, since the attach (traced with --holds \
             only); lock=\"other\" sums a target's locks without their own series, per type.",
            self.locks
                .iter()
                .filter_map(|s| Some((&s.labels, s.hold.as_ref()?))),
        )?;
        counter_family(
            encoder,
            "tracer_lock_contentions",
            "Waits begun on a lock since the attach: Go lock waits, and futex waits that \
             slept (with --brief-waits, also those that returned at once); \
             lock=\"other\" sums a target's locks without their own series, \
             per type.",
            self.locks.iter().map(|s| (&s.labels, s.contentions)),
        )
    }

    fn encode_targets(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let targets = &self.targets;
        counter_family(
            encoder,
            "tracer_deadlocks",
            "Deadlocks reported in the target since the attach.",
            targets.iter().map(|t| (&t.labels, t.deadlocks)),
        )?;
        counter_family(
            encoder,
            "tracer_lock_order_inversions",
            "Lock-order inversions (potential deadlocks: locks taken in orders that can \
             deadlock, none happened) reported in the target since the attach; needs traced \
             acquisitions (--holds).",
            targets.iter().map(|t| (&t.labels, t.lock_order_inversions)),
        )?;
        gauge_family(
            encoder,
            "tracer_stuck_locks",
            "Locks of the target reported stuck (held, with waiters, not released for \
             --stuck-after) that are still so.",
            targets.iter().map(|t| (&t.labels, t.stuck_locks)),
        )?;
        counter_family(
            encoder,
            "tracer_events_dropped",
            "Kernel records about the target lost to a full ring buffer; when it grows, the \
             target's lock metrics miss waits.",
            targets.iter().map(|t| (&t.labels, t.dropped)),
        )?;
        counter_family(
            encoder,
            "tracer_events",
            "Kernel records about the target received since the attach.",
            targets.iter().map(|t| (&t.labels, t.events)),
        )?;
        gauge_family(
            encoder,
            "tracer_sleep_sample_period",
            "The kernel traces one in this many of the target's futex waits that sleep, \
             each counting for as many in the lock series (1: every one); above 1 while \
             the target sleeps more than --max-sleeps-per-second times a second.",
            targets
                .iter()
                .map(|t| (&t.labels, u64::from(t.sleep_sample_period))),
        )?;
        gauge_family(
            encoder,
            "tracer_target_attached",
            "1 while the tracer traces the target, 0 once it exited or was detached (its \
             series stay for a grace period).",
            targets.iter().map(|t| (&t.labels, u64::from(t.attached))),
        )
    }

    fn encode_tracer(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let tracer = &self.tracer;
        encoder
            .encode_descriptor(
                "tracer_targets",
                "Targets the tracer is attached to.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&tracer.targets_attached)?;
        encoder
            .encode_descriptor(
                "tracer_attaches",
                "Attaches to targets since the tracer started.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&tracer.attaches_total, None)?;
        encoder
            .encode_descriptor(
                "tracer_targets_refused",
                "Targets the tracer was not allowed or not able to trace, since it started.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&tracer.targets_refused_total, None)?;
        encoder
            .encode_descriptor(
                "tracer_sched_switch_duty_factor",
                "The tracer's sched_switch hook is attached one slice of time in this many \
                 (1: always), each wait it traces counting for as many in the lock series; \
                 above 1 while the host switches more than --max-switches-per-cpu times a \
                 second per CPU.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&tracer.sched_switch_duty_factor)?;
        // An info metric: the client appends `_info` and writes the value 1.
        encoder
            .encode_descriptor(
                "tracer_build",
                "The tracer's version, as a label; always 1.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("version", tracer.version)])?;
        // The names and meanings of the standard process collector (client_golang's and
        // others'), so dashboards for any exporter's own cost work on this one.
        encoder
            .encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent by the tracer, in seconds.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&tracer.cpu_seconds, None)?;
        encoder
            .encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size of the tracer, in bytes.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&tracer.resident_bytes)
    }
}

/// Writes a counter family (the client appends `_total` to `name`), unless it has no series.
fn counter_family<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a L, u64)>,
) -> Result<(), fmt::Error> {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// Writes a gauge family, unless it has no series.
fn gauge_family<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a L, u64)>,
) -> Result<(), fmt::Error> {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// Writes a histogram family (`_bucket`, `_sum`, `_count` series), unless it has no series.
fn histogram_family<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a L, &'a Histogram)>,
) -> Result<(), fmt::Error> {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in series {
        family
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(
                histogram.sum_seconds,
                histogram.count,
                &histogram.buckets,
                None,
            )?;
    }
    Ok(())
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    reason = "the values compared are counts, exact in an f64 far beyond these"
)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::{
        LockKind, LockRef,
        live::{LiveLock, OtherLiveLocks},
    };

    /// One sample line of the exposition, parsed.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// The exposition parsed back: `# HELP` and `# TYPE` per family, the samples in order.
    #[derive(Debug, Default)]
    struct Parsed {
        help: BTreeMap<String, String>,
        types: BTreeMap<String, String>,
        /// Family names in the order of their `# HELP` lines.
        families: Vec<String>,
        samples: Vec<Sample>,
    }

    impl Parsed {
        fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
            self.samples.iter().filter(move |s| s.name == name)
        }

        /// The one sample of `name` whose labels include all of `labels`.
        fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let found: Vec<&Sample> = self
                .samples(name)
                .filter(|s| {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect();
            assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
            found[0].value
        }
    }

    /// Reads a label value written between quotes, undoing the format's escapes (`\\`,
    /// `\"`, `\n`); returns it and the rest after the closing quote.
    fn quoted(text: &str) -> (String, &str) {
        let mut value = String::new();
        let mut chars = text.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (value, &text[i + 1..]),
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {text:?}"),
                },
                c => value.push(c),
            }
        }
        panic!("unterminated label value in {text:?}")
    }

    fn parse_labels(mut text: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        loop {
            if let Some(rest) = text.strip_prefix('}') {
                return (labels, rest);
            }
            let (key, rest) = text.split_once("=\"").expect("label key");
            let (value, rest) = quoted(rest);
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "label {key} twice"
            );
            text = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    fn parse(text: &str) -> Parsed {
        let mut parsed = Parsed::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("help text");
                assert!(
                    parsed
                        .help
                        .insert(name.to_owned(), help.to_owned())
                        .is_none(),
                    "two HELP lines for {name}"
                );
                parsed.families.push(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("type");
                assert_eq!(
                    parsed.families.last().map(String::as_str),
                    Some(name),
                    "TYPE right after its HELP"
                );
                parsed.types.insert(name.to_owned(), kind.to_owned());
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line:?}");
                let name_end = line.find(['{', ' ']).expect("sample name");
                let name = &line[..name_end];
                let (labels, rest) = match line[name_end..].strip_prefix('{') {
                    Some(rest) => parse_labels(rest),
                    None => (BTreeMap::new(), &line[name_end..]),
                };
                let value = match rest.trim() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
                };
                parsed.samples.push(Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                });
            }
        }
        parsed
    }

    /// Distributions from durations, as the tracer buckets them (each value counts in
    /// every bucket whose bound it does not exceed).
    fn buckets(values_ns: &[u64]) -> Buckets {
        let mut buckets = Buckets::default();
        for &value in values_ns {
            for (count, bound) in buckets.le.iter_mut().zip(BUCKET_BOUNDS_NS) {
                *count += u64::from(value <= bound);
            }
            buckets.count += 1;
            buckets.sum_ns += u128::from(value);
        }
        buckets
    }

    fn named(name: &str, addr: u64) -> LockRef {
        LockRef {
            addr,
            name: Some(name.to_owned()),
            location: None,
            name_source: None,
        }
    }

    fn live(lock: LockRef, kind: LockKind, waits_ns: &[u64], holds_ns: Option<&[u64]>) -> LiveLock {
        LiveLock {
            lock,
            kind,
            contentions: waits_ns.len() as u64 + 3,
            wait: buckets(waits_ns),
            hold: holds_ns.map(buckets),
        }
    }

    fn target(
        pid: u32,
        comm: &str,
        locks: Vec<LiveLock>,
        other: Vec<OtherLiveLocks>,
    ) -> TargetSnapshot {
        TargetSnapshot {
            pid,
            comm: comm.to_owned(),
            attached: true,
            locks,
            other,
            deadlocks: u64::from(pid % 3),
            lock_order_inversions: u64::from(pid % 2),
            stuck_locks: u64::from(pid % 5),
            events: u64::from(pid) * 10,
            dropped: u64::from(pid % 7),
            sleep_sample_period: 1 << (pid % 4),
        }
    }

    fn tracer() -> TracerState {
        TracerState {
            targets_attached: 2,
            cpu_seconds: 12.75,
            resident_bytes: 48 * 1024 * 1024,
            version: "0.1.0",
            targets_refused_total: 4,
            attaches_total: 9,
            sched_switch_duty_factor: 4,
        }
    }

    const WAITS_NS: [u64; 6] = [800, 3_000, 3_000, 40_000_000, 7_000_000_000, 30_000_000_000];

    fn rendered(targets: &[TargetSnapshot]) -> Parsed {
        let text = render(targets, &tracer()).expect("renders");
        let parsed = parse(&text);
        assert_distinct_series(&parsed);
        parsed
    }

    /// No series (name and labels) appears twice: Prometheus would drop the repeats.
    fn assert_distinct_series(parsed: &Parsed) {
        let mut seen = BTreeSet::new();
        for sample in &parsed.samples {
            assert!(
                seen.insert((sample.name.clone(), sample.labels.clone())),
                "repeated series {sample:?}"
            );
        }
    }

    /// Guards the unit conversion and the cumulation: each `le` bucket (in seconds) counts
    /// exactly the waits not above it, `+Inf` and `_count` count them all, and `_sum` is
    /// their total in seconds.
    #[test]
    fn wait_histogram_is_cumulative_in_seconds() {
        let lock = live(
            named("alice_lock", 0x1000),
            LockKind::Mutex,
            &WAITS_NS,
            None,
        );
        let parsed = rendered(&[target(41, "bank", vec![lock], vec![])]);
        let buckets: Vec<&Sample> = parsed.samples("tracer_lock_wait_seconds_bucket").collect();
        assert_eq!(buckets.len(), BUCKET_BOUNDS_NS.len() + 1);
        let waits_s: Vec<f64> = WAITS_NS.iter().map(|&ns| ns as f64 / 1e9).collect();
        for (bucket, bound_ns) in buckets.iter().zip(BUCKET_BOUNDS_NS) {
            let le: f64 = bucket.labels["le"].parse().expect("le is a number");
            assert!(
                (le - bound_ns as f64 / 1e9).abs() <= le * 1e-12,
                "{bucket:?}"
            );
            let below = waits_s.iter().filter(|&&w| w <= le).count();
            assert_eq!(bucket.value, below as f64, "{bucket:?}");
        }
        let inf = buckets.last().expect("an +Inf bucket");
        assert_eq!(inf.labels["le"], "+Inf");
        assert_eq!(inf.value, WAITS_NS.len() as f64);
        let labels = [("lock", "alice_lock")];
        assert_eq!(
            parsed.value("tracer_lock_wait_seconds_count", &labels),
            inf.value
        );
        let sum = parsed.value("tracer_lock_wait_seconds_sum", &labels);
        assert!((sum - waits_s.iter().sum::<f64>()).abs() < 1e-9, "{sum}");
        // Prometheus's own spelling of the bounds (Go's %g): what its queries match on.
        let les: Vec<&str> = buckets.iter().map(|b| b.labels["le"].as_str()).collect();
        assert_eq!(&les[..3], ["1e-06", "2.5e-06", "5e-06"]);
        assert_eq!(les[BUCKET_BOUNDS_NS.len() - 1], "10");
    }

    /// Guards the label sets: lock series carry pid, comm, lock and type; target series
    /// pid and comm; the tracer's own series none but the build info's version.
    #[test]
    fn series_have_their_label_sets() {
        let with_holds = live(
            named("a", 0x10),
            LockKind::GoMutex,
            &WAITS_NS,
            Some(&[5_000]),
        );
        let parsed = rendered(&[target(7, "svc", vec![with_holds], vec![])]);
        let keys = |s: &Sample| s.labels.keys().cloned().collect::<Vec<_>>();
        for sample in &parsed.samples {
            let expected: &[&str] = match sample.name.as_str() {
                "tracer_lock_wait_seconds_bucket" | "tracer_lock_hold_seconds_bucket" => {
                    &["comm", "le", "lock", "pid", "type"]
                }
                "tracer_deadlocks_total"
                | "tracer_lock_order_inversions_total"
                | "tracer_stuck_locks"
                | "tracer_events_dropped_total"
                | "tracer_events_total"
                | "tracer_sleep_sample_period"
                | "tracer_target_attached" => &["comm", "pid"],
                name if name.starts_with("tracer_lock_") => &["comm", "lock", "pid", "type"],
                "tracer_build_info" => &["version"],
                _ => &[],
            };
            assert_eq!(keys(sample), expected, "{sample:?}");
        }
        let lock = [
            ("pid", "7"),
            ("comm", "svc"),
            ("lock", "a"),
            ("type", "go_mutex"),
        ];
        assert_eq!(parsed.value("tracer_lock_hold_seconds_count", &lock), 1.0);
        assert_eq!(parsed.value("tracer_lock_contentions_total", &lock), 9.0);
    }

    /// Guards the names and types: every family has a HELP line that says something and
    /// a TYPE, counters end in `_total` exactly once, and the set of families is the one
    /// the dashboards are written against.
    #[test]
    fn families_have_help_type_and_conventional_names() {
        let lock = live(named("a", 0x10), LockKind::Mutex, &WAITS_NS, Some(&[1_000]));
        let parsed = rendered(&[target(7, "svc", vec![lock], vec![])]);
        let expected = [
            ("tracer_lock_wait_seconds", "histogram"),
            ("tracer_lock_hold_seconds", "histogram"),
            ("tracer_lock_contentions_total", "counter"),
            ("tracer_deadlocks_total", "counter"),
            ("tracer_lock_order_inversions_total", "counter"),
            ("tracer_stuck_locks", "gauge"),
            ("tracer_events_dropped_total", "counter"),
            ("tracer_events_total", "counter"),
            ("tracer_sleep_sample_period", "gauge"),
            ("tracer_target_attached", "gauge"),
            ("tracer_targets", "gauge"),
            ("tracer_attaches_total", "counter"),
            ("tracer_targets_refused_total", "counter"),
            ("tracer_sched_switch_duty_factor", "gauge"),
            ("tracer_build_info", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
        ];
        let types: Vec<(&str, &str)> = parsed
            .families
            .iter()
            .map(|f| (f.as_str(), parsed.types[f].as_str()))
            .collect();
        assert_eq!(types, expected);
        for family in &parsed.families {
            assert!(
                parsed.help[family].len() > 20,
                "{family}: {}",
                parsed.help[family]
            );
            assert_eq!(
                family.matches("_total").count(),
                usize::from(parsed.types[family] == "counter"),
                "{family}"
            );
        }
        for sample in &parsed.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = sample.name.strip_suffix(suffix)?;
                    (parsed.types.get(base).map(String::as_str) == Some("histogram"))
                        .then_some(base)
                })
                .unwrap_or(&sample.name);
            assert!(parsed.types.contains_key(family), "{sample:?} has no TYPE");
        }
    }

    /// Guards the tracer's own series: each carries the value the caller gave.
    #[test]
    fn tracer_state_is_exported() {
        let parsed = rendered(&[]);
        let state = tracer();
        assert_eq!(
            parsed.value("tracer_targets", &[]),
            state.targets_attached as f64
        );
        assert_eq!(
            parsed.value("tracer_attaches_total", &[]),
            state.attaches_total as f64
        );
        assert_eq!(
            parsed.value("tracer_sched_switch_duty_factor", &[]),
            state.sched_switch_duty_factor as f64
        );
        assert_eq!(
            parsed.value("tracer_targets_refused_total", &[]),
            state.targets_refused_total as f64
        );
        assert_eq!(
            parsed.value("tracer_build_info", &[("version", state.version)]),
            1.0
        );
        assert_eq!(
            parsed.value("process_cpu_seconds_total", &[]),
            state.cpu_seconds
        );
        assert_eq!(
            parsed.value("process_resident_memory_bytes", &[]),
            state.resident_bytes as f64
        );
        // Without targets, no per-target or lock family is written at all.
        assert!(
            parsed
                .families
                .iter()
                .all(|f| !f.starts_with("tracer_lock") && f != "tracer_events_total"),
            "{:?}",
            parsed.families
        );
    }

    /// Guards the per-target series: counters, gauges and `attached` as 1/0, for each
    /// target by its pid and comm.
    #[test]
    fn target_series_carry_their_counters() {
        let mut gone = target(12, "worker", vec![], vec![]);
        gone.attached = false;
        let targets = [target(11, "api", vec![], vec![]), gone];
        let parsed = rendered(&targets);
        for snapshot in &targets {
            let pid = snapshot.pid.to_string();
            let labels = [("pid", pid.as_str()), ("comm", snapshot.comm.as_str())];
            let value = |name| parsed.value(name, &labels);
            assert_eq!(value("tracer_deadlocks_total"), snapshot.deadlocks as f64);
            assert_eq!(
                value("tracer_lock_order_inversions_total"),
                snapshot.lock_order_inversions as f64
            );
            assert_eq!(value("tracer_stuck_locks"), snapshot.stuck_locks as f64);
            assert_eq!(value("tracer_events_total"), snapshot.events as f64);
            assert_eq!(
                value("tracer_events_dropped_total"),
                snapshot.dropped as f64
            );
            assert_eq!(
                value("tracer_sleep_sample_period"),
                f64::from(snapshot.sleep_sample_period)
            );
            assert_eq!(
                value("tracer_target_attached"),
                f64::from(u8::from(snapshot.attached))
            );
        }
    }

    /// Guards the `other` aggregates: one series per kind, `lock="other"` and the kind as
    /// `type`, with their summed counts; a hold histogram only where holds were traced.
    #[test]
    fn other_locks_are_one_series_per_kind() {
        let other = |kind, waits: &[u64], holds: Option<&[u64]>| OtherLiveLocks {
            kind,
            locks: 40,
            contentions: 1_000 + waits.len() as u64,
            wait: buckets(waits),
            hold: holds.map(buckets),
        };
        let top = live(named("hot", 0x10), LockKind::Mutex, &WAITS_NS, None);
        let snapshot = target(
            5,
            "db",
            vec![top],
            vec![
                other(LockKind::Mutex, &[1_000, 2_000], Some(&[3_000])),
                other(LockKind::RwLock, &[60_000_000_000], None),
            ],
        );
        let parsed = rendered(&[snapshot]);
        let mutexes = [("lock", "other"), ("type", "mutex")];
        let rwlocks = [("lock", "other"), ("type", "rwlock")];
        assert_eq!(
            parsed.value("tracer_lock_contentions_total", &mutexes),
            1_002.0
        );
        assert_eq!(
            parsed.value("tracer_lock_contentions_total", &rwlocks),
            1_001.0
        );
        assert_eq!(
            parsed.value("tracer_lock_wait_seconds_count", &mutexes),
            2.0
        );
        assert!((parsed.value("tracer_lock_wait_seconds_sum", &mutexes) - 3e-6).abs() < 1e-15);
        // A wait longer than the last bound counts only in +Inf.
        assert_eq!(
            parsed.value(
                "tracer_lock_wait_seconds_bucket",
                &[rwlocks[0], rwlocks[1], ("le", "10")]
            ),
            0.0
        );
        assert_eq!(
            parsed.value(
                "tracer_lock_wait_seconds_bucket",
                &[rwlocks[0], rwlocks[1], ("le", "+Inf")]
            ),
            1.0
        );
        let holds: Vec<&Sample> = parsed.samples("tracer_lock_hold_seconds_count").collect();
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds[0].labels["lock"], "other");
        assert_eq!(holds[0].labels["type"], "mutex");
    }

    /// Guards label escaping: C++ lock names with quotes, backslashes and a newline (and a
    /// comm with them) come back unchanged from the exposition.
    #[test]
    fn label_values_are_escaped() {
        let names = [
            r#"Registry<std::string, "quoted">::mutex_"#,
            r"C:\path\lock",
            "two\nlines",
            "trailing backslash\\",
        ];
        let locks = names
            .iter()
            .zip(1u64..)
            .map(|(name, i)| live(named(name, i * 0x40), LockKind::Mutex, &[1_000], None))
            .collect();
        let comm = "we\"ird\\ comm";
        let parsed = rendered(&[target(9, comm, locks, vec![])]);
        let exported: BTreeSet<&str> = parsed
            .samples("tracer_lock_contentions_total")
            .map(|s| {
                assert_eq!(s.labels["comm"], comm);
                s.labels["lock"].as_str()
            })
            .collect();
        assert_eq!(exported, names.into_iter().collect());
    }

    /// Guards distinct series when labels would repeat: two locks at the same location
    /// (`[stack]`), two statics of the same name, and a lock named like the aggregate
    /// get their address added; unnamed locks keep their address; a different kind with
    /// the same name needs nothing.
    #[test]
    fn repeated_lock_labels_get_their_address() {
        let located = |addr| LockRef {
            addr,
            name: None,
            location: Some("[stack]".to_owned()),
            name_source: None,
        };
        let anonymous = LockRef {
            addr: 0xabc0,
            name: None,
            location: None,
            name_source: None,
        };
        let locks = vec![
            live(located(0x7ffd_0010), LockKind::Mutex, &[1_000], None),
            live(located(0x7ffd_0050), LockKind::Mutex, &[1_000], None),
            live(named("lock", 0x100), LockKind::Mutex, &[1_000], None),
            live(named("lock", 0x200), LockKind::Mutex, &[1_000], None),
            live(named("lock", 0x300), LockKind::RwLock, &[1_000], None),
            live(named("other", 0x400), LockKind::Mutex, &[1_000], None),
            live(anonymous, LockKind::Futex, &[1_000], None),
        ];
        let aggregate = OtherLiveLocks {
            kind: LockKind::Mutex,
            locks: 3,
            contentions: 3,
            wait: buckets(&[1_000]),
            hold: None,
        };
        let parsed = rendered(&[target(3, "app", locks, vec![aggregate])]);
        let labels: Vec<(&str, &str)> = parsed
            .samples("tracer_lock_contentions_total")
            .map(|s| (s.labels["lock"].as_str(), s.labels["type"].as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("[stack] (0x7ffd0010)", "mutex"),
                ("[stack] (0x7ffd0050)", "mutex"),
                ("lock (0x100)", "mutex"),
                ("lock (0x200)", "mutex"),
                ("lock", "rwlock"),
                ("other (0x400)", "mutex"),
                ("0xabc0", "futex"),
                ("other", "mutex"),
            ]
        );
    }

    /// Guards a pid reused while an exited target's series are kept: the same pid and
    /// comm are written once, from the attached snapshot.
    #[test]
    fn a_reused_pid_is_written_once() {
        let mut exited = target(20, "job", vec![], vec![]);
        exited.attached = false;
        exited.events = 1;
        let mut running = target(20, "job", vec![], vec![]);
        running.events = 2;
        let parsed = rendered(&[exited, running]);
        assert_eq!(parsed.value("tracer_events_total", &[("pid", "20")]), 2.0);
        assert_eq!(
            parsed.value("tracer_target_attached", &[("pid", "20")]),
            1.0
        );
    }

    /// Guards a malformed distribution (cumulative counts that go down, a count below
    /// them): the exposition stays a valid histogram, monotonic, `+Inf` equal to `_count`.
    #[test]
    fn inconsistent_buckets_still_make_a_valid_histogram() {
        let mut lock = live(named("a", 0x10), LockKind::Mutex, &[], None);
        lock.wait.le[0] = 5;
        lock.wait.le[1] = 3;
        lock.wait.count = 1;
        let parsed = rendered(&[target(1, "x", vec![lock], vec![])]);
        let counts: Vec<f64> = parsed
            .samples("tracer_lock_wait_seconds_bucket")
            .map(|s| s.value)
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(counts.last().copied(), Some(5.0));
        assert_eq!(parsed.value("tracer_lock_wait_seconds_count", &[]), 5.0);
    }
}
