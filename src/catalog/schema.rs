pub const VERSION: i64 = 1;

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
PRAGMA user_version = 1;
COMMIT;
";
