use rusqlite::Row;

use crate::crypto::BlockId;
use crate::store::{BlockLocation, PackId};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;
pub type NameHash = [u8; crate::crypto::names::LOOKUP_LEN];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDev = 6,
    BlockDev = 7,
}

/// A byte in the catalog that names no kind or reason this release knows:
/// the catalog is damaged, or was written by a newer release. Read as an
/// error, never as a default, so that corruption is not hidden.
#[derive(Debug, thiserror::Error)]
#[error("the catalog holds {what} {value}, which this release does not know: the catalog is damaged or was written by a newer phivault")]
pub struct UnknownCode {
    what: &'static str,
    value: i64,
}

/// Reads a `#[repr(u8)]` enum stored as an integer column.
fn decode<T>(
    v: rusqlite::types::ValueRef<'_>,
    what: &'static str,
    of: impl Fn(u8) -> Option<T>,
) -> rusqlite::types::FromSqlResult<T> {
    let value = v.as_i64()?;
    u8::try_from(value)
        .ok()
        .and_then(of)
        .ok_or_else(|| rusqlite::types::FromSqlError::Other(Box::new(UnknownCode { what, value })))
}

impl rusqlite::types::FromSql for Kind {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        decode(v, "inode kind", |b| {
            Some(match b {
                1 => Kind::File,
                2 => Kind::Dir,
                3 => Kind::Symlink,
                4 => Kind::Fifo,
                5 => Kind::Socket,
                6 => Kind::CharDev,
                7 => Kind::BlockDev,
                _ => return None,
            })
        })
    }
}

/// An inode as the catalog stores it. Times are nanoseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub btime: i64,
    /// The file's latest version number.
    pub version: u64,
    /// The instant (on the history clock, see `vault::Tick`) from which
    /// this row's attributes hold; the states before it are in
    /// `inode_history`. 0 for inodes of stores older than that history.
    pub since: i64,
    /// True while changes since the last recorded version are not yet a version.
    pub version_open: bool,
}

impl Inode {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            ino: r.get::<_, i64>(0)? as Ino,
            kind: r.get(1)?,
            mode: r.get(2)?,
            uid: r.get(3)?,
            gid: r.get(4)?,
            nlink: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            rdev: r.get(7)?,
            atime: r.get(8)?,
            mtime: r.get(9)?,
            ctime: r.get(10)?,
            btime: r.get(11)?,
            version: r.get::<_, i64>(12)? as u64,
            version_open: r.get(13)?,
            since: r.get(14)?,
        })
    }
}

pub struct NewInode {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u32,
    /// Its times, on the wall clock.
    pub time: i64,
    /// Its creation on the history clock (`Inode::since`).
    pub at: i64,
    pub target: Option<Vec<u8>>,
}

pub struct NewEntry<'a> {
    pub parent: Ino,
    pub hash: &'a NameHash,
    pub sealed_name: &'a [u8],
    pub ino: Ino,
    pub kind: Kind,
    pub time: i64,
}

pub struct DirRow {
    pub pos: i64,
    pub sealed_name: Vec<u8>,
    pub ino: Ino,
    pub kind: Kind,
}

impl DirRow {
    /// From `SELECT id, name, ino, kind FROM dentries`.
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            pos: r.get(0)?,
            sealed_name: r.get(1)?,
            ino: r.get::<_, i64>(2)? as Ino,
            kind: r.get(3)?,
        })
    }
}

/// Where a block lives and what it should decrypt to.
#[derive(Clone, Copy, Debug)]
pub struct BlockRef {
    pub id: BlockId,
    pub location: BlockLocation,
    pub plain_len: u32,
}

impl BlockRef {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Self::from_offset_row(r, 0)
    }
    pub(super) fn from_offset_row(r: &Row<'_>, o: usize) -> rusqlite::Result<Self> {
        let hash: Vec<u8> = r.get(o)?;
        Ok(Self {
            id: BlockId::from_slice(&hash).unwrap_or(BlockId([0; 32])),
            location: BlockLocation {
                pack: PackId::from_i64(r.get(o + 1)?),
                offset: r.get::<_, i64>(o + 2)? as u64,
                len: r.get(o + 3)?,
            },
            plain_len: r.get(o + 4)?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VersionReason {
    Created = 0,
    Write = 1,
    Fsync = 2,
    Truncate = 3,
    Replaced = 4,
    Deleted = 5,
}

impl rusqlite::types::FromSql for VersionReason {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        decode(v, "version reason", |b| {
            Some(match b {
                0 => Self::Created,
                1 => Self::Write,
                2 => Self::Fsync,
                3 => Self::Truncate,
                4 => Self::Replaced,
                5 => Self::Deleted,
                _ => return None,
            })
        })
    }
}

impl VersionReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Write => "write",
            Self::Fsync => "fsync",
            Self::Truncate => "truncate",
            Self::Replaced => "replaced",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Clone, Debug)]
pub struct VersionRow {
    pub ino: Ino,
    pub version: u64,
    pub time: i64,
    pub size: u64,
    pub reason: VersionReason,
    /// Who made it: the uid of the request that opened the file for
    /// writing, truncated, renamed over or deleted it. None in versions
    /// recorded by releases that did not keep it.
    pub uid: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub files: u64,
    pub directories: u64,
    pub other_inodes: u64,
    pub logical_bytes: u64,
    pub referenced_bytes: u64,
    pub unique_blocks: u64,
    pub unique_plain_bytes: u64,
    pub stored_block_bytes: u64,
    pub versions: u64,
    pub packs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: rusqlite::types::FromSql>(value: i64) -> rusqlite::Result<T> {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.query_row("SELECT ?1", [value], |r| r.get(0))
    }

    #[test]
    fn known_codes_read_back() {
        assert_eq!(read::<Kind>(Kind::Symlink as i64).unwrap(), Kind::Symlink);
        assert_eq!(
            read::<VersionReason>(VersionReason::Deleted as i64).unwrap(),
            VersionReason::Deleted
        );
    }

    #[test]
    fn an_unknown_code_is_an_error_not_a_default() {
        let err = read::<Kind>(9).unwrap_err().to_string();
        assert!(err.contains("inode kind 9"), "{err}");
        let err = read::<VersionReason>(300).unwrap_err().to_string();
        assert!(err.contains("version reason 300"), "{err}");
        assert!(read::<Kind>(0).is_err());
    }
}
