//! The JSON sink: newline-delimited JSON, one object per line, each with a `"kind"`
//! (`"deadlock"`, `"stuck_lock"` or `"summary"`). The shapes are the serde derives of
//! `crate::model`.

use std::io::{self, Write};

use serde::Serialize;

use super::Sink;
use crate::model::{Finding, Summary};

/// Writes each finding and the summary as one JSON line.
pub struct JsonSink<'a> {
    out: &'a mut dyn Write,
    /// With several targets (`tracer serve`): the process each line is about, added to
    /// every line as `"pid"` and `"comm"`.
    target: Option<(u32, String)>,
}

impl<'a> JsonSink<'a> {
    #[must_use]
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self { out, target: None }
    }

    /// A sink whose lines each say which process they are about (`"pid"`, `"comm"`), for
    /// output that interleaves several targets.
    #[must_use]
    pub fn for_target(out: &'a mut dyn Write, pid: u32, comm: String) -> Self {
        Self {
            out,
            target: Some((pid, comm)),
        }
    }

    fn record<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let text = match &self.target {
            None => json_line(value),
            Some((pid, comm)) => tagged_json_line(value, *pid, comm),
        };
        self.line(&text)
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

impl Sink for JsonSink<'_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.record(finding)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.record(summary)
    }
}

/// Serializes to one JSON line (no trailing newline).
///
/// Our types always serialize (string keys, no fallible `Serialize` impls), but rather than
/// panic on the impossible, emit a JSON line that says what went wrong so consumers still get
/// valid NDJSON.
fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        serde_json::json!({ "kind": "error", "error": err.to_string() }).to_string()
    })
}

/// [`json_line`] with `"pid"` and `"comm"` added (a summary has its `"pid"` already).
fn tagged_json_line<T: Serialize>(value: &T, pid: u32, comm: &str) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("pid".to_owned(), pid.into());
            fields.insert("comm".to_owned(), comm.into());
            serde_json::Value::Object(fields).to_string()
        }
        _ => json_line(value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::model::fixtures::{deadlock, lock, summary};

    fn deadlock_json(d: &crate::model::Deadlock) -> String {
        json_line(d)
    }

    fn summary_json(s: &Summary) -> String {
        json_line(s)
    }

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "JSON must be one line: {line:?}");
        serde_json::from_str(line).expect("valid JSON")
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    fn assert_quantiles(v: &Value) {
        assert_eq!(keys(v), ["count", "max", "p50", "p90", "p99", "total"]);
        for k in keys(v) {
            assert!(v[k].is_u64(), "{k} is not an integer: {v}");
        }
    }

    #[test]
    fn deadlock_json_shape() {
        let v = parse(&deadlock_json(&deadlock()));
        assert_eq!(v["kind"], "deadlock");
        assert_eq!(v["detected_after_ns"], 1_500_000);
        let cycle = v["cycle"].as_array().expect("cycle is an array");
        assert_eq!(cycle.len(), 2);
        let first = &cycle[0];
        assert_eq!(
            keys(first),
            [
                "acquired_at",
                "blocked_before_attach",
                "held_ns",
                "holds",
                "stack",
                "thread",
                "tid",
                "timed",
                "timeout_ns",
                "waited_ns",
                "waits_for"
            ]
        );
        assert_eq!(
            keys(&v),
            ["cycle", "detected_after_ns", "kind", "will_time_out"]
        );
        assert_eq!(v["will_time_out"], false);
        assert_eq!(first["timed"], false);
        assert_eq!(first["timeout_ns"], Value::Null, "null for an untimed wait");
        assert_eq!(first["tid"], 1234);
        assert_eq!(first["thread"], "worker-a");
        assert_eq!(first["holds"]["addr"], "0x55d0aa00");
        assert_eq!(first["holds"]["name"], "lock_a");
        assert_eq!(first["waits_for"]["addr"], "0x55d0bb00");
        assert_eq!(keys(&first["waits_for"]), ["addr", "name"]);
        // Function names only: file:line detail stays out of JSON.
        assert_eq!(
            first["stack"],
            serde_json::json!(["pthread_mutex_lock", "worker_a"])
        );
        assert_eq!(cycle[1]["waited_ns"], Value::Null);
        assert_eq!(cycle[1]["blocked_before_attach"], true);
        assert!(
            cycle[1].get("acquired_at").is_none(),
            "empty acquisition stacks are left out"
        );
        assert_eq!(first["acquired_at"], serde_json::json!(["worker_a"]));
    }

    #[test]
    fn lock_name_null_when_unknown() {
        let v = serde_json::to_value(lock(0xABC, None)).expect("serializes");
        assert_eq!(v, serde_json::json!({"addr": "0xabc", "name": null}));
    }

    /// Guards the PID a target in a container knows itself by: present as `ns_pid` when
    /// it differs from the host PID, absent otherwise.
    #[test]
    fn summary_json_names_the_pid_inside_a_namespace() {
        let mut s = summary();
        s.ns_pid = Some(7);
        let v = parse(&summary_json(&s));
        assert_eq!(
            (v["pid"].as_u64(), v["ns_pid"].as_u64()),
            (Some(4242), Some(7))
        );
        s.ns_pid = None;
        assert!(parse(&summary_json(&s)).get("ns_pid").is_none());
    }

    #[test]
    fn summary_json_shape() {
        let mut s = summary();
        s.sort_locks();
        let v = parse(&summary_json(&s));
        assert_eq!(
            keys(&v),
            [
                "brief_lock_waits",
                "deadlocks",
                "dropped",
                "duration_ns",
                "events",
                "futex_waits",
                "futex_wakes",
                "kind",
                "lock_order_inversions",
                "locks",
                "notes",
                "pid",
                "timed_cycles"
            ]
        );
        assert_eq!(v["kind"], "summary");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["duration_ns"], 12_300_000_000_u64);
        assert_eq!(v["events"], 45_600);
        assert_eq!(v["dropped"], 0);
        assert_eq!(v["notes"][0], "2 uprobes could not attach");
        let locks = v["locks"].as_array().expect("locks is an array");
        assert_eq!(locks.len(), 3);
        for l in locks {
            assert_eq!(
                keys(l),
                [
                    "addr",
                    "contentions",
                    "hold_ns",
                    "max_waiters",
                    "name",
                    "top_waiter_stack",
                    "type",
                    "wait_ns"
                ]
            );
            let addr = l["addr"].as_str().expect("addr is a string");
            assert!(addr.starts_with("0x"));
            assert!(
                addr[2..]
                    .chars()
                    .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
            );
            assert!(l["contentions"].is_u64() && l["max_waiters"].is_u64());
            assert_quantiles(&l["wait_ns"]);
        }
        let pi = &locks[0];
        assert_eq!(pi["addr"], "0x7f12ab00");
        assert_eq!(pi["name"], Value::Null);
        assert_eq!(pi["type"], "pi_mutex");
        assert_eq!(pi["wait_ns"]["total"], 90_000_000_000_u64);
        assert_quantiles(&pi["hold_ns"]);
        assert_eq!(locks[1]["type"], "mutex");
        assert_eq!(locks[2]["type"], "rwlock");
        assert_eq!(locks[2]["name"], "a_rather_long_lock_name");
        assert_eq!(locks[2]["hold_ns"], Value::Null);
    }

    /// Guards the NDJSON contract through the sink: a finding and the summary are one
    /// line each, in order, the finding exactly as its model value serializes (its own
    /// `"kind"`, no wrapper from the `Finding` enum).
    #[test]
    fn the_sink_writes_one_line_per_finding_and_summary() {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        sink.finding(&Finding::Deadlock(deadlock())).unwrap();
        sink.summary(&summary()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [deadlock_json(&deadlock()), summary_json(&summary())]
        );
        assert_eq!(parse(lines[0])["kind"], "deadlock");
        assert!(text.ends_with('\n'));
    }

    /// Guards issue 18's record: `{"kind":"lock_order_inversion","locks","edges",
    /// "harmless","gate"}`, each edge with `from`, `to`, `tid`, `thread` and both stacks,
    /// `goid` only for goroutines, and no text-only detail.
    #[test]
    fn lock_order_inversion_json_shape() {
        let mut inversion = crate::model::fixtures::inversion();
        let v = parse(&json_line(&Finding::LockOrderInversion(inversion.clone())));
        assert_eq!(keys(&v), ["edges", "gate", "harmless", "kind", "locks"]);
        assert_eq!(v["kind"], "lock_order_inversion");
        assert_eq!(v["harmless"], false);
        assert_eq!(v["gate"], Value::Null);
        assert_eq!(v["locks"][0]["name"], "lock_a");
        assert_eq!(v["locks"][1]["addr"], "0x55d0bb00");
        let edge = &v["edges"][0];
        assert_eq!(
            keys(edge),
            ["from", "from_stack", "thread", "tid", "to", "to_stack"]
        );
        assert_eq!(edge["from"]["name"], "lock_a");
        assert_eq!(edge["to"]["name"], "lock_b");
        assert_eq!(edge["tid"], 1234);
        assert_eq!(edge["from_stack"][0], "take_ab");
        assert_eq!(v["edges"][1]["thread"], "worker-b");
        inversion.edges[0].goid = Some(7);
        inversion.harmless = true;
        inversion.gate = Some(crate::model::fixtures::lock(0x6000, Some("gate")));
        let v = parse(&json_line(&Finding::LockOrderInversion(inversion)));
        assert_eq!(v["edges"][0]["goid"], 7);
        assert!(v["edges"][1].get("goid").is_none());
        assert_eq!(
            (v["harmless"].as_bool(), &v["gate"]["name"]),
            (Some(true), &Value::from("gate"))
        );
    }

    #[test]
    fn summary_json_has_other_locks_only_when_some_were_folded() {
        let mut s = summary();
        assert!(parse(&summary_json(&s)).get("other_locks").is_none());
        s.other_locks = Some(crate::model::OtherLocks {
            locks: 7,
            contentions: 9,
            wait_ns: crate::model::Quantiles::default(),
            hold_ns: None,
        });
        let v = parse(&summary_json(&s));
        let other = &v["other_locks"];
        assert_eq!(keys(other), ["contentions", "hold_ns", "locks", "wait_ns"]);
        assert_eq!(
            (other["locks"].as_u64(), other["contentions"].as_u64()),
            (Some(7), Some(9))
        );
        assert_quantiles(&other["wait_ns"]);
        assert_eq!(v["locks"].as_array().map(Vec::len), Some(s.locks.len()));
    }

    /// Guards `tracer serve`'s output: every line says which process it is about, as
    /// `"pid"` and `"comm"` after `"kind"`, with the record's own fields unchanged.
    #[test]
    fn target_lines_carry_pid_and_comm() {
        let mut out = Vec::new();
        let mut sink = JsonSink::for_target(&mut out, 4242, "api \"x\"".to_owned());
        sink.finding(&Finding::Deadlock(deadlock())).unwrap();
        sink.summary(&summary()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Value> = text.lines().map(parse).collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!(line["pid"], 4242);
            assert_eq!(line["comm"], "api \"x\"");
            assert_eq!(keys(line).len(), line.as_object().unwrap().len());
        }
        assert_eq!(lines[0]["kind"], "deadlock");
        assert_eq!(lines[0]["cycle"], parse(&json_line(&deadlock()))["cycle"]);
    }
}
