//! The audit trail: a record of every open and every change through the
//! mount, granted or denied, encrypted and chained with a keyed MAC so that
//! an altered, removed, inserted or reordered record is detected.
//!
//! Owns `STORE/audit/`: append-only segments (`frame`, `trail`), the writer
//! (`writer`; `lock` and `tail` let several processes append), the derived
//! SQLite index (`index`), queries and follow (`reader`), `verify` and
//! retention `prune`. Never stores a path or a name in clear; knows
//! nothing of the vault or FUSE.

mod encode;
mod frame;
mod index;
mod lock;
mod prune;
mod reader;
pub mod ship;

mod record;
mod tail;
mod trail;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use reader::AuditReader;
pub use record::{Detail, Op, Record, Who};
pub use writer::{AuditLog, WriterOptions};

/// Errors of the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("{0}: does not authenticate with this store's key: altered or from elsewhere")]
    Forged(PathBuf),
    #[error("audit trail damaged: {0}")]
    Damaged(String),
}

impl AuditError {
    /// What a request whose record could not be appended fails with.
    pub fn errno(&self) -> i32 {
        match self {
            AuditError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => libc::ENOSPC,
                Some(libc::EROFS) => libc::EROFS,
                _ => libc::EIO,
            },
            _ => libc::EIO,
        }
    }
}

pub(crate) trait IoAt<T> {
    fn at(self, path: &Path) -> Result<T, AuditError>;
}

impl<T> IoAt<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T, AuditError> {
        self.map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The last record of the chain: its seq (0 for an empty trail) and chain MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChainHead {
    pub seq: u64,
    pub mac: [u8; 32],
}

/// What `AuditReader::query` returns: all filters must match.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// ns since the epoch, inclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Matches who.uid or who.login_uid; empty = anyone.
    pub uids: Vec<u32>,
    /// Empty = any.
    pub ops: Vec<Op>,
    /// Result EACCES or EPERM.
    pub denied_only: bool,
    /// `--path` scope (from the catalog); None = everywhere.
    pub nodes: Option<Vec<NodeSpan>>,
    /// Fallback scope by recorded path ("/a/b" matches "/a/b" and "/a/b/..").
    pub path_prefix: Option<Vec<u8>>,
    /// Only records after this seq: where the previous page ended.
    pub after_seq: Option<u64>,
    pub limit: Option<usize>,
    pub newest_first: bool,
}

/// A node during an interval: a record matches if its ino or parent is
/// `ino` and `from_ns <= time_ns <= until_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSpan {
    pub ino: u64,
    pub from_ns: i64,
    pub until_ns: i64,
}

impl Query {
    /// Whether `r` passes every filter (the index applies the same ones).
    pub fn matches(&self, r: &Record) -> bool {
        self.after_seq.is_none_or(|a| r.seq > a)
            && self.since.is_none_or(|s| r.time_ns >= s)
            && self.until.is_none_or(|u| r.time_ns <= u)
            && (self.uids.is_empty()
                || self.uids.contains(&r.who.uid)
                || r.who.login_uid.is_some_and(|l| self.uids.contains(&l)))
            && (self.ops.is_empty() || self.ops.contains(&r.op))
            && (!self.denied_only || r.denied())
            && self.nodes.as_ref().is_none_or(|spans| {
                spans.iter().any(|s| {
                    (r.ino == s.ino || r.parent == s.ino)
                        && (s.from_ns..=s.until_ns).contains(&r.time_ns)
                })
            })
            && self.path_prefix.as_ref().is_none_or(|p| under(&r.path, p))
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    let p = prefix.strip_suffix(b"/").unwrap_or(prefix);
    p.is_empty() || path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// The first and last seq walked (0 and 0 for an empty trail).
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first problem; None if the trail is intact.
    pub problem: Option<Tamper>,
    /// When the first problem sits; None if the trail is intact.
    pub when: Option<TamperTime>,
}

/// When the first problem sits, for an investigator: the bad record's own
/// time when its MAC holds, and the nearest good records either side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TamperTime {
    /// ns since the epoch; None when the record is gone or forged.
    pub own_time_ns: Option<i64>,
    pub before: Option<Stamp>,
    pub after: Option<Stamp>,
}

/// A record whose MAC holds, and its time (ns since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub time_ns: i64,
}

/// What was done to the trail, at the first place it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The record stored as `seq` is not what was written (or its chain
    /// MAC is not).
    Altered { seq: u64 },
    /// `missing` records after `after_seq` are gone.
    Removed { after_seq: u64, missing: u64 },
    /// A record that was not written there (a copy or a forgery) follows
    /// `after_seq`.
    Inserted { after_seq: u64 },
    /// Record `seq` is away from its place.
    Reordered { seq: u64 },
    /// The trail ends at `last_seq`, but `head_seq` was written and synced.
    Truncated { last_seq: u64, head_seq: u64 },
    /// Not a trail there: a broken frame, segment header, anchor or head.
    Unreadable { at: String },
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPruneReport {
    pub segments: u64,
    pub records: u64,
    /// Where the kept trail now starts (the anchor).
    pub first_seq: u64,
    /// The segments removed, oldest first.
    pub removed: Vec<PrunedSegment>,
}

/// A segment file that retention removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunedSegment {
    pub path: PathBuf,
    /// The seq its file is named by.
    pub first_seq: u64,
    /// The times (ns since the epoch) of its first and last records; None
    /// for one a prune interrupted earlier had already anchored past.
    pub first_time_ns: Option<i64>,
    pub last_time_ns: Option<i64>,
    pub records: u64,
    /// The file's size.
    pub bytes: u64,
}
