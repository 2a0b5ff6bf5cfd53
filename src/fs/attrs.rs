//! A node's attributes and the filesystem's: GETATTR, SETATTR, ACCESS,
//! STATFS.

use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno, FileHandle, INodeNo, ReplyAttr, ReplyEmpty, ReplyStatfs, Request, TimeOrNow,
};

use super::convert::{self, file_attr, kernel_time_ns};
use super::{errno, node_attr, on_tree, PhiFs, Place, Tree};
use crate::audit::Op;
use crate::vault::{Kind, SetAttr, TimeSet, MAY_EXEC, MAY_READ, MAY_WRITE};

impl PhiFs {
    pub(super) fn do_getattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        if let Err(e) = self.admit_as(req, Op::Stat, ino) {
            return reply.error(e);
        }
        let timeout = self.attr_timeout(ino);
        match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => match on_tree!(tree, |t| t.getattr(ino)) {
                Ok(a) => reply.attr(&timeout, &node_attr(slot, &a)),
                Err(e) => reply.error(errno(e)),
            },
            Ok(Place::SnapshotsDir) => reply.attr(&timeout, &file_attr(&self.snapshots_attr())),
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
        let who = match self.changing(req, ino) {
            Ok(who) => who,
            Err(e) => return reply.error(rec.failed(e)),
        };
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
        // With the writeback cache the kernel keeps a file's mtime and
        // sends it when it writes the inode back, from the writer's request
        // (fuse_flush_times): mtime and ctime with the handle. utimensat
        // never sends a handle (only truncate does), so no caller can ask
        // for this, and the writer's open was checked.
        let kernel_flushes_times =
            fh.is_some() && mode.or(uid).or(gid).is_none() && size.is_none() && atime.is_none();
        let checked = match kernel_flushes_times {
            true => Ok(()),
            false => self
                .vault
                .may_setattr(&who, ino.0, &as_asked(&set), fh.is_some()),
        };
        let set = checked.and_then(|()| self.vault.setattr(&who, ino.0, &set));
        match rec.done(set.map_err(errno)) {
            Ok(a) => {
                let dir_changed = a.kind == Kind::Dir && mode.or(uid).or(gid).is_some();
                let was_searchable = dir_changed.then(|| self.searchable.take(ino.0));
                reply.attr(&self.attr_timeout(ino), &file_attr(&a));
                if let Some(was) = was_searchable {
                    self.search_changed(ino.0, was);
                }
            }
            Err(e) => reply.error(e),
        }
    }

    /// After a change of `dir`'s mode, owner or ACL, once it is replied
    /// to: if every admitted caller could search it before (as
    /// `entry_timeout` last said; None when it did not, so maybe) and not
    /// now, the kernel forgets the entries it cached in it. Those of its
    /// names go one by one (one in use, a cwd say, stays cached until
    /// dropped by name); the "no such name" entries it cached, whose names
    /// nobody kept, go with `dir`'s own entry, which takes every unused
    /// entry below it along.
    pub(super) fn search_changed(&self, dir: u64, was_searchable: Option<bool>) {
        let now = self.vault.searchable_by(dir, self.admitted);
        if was_searchable.unwrap_or(true) && !now.unwrap_or(true) {
            self.kernel.forget_entries(INodeNo(dir), self.names_in(dir));
            if let Some((parent, name)) = self.entry_of_dir(dir) {
                self.kernel.forget_entries(INodeNo(parent), vec![name]);
            }
        }
    }

    /// The directory that names live directory `dir`, and the name; None
    /// for the root.
    fn entry_of_dir(&self, dir: u64) -> Option<(u64, Vec<u8>)> {
        if dir == crate::vault::ROOT_INO {
            return None;
        }
        let parent = self.vault.lookup_parent(dir).ok()?.ino;
        let path = self.vault.path_of(dir).ok()?;
        let name = path.rsplit(|&b| b == b'/').next()?;
        Some((parent, name.to_vec()))
    }

    pub(super) fn do_statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        if let Err(e) = self.admit_as(req, Op::StatFs, ino) {
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
            // The past, and `.snapshots`, only ever read.
            Ok(_) if mask & MAY_WRITE != 0 => Err(Errno::EROFS),
            Ok(Place::Node {
                tree: Tree::Past(p),
                ino,
                ..
            }) => self.past_may(&p, &who, ino, mask).map_err(errno),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.audit.search(req, self.subject(ino), e)),
        }
    }
}

/// The SETATTR as the caller asked for it, for the permission check. For a
/// regular file the writeback cache has the kernel send its own clock's
/// mtime instead of "now" (iattr_to_fattr, trust_local_cmtime), so
/// utimensat(UTIME_NOW, UTIME_NOW), which only needs write permission,
/// arrives as atime now with an mtime of this instant. An mtime within a
/// second of now with atime now is taken for that: a caller who could ask
/// for it otherwise (utimensat(UTIME_NOW, t)) sets no time it could not
/// set by writing.
fn as_asked(set: &SetAttr) -> SetAttr {
    let now = convert::time_ns(SystemTime::now());
    match (set.atime, set.mtime) {
        (Some(TimeSet::Now), Some(TimeSet::At(t))) if (now - t).abs() < 1_000_000_000 => SetAttr {
            mtime: Some(TimeSet::Now),
            ..set.clone()
        },
        _ => set.clone(),
    }
}
