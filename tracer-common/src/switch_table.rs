//! The dispatcher's direct-mapped table of served processes
//! ([`MAP_SWITCH_TABLE`](crate::MAP_SWITCH_TABLE)): one `u64` per slot of a host TGID,
//! which answers most context switches of the host without a hash lookup.
//!
//! Every switch of the host runs the dispatcher, and on a lock-bound target a switch is
//! on the lock's hand-over path: a hash lookup there (hashing, a bucket, a compare) cost
//! measurably more than an array element the verifier inlines (BENCHMARKS.md, "Sampled
//! sleeps"). The hash ([`MAP_SWITCH_TARGETS`](crate::MAP_SWITCH_TARGETS)) stays, for the
//! processes whose table slot another one holds.

/// Slots of the table (a power of two); a host TGID's slot is `tgid % SWITCH_TABLE_LEN`.
pub const SWITCH_TABLE_LEN: u32 = 4096;

/// Set in a table entry once any served process of that slot was put in the hash only:
/// a TGID not found in the slot must then be looked up there. Kept until the dispatcher
/// is unloaded (it only costs those TGIDs a lookup).
const ELSEWHERE: u64 = 1 << 63;
/// The program-slot bits of an entry (above the TGID): the slot plus one, 0 if empty.
const SLOT_MASK: u64 = !ELSEWHERE & !0xffff_ffff;

/// What a table entry says of a TGID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchLookup {
    /// Served, from this dispatcher slot (its programs at
    /// [`HandOff::program_index`](crate::HandOff::program_index)).
    Served(u32),
    /// Maybe served, but only the hash can tell.
    InHash,
    /// Not served.
    NotServed,
}

/// The slot of the table for host TGID `tgid`.
#[must_use]
#[inline]
pub const fn switch_table_index(tgid: u32) -> u32 {
    tgid & (SWITCH_TABLE_LEN - 1)
}

/// Reads `entry`, the table's entry at `tgid`'s slot, for `tgid`.
#[must_use]
#[inline]
pub const fn switch_lookup(entry: u64, tgid: u32) -> SwitchLookup {
    let slot_plus_one = (entry & SLOT_MASK) >> 32;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the lower half of the entry is the TGID"
    )]
    if slot_plus_one != 0 && entry as u32 == tgid {
        return SwitchLookup::Served(slot_plus_one as u32 - 1);
    }
    if entry & ELSEWHERE != 0 {
        SwitchLookup::InHash
    } else {
        SwitchLookup::NotServed
    }
}

/// The entry that serves `tgid` from program slot `slot`, given the entry now there
/// (`old`); `None` if `old` holds another process (then `tgid` goes in the hash, and
/// the entry becomes [`switch_entry_elsewhere`]).
#[must_use]
pub const fn switch_entry_served(old: u64, tgid: u32, slot: u32) -> Option<u64> {
    let taken = old & SLOT_MASK != 0 && (old & 0xffff_ffff) != tgid as u64;
    if taken {
        return None;
    }
    Some((old & ELSEWHERE) | ((slot as u64 + 1) << 32) | tgid as u64)
}

/// `old` with a mark that a process of its slot was put in the hash only.
#[must_use]
pub const fn switch_entry_elsewhere(old: u64) -> u64 {
    old | ELSEWHERE
}

/// The entry once `tgid` is no longer served, given the entry now there (`old`):
/// emptied if it held `tgid`, else unchanged. The mark stays.
#[must_use]
pub const fn switch_entry_unserved(old: u64, tgid: u32) -> u64 {
    if matches!(switch_lookup(old, tgid), SwitchLookup::Served(_)) {
        old & ELSEWHERE
    } else {
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_serves_no_one() {
        assert_eq!(switch_lookup(0, 0), SwitchLookup::NotServed);
        assert_eq!(switch_lookup(0, 4242), SwitchLookup::NotServed);
    }

    #[test]
    fn a_served_process_is_found_at_its_slot_and_only_it() {
        let entry = switch_entry_served(0, 4242, 7).unwrap();
        assert_eq!(switch_lookup(entry, 4242), SwitchLookup::Served(7));
        // Another TGID of the same table slot.
        let same_slot = 4242 + SWITCH_TABLE_LEN;
        assert_eq!(switch_table_index(same_slot), switch_table_index(4242));
        assert_eq!(switch_lookup(entry, same_slot), SwitchLookup::NotServed);
        // Program slot 0 is a slot like the others.
        let entry = switch_entry_served(0, 4242, 0).unwrap();
        assert_eq!(switch_lookup(entry, 4242), SwitchLookup::Served(0));
    }

    #[test]
    fn a_second_process_of_a_slot_sends_its_lookups_to_the_hash() {
        let first = switch_entry_served(0, 4242, 1).unwrap();
        let second = 4242 + SWITCH_TABLE_LEN;
        assert_eq!(switch_entry_served(first, second, 2), None);
        let entry = switch_entry_elsewhere(first);
        assert_eq!(switch_lookup(entry, 4242), SwitchLookup::Served(1));
        assert_eq!(switch_lookup(entry, second), SwitchLookup::InHash);
        // The first leaves: the slot is free again, and still sends the others to the
        // hash.
        let entry = switch_entry_unserved(entry, 4242);
        assert_eq!(switch_lookup(entry, 4242), SwitchLookup::InHash);
        assert_eq!(switch_lookup(entry, second), SwitchLookup::InHash);
        // A process that is not in the table leaves it unchanged.
        assert_eq!(switch_entry_unserved(entry, second), entry);
        // A third takes the free slot and keeps the mark.
        let third = switch_entry_served(entry, 99, 3).unwrap();
        assert_eq!(switch_lookup(third, 99), SwitchLookup::Served(3));
        assert_eq!(switch_lookup(third, second), SwitchLookup::InHash);
    }

    #[test]
    fn serving_a_process_again_rewrites_its_own_entry() {
        let entry = switch_entry_served(0, 4242, 1).unwrap();
        let again = switch_entry_served(entry, 4242, 5).unwrap();
        assert_eq!(switch_lookup(again, 4242), SwitchLookup::Served(5));
    }

    #[test]
    fn the_highest_program_slot_round_trips() {
        let slot = crate::SWITCH_SLOTS - 1;
        let entry = switch_entry_served(0, u32::MAX, slot).unwrap();
        assert_eq!(switch_lookup(entry, u32::MAX), SwitchLookup::Served(slot));
    }
}
