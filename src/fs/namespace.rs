//! Names in a directory: LOOKUP (the live tree, the past, `.snapshots`),
//! and the requests that add, remove or move names (mknod, mkdir, unlink,
//! rmdir, symlink, rename, link), and READLINK.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use fuser::{Errno, Generation, INodeNo, RenameFlags, ReplyData, ReplyEmpty, ReplyEntry, Request};

use super::audit::empty_recorded;
use super::convert::{self, file_attr, kind_from_mode};
use super::snapshots::{self};
use super::{errno, name, node_attr, on_tree, PhiFs, Place, Tree, TTL};
use crate::audit::Op;
use crate::vault::{
    Attr, Caller, Kind, NodeSpec, RenameMode, TreeView, Vault, VaultError, MAY_EXEC, ROOT_INO,
};

impl PhiFs {
    pub(super) fn do_lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let who = match self.admit(req) {
            Ok(who) => who,
            Err(e) => {
                return reply.error(
                    self.audit
                        .search(req, self.entry_subject(parent, name(n)), e),
                )
            }
        };
        match self.place(parent) {
            Ok(Place::Node { tree, ino, slot }) => {
                // The export operations' "." and ".." name a node by its
                // number, which the kernel checked when it handed it out.
                // A directory everyone may search needs no check (and no
                // read of its mode) for anyone.
                let open = matches!(tree, Tree::Live(_)) && self.searchable_by_admitted(ino);
                let searched = match (&tree, name(n)) {
                    (_, b"." | b"..") => Ok(()),
                    (Tree::Live(_), _) if open => Ok(()),
                    (Tree::Live(v), _) => v.may_lookup(&who, ino),
                    (Tree::Past(p), _) => self.past_may(p, &who, ino, MAY_EXEC),
                };
                if let Err(e) = searched {
                    let subject = self.entry_subject(parent, name(n));
                    return reply.error(self.audit.search(req, subject, errno(e)));
                }
                let timeout = match &tree {
                    Tree::Live(_) => self.entry_timeout_of(ino, open),
                    Tree::Past(p) => self.past_entry_timeout(p, ino),
                };
                on_tree!(tree, |t| self.lookup_in(
                    t,
                    slot,
                    ino,
                    name(n),
                    timeout,
                    reply
                ))
            }
            Ok(Place::SnapshotsDir) => self.lookup_snapshot(name(n), reply),
            Err(e) => reply.error(e),
        }
    }

    pub(super) fn do_readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        if let Err(e) = self.admit_as(req, Op::ReadLink, ino) {
            return reply.error(e);
        }
        let target = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.readlink(ino)).map_err(errno),
            Ok(Place::SnapshotsDir) => Err(Errno::EINVAL),
            Err(e) => Err(e),
        };
        match target {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = kind_from_mode(mode);
        self.make_node(req, Op::Mknod, parent, n, kind, mode, umask, rdev, reply)
    }

    pub(super) fn do_mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.make_node(
            req,
            Op::Mkdir,
            parent,
            n,
            Some(Kind::Dir),
            mode,
            umask,
            0,
            reply,
        )
    }

    /// MKNOD and MKDIR: a node of `kind` (None: a mode of no kind, EINVAL
    /// once the caller may create in `parent`), recorded as `op`.
    #[allow(clippy::too_many_arguments)]
    fn make_node(
        &self,
        req: &Request,
        op: Op,
        parent: INodeNo,
        n: &OsStr,
        kind: Option<Kind>,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let rec = self
            .audit
            .start(req, op, self.entry_subject(parent, name(n)))
            .mode(mode);
        let spec = kind.map(|kind| NodeSpec {
            kind,
            mode,
            umask,
            rdev,
        });
        self.entry_recorded(reply, rec, self.new_node(req, parent, n, spec))
    }

    pub(super) fn do_unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.remove(req, Op::Unlink, parent, n, reply, Vault::unlink)
    }

    pub(super) fn do_rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.remove(req, Op::Rmdir, parent, n, reply, Vault::rmdir)
    }

    /// UNLINK and RMDIR of entry `n` of `parent`, recorded as `op`: `remove`
    /// takes it out once the caller may delete it.
    fn remove(
        &self,
        req: &Request,
        op: Op,
        parent: INodeNo,
        n: &OsStr,
        reply: ReplyEmpty,
        remove: fn(&Vault, &Caller, u64, &[u8]) -> crate::vault::Result<()>,
    ) {
        let rec = self
            .audit
            .start(req, op, self.entry_subject(parent, name(n)));
        let removed = self
            .deleting(req, parent, n)
            .and_then(|(who, parent)| remove(&self.vault, &who, parent, name(n)).map_err(errno));
        empty_recorded(reply, rec, removed)
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        let rec = self
            .audit
            .start(req, Op::Symlink, self.entry_subject(parent, name(link)))
            .target(target);
        let made = self.creating(req, parent, link).and_then(|(who, parent)| {
            let made = self.vault.symlink(&who, parent, name(link), target);
            made.map(|a| (parent, a)).map_err(errno)
        });
        self.entry_recorded(reply, rec, made)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let rec = self
            .audit
            .start(req, Op::Rename, self.entry_subject(parent, name(n)))
            .onto(self.entry_subject(newparent, name(newname)));
        let renamed = self.admit(req).and_then(|who| {
            let parent = self.live_name(parent, n)?;
            let newparent = self.live_name(newparent, newname)?;
            let mode = match flags.bits() {
                0 => RenameMode::Replace,
                f if f == libc::RENAME_NOREPLACE => RenameMode::NoReplace,
                f if f == libc::RENAME_EXCHANGE => RenameMode::Exchange,
                _ => return Err(Errno::EINVAL),
            };
            let (n, newname) = (name(n), name(newname));
            self.vault
                .may_rename(&who, parent, n, newparent, newname, mode)
                .and_then(|()| self.vault.rename(&who, parent, n, newparent, newname, mode))
                .map_err(errno)
        });
        empty_recorded(reply, rec, renamed)
    }

    pub(super) fn do_link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let rec = self
            .audit
            .start(req, Op::Link, self.subject(ino))
            .onto(self.entry_subject(newparent, name(newname)));
        let linked = self.admit(req).and_then(|who| {
            let ino = self.live(ino)?;
            let dir = self.live_name(newparent, newname)?;
            self.vault
                .may_link(&who, ino, dir)
                .and_then(|()| self.vault.link(ino, dir, name(newname)))
                .map(|a| (dir, a))
                .map_err(errno)
        });
        self.entry_recorded(reply, rec, linked)
    }

    /// A node made as `spec` says as entry `n` of live directory `parent`,
    /// once the caller may create it there (EINVAL then for no `spec`, a
    /// mode of no kind): the directory and the node's attributes.
    pub(super) fn new_node(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        spec: Option<NodeSpec>,
    ) -> Result<(u64, Attr), Errno> {
        let (who, parent) = self.creating(req, parent, n)?;
        let spec = spec.ok_or(Errno::EINVAL)?;
        let made = self.vault.create_node(&who, parent, name(n), spec);
        made.map(|a| (parent, a)).map_err(errno)
    }

    /// The caller and the live directory `parent`, for a new entry `n`
    /// the caller may create there.
    pub(super) fn creating(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
    ) -> Result<(Caller, u64), Errno> {
        let who = self.admit(req)?;
        let parent = self.live_name(parent, n)?;
        self.vault.may_create(&who, parent).map_err(errno)?;
        Ok((who, parent))
    }

    /// The caller and live node `ino`, for a change of it.
    pub(super) fn changing(&self, req: &Request, ino: INodeNo) -> Result<Caller, Errno> {
        let who = self.admit(req)?;
        self.live(ino)?;
        Ok(who)
    }

    /// The caller and the live directory `parent`, for the removal of its
    /// entry `n`, which the caller may delete.
    fn deleting(&self, req: &Request, parent: INodeNo, n: &OsStr) -> Result<(Caller, u64), Errno> {
        let who = self.admit(req)?;
        let parent = self.live_name(parent, n)?;
        self.vault
            .may_delete(&who, parent, name(n))
            .map_err(errno)?;
        Ok((who, parent))
    }

    /// Replies with a node of live directory `dir`, named by its number
    /// and its generation (which file handles carry, see
    /// `Vault::generation`), kept as long as `entry_timeout` allows.
    pub(super) fn entry(&self, reply: ReplyEntry, dir: u64, res: crate::vault::Result<Attr>) {
        self.entry_in(reply, 0, self.entry_timeout(dir), res)
    }

    /// Replies with a node of the tree in `slot`, kept for `timeout`.
    pub(super) fn entry_in(
        &self,
        reply: ReplyEntry,
        slot: u64,
        timeout: Duration,
        res: crate::vault::Result<Attr>,
    ) {
        match res {
            Ok(a) => {
                let generation = Generation(self.vault.generation(a.ino));
                reply.entry(&timeout, &node_attr(slot, &a), generation)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// LOOKUP in directory `parent` of tree `t`, whose nodes carry `slot`.
    pub(super) fn lookup_in<T: TreeView>(
        &self,
        t: &T,
        slot: u64,
        parent: u64,
        name: &[u8],
        timeout: Duration,
        reply: ReplyEntry,
    ) {
        // Only the export operations send "." and ".." (the kernel resolves
        // them in a path itself); a node that is gone must be ENOENT, which
        // the kernel turns into ESTALE, never a cached negative entry.
        let found = match name {
            b"." => t.lookup_id(parent),
            b".." if slot != 0 && parent == ROOT_INO => {
                return reply.entry(&TTL, &file_attr(&self.snapshots_attr()), Generation(0))
            }
            b".." => t.lookup_parent(parent),
            snapshots::DIR_NAME if slot == 0 && parent == ROOT_INO && self.offers_snapshots() => {
                return reply.entry(&timeout, &file_attr(&self.snapshots_attr()), Generation(0))
            }
            _ => match t.lookup(parent, name) {
                // Only this mount adds names to the store, and the kernel
                // drops a cached "no such name" when it creates one: programs
                // that test for a name before creating it (SQLite's journal
                // at every transaction, editors, git, make) ask once. A
                // read-only view of the live tree may run beside the writing
                // daemon, so it does not cache them; the past never changes.
                Err(VaultError::NotFound)
                    if slot != 0 || self.at.is_some() || !self.vault.is_read_only() =>
                {
                    return reply.entry(&timeout, &convert::no_entry(), Generation(0))
                }
                res => res,
            },
        };
        self.entry_in(reply, slot, timeout, found)
    }

    /// LOOKUP in `.snapshots`: any well-formed name of a second that has
    /// passed since the store was made, listed or not.
    pub(super) fn lookup_snapshot(&self, name: &[u8], reply: ReplyEntry) {
        match name {
            b"." => return reply.entry(&TTL, &file_attr(&self.snapshots_attr()), Generation(0)),
            b".." => return self.entry_in(reply, 0, TTL, self.vault.getattr(ROOT_INO)),
            _ => {}
        }
        let Some(sec) = snapshots::second_of(name).filter(|&s| snapshots::has_passed(s)) else {
            return reply.error(Errno::ENOENT);
        };
        let at = snapshots::instant_of(sec);
        // Before the store existed, its root did not either: ENOENT.
        let root = match self.vault.past(at).getattr(ROOT_INO) {
            Ok(root) => root,
            Err(e) => return reply.error(errno(e)),
        };
        match self.slots.slot_of(at) {
            Some(slot) => self.entry_in(reply, slot, TTL, Ok(root)),
            None => reply.error(Errno::ENOSPC),
        }
    }
}
