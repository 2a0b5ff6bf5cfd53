//! The namespace: lookup, create, remove, rename, link, list, attributes.

use super::acl::{self, Acl};
use super::{
    Attr, Caller, DirEntry, FsStats, NodeSpec, RenameMode, Result, SetAttr, TimeSet, Vault,
    VaultError, NEW_NAME_BYTES, PATH_MAX,
};
use crate::catalog::{Catalog, Ino, Inode, Kind, NewEntry, NewInode, VersionReason, VersionRow};
use crate::crypto::names::domain;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_IXGRP: u32 = 0o0010;

/// Positions 1 and 2 are "." and ".."; entries follow at row id + 2.
const FIRST_ENTRY_POS: u64 = 2;

/// "." and ".." of `dir` for a listing from `pos`; `up` finds the parent.
pub(super) fn dots(dir: Ino, pos: u64, up: impl FnOnce() -> Result<Ino>) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    if pos < 1 {
        out.push(DirEntry {
            next: 1,
            ino: dir,
            kind: Kind::Dir,
            name: b".".to_vec(),
        });
    }
    if pos < 2 {
        out.push(DirEntry {
            next: 2,
            ino: up()?,
            kind: Kind::Dir,
            name: b"..".to_vec(),
        });
    }
    Ok(out)
}

/// The entry rows a listing from `pos` goes on with: those after this id.
pub(super) fn rows_after(pos: u64) -> i64 {
    pos.saturating_sub(FIRST_ENTRY_POS) as i64
}

/// The last entry position a directory listing returns, fixed when it
/// starts (`Vault::listing_horizon`), so that it ends and returns each
/// entry at most once whatever is renamed or created meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingHorizon(i64);

impl Vault {
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let file = self.files.lock().get(&ino).cloned();
        match file {
            Some(f) => {
                let f = f.lock();
                let cat = self.catalog_to_read()?;
                let mut inode = Self::inode_of(&cat, ino)?;
                f.overlay(&mut inode);
                let allocated = cat.allocated_blocks(ino)? * self.block_size;
                Ok(Attr::from_inode(
                    &inode,
                    allocated.max(f.dirty_len() as u64 * self.block_size),
                ))
            }
            None => {
                let cat = self.catalog_to_read()?;
                self.attr_locked(&cat, ino)
            }
        }
    }

    fn attr_locked(&self, cat: &Catalog, ino: Ino) -> Result<Attr> {
        let inode = Self::inode_of(cat, ino)?;
        let allocated = if inode.kind == Kind::File {
            cat.allocated_blocks(ino)? * self.block_size
        } else {
            0
        };
        Ok(Attr::from_inode(&inode, allocated))
    }

    pub(super) fn inode_of(cat: &Catalog, ino: Ino) -> Result<Inode> {
        cat.inode(ino)?.ok_or_else(|| match cat.lost_inode(ino) {
            Some(cause) => VaultError::ChangesLost(cause),
            None => VaultError::NotFound,
        })
    }

    pub(super) fn dir_of(cat: &Catalog, ino: Ino) -> Result<Inode> {
        let dir = Self::inode_of(cat, ino)?;
        if dir.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        if dir.nlink == 0 {
            return Err(VaultError::NotFound);
        }
        Ok(dir)
    }

    /// The inode at `path` (components separated by '/', from the root).
    pub fn resolve(&self, path: &[u8]) -> Result<Ino> {
        let mut ino = crate::catalog::ROOT_INO;
        for part in path
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
        {
            let hash = self.name_hash(ino, part)?;
            ino = self
                .catalog
                .lock()
                .lookup(ino, &hash)?
                .ok_or(VaultError::NotFound)?
                .0;
        }
        Ok(ino)
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let hash = self.name_hash(parent, name)?;
        let ino = {
            let cat = self.catalog_to_read()?;
            let (ino, _) = cat.lookup(parent, &hash)?.ok_or(VaultError::NotFound)?;
            ino
        };
        self.getattr(ino)
    }

    /// Creates a file, directory, device, FIFO or socket.
    pub fn create_node(
        &self,
        caller: &Caller,
        parent: Ino,
        name: &[u8],
        spec: NodeSpec,
    ) -> Result<Attr> {
        self.writable()?;
        let NodeSpec {
            kind,
            mode,
            umask,
            rdev,
        } = spec;
        self.claim_space(NEW_NAME_BYTES)?;
        let name = self.seal_name(parent, name)?;
        let t = self.tick();
        let cat = self.catalog.lock();
        cat.tx(|c| {
            let mut dir = Self::dir_of(c, parent)?;
            if c.lookup(parent, &name.hash)?.is_some() {
                return Err(VaultError::Exists);
            }
            // A directory's default ACL takes the place of the umask.
            let default_acl = self.acl_in(c, parent, acl::DEFAULT)?;
            let (mut mode, access_acl) = match &default_acl {
                Some(default) => default.inherit(mode & 0o7777),
                None => (mode & 0o7777 & !umask, None),
            };
            let mut gid = caller.gid;
            if dir.mode & S_ISGID != 0 {
                gid = dir.gid;
                if kind == Kind::Dir {
                    mode |= S_ISGID;
                }
            }
            if kind != Kind::Dir
                && mode & S_ISGID != 0
                && !caller.is_root()
                && !caller.in_group(gid)
            {
                mode &= !S_ISGID;
            }
            let nlink = if kind == Kind::Dir { 2 } else { 1 };
            let ino = c.insert_inode(&NewInode {
                kind,
                mode,
                uid: caller.uid,
                gid,
                nlink,
                size: 0,
                rdev,
                time: t.wall,
                at: t.at,
                target: None,
            })?;
            self.inherit_acls(c, ino, kind, access_acl.as_ref(), default_acl.as_ref(), t)?;
            c.insert_entry(&NewEntry {
                parent,
                hash: &name.hash,
                sealed_name: &name.sealed,
                ino,
                kind,
                time: t.at,
            })?;
            if kind == Kind::Dir {
                dir.nlink += 1;
            }
            dir.mtime = t.wall;
            dir.ctime = t.wall;
            c.update_inode(&dir, t.at)?;
            self.attr_locked(c, ino)
        })
    }

    /// Gives a new inode the ACLs it inherits: its own access ACL, and a
    /// directory its parent's default ACL as its own default.
    fn inherit_acls(
        &self,
        c: &Catalog,
        ino: Ino,
        kind: Kind,
        access: Option<&Acl>,
        parent_default: Option<&Acl>,
        t: super::Tick,
    ) -> Result<()> {
        if let Some(acl) = access {
            self.put_acl_in(c, ino, acl::ACCESS, acl, t.at)?;
        }
        if let (Kind::Dir, Some(acl)) = (kind, parent_default) {
            self.put_acl_in(c, ino, acl::DEFAULT, acl, t.at)?;
        }
        Ok(())
    }

    pub fn symlink(
        &self,
        caller: &Caller,
        parent: Ino,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr> {
        self.writable()?;
        if target.is_empty() {
            return Err(VaultError::NotFound);
        }
        if target.len() >= PATH_MAX {
            return Err(VaultError::NameTooLong);
        }
        self.claim_space(NEW_NAME_BYTES + target.len() as u64)?;
        let name = self.seal_name(parent, name)?;
        let t = self.tick();
        let cat = self.catalog.lock();
        cat.tx(|c| {
            let mut dir = Self::dir_of(c, parent)?;
            if c.lookup(parent, &name.hash)?.is_some() {
                return Err(VaultError::Exists);
            }
            let gid = if dir.mode & S_ISGID != 0 {
                dir.gid
            } else {
                caller.gid
            };
            let ino = c.insert_inode(&NewInode {
                kind: Kind::Symlink,
                mode: 0o777,
                uid: caller.uid,
                gid,
                nlink: 1,
                size: target.len() as u64,
                rdev: 0,
                time: t.wall,
                at: t.at,
                // Sealed under a scope fixed before the inode number is known.
                target: Some(self.keys.names.encrypt(domain::SYMLINK, 0, target)),
            })?;
            c.insert_entry(&NewEntry {
                parent,
                hash: &name.hash,
                sealed_name: &name.sealed,
                ino,
                kind: Kind::Symlink,
                time: t.at,
            })?;
            dir.mtime = t.wall;
            dir.ctime = t.wall;
            c.update_inode(&dir, t.at)?;
            self.attr_locked(c, ino)
        })
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let sealed = self
            .catalog
            .lock()
            .symlink_target(ino)?
            .ok_or(VaultError::Invalid)?;
        Ok(self.keys.names.decrypt(domain::SYMLINK, 0, &sealed)?)
    }

    pub fn unlink(&self, caller: &Caller, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(caller, parent, name, false)
    }

    pub fn rmdir(&self, caller: &Caller, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(caller, parent, name, true)
    }

    fn remove(&self, caller: &Caller, parent: Ino, name: &[u8], want_dir: bool) -> Result<()> {
        self.writable()?;
        let hash = self.name_hash(parent, name)?;
        let t = self.tick();
        let target = {
            let cat = self.catalog.lock();
            cat.lookup(parent, &hash)?.ok_or(VaultError::NotFound)?
        };
        let file = self.files.lock().get(&target.0).cloned();
        let open = file.as_ref().map(|f| f.lock());
        let cat = self.catalog.lock();
        let mut removed = target.0;
        cat.tx_commit(|c| {
            let (ino, kind) = c.lookup(parent, &hash)?.ok_or(VaultError::NotFound)?;
            removed = ino;
            let mut dir = Self::dir_of(c, parent)?;
            match (kind == Kind::Dir, want_dir) {
                (true, false) => return Err(VaultError::IsDir),
                (false, true) => return Err(VaultError::NotDir),
                (true, true) if c.has_children(ino)? => return Err(VaultError::NotEmpty),
                _ => {}
            }
            c.end_entry(parent, &hash, t.at)?;
            let mut inode = Self::inode_of(c, ino)?;
            if let Some(f) = open.as_ref() {
                f.overlay(&mut inode);
            }
            self.drop_link(
                c,
                &mut inode,
                &mut dir,
                t,
                (VersionReason::Deleted, caller.uid),
            )?;
            dir.mtime = t.wall;
            dir.ctime = t.wall;
            c.update_inode(&dir, t.at)?;
            Ok(())
        })?;
        drop((cat, open));
        match want_dir {
            true => self.dirs_changed(),
            false => self.node_renamed(removed),
        }
        self.deallocate_if_orphaned(target.0)
    }

    /// One fewer name for `inode` (held in `dir`). A file's last name going
    /// away is a tombstone version: the history stays restorable.
    fn drop_link(
        &self,
        c: &Catalog,
        inode: &mut Inode,
        dir: &mut Inode,
        t: super::Tick,
        (why, by): (VersionReason, u32),
    ) -> Result<()> {
        if inode.kind == Kind::Dir {
            inode.nlink = 0;
            dir.nlink = dir.nlink.saturating_sub(1);
        } else {
            inode.nlink = inode.nlink.saturating_sub(1);
        }
        inode.ctime = t.wall;
        if inode.nlink == 0 && inode.kind == Kind::File {
            inode.version += 1;
            inode.version_open = false;
            c.insert_version(&VersionRow {
                ino: inode.ino,
                version: inode.version,
                time: t.at,
                size: inode.size,
                reason: why,
                uid: Some(by),
            })?;
        }
        c.update_inode(inode, t.at)?;
        Ok(())
    }

    pub fn rename(
        &self,
        caller: &Caller,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        self.writable()?;
        let src_hash = self.name_hash(parent, name)?;
        let dst = self.seal_name(new_parent, new_name)?;
        let t = self.tick();
        // A replaced file that is open must see its link count change.
        let replaced = {
            let cat = self.catalog.lock();
            cat.lookup(new_parent, &dst.hash)?.map(|(i, _)| i)
        };
        let file = replaced.and_then(|i| self.files.lock().get(&i).cloned());
        let open = file.as_ref().map(|f| f.lock());
        let cat = self.catalog.lock();
        let mut moves_dir = false;
        // The nodes whose names change (the moved one, the one replaced or
        // exchanged), for the path cache.
        let mut renamed = [None, None];
        cat.tx_commit(|c| {
            let (src_ino, src_kind) = c.lookup(parent, &src_hash)?.ok_or(VaultError::NotFound)?;
            Self::dir_of(c, parent)?;
            Self::dir_of(c, new_parent)?;
            let existing = c.lookup(new_parent, &dst.hash)?;
            moves_dir = src_kind == Kind::Dir || existing.is_some_and(|(_, k)| k == Kind::Dir);
            renamed = [Some(src_ino), existing.map(|(i, _)| i)];
            if existing.is_some_and(|(i, _)| i == src_ino) {
                return Ok(()); // same inode under both names: POSIX says do nothing
            }
            match (mode, existing) {
                (RenameMode::NoReplace, Some(_)) => return Err(VaultError::Exists),
                (RenameMode::Exchange, None) => return Err(VaultError::NotFound),
                _ => {}
            }
            let src_sealed_new = dst.sealed.clone();
            if let (RenameMode::Exchange, Some((dst_ino, dst_kind))) = (mode, existing) {
                let back = self.seal_name(parent, name)?;
                c.end_entry(parent, &src_hash, t.at)?;
                c.end_entry(new_parent, &dst.hash, t.at)?;
                c.insert_entry(&NewEntry {
                    parent: new_parent,
                    hash: &dst.hash,
                    sealed_name: &src_sealed_new,
                    ino: src_ino,
                    kind: src_kind,
                    time: t.at,
                })?;
                c.insert_entry(&NewEntry {
                    parent,
                    hash: &back.hash,
                    sealed_name: &back.sealed,
                    ino: dst_ino,
                    kind: dst_kind,
                    time: t.at,
                })?;
                if parent != new_parent && (src_kind == Kind::Dir) != (dst_kind == Kind::Dir) {
                    let (from, to) = if src_kind == Kind::Dir {
                        (parent, new_parent)
                    } else {
                        (new_parent, parent)
                    };
                    Self::adjust_nlink(c, from, -1, t)?;
                    Self::adjust_nlink(c, to, 1, t)?;
                }
                for ino in [src_ino, dst_ino] {
                    let mut i = Self::inode_of(c, ino)?;
                    i.ctime = t.wall;
                    c.update_inode(&i, t.at)?;
                }
                return Self::touch_dirs(c, parent, new_parent, t);
            }
            if let Some((dst_ino, dst_kind)) = existing {
                match (src_kind == Kind::Dir, dst_kind == Kind::Dir) {
                    (true, false) => return Err(VaultError::NotDir),
                    (false, true) => return Err(VaultError::IsDir),
                    (true, true) if c.has_children(dst_ino)? => return Err(VaultError::NotEmpty),
                    _ => {}
                }
                c.end_entry(new_parent, &dst.hash, t.at)?;
                let mut victim = Self::inode_of(c, dst_ino)?;
                if let Some(f) = open.as_ref() {
                    f.overlay(&mut victim);
                }
                let mut np = Self::inode_of(c, new_parent)?;
                self.drop_link(
                    c,
                    &mut victim,
                    &mut np,
                    t,
                    (VersionReason::Replaced, caller.uid),
                )?;
                c.update_inode(&np, t.at)?;
            }
            c.end_entry(parent, &src_hash, t.at)?;
            c.insert_entry(&NewEntry {
                parent: new_parent,
                hash: &dst.hash,
                sealed_name: &src_sealed_new,
                ino: src_ino,
                kind: src_kind,
                time: t.at,
            })?;
            if src_kind == Kind::Dir && parent != new_parent {
                Self::adjust_nlink(c, parent, -1, t)?;
                Self::adjust_nlink(c, new_parent, 1, t)?;
            }
            let mut moved = Self::inode_of(c, src_ino)?;
            moved.ctime = t.wall;
            c.update_inode(&moved, t.at)?;
            Self::touch_dirs(c, parent, new_parent, t)
        })?;
        drop((cat, open));
        match moves_dir {
            true => self.dirs_changed(),
            false => renamed
                .into_iter()
                .flatten()
                .for_each(|i| self.node_renamed(i)),
        }
        match replaced {
            Some(ino) => self.deallocate_if_orphaned(ino),
            None => Ok(()),
        }
    }

    fn adjust_nlink(c: &Catalog, ino: Ino, delta: i64, t: super::Tick) -> Result<()> {
        let mut i = Self::inode_of(c, ino)?;
        i.nlink = (i.nlink as i64 + delta).max(0) as u32;
        c.update_inode(&i, t.at)?;
        Ok(())
    }

    fn touch_dirs(c: &Catalog, a: Ino, b: Ino, t: super::Tick) -> Result<()> {
        for ino in if a == b { vec![a] } else { vec![a, b] } {
            let mut d = Self::inode_of(c, ino)?;
            d.mtime = t.wall;
            d.ctime = t.wall;
            c.update_inode(&d, t.at)?;
        }
        Ok(())
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.writable()?;
        self.claim_space(NEW_NAME_BYTES)?;
        let name = self.seal_name(new_parent, new_name)?;
        let t = self.tick();
        let file = self.files.lock().get(&ino).cloned();
        let open = file.as_ref().map(|f| f.lock());
        let cat = self.catalog.lock();
        cat.tx(|c| {
            let mut inode = Self::inode_of(c, ino)?;
            if inode.kind == Kind::Dir {
                return Err(VaultError::NotPermitted);
            }
            if inode.nlink == 0 {
                return Err(VaultError::NotFound);
            }
            let mut dir = Self::dir_of(c, new_parent)?;
            if c.lookup(new_parent, &name.hash)?.is_some() {
                return Err(VaultError::Exists);
            }
            c.insert_entry(&NewEntry {
                parent: new_parent,
                hash: &name.hash,
                sealed_name: &name.sealed,
                ino,
                kind: inode.kind,
                time: t.at,
            })?;
            if let Some(f) = open.as_ref() {
                f.overlay(&mut inode);
            }
            inode.nlink += 1;
            inode.ctime = t.wall;
            c.update_inode(&inode, t.at)?;
            dir.mtime = t.wall;
            dir.ctime = t.wall;
            c.update_inode(&dir, t.at)?;
            let allocated = c.allocated_blocks(ino)? * self.block_size;
            Ok(Attr::from_inode(&inode, allocated))
        })
    }

    /// Up to `max` entries after position `pos` (0 starts), "." and ".." first.
    /// A listed entry row, its name opened.
    pub(super) fn dir_entry(&self, dir: Ino, row: crate::catalog::DirRow) -> Result<DirEntry> {
        Ok(DirEntry {
            next: row.pos as u64 + FIRST_ENTRY_POS,
            ino: row.ino,
            kind: row.kind,
            name: self.open_name(dir, &row.sealed_name)?,
        })
    }

    /// Where a listing started now ends: it returns no entry created or
    /// renamed into a directory after this call (see `Catalog::list_dir`).
    /// Take it at opendir and again at a rewind.
    pub fn listing_horizon(&self) -> Result<ListingHorizon> {
        Ok(ListingHorizon(self.catalog_to_read()?.last_entry_pos()?))
    }

    /// Up to `max` entries of `dir` after position `pos` (0: from the
    /// start), none beyond `horizon`.
    pub fn readdir(
        &self,
        dir: Ino,
        pos: u64,
        horizon: ListingHorizon,
        max: usize,
    ) -> Result<Vec<DirEntry>> {
        let cat = self.catalog_to_read()?;
        let d = Self::dir_of(&cat, dir).or_else(|e| match e {
            // An open directory that was removed still lists "." and "..".
            VaultError::NotFound => Self::inode_of(&cat, dir),
            e => Err(e),
        })?;
        let mut out = dots(dir, pos, || Ok(cat.parent_of(dir)?.unwrap_or(d.ino)))?;
        let room = max.saturating_sub(out.len()).max(1);
        for row in cat.list_dir(dir, rows_after(pos), horizon.0, room)? {
            out.push(self.dir_entry(dir, row)?);
        }
        Ok(out)
    }

    /// Whether `ino` has set-id bits that `SetAttr::drop_set_id` clears:
    /// set-user-ID, or set-group-ID with group execute, on a non-directory.
    pub fn has_set_id_to_drop(&self, ino: Ino) -> Result<bool> {
        let a = self.getattr(ino)?;
        Ok(a.kind != Kind::Dir
            && (a.perm & S_ISUID != 0 || a.perm & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP))
    }

    pub fn setattr(&self, caller: &Caller, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.writable()?;
        if let Some(size) = set.size {
            self.truncate_as(ino, size, Some(caller.uid), super::data::Seal::Now)?;
        }
        let t = self.tick();
        let file = self.files.lock().get(&ino).cloned();
        let mut open = file.as_ref().map(|f| f.lock());
        let cat = self.catalog.lock();
        // A chmod rewrites the file's access ACL too, if it has one.
        let mut access_acl = match set.mode {
            Some(_) => self.acl_in(&cat, ino, acl::ACCESS)?,
            None => None,
        };
        let with_acl = access_acl.is_some();
        let change = |c: &Catalog| -> Result<Attr> {
            let mut i = Self::inode_of(c, ino)?;
            if let Some(f) = open.as_deref_mut() {
                f.overlay(&mut i);
            }
            if let Some(uid) = set.uid {
                i.uid = uid;
            }
            if let Some(gid) = set.gid {
                i.gid = gid;
            }
            if let Some(mode) = set.mode {
                let mut mode = mode & 0o7777;
                // setattr_prepare's rule, for directories too (with the
                // gid the inode has after this change, as setattr_copy).
                if !caller.in_group_or_capable(i.gid) {
                    mode &= !S_ISGID;
                }
                i.mode = mode;
                if let Some(acl) = access_acl.as_mut() {
                    acl.chmod(mode);
                    self.put_acl_in(c, ino, acl::ACCESS, acl, t.at)?;
                }
            } else if set.drop_set_id && i.kind != Kind::Dir {
                // As every local Linux filesystem does on chown, and on a
                // write or truncate without CAP_FSETID.
                i.mode &= !S_ISUID;
                if i.mode & S_IXGRP != 0 {
                    i.mode &= !S_ISGID;
                }
            }
            let stamp = |ts: TimeSet| match ts {
                TimeSet::Now => t.wall,
                TimeSet::At(v) => v,
            };
            if let Some(a) = set.atime {
                i.atime = stamp(a);
            }
            if let Some(m) = set.mtime {
                i.mtime = stamp(m);
            }
            i.ctime = set.ctime.unwrap_or(t.wall);
            let allocated = c.allocated_blocks(ino)? * self.block_size;
            // Last: without an ACL to rewrite, nothing may fail after it
            // (no savepoint undoes it).
            c.update_inode(&i, t.at)?;
            Ok(Attr::from_inode(&i, allocated))
        };
        // A change of a state committed before writes its history row too.
        let attr = if with_acl || !cat.attrs_fresh(ino) {
            cat.tx(change)?
        } else {
            cat.tx_one_row(change)?
        };
        if let Some(f) = open.as_deref_mut() {
            // Only now: a failed setattr must not leave its times to the
            // file's next flush.
            f.set_times(attr.mtime, attr.ctime);
            f.changed_in(&cat);
        }
        Ok(attr)
    }

    pub fn statfs(&self) -> Result<FsStats> {
        let mut st = nix_statvfs(self.dir.root())?;
        // The catalog's reserve is not for files, and what files allocated
        // is taken: `df` and programs that check for room before writing
        // see what they may really use.
        let kept = self.space.reserve() + self.space.held();
        let reserved = kept.div_ceil(st.block_size.max(1) as u64);
        st.blocks_free = st.blocks_free.saturating_sub(reserved);
        st.blocks_avail = st.blocks_avail.saturating_sub(reserved);
        Ok(st)
    }
}

fn nix_statvfs(path: &std::path::Path) -> Result<FsStats> {
    let s = crate::store::statvfs(path)?;
    Ok(FsStats {
        block_size: s.f_frsize as u32,
        blocks: s.f_blocks as u64,
        blocks_free: s.f_bfree as u64,
        blocks_avail: s.f_bavail as u64,
        files: s.f_files as u64,
        files_free: s.f_ffree as u64,
    })
}
