//! The catalog's tables, and the steps that bring an older catalog up to them.

use rusqlite::Connection;

use super::{CatalogError, Result};

pub const VERSION: i64 = 5;

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

/// The history of attributes and extended attributes, who made each
/// version, and indexes that find entries of the past by directory and by
/// inode; added by version 4. Inodes and extended attributes of older
/// stores hold from instant 0: they have no history before this release.
pub const HISTORY: &str = "
DROP INDEX dentries_by_ino;
CREATE INDEX dentries_by_ino ON dentries(ino, valid_until);
CREATE INDEX dentries_by_parent ON dentries(parent, id);
ALTER TABLE inodes ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE xattrs ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN uid INTEGER;
CREATE TABLE inode_history(
    ino INTEGER NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    PRIMARY KEY(ino, until)
) WITHOUT ROWID;
CREATE TABLE xattr_history(
    ino INTEGER NOT NULL,
    hash BLOB NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY(ino, hash, until)
) WITHOUT ROWID;
";

/// Pruning (see `gc`); added by version 5. `doomed_packs`: packs no block
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

/// The schema of the first release (version 1). A new catalog is made
/// of it and every step since, so that new and upgraded catalogs cannot
/// differ; `docs/format.md` explains each table as it is now.
const VERSION_1: &str = "
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
";

/// Makes the tables of a new catalog, at `VERSION`.
pub fn create(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!(
        "BEGIN; {VERSION_1} PRAGMA user_version = 1; COMMIT;"
    ))?;
    upgrade(conn, 1)
}

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
            4 => HISTORY,
            5 => PRUNE,
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

    fn tables(c: &Connection) -> Vec<String> {
        let mut st = c
            .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn columns(c: &Connection, table: &str) -> Vec<String> {
        let mut st = c.prepare(&format!("PRAGMA table_info({table})")).unwrap();
        st.query_map([], |r| r.get(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn a_new_catalog_has_every_step_and_the_current_version() {
        let c = Connection::open_in_memory().unwrap();
        create(&c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        for t in [
            "generations",
            "allocations",
            "inode_history",
            "xattr_history",
            "doomed_packs",
            "removals",
        ] {
            assert!(tables(&c).iter().any(|n| n == t), "no table {t}");
        }
        assert!(columns(&c, "inodes").iter().any(|n| n == "since"));
        assert!(columns(&c, "versions").iter().any(|n| n == "uid"));
    }

    #[test]
    fn a_version_1_catalog_with_rows_is_upgraded_keeping_them() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(&format!(
            "BEGIN; {VERSION_1} PRAGMA user_version = 1; COMMIT;"
        ))
        .unwrap();
        c.execute_batch(
            "INSERT INTO inodes(ino, kind, mode, uid, gid, nlink, atime, mtime, ctime, btime)
             VALUES (1, 2, 493, 0, 0, 2, 5, 5, 5, 5);
             INSERT INTO versions VALUES (1, 1, 7, 0, 1);",
        )
        .unwrap();
        upgrade(&c, 1).unwrap();
        let (since, uid): (i64, Option<u32>) = c
            .query_row(
                "SELECT i.since, v.uid FROM inodes i JOIN versions v USING (ino)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (since, uid),
            (0, None),
            "old rows hold from instant 0, by no one known"
        );
    }

    #[test]
    fn a_catalog_newer_than_this_phivault_is_refused() {
        let c = Connection::open_in_memory().unwrap();
        assert!(matches!(upgrade(&c, 99), Err(CatalogError::Schema(99))));
    }
}
