//! A node's attributes and the filesystem's: GETATTR, SETATTR, ACCESS,
//! STATFS.

use std::time::SystemTime;

use fuser::{
    AccessFlags, FileHandle, INodeNo, ReplyAttr, ReplyEmpty, ReplyStatfs, Request, TimeOrNow,
};

use super::convert::{caller, file_attr, kernel_time_ns};
use super::{errno, node_attr, on_tree, PhiFs, Place, Tree, TTL};
use crate::vault::{SetAttr, TimeSet};

impl PhiFs {
    pub(super) fn do_getattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
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
        _fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        if let Err(e) = self.live(ino) {
            return reply.error(e);
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
                || (size.is_some() && self.set_id_to_drop(req, ino)),
        };
        match self.vault.setattr(&caller(req), ino.0, &set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
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

    pub(super) fn do_access(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mask: AccessFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }
}
