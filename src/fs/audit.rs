//! The mount's side of the audit trail: one record for each request the
//! trail covers, naming who asked (see `who`), the path as it was, what was
//! asked for and how it ended, appended to the vault's `AuditLog` after the
//! operation ran and before its reply. A request whose record cannot be
//! appended fails with the append's errno.
//!
//! Decides nothing itself: permissions are the vault's, and the handlers
//! say what they did. A read-only mount or `--at` view records its
//! requests too, in the same trail as a read-write daemon of the store;
//! only a store on a read-only filesystem, where nothing can be appended,
//! has no log, and its requests are served unrecorded.

mod handles;
mod who;

use std::sync::Arc;

use fuser::{Errno, FileHandle, INodeNo, ReplyEmpty, ReplyEntry, Request, TimeOrNow};

use super::snapshots::Node;
use super::PhiFs;
use crate::audit::{AuditLog, Detail, Op, Record, Who};
use crate::vault::{Attr, Caller, Vault};
use handles::Handles;
use who::Callers;

/// What a request acted on, as its record names it.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A node of the live tree.
    Node(u64),
    /// Entry `name` of live directory `parent`, whether it exists or not.
    Entry(u64, &'a [u8]),
    /// A node as it was at instant `at`, under `.snapshots`.
    Snapshot { at: i64, ino: u64 },
    /// Entry `name` of directory `dir` as it was at instant `at`.
    SnapshotEntry { at: i64, dir: u64, name: &'a [u8] },
    /// `.snapshots` itself.
    SnapshotsDir,
    /// Entry `name` of `.snapshots`.
    SnapshotsEntry(&'a [u8]),
}

/// The audit trail of one mount.
pub struct Trail {
    vault: Arc<Vault>,
    callers: Callers,
    handles: Handles,
}

impl Trail {
    pub fn new(vault: Arc<Vault>) -> Self {
        if vault.audit().is_none() {
            tracing::warn!(
                "NO AUDIT TRAIL: the store's filesystem is read-only, so the audit trail \
                 cannot be appended to; requests through this read-only mount are served \
                 without being recorded"
            );
        }
        Trail {
            vault,
            callers: Callers::default(),
            handles: Handles::default(),
        }
    }

    fn log(&self) -> Option<&AuditLog> {
        self.vault.audit()
    }

    /// Starts the record of a request by `req` of `op` on `subject`. Call
    /// it before the operation: an entry that a removal or a rename acts
    /// on is looked up now, and a node about to get a second name (link)
    /// is named now.
    pub fn start<'t>(&'t self, req: &Request, op: Op, subject: Subject<'_>) -> Pending<'t> {
        let Some(log) = self.log() else {
            return Pending::inert(self, op);
        };
        let (ino, parent) = match subject {
            Subject::Node(ino) | Subject::Snapshot { ino, .. } => (ino, 0),
            Subject::Entry(parent, name) => {
                let looked_up = matches!(op, Op::Unlink | Op::Rmdir | Op::Rename);
                let ino = looked_up
                    .then(|| self.vault.entry_ino(parent, name).ok().flatten())
                    .flatten();
                (ino.unwrap_or(0), parent)
            }
            Subject::SnapshotEntry { dir, .. } => (0, dir),
            Subject::SnapshotsDir | Subject::SnapshotsEntry(_) => (0, 0),
        };
        Pending {
            trail: self,
            log: Some(log),
            op,
            ids: (req.uid(), req.gid(), req.pid()),
            path: self.path(subject),
            target: None,
            ino,
            parent,
            detail: Detail::default(),
        }
    }

    /// Counts bytes written through handle `fh`.
    pub fn wrote(&self, fh: FileHandle, bytes: usize) {
        self.handles.wrote(fh.0, bytes as u64);
    }

    /// RELEASE of handle `fh`, which went as `res` says: a handle that
    /// wrote gets a CLOSE record in the name of whoever opened it.
    pub fn release<T>(&self, fh: FileHandle, res: Result<T, Errno>) -> Result<T, Errno> {
        let Some(handle) = self.handles.close(fh.0) else {
            return res;
        };
        let (Some(log), written @ 1..) = (self.log(), handle.written()) else {
            return res;
        };
        let rec = Pending {
            trail: self,
            log: Some(log),
            op: Op::Close,
            ids: (0, 0, 0),
            path: self.path(Subject::Node(handle.ino)),
            target: None,
            ino: handle.ino,
            parent: 0,
            detail: Detail {
                written: Some(written),
                ..Detail::default()
            },
        };
        let result = res.as_ref().map(|_| ()).map_err(|e| *e);
        rec.append_as(handle.opener.clone(), result).and(res)
    }

    /// A LOOKUP or ACCESS of `subject` that failed with `e`: recorded (as
    /// a search) only when a permission check refused it. Returns `e`.
    pub fn search(&self, req: &Request, subject: Subject<'_>, e: Errno) -> Errno {
        if is_denial(e) {
            return self.start(req, Op::Search, subject).failed(e);
        }
        e
    }

    fn path(&self, subject: Subject<'_>) -> Vec<u8> {
        let named = match subject {
            Subject::Node(ino) => self.vault.path_of(ino),
            Subject::Entry(parent, name) => self.vault.entry_path(parent, name),
            Subject::Snapshot { at, ino } => self.snapshot_path(at, ino),
            Subject::SnapshotEntry { at, dir, name } => self.snapshot_path(at, dir).map(|mut p| {
                p.push(b'/');
                p.extend_from_slice(name);
                p
            }),
            Subject::SnapshotsDir => Ok(b"/.snapshots".to_vec()),
            Subject::SnapshotsEntry(name) => Ok([&b"/.snapshots/"[..], name].concat()),
        };
        // A path the catalog cannot give is still a record of the request.
        named.unwrap_or_else(|e| {
            tracing::warn!("audit: no path for {subject:?}: {e}");
            Vec::new()
        })
    }
}

impl Trail {
    /// "/.snapshots/NAME/PATH" of node `ino` as it was at instant `at`.
    fn snapshot_path(&self, at: i64, ino: u64) -> crate::vault::Result<Vec<u8>> {
        let past = self.vault.path_at(ino, at)?;
        let name = super::snapshots::name_of(at.div_euclid(1_000_000_000)).unwrap_or_default();
        let mut path = [&b"/.snapshots/"[..], name.as_bytes()].concat();
        if past != b"/" {
            path.extend_from_slice(&past);
        }
        Ok(path)
    }
}

/// A record being made: what the request is, before the operation; its
/// result and append come with `done` (or `opened`).
#[must_use = "a pending audit record is appended by `done`"]
pub struct Pending<'t> {
    trail: &'t Trail,
    /// None when there is no trail to append to.
    log: Option<&'t AuditLog>,
    op: Op,
    /// uid, gid and thread id of the request.
    ids: (u32, u32, u32),
    path: Vec<u8>,
    target: Option<Vec<u8>>,
    ino: u64,
    parent: u64,
    detail: Detail,
}

impl<'t> Pending<'t> {
    fn inert(trail: &'t Trail, op: Op) -> Self {
        Pending {
            trail,
            log: None,
            op,
            ids: (0, 0, 0),
            path: Vec::new(),
            target: None,
            ino: 0,
            parent: 0,
            detail: Detail::default(),
        }
    }

    pub fn flags(mut self, flags: i32) -> Self {
        self.detail.flags = Some(flags);
        self
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.detail.mode = Some(mode);
        self
    }

    pub fn xattr(mut self, name: &[u8]) -> Self {
        self.detail.xattr = Some(name.to_vec());
        self
    }

    /// The second path: where a rename or a link puts its node.
    pub fn onto(mut self, entry: Subject<'_>) -> Self {
        if self.log.is_some() {
            self.target = Some(self.trail.path(entry));
            if let (Op::Link, Subject::Entry(parent, _)) = (self.op, entry) {
                self.parent = parent;
            }
        }
        self
    }

    /// The second path of a symlink: its target, as given.
    pub fn target(mut self, target: &[u8]) -> Self {
        self.target = Some(target.to_vec());
        self
    }

    /// What a SETATTR changes: its operation is the first of truncate,
    /// chmod, chown and utimes it does. Not recorded: a change of nothing
    /// the trail covers (ctime alone), and the kernel storing the times it
    /// keeps under the writeback cache: through a handle (`by_handle`) when
    /// a writer closes, which no system call does, or after a change of
    /// the inode (link, rename, xattr), an mtime alone that is already
    /// the node's.
    pub fn attrs(
        mut self,
        (mode, uid, gid): (Option<u32>, Option<u32>, Option<u32>),
        size: Option<u64>,
        (atime, mtime): (Option<TimeOrNow>, Option<TimeOrNow>),
        by_handle: bool,
    ) -> Self {
        let now = crate::vault::now_ns();
        let time = |t: Option<TimeOrNow>| {
            t.map(|t| match t {
                TimeOrNow::Now => now,
                TimeOrNow::SpecificTime(t) => super::convert::kernel_time_ns(t),
            })
        };
        self.detail = Detail {
            mode,
            uid,
            gid,
            size,
            atime: time(atime),
            mtime: time(mtime),
            ..Detail::default()
        };
        let d = &self.detail;
        if d.size.is_some() {
            self.op = Op::Truncate;
        } else if d.mode.is_some() {
            self.op = Op::Chmod;
        } else if d.uid.is_some() || d.gid.is_some() {
            self.op = Op::Chown;
        } else if (d.atime.is_some() || d.mtime.is_some())
            && !by_handle
            && !self.mtime_kept(atime.is_none(), d.mtime)
        {
            self.op = Op::Utimes;
        } else {
            self.log = None;
        }
        self
    }

    /// Whether a SETATTR of `mtime` alone (`alone`) sets the mtime the
    /// node has already.
    fn mtime_kept(&self, alone: bool, mtime: Option<i64>) -> bool {
        alone
            && self.log.is_some()
            && mtime.is_some()
            && self
                .trail
                .vault
                .getattr(self.ino)
                .is_ok_and(|a| Some(a.mtime) == mtime)
    }

    /// Appends the record of an operation that went as `res` says; a
    /// result that creates a node (mkdir, mknod, symlink, link) names it.
    pub fn done<T: Created>(mut self, res: Result<T, Errno>) -> Result<T, Errno> {
        if self.log.is_none() {
            return res;
        }
        if let Ok(v) = &res {
            if let Some(ino) = v.node() {
                self.ino = ino;
            }
        }
        let ids = self.ids;
        let who = self.trail.callers.who(ids.0, ids.1, ids.2);
        let result = res.as_ref().map(|_| ()).map_err(|e| *e);
        match self.append_as(who, result) {
            Ok(()) => res,
            Err(e) => Err(e),
        }
    }

    /// Appends the record of a request that failed with `e` before its
    /// operation ran (a refusal, a bad argument); returns the errno to
    /// reply with.
    pub fn failed(self, e: Errno) -> Errno {
        match self.done::<()>(Err(e)) {
            Err(e) => e,
            Ok(()) => unreachable!("an error stays an error"),
        }
    }

    /// Appends the record of an open of node `ino` that went as `res`
    /// says, and returns the handle made for it (0 for a node of the
    /// past, or when there is no trail). If the record cannot be appended,
    /// the file is released again and the open fails.
    pub fn opened(mut self, ino: Option<u64>, res: Result<(), Errno>) -> Result<FileHandle, Errno> {
        if self.log.is_none() {
            return res.map(|()| FileHandle(0));
        }
        if let Some(ino) = ino {
            self.ino = ino;
        }
        let who = self.trail.callers.who(self.ids.0, self.ids.1, self.ids.2);
        let fh = match (ino, &res) {
            (Some(ino), Ok(())) => self.trail.handles.open(ino, who.clone()),
            _ => 0,
        };
        let trail = self.trail;
        match self.append_as(who, res) {
            Ok(()) => Ok(FileHandle(fh)),
            Err(e) => {
                if let (Some(ino), true) = (ino, fh != 0) {
                    trail.handles.close(fh);
                    if let Err(re) = trail.vault.release_file(ino) {
                        tracing::warn!("releasing inode {ino} after a failed audit append: {re}");
                    }
                }
                Err(e)
            }
        }
    }

    /// Appends the record as done by `who`, ended as `res` says; `res`
    /// again, or the append's errno if it failed.
    fn append_as(self, who: Who, res: Result<(), Errno>) -> Result<(), Errno> {
        let Some(log) = self.log else {
            return res;
        };
        let rec = Record {
            seq: 0,
            time_ns: crate::vault::now_ns(),
            who,
            op: self.op,
            path: self.path,
            target: self.target,
            ino: self.ino,
            parent: self.parent,
            detail: self.detail,
            result: res.err().map_or(0, |e| e.code()),
        };
        match log.append(rec) {
            Ok(_) => res,
            Err(e) => {
                tracing::error!("audit trail: {e}; the request fails");
                Err(Errno::from_i32(e.errno()))
            }
        }
    }
}

impl PhiFs {
    /// What node `node` is, for a record.
    pub(super) fn subject(&self, node: INodeNo) -> Subject<'static> {
        match Node::of(node.0) {
            // A `mount --at` view is named as `.snapshots` names that
            // instant: the path as it was then, not the node's live one.
            Node::Tree { slot: 0, ino } => match self.at {
                Some(at) => Subject::Snapshot { at, ino },
                None => Subject::Node(ino),
            },
            Node::Tree { slot, ino } => match self.slots.instant(slot) {
                Some(at) => Subject::Snapshot { at, ino },
                None => Subject::Node(node.0),
            },
            Node::Dir => Subject::SnapshotsDir,
        }
    }

    /// What entry `name` of directory `dir` is, for a record.
    pub(super) fn entry_subject<'a>(&self, dir: INodeNo, name: &'a [u8]) -> Subject<'a> {
        match self.subject(dir) {
            Subject::Node(ino) => Subject::Entry(ino, name),
            Subject::Snapshot { at, ino } => Subject::SnapshotEntry { at, dir: ino, name },
            _ => Subject::SnapshotsEntry(name),
        }
    }

    /// Replies with the node a request made in live directory `dir` (see
    /// `entry`), as `made` says `(dir, node)`, once its record is appended.
    pub(super) fn entry_recorded(
        &self,
        reply: ReplyEntry,
        rec: Pending<'_>,
        made: Result<(u64, Attr), Errno>,
    ) {
        match rec.done(made) {
            Ok((dir, a)) => self.entry(reply, dir, Ok(a)),
            Err(e) => reply.error(e),
        }
    }

    /// The caller of `req`, if `--allow-group` lets it in. A caller shut
    /// out of a request that no other record covers (stat, readdir,
    /// statfs, listxattr, readlink; getxattr does the same, naming the
    /// attribute) is recorded as `op` of `node`, one record a request, so
    /// that every attempt of an outsider is in the trail under their name.
    /// Members' such requests are not recorded, and cost nothing here.
    pub(super) fn admit_as(&self, req: &Request, op: Op, node: INodeNo) -> Result<Caller, Errno> {
        self.admit(req)
            .map_err(|e| self.audit.start(req, op, self.subject(node)).failed(e))
    }
}

/// Replies to a request that returns nothing, once its record is appended.
pub(super) fn empty_recorded(reply: ReplyEmpty, rec: Pending<'_>, res: Result<(), Errno>) {
    match rec.done(res) {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// A result that may name a node made by the operation.
pub trait Created {
    fn node(&self) -> Option<u64> {
        None
    }
}

impl Created for () {}

impl Created for Attr {
    fn node(&self) -> Option<u64> {
        Some(self.ino)
    }
}

/// A node made in a directory: (directory, node).
impl Created for (u64, Attr) {
    fn node(&self) -> Option<u64> {
        Some(self.1.ino)
    }
}

fn is_denial(e: Errno) -> bool {
    matches!(e.code(), libc::EACCES | libc::EPERM)
}
