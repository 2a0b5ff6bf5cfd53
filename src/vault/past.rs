//! The tree as it was at an instant, read-only: names, content, modes,
//! owners, times, extended attributes (POSIX ACLs among them), symlinks,
//! hard links and special files.
//!
//! An instant is in nanoseconds since the epoch, on the clock history is
//! kept by (`Tick::at`, the wall clock made strictly increasing). A file's
//! content at an instant is its newest version recorded by then: what was
//! written and not yet closed or fsync'd was no version yet. Its attributes
//! are those of `catalog::history`, kept at the group commit's resolution.
//! Inode numbers are the store's own; a caller that shows the past beside
//! the live tree gives them numbers of its own (see `fs`).
//!
//! [`TreeView`] is what the live tree and a past one have in common: a
//! reader (the FUSE adapter) serves either without knowing which, or what
//! a version is.

use std::collections::HashMap;

use super::tree::{dots, rows_after};
use super::{Attr, DirEntry, ListingHorizon, Result, Vault, VaultError};
use crate::catalog::{BlockRef, Ino, Kind, VersionReason, ROOT_INO};
use crate::crypto::names::domain;

/// A tree to read: the live one (`Vault`) or one instant of its past
/// (`Past`). Callers are generic over it, so the live tree is served with
/// no indirection.
pub trait TreeView {
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr>;
    fn getattr(&self, ino: Ino) -> Result<Attr>;
    /// `ino` asked for by number (a file handle): NotFound once it is gone.
    fn lookup_id(&self, ino: Ino) -> Result<Attr>;
    /// The directory holding directory `dir`; the root is its own parent.
    fn lookup_parent(&self, dir: Ino) -> Result<Attr>;
    /// Where a listing started now ends (see [`ListingHorizon`]).
    fn listing_horizon(&self) -> Result<ListingHorizon>;
    fn readdir(
        &self,
        dir: Ino,
        pos: u64,
        horizon: ListingHorizon,
        max: usize,
    ) -> Result<Vec<DirEntry>>;
    fn read_into(&self, ino: Ino, offset: u64, out: &mut [u8]) -> Result<usize>;
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>>;
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>>;
}

impl TreeView for Vault {
    #[inline]
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        Vault::lookup(self, parent, name)
    }
    #[inline]
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        Vault::getattr(self, ino)
    }
    #[inline]
    fn lookup_id(&self, ino: Ino) -> Result<Attr> {
        Vault::lookup_id(self, ino)
    }
    #[inline]
    fn lookup_parent(&self, dir: Ino) -> Result<Attr> {
        Vault::lookup_parent(self, dir)
    }
    #[inline]
    fn listing_horizon(&self) -> Result<ListingHorizon> {
        Vault::listing_horizon(self)
    }
    #[inline]
    fn readdir(
        &self,
        dir: Ino,
        pos: u64,
        horizon: ListingHorizon,
        max: usize,
    ) -> Result<Vec<DirEntry>> {
        Vault::readdir(self, dir, pos, horizon, max)
    }
    #[inline]
    fn read_into(&self, ino: Ino, offset: u64, out: &mut [u8]) -> Result<usize> {
        Vault::read_into(self, ino, offset, out)
    }
    #[inline]
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        Vault::readlink(self, ino)
    }
    #[inline]
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        Vault::getxattr(self, ino, name)
    }
    #[inline]
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        Vault::listxattr(self, ino)
    }
}

/// The past does not change: a listing of it needs no horizon.
impl TreeView for Past<'_> {
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        Past::lookup(self, parent, name)
    }
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        Past::getattr(self, ino)
    }
    fn lookup_id(&self, ino: Ino) -> Result<Attr> {
        Past::getattr(self, ino)
    }
    fn lookup_parent(&self, dir: Ino) -> Result<Attr> {
        let parent = match dir {
            ROOT_INO => ROOT_INO,
            _ => self
                .vault
                .catalog_to_read()?
                .parent_at(dir, self.at)?
                .ok_or(VaultError::NotFound)?,
        };
        Past::getattr(self, parent)
    }
    fn listing_horizon(&self) -> Result<ListingHorizon> {
        self.vault.listing_horizon()
    }
    fn readdir(
        &self,
        dir: Ino,
        pos: u64,
        _horizon: ListingHorizon,
        max: usize,
    ) -> Result<Vec<DirEntry>> {
        Past::readdir(self, dir, pos, max)
    }
    fn read_into(&self, ino: Ino, offset: u64, out: &mut [u8]) -> Result<usize> {
        Past::read_into(self, ino, offset, out)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        Past::readlink(self, ino)
    }
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        Past::getxattr(self, ino, name)
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        Past::listxattr(self, ino)
    }
}

/// The tree at one instant.
pub struct Past<'a> {
    vault: &'a Vault,
    at: i64,
}

impl Vault {
    /// The tree as it was at instant `at` (ns since the epoch).
    pub fn past(&self, at: i64) -> Past<'_> {
        Past { vault: self, at }
    }
}

impl Past<'_> {
    pub fn instant(&self) -> i64 {
        self.at
    }

    /// The inode at `path` (components separated by '/', from the root).
    pub fn resolve(&self, path: &[u8]) -> Result<Ino> {
        let mut ino = ROOT_INO;
        for part in path
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
        {
            ino = self.lookup(ino, part)?.ino;
        }
        Ok(ino)
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let hash = self.vault.name_hash(parent, name)?;
        let found = self
            .vault
            .catalog_to_read()?
            .lookup_at(parent, &hash, self.at)?;
        let (ino, _) = found.ok_or(VaultError::NotFound)?;
        self.getattr(ino)
    }

    /// `ino` as it was: NotFound if it did not exist yet.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let cat = self.vault.catalog_to_read()?;
        let inode = Vault::inode_of(&cat, ino)?;
        let attrs = cat.attrs_at(ino, self.at)?.ok_or(VaultError::NotFound)?;
        let (size, blocks) = match inode.kind {
            Kind::File => match cat.version_at(ino, self.at)? {
                Some(v) => {
                    let n = v.size.div_ceil(self.vault.block_size);
                    let held = cat.version_block_count(ino, v.version, n)?;
                    (v.size, held * self.vault.block_size)
                }
                None => (0, 0),
            },
            Kind::Symlink => (inode.size, 0),
            _ => (0, 0),
        };
        let nlink = match inode.kind {
            Kind::Dir => 2 + cat.subdirs_at(ino, self.at)?,
            _ => cat.links_at(ino, self.at)?.max(1),
        };
        Ok(Attr {
            ino,
            kind: inode.kind,
            perm: attrs.mode & 0o7777,
            uid: attrs.uid,
            gid: attrs.gid,
            nlink,
            size,
            allocated: blocks,
            rdev: inode.rdev,
            atime: attrs.atime,
            mtime: attrs.mtime,
            ctime: attrs.ctime,
            btime: inode.btime,
        })
    }

    /// Up to `max` entries of `dir` after position `pos` (0: from the
    /// start), as `Vault::readdir` lists the live tree.
    pub fn readdir(&self, dir: Ino, pos: u64, max: usize) -> Result<Vec<DirEntry>> {
        let cat = self.vault.catalog_to_read()?;
        let mut out = dots(dir, pos, || {
            Ok(match dir {
                ROOT_INO => ROOT_INO,
                _ => cat.parent_at(dir, self.at)?.unwrap_or(dir),
            })
        })?;
        let room = max.saturating_sub(out.len()).max(1);
        for row in cat.list_dir_at(dir, rows_after(pos), self.at, room)? {
            out.push(self.vault.dir_entry(dir, row)?);
        }
        Ok(out)
    }

    /// Reads up to `out.len()` bytes at `offset` of `ino`'s content as it
    /// was; returns how many (fewer only at its end).
    pub fn read_into(&self, ino: Ino, offset: u64, out: &mut [u8]) -> Result<usize> {
        let bs = self.vault.block_size;
        let (size, stored) = {
            let cat = self.vault.catalog_to_read()?;
            let Some(v) = cat.version_at(ino, self.at)? else {
                return Ok(0);
            };
            if offset >= v.size || out.is_empty() {
                return Ok(0);
            }
            let end = v.size.min(offset + out.len() as u64);
            let extents = cat.version_extents(ino, v.version, offset / bs, (end - 1) / bs)?;
            (
                v.size,
                extents.into_iter().collect::<HashMap<u64, BlockRef>>(),
            )
        };
        // A past version is rarely in any cache: have the kernel read all
        // of this request's records at once, not one block after the other.
        if stored.len() > 1 {
            self.vault
                .packs
                .will_need(stored.values().map(|b| b.location));
        }
        let end = size.min(offset + out.len() as u64);
        let mut pos = offset;
        while pos < end {
            let idx = pos / bs;
            let from = (pos % bs) as usize;
            let to = (end - idx * bs).min(bs) as usize;
            let dest = &mut out[(pos - offset) as usize..(pos - offset) as usize + (to - from)];
            match stored.get(&idx) {
                Some(b) => {
                    let plain = self.vault.read_block(ino, idx, b)?;
                    let have = plain.len().clamp(from, to);
                    dest[..have - from].copy_from_slice(&plain[from..have]);
                    dest[have - from..].fill(0);
                }
                None => dest.fill(0),
            }
            pos = idx * bs + to as u64;
        }
        Ok((end - offset) as usize)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.getattr(ino)?;
        self.vault.readlink(ino)
    }

    /// Every extended attribute `ino` had, POSIX ACLs included whether or
    /// not this vault applies them (a restore gives them all back):
    /// (name, value) pairs. `listxattr` and `getxattr` answer as the live
    /// tree does (see `refused`).
    pub fn xattrs(&self, ino: Ino) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let sealed = self.vault.catalog_to_read()?.xattrs_at(ino, self.at)?;
        let names = &self.vault.keys.names;
        let mut out = Vec::with_capacity(sealed.len());
        for (name, value) in sealed {
            let name = names.decrypt(domain::XATTR_NAME, ino, &name)?;
            out.push((name, names.decrypt(domain::XATTR_VALUE, ino, &value)?));
        }
        Ok(out)
    }

    /// What the live tree answers "not supported" for (`Vault::refused`),
    /// so that `ls -l` stops asking for `security.selinux` here too.
    fn refused(&self, name: &[u8]) -> bool {
        (name.starts_with(b"system.") && !(super::acl::is_acl(name) && self.vault.acls()))
            || name == b"security.selinux"
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        if self.refused(name) {
            return Err(VaultError::NotSupported);
        }
        let hash = self.vault.keys.names.lookup_hash(ino, name);
        let sealed = self
            .vault
            .catalog_to_read()?
            .xattr_at(ino, &hash, self.at)?
            .ok_or(VaultError::NoAttr)?;
        Ok(self
            .vault
            .keys
            .names
            .decrypt(domain::XATTR_VALUE, ino, &sealed)?)
    }

    /// All names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (name, _) in self.xattrs(ino)? {
            if !self.refused(&name) {
                out.extend(name);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Whether `ino`'s newest version by then was its deletion.
    pub fn deleted(&self, ino: Ino) -> Result<bool> {
        let v = self.vault.catalog_to_read()?.version_at(ino, self.at)?;
        Ok(v.is_some_and(|v| v.reason == VersionReason::Deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{new_file, open_vault};
    use super::super::{now_ns, Caller, SetAttr};
    use super::*;

    /// An instant between what came before and what comes after: the
    /// operations around it are more than a coarse clock tick away.
    fn instant() -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let t = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(10));
        t
    }

    fn content(p: &Past<'_>, ino: Ino) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 20];
        let n = p.read_into(ino, 0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn every_instant_gives_back_names_content_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let before = instant();
        let ino = new_file(&v, "chart.txt");
        v.write(ino, 0, b"first").unwrap();
        v.release_file(ino).unwrap();
        let first = instant();
        let chmod = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        v.setattr(&Caller::root(), ino, &chmod).unwrap();
        v.setxattr(&Caller::root(), ino, b"user.state", b"signed", 0)
            .unwrap();
        v.sync_dir().unwrap();
        let chmodded = instant();
        v.open_file(ino, false).unwrap();
        let big = vec![7u8; 200_000];
        v.write(ino, 0, &big).unwrap();
        v.release_file(ino).unwrap();
        let rewritten = instant();
        v.unlink(&Caller::root(), ROOT_INO, b"chart.txt").unwrap();
        let deleted = instant();

        let at = |t| v.past(t);
        assert!(matches!(
            at(before).lookup(ROOT_INO, b"chart.txt"),
            Err(VaultError::NotFound)
        ));
        let a = at(first).lookup(ROOT_INO, b"chart.txt").unwrap();
        assert_eq!((a.ino, a.size, a.perm), (ino, 5, 0o644));
        assert_eq!(content(&at(first), ino), b"first");
        assert!(at(first).listxattr(ino).unwrap().is_empty());

        let a = at(chmodded).getattr(ino).unwrap();
        assert_eq!((a.size, a.perm), (5, 0o600));
        assert_eq!(content(&at(chmodded), ino), b"first");
        assert_eq!(
            at(chmodded).getxattr(ino, b"user.state").unwrap(),
            b"signed"
        );

        assert_eq!(at(rewritten).getattr(ino).unwrap().size, 200_000);
        assert_eq!(content(&at(rewritten), ino), big);
        assert_eq!(at(rewritten).resolve(b"/chart.txt").unwrap(), ino);

        assert!(matches!(
            at(deleted).lookup(ROOT_INO, b"chart.txt"),
            Err(VaultError::NotFound)
        ));
        assert!(at(deleted).deleted(ino).unwrap());
        // The live tree is the past of now.
        assert!(at(now_ns()).readdir(ROOT_INO, 0, 10).unwrap().len() == 2);
    }

    #[test]
    fn a_listing_of_the_past_shows_the_names_of_then() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let a = new_file(&v, "a");
        v.release_file(a).unwrap();
        let b = new_file(&v, "b");
        v.release_file(b).unwrap();
        let both = instant();
        v.rename(
            &Caller::root(),
            ROOT_INO,
            b"a",
            ROOT_INO,
            b"renamed",
            super::super::RenameMode::Replace,
        )
        .unwrap();
        let renamed = instant();
        let names = |t| -> Vec<Vec<u8>> {
            v.past(t)
                .readdir(ROOT_INO, 0, 100)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names(both), [&b"."[..], b"..", b"a", b"b"]);
        assert_eq!(names(renamed), [&b"."[..], b"..", b"b", b"renamed"]);
        assert_eq!(v.past(both).getattr(a).unwrap().nlink, 1);
    }
}
