//! The wait-for chains of the moment as an indented tree: who waits for whom, through
//! which lock.
//!
//! A root is a thread that holds a lock others wait for and waits for nothing itself (the
//! head of a chain: everything under it waits, directly or not, for it to go on), or a
//! lock whose holder nobody knows. Under a thread come the threads waiting for a lock it
//! holds. Threads that wait in a cycle have no such head: each cycle is shown from one
//! of its threads, and the thread that closes it is marked.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use super::format::{duration, live_thread};
use crate::model::live::{LiveThread, LiveWait};

/// Deepest level shown: a longer chain is cut with a mark.
const MAX_DEPTH: usize = 8;

/// One line of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLine {
    /// Nesting level (0: a root).
    pub depth: usize,
    /// What it says.
    pub text: String,
}

/// The tree of `waits`, roots in order of the longest wait behind them.
#[must_use]
pub fn wait_for_tree(waits: &[LiveWait]) -> Vec<ChainLine> {
    // holder (its key) → the waits behind it.
    let mut behind: FxHashMap<u64, Vec<&LiveWait>> = FxHashMap::default();
    let mut holder_unknown: Vec<&LiveWait> = Vec::new();
    for wait in waits {
        if wait.holders.is_empty() {
            holder_unknown.push(wait);
        }
        for holder in &wait.holders {
            behind.entry(holder.key()).or_default().push(wait);
        }
    }
    let waiting: FxHashMap<u64, &LiveWait> = waits.iter().map(|w| (w.waiter.key(), w)).collect();
    let mut lines = Vec::new();
    let mut shown: BTreeSet<u64> = BTreeSet::new();
    // Heads: holders that wait for nothing, in the order of the waits (longest first).
    let mut heads: Vec<&LiveThread> = Vec::new();
    for wait in waits {
        for holder in &wait.holders {
            if !waiting.contains_key(&holder.key())
                && !heads.iter().any(|h| h.key() == holder.key())
            {
                heads.push(holder);
            }
        }
    }
    for head in heads {
        lines.push(ChainLine {
            depth: 0,
            text: format!("{} runs", live_thread(head)),
        });
        shown.insert(head.key());
        children(head.key(), 1, &behind, &mut shown, &mut lines);
    }
    // Locks nobody is known to hold: the lock is the root.
    let mut locks_shown: Vec<u64> = Vec::new();
    for wait in &holder_unknown {
        if locks_shown.contains(&wait.lock.addr) {
            continue;
        }
        locks_shown.push(wait.lock.addr);
        lines.push(ChainLine {
            depth: 0,
            text: format!("{} (holder unknown)", wait.lock.label()),
        });
        for w in holder_unknown
            .iter()
            .filter(|w| w.lock.addr == wait.lock.addr)
        {
            if shown.insert(w.waiter.key()) {
                lines.push(waiter_line(w, 1));
                children(w.waiter.key(), 2, &behind, &mut shown, &mut lines);
            }
        }
    }
    // What is left waits in cycles: show each from its longest-waiting thread.
    for wait in waits {
        if shown.insert(wait.waiter.key()) {
            lines.push(ChainLine {
                depth: 0,
                text: format!(
                    "{} waits {} for {} (cycle)",
                    live_thread(&wait.waiter),
                    duration(u128::from(wait.waited_ns)),
                    wait.lock.label()
                ),
            });
            children(wait.waiter.key(), 1, &behind, &mut shown, &mut lines);
        }
    }
    lines
}

/// The lines of the threads waiting behind the one keyed `key`, and theirs, at `depth`.
fn children(
    key: u64,
    depth: usize,
    behind: &FxHashMap<u64, Vec<&LiveWait>>,
    shown: &mut BTreeSet<u64>,
    lines: &mut Vec<ChainLine>,
) {
    let Some(waits) = behind.get(&key) else {
        return;
    };
    for wait in waits {
        let waiter = wait.waiter.key();
        if depth > MAX_DEPTH {
            lines.push(ChainLine {
                depth,
                text: "...".to_owned(),
            });
            return;
        }
        if !shown.insert(waiter) {
            // Already in the tree: a cycle closes here (or a second holder's view).
            let mut line = waiter_line(wait, depth);
            line.text.push_str(" (cycle)");
            lines.push(line);
            continue;
        }
        lines.push(waiter_line(wait, depth));
        children(waiter, depth + 1, behind, shown, lines);
    }
}

fn waiter_line(wait: &LiveWait, depth: usize) -> ChainLine {
    ChainLine {
        depth,
        text: format!(
            "{} waits {} for {}",
            live_thread(&wait.waiter),
            duration(u128::from(wait.waited_ns)),
            wait.lock.label()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        LockRef,
        live::{LiveThread, LiveWait},
    };

    fn wait(waiter: u32, lock: &str, addr: u64, holders: &[u32], waited_ms: u64) -> LiveWait {
        LiveWait {
            waiter: LiveThread::native(waiter, format!("t{waiter}")),
            lock: LockRef {
                addr,
                name: Some(lock.to_owned()),
                location: None,
                name_source: None,
            },
            waited_ns: waited_ms * 1_000_000,
            holders: holders
                .iter()
                .map(|&tid| LiveThread::native(tid, format!("t{tid}")))
                .collect(),
        }
    }

    fn render(lines: &[ChainLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{}{}", "  ".repeat(l.depth), l.text))
            .collect()
    }

    /// Guards the chain's shape: the running holder at the root, its waiters under it,
    /// and the waiters of a lock a waiter holds under that waiter.
    #[test]
    fn a_chain_hangs_from_the_thread_that_runs() {
        let waits = [
            wait(2, "a", 0xa, &[1], 30),
            wait(3, "b", 0xb, &[2], 20),
            wait(4, "a", 0xa, &[1], 10),
        ];
        assert_eq!(
            render(&wait_for_tree(&waits)),
            vec![
                "T1 t1 runs",
                "  T2 t2 waits 30.0ms for a",
                "    T3 t3 waits 20.0ms for b",
                "  T4 t4 waits 10.0ms for a",
            ]
        );
    }

    /// Guards deadlocks in the pane: a cycle has no running head, yet every thread of it
    /// shows, and the line that closes it is marked (no endless recursion).
    #[test]
    fn a_cycle_is_shown_once_and_marked() {
        let waits = [wait(1, "a", 0xa, &[2], 50), wait(2, "b", 0xb, &[1], 40)];
        assert_eq!(
            render(&wait_for_tree(&waits)),
            vec![
                "T1 t1 waits 50.0ms for a (cycle)",
                "  T2 t2 waits 40.0ms for b",
                "    T1 t1 waits 50.0ms for a (cycle)",
            ]
        );
    }

    /// Guards waits whose holder is unknown: they hang from their lock.
    #[test]
    fn waits_with_no_known_holder_hang_from_their_lock() {
        let waits = [wait(5, "c", 0xc, &[], 1), wait(6, "c", 0xc, &[], 2)];
        assert_eq!(
            render(&wait_for_tree(&waits)),
            vec![
                "c (holder unknown)",
                "  T5 t5 waits 1.00ms for c",
                "  T6 t6 waits 2.00ms for c",
            ]
        );
    }
}
