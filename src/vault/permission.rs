//! Permission decisions, made by the engine exactly as the kernel makes
//! them for its own filesystems (fs/namei.c `generic_permission`,
//! `may_delete`, `may_create`, fs/attr.c `setattr_prepare`, fs/xattr.c
//! `xattr_permission`, fs/posix_acl.c `posix_acl_permission`): mode bits,
//! POSIX ACLs, supplementary groups, the sticky bit, and the capabilities
//! that override them. The mount no longer asks the kernel to check
//! (`default_permissions`), so that a refused attempt reaches the audit
//! trail; every request handler asks here first.
//!
//! Each `may_*` returns `AccessDenied` (EACCES) or `NotPermitted` (EPERM)
//! as the kernel would, or the error of reading what it needs. As in the
//! kernel, a caller's supplementary groups are read only when the owning
//! group decides, and its capabilities only once the mode and ACL said no.

use super::acl::{self, Acl};
use super::{Attr, Caller, Capability, RenameMode, Result, SetAttr, TimeSet, Vault, VaultError};
use crate::catalog::{Ino, Kind};

/// Bits of a permission mask, as the kernel's MAY_* (and `access(2)`'s
/// X_OK, W_OK, R_OK).
pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IXGRP: u32 = 0o0010;
const S_IXUGO: u32 = 0o0111;
const S_IXUSR: u32 = 0o0100;
const S_IRWXG: u32 = 0o0070;
/// The kernel's open flag for an exec (`__FMODE_EXEC`), which asks for
/// MAY_EXEC instead of read.
const FMODE_EXEC: i32 = 0x20;
const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";

/// Who a mount lets in at all: the kernel refuses everyone else before
/// phivault is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// `allow_other`: every user.
    Everyone,
    /// No `allow_other`: only processes whose real, effective and saved
    /// uids are all this one, the user who mounted.
    User(u32),
}

/// Whether every caller `admitted` passes the search check of directory
/// `d`, whose access ACL `acl` reads.
///
/// With only user U let in, a directory U owns with the owner's x bit is
/// searchable by all of them whatever their groups and capabilities (the
/// owner class never looks further). A caller's fsuid can differ from U
/// only with CAP_SETUID, which could set it back to U anyway. This is what
/// keeps the kernel's entries of the 0700 directories `tar` makes while
/// extracting, and of private home trees.
fn searchable(
    d: &Attr,
    admitted: Admitted,
    acl: impl FnOnce() -> Result<Option<Acl>>,
) -> Result<bool> {
    if d.kind != Kind::Dir {
        return Ok(false);
    }
    if let Admitted::User(uid) = admitted {
        if d.uid == uid && d.perm & S_IXUSR != 0 {
            return Ok(true);
        }
    }
    if d.perm & S_IXUGO != S_IXUGO {
        return Ok(false);
    }
    Ok(match acl()? {
        Some(acl) => acl.grants_everyone(MAY_EXEC),
        None => true,
    })
}

impl Vault {
    /// `inode_permission`: whether `caller` may `mask` inode `ino`.
    pub fn permission(&self, caller: &Caller, ino: Ino, mask: u32) -> Result<()> {
        let a = self.getattr(ino)?;
        self.inode_permission(caller, &a, mask)
    }

    /// Search permission in directory `dir`, which LOOKUP needs.
    pub fn may_lookup(&self, caller: &Caller, dir: Ino) -> Result<()> {
        let d = self.getattr(dir)?;
        if d.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        self.inode_permission(caller, &d, MAY_EXEC)
    }

    /// OPEN and OPENDIR of `ino` with open(2) flags `flags` (O_TRUNC asks
    /// for write; the kernel's exec opens, flag `__FMODE_EXEC`, for exec).
    pub fn may_open(&self, caller: &Caller, ino: Ino, flags: i32) -> Result<()> {
        let a = self.getattr(ino)?;
        // do_open's check, before may_open's.
        if flags & libc::O_DIRECTORY != 0 && a.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        let mut want = if flags & FMODE_EXEC != 0 {
            MAY_EXEC
        } else {
            match flags & libc::O_ACCMODE {
                libc::O_RDONLY => MAY_READ,
                libc::O_WRONLY => MAY_WRITE,
                _ => MAY_READ | MAY_WRITE,
            }
        };
        if flags & libc::O_TRUNC != 0 {
            want |= MAY_WRITE;
        }
        match a.kind {
            Kind::Dir if want & MAY_WRITE != 0 => return Err(VaultError::IsDir),
            Kind::File | Kind::Symlink => {}
            _ if want & MAY_EXEC != 0 => return Err(VaultError::AccessDenied),
            _ => {}
        }
        self.inode_permission(caller, &a, want)?;
        if flags & libc::O_NOATIME != 0 && !owner_or_capable(caller, &a) {
            return Err(VaultError::NotPermitted);
        }
        Ok(())
    }

    /// A new name in `dir` (create, mkdir, mknod, symlink, link's target).
    pub fn may_create(&self, caller: &Caller, dir: Ino) -> Result<()> {
        let d = self.getattr(dir)?;
        self.may_create_in(caller, &d)
    }

    fn may_create_in(&self, caller: &Caller, d: &Attr) -> Result<()> {
        if d.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        if d.nlink == 0 {
            return Err(VaultError::NotFound);
        }
        self.inode_permission(caller, d, MAY_WRITE | MAY_EXEC)
    }

    /// Removing entry `name` of `dir` (unlink, rmdir, and both ends of a
    /// rename): write and search on `dir`, and the sticky bit's rule.
    pub fn may_delete(&self, caller: &Caller, dir: Ino, name: &[u8]) -> Result<()> {
        let d = self.getattr(dir)?;
        if d.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        let victim = self.lookup(dir, name)?;
        self.inode_permission(caller, &d, MAY_WRITE | MAY_EXEC)?;
        if d.perm & S_ISVTX != 0
            && victim.uid != caller.uid
            && d.uid != caller.uid
            && !caller.has_cap(Capability::Fowner)
        {
            return Err(VaultError::NotPermitted);
        }
        Ok(())
    }

    /// RENAME: `may_delete` of the source (and of the target when it
    /// exists or is exchanged), `may_create` in the new directory, and
    /// write on a directory that moves to another parent.
    pub fn may_rename(
        &self,
        caller: &Caller,
        dir: Ino,
        name: &[u8],
        new_dir: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        let source = self.lookup(dir, name)?;
        let target = match self.lookup(new_dir, new_name) {
            Ok(a) => Some(a),
            Err(VaultError::NotFound) => None,
            Err(e) => return Err(e),
        };
        // As do_renameat2, before any permission.
        match (mode, &target) {
            (RenameMode::NoReplace, Some(_)) => return Err(VaultError::Exists),
            (RenameMode::Exchange, None) => return Err(VaultError::NotFound),
            _ => {}
        }
        // Two names of one inode: vfs_rename does nothing, and checks nothing.
        if target.as_ref().is_some_and(|t| t.ino == source.ino) {
            return Ok(());
        }
        self.may_delete(caller, dir, name)?;
        match &target {
            None => self.may_create(caller, new_dir)?,
            Some(t) => {
                self.may_delete(caller, new_dir, new_name)?;
                // may_delete's own check of the victim's kind, which comes
                // before the write check on a moving directory below.
                if mode != RenameMode::Exchange {
                    match (source.kind == Kind::Dir, t.kind == Kind::Dir) {
                        (true, false) => return Err(VaultError::NotDir),
                        (false, true) => return Err(VaultError::IsDir),
                        _ => {}
                    }
                }
            }
        }
        if dir != new_dir {
            // A directory moving elsewhere has its ".." rewritten.
            if source.kind == Kind::Dir {
                self.inode_permission(caller, &source, MAY_WRITE)?;
            }
            if let (RenameMode::Exchange, Some(t)) = (mode, &target) {
                if t.kind == Kind::Dir {
                    self.inode_permission(caller, t, MAY_WRITE)?;
                }
            }
        }
        Ok(())
    }

    /// LINK of `ino` into `new_dir`, with the kernel's protected_hardlinks
    /// rule when /proc/sys/fs/protected_hardlinks is 1 (`may_linkat`,
    /// which the kernel applies before `may_create`).
    pub fn may_link(&self, caller: &Caller, ino: Ino, new_dir: Ino) -> Result<()> {
        let a = self.getattr(ino)?;
        if protected_hardlinks()
            && !self.safe_hardlink_source(caller, &a)?
            && !owner_or_capable(caller, &a)
        {
            return Err(VaultError::NotPermitted);
        }
        self.may_create(caller, new_dir)
    }

    fn safe_hardlink_source(&self, caller: &Caller, a: &Attr) -> Result<bool> {
        if a.kind != Kind::File
            || a.perm & S_ISUID != 0
            || a.perm & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP
        {
            return Ok(false);
        }
        match self.inode_permission(caller, a, MAY_READ | MAY_WRITE) {
            Ok(()) => Ok(true),
            Err(VaultError::AccessDenied | VaultError::ReadOnly) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// SETATTR: chmod and chown need the owner or a capability; utimes to
    /// "now" write permission; truncate through a path (no open handle,
    /// `with_handle` false) write permission. In the order of
    /// `vfs_truncate`, `may_setattr`, then `setattr_prepare`.
    pub fn may_setattr(
        &self,
        caller: &Caller,
        ino: Ino,
        set: &SetAttr,
        with_handle: bool,
    ) -> Result<()> {
        let a = self.getattr(ino)?;
        if set.size.is_some() && !with_handle {
            match a.kind {
                Kind::Dir => return Err(VaultError::IsDir),
                Kind::File => {}
                _ => return Err(VaultError::Invalid),
            }
            self.inode_permission(caller, &a, MAY_WRITE)?;
        }
        // utimes(NULL), or both UTIME_NOW, is ATTR_TOUCH; any other time
        // given (one UTIME_NOW beside UTIME_OMIT too) is ATTR_TIMES_SET.
        let touch = set.atime == Some(TimeSet::Now) && set.mtime == Some(TimeSet::Now);
        let times_set = !touch && (set.atime.is_some() || set.mtime.is_some());
        if touch && !owner_or_capable(caller, &a) {
            self.inode_permission(caller, &a, MAY_WRITE)?;
        }
        let owner = a.uid == caller.uid;
        if let Some(uid) = set.uid {
            let may = owner && uid == a.uid;
            if !may && !caller.has_cap(Capability::Chown) {
                return Err(VaultError::NotPermitted);
            }
        }
        if let Some(gid) = set.gid {
            let may = owner && (gid == a.gid || caller.in_group(gid));
            if !may && !caller.has_cap(Capability::Chown) {
                return Err(VaultError::NotPermitted);
            }
        }
        if (set.mode.is_some() || times_set) && !owner_or_capable(caller, &a) {
            return Err(VaultError::NotPermitted);
        }
        Ok(())
    }

    /// GETXATTR of `name` (user.* needs read permission).
    pub fn may_getxattr(&self, caller: &Caller, ino: Ino, name: &[u8]) -> Result<()> {
        let a = self.getattr(ino)?;
        self.xattr_permission(caller, &a, name, MAY_READ)
    }

    /// SETXATTR and REMOVEXATTR of `name` (user.* needs write permission,
    /// an ACL the owner or CAP_FOWNER, security.* CAP_SYS_ADMIN). A
    /// default ACL of a non-directory is left to `setxattr` (EACCES) and
    /// `removexattr` (nothing to do), as `set_posix_acl` answers before
    /// it asks for the owner.
    pub fn may_setxattr(&self, caller: &Caller, ino: Ino, name: &[u8]) -> Result<()> {
        let a = self.getattr(ino)?;
        if acl::is_acl(name) {
            if name == acl::DEFAULT && a.kind != Kind::Dir {
                return Ok(());
            }
            if !owner_or_capable(caller, &a) {
                return Err(VaultError::NotPermitted);
            }
            return Ok(());
        }
        self.xattr_permission(caller, &a, name, MAY_WRITE)?;
        // The commoncap LSM's inode_setxattr and inode_removexattr.
        if let Some(rest) = name.strip_prefix(b"security.") {
            let cap = match rest {
                b"capability" => Capability::Setfcap,
                _ => Capability::SysAdmin,
            };
            if !caller.has_cap(cap) {
                return Err(VaultError::NotPermitted);
            }
        }
        Ok(())
    }

    /// ACCESS (access(2), chdir): `mask` of `MAY_*` bits; 0 asks only
    /// whether `ino` exists.
    pub fn may_access(&self, caller: &Caller, ino: Ino, mask: u32) -> Result<()> {
        self.permission(caller, ino, mask)
    }

    /// Whether every caller `admitted` may search directory `dir`: then the
    /// kernel may keep the entries it looked up in it for all of them;
    /// otherwise each caller's LOOKUP must reach the engine (entry timeout 0).
    pub fn searchable_by(&self, dir: Ino, admitted: Admitted) -> Result<bool> {
        let d = self.getattr(dir)?;
        searchable(&d, admitted, || self.access_acl(&d))
    }

    /// `inode_permission`: a read-only vault refuses writes (`sb_permission`),
    /// then `generic_permission`.
    fn inode_permission(&self, caller: &Caller, a: &Attr, mask: u32) -> Result<()> {
        self.inode_permission_with(caller, a, mask, || self.access_acl(a))
    }

    /// `inode_permission` with `a`'s access ACL read by `acl` when needed.
    fn inode_permission_with(
        &self,
        caller: &Caller,
        a: &Attr,
        mask: u32,
        acl: impl FnOnce() -> Result<Option<Acl>>,
    ) -> Result<()> {
        if mask & MAY_WRITE != 0
            && self.is_read_only()
            && matches!(a.kind, Kind::File | Kind::Dir | Kind::Symlink)
        {
            return Err(VaultError::ReadOnly);
        }
        if self.acl_permission_check(caller, a, mask, acl)? {
            return Ok(());
        }
        let mask = mask & (MAY_READ | MAY_WRITE | MAY_EXEC);
        let overridden = if a.kind == Kind::Dir {
            (mask & MAY_WRITE == 0 && caller.has_cap(Capability::DacReadSearch))
                || caller.has_cap(Capability::DacOverride)
        } else {
            (mask == MAY_READ && caller.has_cap(Capability::DacReadSearch))
                || ((mask & MAY_EXEC == 0 || a.perm & S_IXUGO != 0)
                    && caller.has_cap(Capability::DacOverride))
        };
        if overridden {
            Ok(())
        } else {
            Err(VaultError::AccessDenied)
        }
    }

    /// `acl_permission_check`: the owner's bits for the owner (the ACL is
    /// not read); the ACL for others when there is one and the group bits
    /// (its mask) are not empty; else the group's bits for a member, asked
    /// only when they differ from the others' in the bits that matter.
    fn acl_permission_check(
        &self,
        caller: &Caller,
        a: &Attr,
        mask: u32,
        acl: impl FnOnce() -> Result<Option<Acl>>,
    ) -> Result<bool> {
        let mask = mask & (MAY_READ | MAY_WRITE | MAY_EXEC);
        let mut mode = a.perm;
        if caller.uid == a.uid {
            return Ok(mask & !(mode >> 6) == 0);
        }
        if mode & S_IRWXG != 0 {
            if let Some(acl) = acl()? {
                return Ok(acl.permits(caller, a.uid, a.gid, mask));
            }
        }
        if mask & (mode ^ (mode >> 3)) != 0 && caller.in_group(a.gid) {
            mode >>= 3;
        }
        Ok(mask & !mode & 0o7 == 0)
    }

    /// `inode_permission` for a node of the past, which the caller read
    /// from its tree: attributes `a` and the bytes of its access ACL as
    /// they were then (the live ones may differ, or be gone).
    pub fn past_permission(
        &self,
        caller: &Caller,
        a: &Attr,
        acl: Option<&[u8]>,
        mask: u32,
    ) -> Result<()> {
        self.inode_permission_with(caller, a, mask, || match acl {
            Some(bytes) => Acl::from_xattr(bytes),
            None => Ok(None),
        })
    }

    /// `searchable_by` for a directory of the past (see `past_permission`).
    pub fn past_searchable_by(a: &Attr, acl: Option<&[u8]>, admitted: Admitted) -> Result<bool> {
        searchable(a, admitted, || {
            acl.map(Acl::from_xattr).transpose().map(Option::flatten)
        })
    }

    fn xattr_permission(&self, caller: &Caller, a: &Attr, name: &[u8], mask: u32) -> Result<()> {
        let write = mask & MAY_WRITE != 0;
        if name.starts_with(b"security.") || name.starts_with(b"system.") {
            return Ok(());
        }
        if name.starts_with(b"trusted.") {
            return match caller.has_cap(Capability::SysAdmin) {
                true => Ok(()),
                false if write => Err(VaultError::NotPermitted),
                false => Err(VaultError::NoAttr),
            };
        }
        if name.starts_with(b"user.") {
            if a.kind != Kind::File && a.kind != Kind::Dir {
                return Err(if write {
                    VaultError::NotPermitted
                } else {
                    VaultError::NoAttr
                });
            }
            if a.kind == Kind::Dir && a.perm & S_ISVTX != 0 && write && !owner_or_capable(caller, a)
            {
                return Err(VaultError::NotPermitted);
            }
        }
        self.inode_permission(caller, a, mask)
    }

    fn access_acl(&self, a: &Attr) -> Result<Option<Acl>> {
        let cat = self.catalog_to_read()?;
        self.acl_in(&cat, a.ino, acl::ACCESS)
    }
}

/// `inode_owner_or_capable`.
fn owner_or_capable(caller: &Caller, a: &Attr) -> bool {
    caller.uid == a.uid || caller.has_cap(Capability::Fowner)
}

fn protected_hardlinks() -> bool {
    std::fs::read_to_string(PROTECTED_HARDLINKS).is_ok_and(|s| s.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_support::open_vault;
    use crate::vault::{NodeSpec, ROOT_INO};

    const OWNER: u32 = 1000;
    const GROUP: u32 = 2000;

    /// A node owned by OWNER:GROUP with `mode`, made by root.
    fn node(v: &Vault, name: &str, kind: Kind, mode: u32) -> Ino {
        let spec = NodeSpec {
            kind,
            mode,
            umask: 0,
            rdev: 0,
        };
        let root = Caller::root();
        let ino = v
            .create_node(&root, ROOT_INO, name.as_bytes(), spec)
            .unwrap()
            .ino;
        let set = SetAttr {
            uid: Some(OWNER),
            gid: Some(GROUP),
            mode: Some(mode),
            ..SetAttr::default()
        };
        v.setattr(&root, ino, &set).unwrap();
        ino
    }

    /// A caller of the mount, /proc to be read when asked (this process's).
    fn caller(uid: u32, gid: u32) -> Caller {
        Caller::new(uid, gid, std::process::id())
    }

    #[test]
    fn groups_are_read_only_when_the_owning_group_decides() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let f = node(&v, "f", Kind::File, 0o640);
        let g = node(&v, "g", Kind::File, 0o644);

        // The owner: the owner's bits alone.
        let owner = caller(OWNER, 1);
        v.permission(&owner, f, MAY_READ | MAY_WRITE).unwrap();
        assert!(!owner.credentials_read());

        // Group and other agree on read: no need to know the groups.
        let other = caller(3000, 3000);
        v.permission(&other, g, MAY_READ).unwrap();
        assert!(!other.credentials_read());
        // The primary group decides without /proc either.
        let member = caller(3000, GROUP);
        v.permission(&member, f, MAY_READ).unwrap();
        assert!(!member.credentials_read());

        // They differ: the supplementary groups decide.
        let other = caller(3000, 3000);
        let _ = v.permission(&other, f, MAY_READ);
        assert!(other.credentials_read());
    }

    #[test]
    fn capabilities_are_asked_only_after_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let f = node(&v, "f", Kind::File, 0o600);
        let granted = Caller::with_credentials(OWNER, 1, 0, vec![], 0);
        v.permission(&granted, f, MAY_READ).unwrap();
        let root_without = Caller::with_credentials(0, 0, 0, vec![], 0);
        assert!(matches!(
            v.permission(&root_without, f, MAY_READ),
            Err(VaultError::AccessDenied)
        ));
        let read_search =
            Caller::with_credentials(0, 0, 0, vec![], 1 << Capability::DacReadSearch as u32);
        v.permission(&read_search, f, MAY_READ).unwrap();
        assert!(v.permission(&read_search, f, MAY_WRITE).is_err());
        // No x bit at all: not even CAP_DAC_OVERRIDE executes it.
        assert!(v.permission(&Caller::root(), f, MAY_EXEC).is_err());
    }

    #[test]
    fn searchable_by_everyone_asks_every_class_and_the_acl() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        v.enable_acls();
        let open = node(&v, "open", Kind::Dir, 0o711);
        let closed = node(&v, "closed", Kind::Dir, 0o710);
        assert!(v.searchable_by(open, Admitted::Everyone).unwrap());
        assert!(!v.searchable_by(closed, Admitted::Everyone).unwrap());
        // u::rwx, u:4000:---, g::--x, m::--x, o::--x: user 4000 may not.
        let acl = |named_perm: u16| {
            let mut b = 2u32.to_le_bytes().to_vec();
            for (tag, perm, id) in [
                (1u16, 7u16, u32::MAX),
                (2, named_perm, 4000),
                (4, 1, u32::MAX),
                (0x10, 1, u32::MAX),
                (0x20, 1, u32::MAX),
            ] {
                b.extend(tag.to_le_bytes());
                b.extend(perm.to_le_bytes());
                b.extend(id.to_le_bytes());
            }
            b
        };
        let root = Caller::root();
        v.setxattr(&root, open, acl::ACCESS, &acl(0), 0).unwrap();
        assert!(!v.searchable_by(open, Admitted::Everyone).unwrap());
        let named = Caller::with_credentials(4000, 4000, 0, vec![], 0);
        assert!(matches!(
            v.may_lookup(&named, open),
            Err(VaultError::AccessDenied)
        ));
        v.setxattr(&root, open, acl::ACCESS, &acl(5), 0).unwrap();
        assert!(v.searchable_by(open, Admitted::Everyone).unwrap());
        v.may_lookup(&named, open).unwrap();
    }

    #[test]
    fn searchable_by_the_one_user_admitted_asks_only_the_owner_bits() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        // As `tar` leaves a directory it is still filling.
        let private = node(&v, "private", Kind::Dir, 0o700);
        let no_owner_x = node(&v, "no-owner-x", Kind::Dir, 0o611);
        let file = node(&v, "file", Kind::File, 0o755);
        assert!(!v.searchable_by(private, Admitted::Everyone).unwrap());
        assert!(v.searchable_by(private, Admitted::User(OWNER)).unwrap());
        assert!(!v.searchable_by(private, Admitted::User(OWNER + 1)).unwrap());
        // The owner is refused whatever the others may do.
        assert!(!v.searchable_by(no_owner_x, Admitted::User(OWNER)).unwrap());
        assert!(!v.searchable_by(file, Admitted::User(OWNER)).unwrap());
        // Each admitted caller passes, whatever its groups and capabilities.
        for who in [
            Caller::with_credentials(OWNER, GROUP, 0, vec![], 0),
            Caller::with_credentials(OWNER, 12345, 0, vec![], 0),
        ] {
            v.may_lookup(&who, private).unwrap();
        }
    }
}
