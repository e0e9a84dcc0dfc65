//! Human-readable units for the text report.
//!
//! Integer arithmetic only: values are exact up to `u64::MAX`, and rounding that carries into
//! the next unit ("999.96 µs") moves up to that unit ("1.00 ms") instead of printing "1000 µs".

/// Sub-second units above nanoseconds: size in ns and suffix.
const SUBSECOND_UNITS: [(u64, &str); 2] = [(1_000, "µs"), (1_000_000, "ms")];

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_MIN: u64 = 60 * NS_PER_SEC;

/// `n / d` rounded half up, without overflow.
fn div_round(n: u128, d: u128) -> u128 {
    (n + d / 2) / d
}

/// `value / unit` with three significant digits ("1.23", "12.3", "123"), or `None` when it
/// rounds to 1000 or more.
fn three_digits(value: u64, unit: u64) -> Option<String> {
    let (value, unit) = (u128::from(value), u128::from(unit));
    let hundredths = div_round(value * 100, unit);
    if hundredths < 1_000 {
        return Some(format!("{}.{:02}", hundredths / 100, hundredths % 100));
    }
    let tenths = div_round(value * 10, unit);
    if tenths < 1_000 {
        return Some(format!("{}.{}", tenths / 10, tenths % 10));
    }
    let whole = div_round(value, unit);
    (whole < 1_000).then(|| whole.to_string())
}

/// A duration in nanoseconds, with three significant digits below a minute:
/// "0 ns", "850 ns", "12.3 µs", "4.56 ms", "1.20 s", "59.9 s", then "3m 04s", then "2h 05m".
#[must_use]
pub fn duration_ns(ns: u64) -> String {
    if ns < 1_000 {
        return format!("{ns} ns");
    }
    for (unit, suffix) in SUBSECOND_UNITS {
        if let Some(v) = three_digits(ns, unit) {
            return format!("{v} {suffix}");
        }
    }
    // Seconds keep three digits only below a minute ("59.9 s"); past that, minutes read better.
    let wide = u128::from(ns);
    let hundredths = div_round(wide * 100, u128::from(NS_PER_SEC));
    if hundredths < 1_000 {
        return format!("{}.{:02} s", hundredths / 100, hundredths % 100);
    }
    let tenths = div_round(wide * 10, u128::from(NS_PER_SEC));
    if tenths < 600 {
        return format!("{}.{} s", tenths / 10, tenths % 10);
    }
    let secs = div_round(wide, u128::from(NS_PER_SEC));
    if secs < 3_600 {
        return format!("{}m {:02}s", secs / 60, secs % 60);
    }
    let mins = div_round(wide, u128::from(NS_PER_MIN));
    format!("{}h {:02}m", mins / 60, mins % 60)
}

/// Count suffixes: size and suffix.
const COUNT_UNITS: [(u64, &str); 6] = [
    (1_000, "k"),
    (1_000_000, "M"),
    (1_000_000_000, "G"),
    (1_000_000_000_000, "T"),
    (1_000_000_000_000_000, "P"),
    (1_000_000_000_000_000_000, "E"),
];

/// A count: exact below 1000 ("999"), else one decimal below 100 of a unit ("12.3k",
/// "4.5M") and whole units above ("123k").
#[must_use]
pub fn count(n: u64) -> String {
    if n < 1_000 {
        return n.to_string();
    }
    let wide = u128::from(n);
    for (unit, suffix) in COUNT_UNITS {
        let tenths = div_round(wide * 10, u128::from(unit));
        if tenths < 1_000 {
            return format!("{}.{}{suffix}", tenths / 10, tenths % 10);
        }
        let whole = div_round(wide, u128::from(unit));
        if whole < 1_000 {
            return format!("{whole}{suffix}");
        }
    }
    // u64::MAX is 18.4E, so the loop always returns; keep an exact fallback regardless.
    n.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    const NS_PER_HOUR: u64 = 60 * NS_PER_MIN;

    #[test]
    fn nanoseconds() {
        assert_eq!(duration_ns(0), "0 ns");
        assert_eq!(duration_ns(1), "1 ns");
        assert_eq!(duration_ns(850), "850 ns");
        assert_eq!(duration_ns(999), "999 ns");
    }

    #[test]
    fn micro_and_milli() {
        assert_eq!(duration_ns(1_000), "1.00 µs");
        assert_eq!(duration_ns(1_234), "1.23 µs");
        assert_eq!(duration_ns(1_235), "1.24 µs"); // half up
        assert_eq!(duration_ns(12_345), "12.3 µs");
        assert_eq!(duration_ns(123_456), "123 µs");
        assert_eq!(duration_ns(999_499), "999 µs");
        // Rounds to 1000 µs: carried into the next unit.
        assert_eq!(duration_ns(999_500), "1.00 ms");
        assert_eq!(duration_ns(9_995), "10.0 µs");
        assert_eq!(duration_ns(99_950), "100 µs");
        assert_eq!(duration_ns(4_560_000), "4.56 ms");
        assert_eq!(duration_ns(45_600_000), "45.6 ms");
        assert_eq!(duration_ns(999_600_000), "1.00 s");
    }

    #[test]
    fn seconds_minutes_hours() {
        assert_eq!(duration_ns(1_200_000_000), "1.20 s");
        assert_eq!(duration_ns(12_340_000_000), "12.3 s");
        assert_eq!(duration_ns(59_940_000_000), "59.9 s");
        assert_eq!(duration_ns(59_950_000_000), "1m 00s");
        assert_eq!(duration_ns(60 * NS_PER_SEC), "1m 00s");
        assert_eq!(duration_ns(184 * NS_PER_SEC), "3m 04s");
        assert_eq!(duration_ns(3_599 * NS_PER_SEC), "59m 59s");
        assert_eq!(duration_ns(3_599 * NS_PER_SEC + 600_000_000), "1h 00m");
        assert_eq!(duration_ns(2 * NS_PER_HOUR + 5 * NS_PER_MIN), "2h 05m");
        assert_eq!(duration_ns(u64::MAX), "5124095h 35m");
    }

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1.0k");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(99_949), "99.9k");
        assert_eq!(count(99_950), "100k");
        assert_eq!(count(123_456), "123k");
        assert_eq!(count(999_499), "999k");
        assert_eq!(count(999_500), "1.0M");
        assert_eq!(count(4_500_000), "4.5M");
        assert_eq!(count(u64::MAX), "18.4E");
    }
}
