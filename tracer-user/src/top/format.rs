//! Compact, ASCII-only values for the view's narrow columns (an 80-column terminal, any
//! character set).

use super::window::BucketBound;
use crate::units;

/// A duration: "850ns", "12.3us", "4.56ms", "1.20s" (the text report's units, without
/// the space and with `us`, so any terminal shows it).
#[must_use]
pub fn duration(ns: u128) -> String {
    units::duration_ns(u64::try_from(ns).unwrap_or(u64::MAX))
        .replace(' ', "")
        .replace('\u{b5}', "u")
}

/// A bucket bound, read "at most": "<2.50ms", ">10s" (past the last bound), or "-"
/// with no value.
#[must_use]
pub fn bound(bound: Option<BucketBound>) -> String {
    match bound {
        None => "-".to_owned(),
        Some(BucketBound::AtMost(ns)) => format!("<{}", duration(u128::from(ns))),
        Some(BucketBound::Beyond) => ">10s".to_owned(),
    }
}

/// A rate given in tenths per second: "0.5", "12.3", "4.5k".
#[must_use]
pub fn per_second(tenths: u64) -> String {
    if tenths < 1_000 {
        format!("{}.{}", tenths / 10, tenths % 10)
    } else {
        units::count(tenths / 10)
    }
}

/// A thread or goroutine of a snapshot: `T1234 name`, or `G17` for a goroutine.
#[must_use]
pub fn live_thread(thread: &crate::model::live::LiveThread) -> String {
    match thread.goid {
        Some(goid) => format!("G{goid}"),
        None => self::thread(thread.tid, &thread.name),
    }
}

/// A thread: "T1234 name".
#[must_use]
pub fn thread(tid: u32, name: &str) -> String {
    if name.is_empty() {
        format!("T{tid}")
    } else {
        format!("T{tid} {name}")
    }
}

/// `text` cut to `width` characters, the cut marked with `~`.
#[must_use]
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the columns: every value fits 7 characters and is plain ASCII.
    #[test]
    fn values_are_short_and_ascii() {
        assert_eq!(duration(12_300), "12.3us");
        assert_eq!(bound(Some(BucketBound::AtMost(2_500_000))), "<2.50ms");
        assert_eq!(bound(Some(BucketBound::Beyond)), ">10s");
        assert_eq!(per_second(999), "99.9");
        assert_eq!(per_second(1234), "123");
        assert_eq!(per_second(123_456), "12.3k");
        assert_eq!(fit("abcdef", 4), "abc~");
        for ns in [1u64, 999, 1_000, 999_999, 9_999_999_999] {
            let s = bound(Some(BucketBound::AtMost(ns)));
            assert!(s.len() <= 8 && s.is_ascii(), "{s}");
        }
    }
}
