//! The catalog's tables, and the steps that bring an older catalog up to them.

use rusqlite::Connection;

use super::{CatalogError, Result};

pub const VERSION: i64 = 4;

/// Inode generations (see `generations`); added by version 2.
pub const GENERATIONS: &str =
    "CREATE TABLE generations(first_ino INTEGER PRIMARY KEY, generation INTEGER NOT NULL);";

/// fallocate's allocations, so they survive a remount (see
/// `allocations`); added by version 3.
pub const ALLOCATIONS: &str = "
CREATE TABLE allocations(
    ino INTEGER NOT NULL,
    first INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    PRIMARY KEY(ino, first)
) WITHOUT ROWID;
";

/// Pruning (see `gc`); added by version 4. `doomed_packs`: packs no block
/// points into any more, with the instant they were found so, deleted once
/// a grace period has passed. `removals`: what pruning removed, in order,
/// for a replica to follow. `extents_by_block`: whether any extent still
/// uses a block, asked for each block a prune may free.
pub const PRUNE: &str = "
CREATE TABLE doomed_packs(pack INTEGER PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE removals(
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    pack INTEGER NOT NULL,
    hash BLOB
);
CREATE INDEX extents_by_block ON extents(block);
";

/// The catalog schema. `docs/format.md` explains each table.
pub const SCHEMA: &str = "
BEGIN;
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inodes(
    ino INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    rdev INTEGER NOT NULL DEFAULT 0,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    btime INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    version_open INTEGER NOT NULL DEFAULT 0,
    target BLOB
);
CREATE TABLE dentries(
    id INTEGER PRIMARY KEY,
    parent INTEGER NOT NULL,
    hash BLOB NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_until INTEGER
);
CREATE UNIQUE INDEX dentries_live ON dentries(parent, hash) WHERE valid_until IS NULL;
CREATE INDEX dentries_list ON dentries(parent, id) WHERE valid_until IS NULL;
CREATE INDEX dentries_history ON dentries(parent, hash, valid_from);
CREATE INDEX dentries_by_ino ON dentries(ino) WHERE valid_until IS NULL;
CREATE TABLE blocks(
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    pack INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL,
    plain_len INTEGER NOT NULL
);
CREATE INDEX blocks_by_pack ON blocks(pack);
CREATE TABLE extents(
    ino INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    block INTEGER NOT NULL,
    v_from INTEGER NOT NULL,
    v_until INTEGER
);
CREATE UNIQUE INDEX extents_live ON extents(ino, idx) WHERE v_until IS NULL;
CREATE INDEX extents_history ON extents(ino, idx, v_from);
CREATE TABLE versions(
    ino INTEGER NOT NULL,
    version INTEGER NOT NULL,
    time INTEGER NOT NULL,
    size INTEGER NOT NULL,
    reason INTEGER NOT NULL,
    PRIMARY KEY(ino, version)
) WITHOUT ROWID;
CREATE TABLE packs(id INTEGER PRIMARY KEY, sealed INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE TABLE xattrs(
    ino INTEGER NOT NULL,
    hash BLOB NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY(ino, hash)
) WITHOUT ROWID;
CREATE TABLE generations(first_ino INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE allocations(
    ino INTEGER NOT NULL,
    first INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    PRIMARY KEY(ino, first)
) WITHOUT ROWID;
CREATE TABLE doomed_packs(pack INTEGER PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE removals(
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    pack INTEGER NOT NULL,
    hash BLOB
);
CREATE INDEX extents_by_block ON extents(block);
PRAGMA user_version = 4;
COMMIT;
";

/// Brings a catalog of version `from` to `VERSION`, one step per version,
/// each in its own transaction. Fails on a version this release does not know.
pub fn upgrade(conn: &Connection, from: i64) -> Result<()> {
    if !(1..=VERSION).contains(&from) {
        return Err(CatalogError::Schema(from));
    }
    for to in from + 1..=VERSION {
        let step = match to {
            // A version 1 catalog's inodes keep generation 0, the one the
            // kernel was told until then.
            2 => GENERATIONS,
            3 => ALLOCATIONS,
            4 => PRUNE,
            _ => unreachable!("every version up to VERSION has a step"),
        };
        let sql = format!("BEGIN; {step} PRAGMA user_version = {to}; COMMIT;");
        if let Err(e) = conn.execute_batch(&sql) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(CatalogError::Upgrade { to, source: e });
        }
        tracing::info!("catalog upgraded to schema version {to}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of the first release, as stores made by it hold it.
    fn version_1() -> String {
        SCHEMA
            .replace(PRUNE.trim(), "")
            .replace(ALLOCATIONS.trim(), "")
            .replace(GENERATIONS, "")
            .replace("user_version = 4", "user_version = 1")
    }

    fn tables(c: &Connection) -> Vec<(String, String)> {
        let mut st = c
            .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(n, s)| (n, s.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect()
    }

    #[test]
    fn a_version_1_catalog_is_upgraded_to_the_schema_of_a_new_one() {
        let old = Connection::open_in_memory().unwrap();
        old.execute_batch(&version_1()).unwrap();
        assert!(!tables(&old).iter().any(|(n, _)| n == "allocations"));
        upgrade(&old, 1).unwrap();
        let new = Connection::open_in_memory().unwrap();
        new.execute_batch(SCHEMA).unwrap();
        assert_eq!(tables(&old), tables(&new));
        let v: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn a_catalog_newer_than_this_phivault_is_refused() {
        let c = Connection::open_in_memory().unwrap();
        assert!(matches!(upgrade(&c, 99), Err(CatalogError::Schema(99))));
    }
}
