//! Directory listings: OPENDIR, READDIR(PLUS), RELEASEDIR, FSYNCDIR, for
//! the trees and for `.snapshots`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, OpenFlags, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyOpen, Request,
};

use super::convert::{self, file_attr};
use super::snapshots::{self, node_id};
use super::{empty, errno, node_attr, on_tree, PhiFs, Place, Tree, TTL};
use crate::audit::Op;
use crate::vault::{Attr, Caller, Kind, TreeView, Vault, VaultError, MAY_READ, ROOT_INO};

impl PhiFs {
    pub(super) fn do_opendir(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        reply: ReplyOpen,
    ) {
        let rec = self
            .audit
            .start(req, Op::OpenDir, self.subject(ino))
            .flags(flags.0);
        let opened = self
            .admit(req)
            .and_then(|who| self.dir_kind(&who, ino, flags.0))
            .and_then(|kind| match kind {
                Kind::Dir => Ok(()),
                _ => Err(Errno::ENOTDIR),
            });
        match rec.done(opened) {
            Ok(()) => reply.opened(self.dirs.open(), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    /// The kind of node `ino`, which `who` may open with `flags`.
    fn dir_kind(&self, who: &Caller, ino: INodeNo, flags: i32) -> Result<Kind, Errno> {
        match self.place(ino)? {
            Place::Node {
                tree: Tree::Live(v),
                ino,
                ..
            } => v
                .may_open(who, ino, flags)
                .and_then(|()| v.getattr(ino))
                .map(|a| a.kind)
                .map_err(errno),
            Place::Node {
                tree: Tree::Past(p),
                ino,
                ..
            } => self
                .past_may(&p, who, ino, MAY_READ)
                .and_then(|()| p.getattr(ino))
                .map(|a| a.kind)
                .map_err(errno),
            Place::SnapshotsDir => Ok(Kind::Dir),
        }
    }

    pub(super) fn do_releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.release(fh);
        self.listings.release(fh);
        reply.ok()
    }

    pub(super) fn do_readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if let Err(e) = self.admit_as(req, Op::ReadDir, ino) {
            return reply.error(e);
        }
        let res = match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => on_tree!(tree, |t| {
                self.walk_dir(t, ino, fh, offset, 256, |e| {
                    let name = OsStr::from_bytes(&e.name);
                    let node = INodeNo(self.entry_node(slot, ino, e));
                    Ok(reply.add(node, e.next, convert::file_type(e.kind), name))
                })
            }),
            Ok(Place::SnapshotsDir) => self.walk_snapshots(fh, offset, |node, next, name, _| {
                Ok(reply.add(node, next, fuser::FileType::Directory, name))
            }),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub(super) fn do_readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        if let Err(e) = self.admit_as(req, Op::ReadDir, ino) {
            return reply.error(e);
        }
        let res = match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => on_tree!(tree, |t| {
                // As LOOKUP's replies (see `entry_timeout`).
                let timeout = match &tree {
                    Tree::Live(_) => self.entry_timeout(ino),
                    Tree::Past(p) => self.past_entry_timeout(p, ino),
                };
                self.walk_dir(t, ino, fh, offset, 128, |e| {
                    let attr = match t.getattr(e.ino) {
                        Ok(a) => a,
                        Err(VaultError::NotFound) => return Ok(false),
                        Err(err) => return Err(errno(err)),
                    };
                    let mut attr = node_attr(slot, &attr);
                    attr.ino = INodeNo(self.entry_node(slot, ino, e));
                    let name = OsStr::from_bytes(&e.name);
                    let generation = Generation(self.vault.generation(e.ino));
                    Ok(reply.add(attr.ino, e.next, name, &timeout, &attr, generation))
                })
            }),
            Ok(Place::SnapshotsDir) => self.walk_snapshots(fh, offset, |node, next, name, attr| {
                let generation = Generation(self.vault.generation(ROOT_INO));
                Ok(reply.add(node, next, name, &TTL, &file_attr(attr), generation))
            }),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    pub(super) fn do_fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The past is as durable as it will ever be.
        match self.live(ino) {
            Ok(_) => empty(reply, self.vault.sync_dir()),
            Err(_) => reply.ok(),
        }
    }

    /// The node number of entry `e` of directory `dir` in the tree of
    /// `slot`; the ".." of a snapshot's root is `.snapshots`.
    #[inline]
    pub(super) fn entry_node(&self, slot: u64, dir: u64, e: &crate::vault::DirEntry) -> u64 {
        if slot != 0 && dir == ROOT_INO && e.name == b".." {
            return snapshots::DIR_NODE;
        }
        node_id(slot, e.ino)
    }

    /// Feeds the entries of `.snapshots` after `offset` to `add` (node,
    /// next offset, name, attributes) until it reports the reply buffer
    /// full (true) or the listing ends.
    pub(super) fn walk_snapshots(
        &self,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(INodeNo, u64, &OsStr, &Attr) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        let seconds = self.listings.seconds(fh, offset, || {
            let tz = jiff::tz::TimeZone::system();
            self.vault
                .snapshot_instants(jiff::Timestamp::now(), &tz)
                .map_err(errno)
        })?;
        let mut dir = self.snapshots_attr();
        if offset < 1 && add(INodeNo(dir.ino), 1, OsStr::new("."), &dir)? {
            return Ok(());
        }
        if offset < 2 {
            let root = self.vault.getattr(ROOT_INO).map_err(errno)?;
            if add(INodeNo(ROOT_INO), 2, OsStr::new(".."), &root)? {
                return Ok(());
            }
        }
        for (i, &sec) in seconds
            .iter()
            .enumerate()
            .skip(offset.saturating_sub(2) as usize)
        {
            let at = snapshots::instant_of(sec);
            let (Some(name), Ok(root)) = (
                snapshots::name_of(sec),
                self.vault.past(at).getattr(ROOT_INO),
            ) else {
                continue;
            };
            let Some(slot) = self.slots.slot_of(at) else {
                break;
            };
            dir = root;
            dir.ino = node_id(slot, ROOT_INO);
            if add(INodeNo(dir.ino), i as u64 + 3, OsStr::new(&name), &dir)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The names in live directory `dir`, "." and ".." aside.
    pub(super) fn names_in(&self, dir: u64) -> Vec<Vec<u8>> {
        let v: &Vault = &self.vault;
        let mut names = Vec::new();
        let Ok(horizon) = TreeView::listing_horizon(v) else {
            return names;
        };
        let mut pos = 0;
        while let Ok(entries) = TreeView::readdir(v, dir, pos, horizon, 512) {
            if entries.is_empty() {
                break;
            }
            for e in entries {
                pos = e.next;
                if e.name != b"." && e.name != b".." {
                    names.push(e.name);
                }
            }
        }
        names
    }

    /// Feeds directory entries of `ino` in tree `t` after `offset` to `add`
    /// until it reports the reply buffer full (true) or the directory ends.
    pub(super) fn walk_dir<T: TreeView>(
        &self,
        t: &T,
        ino: u64,
        fh: FileHandle,
        offset: u64,
        batch: usize,
        mut add: impl FnMut(&crate::vault::DirEntry) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        let horizon = match self.dirs.horizon(fh) {
            Some(h) if offset != 0 => h,
            _ => {
                let now = t.listing_horizon().map_err(errno)?;
                self.dirs.start(fh, now);
                now
            }
        };
        let mut pos = offset;
        loop {
            let entries = t.readdir(ino, pos, horizon, batch).map_err(errno)?;
            if entries.is_empty() {
                return Ok(());
            }
            for e in &entries {
                if add(e)? {
                    return Ok(());
                }
                pos = e.next;
            }
        }
    }
}
