//! A node's attributes and the filesystem's: GETATTR, SETATTR, ACCESS,
//! STATFS.

use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno, FileHandle, INodeNo, ReplyAttr, ReplyEmpty, ReplyStatfs, Request, TimeOrNow,
};

use super::convert::{file_attr, kernel_time_ns};
use super::{errno, node_attr, on_tree, PhiFs, Place, Tree, TTL};
use crate::audit::Op;
use crate::vault::{SetAttr, TimeSet, MAY_EXEC, MAY_READ, MAY_WRITE};

impl PhiFs {
    pub(super) fn do_getattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        if let Err(e) = self.admit(req) {
            return reply.error(e);
        }
        match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => match on_tree!(tree, |t| t.getattr(ino)) {
                Ok(a) => reply.attr(&TTL, &node_attr(slot, &a)),
                Err(e) => reply.error(errno(e)),
            },
            Ok(Place::SnapshotsDir) => reply.attr(&TTL, &file_attr(&self.snapshots_attr())),
            Err(e) => reply.error(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        let rec = self.audit.start(req, Op::Chmod, self.subject(ino)).attrs(
            (mode, uid, gid),
            size,
            (atime, mtime),
            fh.is_some(),
        );
        let who = match self.admit(req) {
            Ok(who) => who,
            Err(e) => return reply.error(rec.failed(e)),
        };
        if let Err(e) = self.live(ino) {
            return reply.error(rec.failed(e));
        }
        let ts = |t: TimeOrNow| match t {
            TimeOrNow::Now => TimeSet::Now,
            TimeOrNow::SpecificTime(t) => TimeSet::At(kernel_time_ns(t)),
        };
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(ts),
            mtime: mtime.map(ts),
            ctime: ctime.map(kernel_time_ns),
            // FATTR_KILL_SUIDGID is not passed on by fuser; these are the
            // cases where the kernel sets it.
            drop_set_id: uid.is_some()
                || gid.is_some()
                || (size.is_some() && self.set_id_to_drop(&who, ino)),
        };
        let was_searchable = self.searchable_before(ino.0, mode.or(uid).or(gid).is_some());
        let set = self
            .vault
            .may_setattr(&who, ino.0, &set, fh.is_some())
            .and_then(|()| self.vault.setattr(&who, ino.0, &set));
        match rec.done(set.map_err(errno)) {
            Ok(a) => {
                reply.attr(&TTL, &file_attr(&a));
                self.search_changed(ino.0, was_searchable);
            }
            Err(e) => reply.error(e),
        }
    }

    /// Whether `ino` is a directory everyone may search, before a change
    /// (`changes`) that may take that away.
    pub(super) fn searchable_before(&self, ino: u64, changes: bool) -> bool {
        changes && self.vault.searchable_by_all(ino).unwrap_or(false)
    }

    /// After a change of `dir`'s mode, owner or ACL, once it is replied
    /// to: if everyone could search it before and not now, the kernel
    /// forgets the entries it cached in it (see `entry_timeout`).
    pub(super) fn search_changed(&self, dir: u64, was_searchable: bool) {
        if was_searchable && !self.vault.searchable_by_all(dir).unwrap_or(true) {
            self.kernel.forget_entries(INodeNo(dir), self.names_in(dir));
        }
    }

    pub(super) fn do_statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        if let Err(e) = self.admit(req) {
            return reply.error(e);
        }
        match self.vault.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_avail,
                s.files,
                s.files_free,
                s.block_size,
                crate::vault::NAME_MAX as u32,
                s.block_size,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// access(2), faccessat(2) and chdir: the only permission checks the
    /// kernel asks for without default_permissions.
    pub(super) fn do_access(
        &self,
        req: &Request,
        ino: INodeNo,
        mask: AccessFlags,
        reply: ReplyEmpty,
    ) {
        let who = match self.admit(req) {
            Ok(who) => who,
            Err(e) => return reply.error(self.audit.search(req, self.subject(ino), e)),
        };
        let mask = mask.bits() as u32 & (MAY_READ | MAY_WRITE | MAY_EXEC);
        let res = match self.place(ino) {
            Ok(Place::Node {
                tree: Tree::Live(v),
                ino,
                ..
            }) => v.may_access(&who, ino, mask).map_err(errno),
            // The past, and `.snapshots`, only ever read. Their read checks
            // are not made yet (see `lookup`).
            Ok(_) if mask & MAY_WRITE != 0 => Err(Errno::EROFS),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.audit.search(req, self.subject(ino), e)),
        }
    }
}
