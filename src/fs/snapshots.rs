//! The hidden `.snapshots` directory at a mount's root: the names of its
//! entries (`@GMT-YYYY.MM.DD-HH.MM.SS`, UTC, Samba's shadow_copy2 format),
//! the node numbers of the past trees below it, and its listings in
//! progress. Which instants it lists is the engine's choice
//! (`Vault::snapshot_instants`); this module never reads the store.
//!
//! A node number holds a slot in its high bits and a store inode number in
//! the low ones. Slot 0 is the tree the mount serves (the live one, or one
//! instant for `mount --at`), so its numbers are the store's own; slot 1 is
//! `.snapshots` itself; each instant gets the next free slot the first time
//! it is named, and keeps it for the life of the mount. So a file of a
//! snapshot never has its live file's (or another snapshot's) dev:inode,
//! which Samba would take for the same open file, and the kernel may forget
//! a node at any time: its number still names the same thing.

use std::collections::HashMap;
use std::sync::Arc;

use fuser::FileHandle;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};

use crate::vault::{Attr, Kind, ROOT_INO};

/// The directory's name in the root.
pub const DIR_NAME: &[u8] = b".snapshots";

/// Store inode numbers stay below 2^40 (a trillion), slots above.
const SLOT_SHIFT: u32 = 40;
const INO_MASK: u64 = (1 << SLOT_SHIFT) - 1;
const DIR_SLOT: u64 = 1;
const FIRST_INSTANT_SLOT: u64 = 2;
const SLOTS: u64 = 1 << (64 - SLOT_SHIFT);

/// The node number of `.snapshots`.
pub const DIR_NODE: u64 = (DIR_SLOT << SLOT_SHIFT) | ROOT_INO;

const NS_PER_SEC: i64 = 1_000_000_000;

/// What a node number names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Inode `ino` of the tree in `slot` (0: the tree the mount serves).
    Tree { slot: u64, ino: u64 },
    /// `.snapshots` itself.
    Dir,
}

impl Node {
    pub fn of(node: u64) -> Node {
        match node >> SLOT_SHIFT {
            DIR_SLOT => Node::Dir,
            slot => Node::Tree {
                slot,
                ino: node & INO_MASK,
            },
        }
    }
}

/// The node number of store inode `ino` in the tree of `slot`.
#[inline]
pub fn node_id(slot: u64, ino: u64) -> u64 {
    (slot << SLOT_SHIFT) | ino
}

/// The name of the snapshot of UTC second `sec` (since the epoch).
pub fn name_of(sec: i64) -> Option<String> {
    let t = Timestamp::from_second(sec).ok()?;
    Some(
        t.to_zoned_datetime(TimeZone::UTC)
            .strftime("@GMT-%Y.%m.%d-%H.%M.%S")
            .to_string(),
    )
}

/// The UTC second (since the epoch) `name` stands for, if it is a
/// well-formed `@GMT-YYYY.MM.DD-HH.MM.SS` naming a real date and time.
pub fn second_of(name: &[u8]) -> Option<i64> {
    let rest = name.strip_prefix(b"@GMT-")?;
    // YYYY.MM.DD-HH.MM.SS: digits at fixed places, these separators.
    let shape = b"dddd.dd.dd-dd.dd.dd";
    if rest.len() != shape.len() {
        return None;
    }
    for (&c, &s) in rest.iter().zip(shape) {
        let fits = match s {
            b'd' => c.is_ascii_digit(),
            sep => c == sep,
        };
        if !fits {
            return None;
        }
    }
    let num = |from: usize, to: usize| -> i64 {
        rest[from..to]
            .iter()
            .fold(0, |n, d| n * 10 + i64::from(d - b'0'))
    };
    let day = Date::new(
        i16::try_from(num(0, 4)).ok()?,
        i8::try_from(num(5, 7)).ok()?,
        i8::try_from(num(8, 10)).ok()?,
    )
    .ok()?;
    let time = Time::new(
        i8::try_from(num(11, 13)).ok()?,
        i8::try_from(num(14, 16)).ok()?,
        i8::try_from(num(17, 19)).ok()?,
        0,
    )
    .ok()?;
    let ts = jiff::tz::Offset::UTC
        .to_timestamp(day.to_datetime(time))
        .ok()?;
    Some(ts.as_second())
}

/// The instant a snapshot named by second `sec` shows: everything recorded
/// up to and including that second.
pub fn instant_of(sec: i64) -> i64 {
    sec.saturating_add(1).saturating_mul(NS_PER_SEC) - 1
}

/// Whether second `sec` has passed, so that what it names is settled.
pub fn has_passed(sec: i64) -> bool {
    sec < Timestamp::now().as_second()
}

/// The attributes of `.snapshots`: a read-only directory of the mount's
/// owner, as old as the store.
pub fn dir_attr(born: i64) -> Attr {
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Attr {
        ino: DIR_NODE,
        kind: Kind::Dir,
        perm: 0o555,
        uid,
        gid,
        // Unknown, as for a directory whose subdirectories are not counted:
        // find must not take "2" to mean it holds none.
        nlink: 1,
        size: 0,
        allocated: 0,
        rdev: 0,
        atime: born,
        mtime: born,
        ctime: born,
        btime: born,
    }
}

/// The slots handed out to instants (see the module doc).
#[derive(Default)]
pub struct Slots {
    table: RwLock<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    by_instant: HashMap<i64, u64>,
    /// The instant of slot `FIRST_INSTANT_SLOT + i`.
    instants: Vec<i64>,
}

impl Slots {
    /// The slot of instant `at`, handed out now if it has none yet; None
    /// once every slot is taken.
    pub fn slot_of(&self, at: i64) -> Option<u64> {
        if let Some(&slot) = self.table.read().by_instant.get(&at) {
            return Some(slot);
        }
        let mut t = self.table.write();
        if let Some(&slot) = t.by_instant.get(&at) {
            return Some(slot);
        }
        let slot = FIRST_INSTANT_SLOT + t.instants.len() as u64;
        if slot >= SLOTS {
            return None;
        }
        t.instants.push(at);
        t.by_instant.insert(at, slot);
        Some(slot)
    }

    /// The instant of an instant's slot.
    pub fn instant(&self, slot: u64) -> Option<i64> {
        let i = slot.checked_sub(FIRST_INSTANT_SLOT)?;
        self.table.read().instants.get(i as usize).copied()
    }
}

/// What each open handle of `.snapshots` lists: taken at its first READDIR
/// (and at a rewind), so that one listing is one consistent set.
#[derive(Default)]
pub struct Listings {
    open: Mutex<HashMap<u64, Arc<Vec<i64>>>>,
}

impl Listings {
    /// The seconds handle `fh` lists, from `list` when its listing starts
    /// (`offset` 0) or was never taken.
    pub fn seconds<E>(
        &self,
        fh: FileHandle,
        offset: u64,
        list: impl FnOnce() -> Result<Vec<i64>, E>,
    ) -> Result<Arc<Vec<i64>>, E> {
        if offset != 0 {
            if let Some(l) = self.open.lock().get(&fh.0) {
                return Ok(l.clone());
            }
        }
        let l = Arc::new(list()?);
        self.open.lock().insert(fh.0, l.clone());
        Ok(l)
    }

    pub fn release(&self, fh: FileHandle) {
        self.open.lock().remove(&fh.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_seconds_round_trip() {
        let sec = 1_796_515_200 + 13 * 3600 + 5 * 60 + 9;
        let name = name_of(sec).unwrap();
        assert_eq!(name, "@GMT-2026.12.06-13.05.09");
        assert_eq!(second_of(name.as_bytes()), Some(sec));
        assert_eq!(second_of(b"@GMT-1970.01.01-00.00.00"), Some(0));
    }

    #[test]
    fn malformed_names_name_nothing() {
        for bad in [
            &b""[..],
            b"@GMT-",
            b"GMT-2026.12.06-13.05.09",
            b"@GMT-2026.12.06-13.05.9",
            b"@GMT-2026.12.06-13.05.090",
            b"@GMT-2026-12-06-13.05.09",
            b"@GMT-2026.13.06-13.05.09",
            b"@GMT-2026.02.30-13.05.09",
            b"@GMT-2026.12.06-24.00.00",
            b"@GMT-2026.12.06-13.60.00",
            b"@GMT-2026.12.06-13.05.60",
            b"@GMT-2026.12.06-13.05.0a",
            b"@gmt-2026.12.06-13.05.09",
            b"@GMT-+026.12.06-13.05.09",
        ] {
            assert_eq!(second_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_second_shows_everything_up_to_its_end() {
        assert_eq!(instant_of(10), 10_999_999_999);
    }

    #[test]
    fn node_numbers_keep_trees_apart() {
        let slots = Slots::default();
        let a = slots.slot_of(100).unwrap();
        let b = slots.slot_of(200).unwrap();
        assert_ne!(a, b);
        assert_eq!(slots.slot_of(100), Some(a));
        assert_eq!(slots.instant(b), Some(200));
        assert_eq!(slots.instant(DIR_SLOT), None);
        assert_eq!(Node::of(7), Node::Tree { slot: 0, ino: 7 });
        assert_eq!(Node::of(DIR_NODE), Node::Dir);
        let n = node_id(a, 7);
        assert_ne!(n, 7);
        assert_ne!(n, node_id(b, 7));
        assert_eq!(Node::of(n), Node::Tree { slot: a, ino: 7 });
    }
}
