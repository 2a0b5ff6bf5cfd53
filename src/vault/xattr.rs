//! Extended attributes, names and values encrypted like file names, and the
//! two that are POSIX ACLs (see `acl`).

use super::acl::{self, Acl};
use super::{Caller, Result, Vault, VaultError, NEW_NAME_BYTES};
use crate::catalog::{Catalog, Ino, Kind, NameHash};
use crate::crypto::names::domain;

const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;
const S_ISGID: u32 = 0o2000;
const SELINUX_XATTR: &[u8] = b"security.selinux";

/// The catalog's `meta` key set once a POSIX ACL is stored (see
/// `Vault::holds_acls`).
pub(super) const ACLS_KEPT: &str = "posix_acls_kept";

impl Vault {
    fn xattr_key(&self, ino: Ino, name: &[u8]) -> Result<NameHash> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(VaultError::Range);
        }
        if self.refused(name) {
            return Err(VaultError::NotSupported);
        }
        Ok(self.keys.names.lookup_hash(ino, name))
    }

    /// Names this mount does not keep. A row under such a name (stored by
    /// an older build) is not listed either, so that a program copying
    /// every listed attribute is never refused one.
    fn refused(&self, name: &[u8]) -> bool {
        // An ACL is kept only where the kernel enforces it; no other
        // system.* attribute means anything here.
        if name.starts_with(b"system.") && !(acl::is_acl(name) && self.acls()) {
            return true;
        }
        // SELinux labels a FUSE mount as a whole (genfscon) and answers for
        // this name itself where it runs; elsewhere nothing reads it. Saying
        // "not supported" lets `ls -l` stop asking (coreutils remembers that
        // per device), which saves a round trip per file listed.
        name == SELINUX_XATTR
    }

    /// `caller` matters for an access ACL only: setting one clears the
    /// set-group-ID bit unless the caller is in the file's group or has
    /// CAP_FSETID, as `posix_acl_update_mode` does.
    pub fn setxattr(
        &self,
        caller: &Caller,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.writable()?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(VaultError::TooBig);
        }
        let hash = self.xattr_key(ino, name)?;
        // Checked as the kernel checks an ACL before it sets one; an empty
        // one (a bare header) removes the ACL.
        let access_acl = match name {
            acl::ACCESS | acl::DEFAULT => match Acl::from_xattr(value)? {
                None => return self.remove_acl(ino, name),
                Some(acl) if name == acl::ACCESS => Some(acl),
                Some(_) => None,
            },
            _ => None,
        };
        self.claim_space(NEW_NAME_BYTES + value.len() as u64)?;
        let t = self.tick();
        let sealed_name = self.keys.names.encrypt(domain::XATTR_NAME, ino, name);
        let sealed_value = self.keys.names.encrypt(domain::XATTR_VALUE, ino, value);
        let cat = self.catalog.lock();
        cat.tx(|c| {
            let exists = c.xattr_get(ino, &hash)?.is_some();
            if flags & XATTR_CREATE != 0 && exists {
                return Err(VaultError::Exists);
            }
            if flags & XATTR_REPLACE != 0 && !exists {
                return Err(VaultError::NoAttr);
            }
            let mut i = Self::inode_of(c, ino)?;
            match &access_acl {
                Some(acl) => {
                    let bits = acl.mode_bits();
                    i.mode = (i.mode & !0o777) | bits.perm;
                    if !caller.in_group_or_capable(i.gid) {
                        i.mode &= !S_ISGID;
                    }
                    // An ACL the mode says all of is not kept, as on ext4.
                    if bits.extended {
                        store_acl(c, ino, &hash, &sealed_name, &sealed_value, t.at)?;
                    } else if exists {
                        c.xattr_remove(ino, &hash, t.at)?;
                    }
                }
                // Only a directory has a default ACL (`set_posix_acl`).
                None if name == acl::DEFAULT => {
                    if i.kind != Kind::Dir {
                        return Err(VaultError::AccessDenied);
                    }
                    store_acl(c, ino, &hash, &sealed_name, &sealed_value, t.at)?
                }
                None => c.xattr_set(ino, &hash, &sealed_name, &sealed_value, t.at)?,
            }
            i.ctime = t.wall;
            c.update_inode(&i, t.at)?;
            Ok(())
        })
    }

    /// The ACL `name` (`acl::ACCESS` or `acl::DEFAULT`) of `ino`, if ACLs
    /// are on and it has one.
    pub(super) fn acl_in(&self, c: &Catalog, ino: Ino, name: &[u8]) -> Result<Option<Acl>> {
        if !self.acls() {
            return Ok(None);
        }
        let hash = self.keys.names.lookup_hash(ino, name);
        let Some(sealed) = c.xattr_get(ino, &hash)? else {
            return Ok(None);
        };
        let value = self.keys.names.decrypt(domain::XATTR_VALUE, ino, &sealed)?;
        Ok(Some(Acl::parse(&value)?))
    }

    pub(super) fn put_acl_in(
        &self,
        c: &Catalog,
        ino: Ino,
        name: &[u8],
        acl: &Acl,
        at: i64,
    ) -> Result<()> {
        let hash = self.keys.names.lookup_hash(ino, name);
        let sealed_name = self.keys.names.encrypt(domain::XATTR_NAME, ino, name);
        let sealed_value = self
            .keys
            .names
            .encrypt(domain::XATTR_VALUE, ino, &acl.to_bytes());
        store_acl(c, ino, &hash, &sealed_name, &sealed_value, at)
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let hash = self.xattr_key(ino, name)?;
        let sealed = self
            .catalog_to_read()?
            .xattr_get(ino, &hash)?
            .ok_or(VaultError::NoAttr)?;
        Ok(self.keys.names.decrypt(domain::XATTR_VALUE, ino, &sealed)?)
    }

    /// All names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let names = self.catalog_to_read()?.xattr_names(ino)?;
        let mut out = Vec::new();
        for sealed in names {
            let name = self.keys.names.decrypt(domain::XATTR_NAME, ino, &sealed)?;
            if !self.refused(&name) {
                out.extend(name);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        if acl::is_acl(name) {
            return self.remove_acl(ino, name);
        }
        self.remove_xattr(ino, name)
    }

    /// Removing an ACL the inode does not have does nothing, and succeeds,
    /// as `set_posix_acl` of none does (a default ACL of a file included).
    fn remove_acl(&self, ino: Ino, name: &[u8]) -> Result<()> {
        match self.remove_xattr(ino, name) {
            Err(VaultError::NoAttr) => Ok(()),
            done => done,
        }
    }

    fn remove_xattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let hash = self.xattr_key(ino, name)?;
        let t = self.tick();
        let cat = self.catalog.lock();
        cat.tx(|c| {
            if !c.xattr_remove(ino, &hash, t.at)? {
                return Err(VaultError::NoAttr);
            }
            let mut i = Self::inode_of(c, ino)?;
            i.ctime = t.wall;
            c.update_inode(&i, t.at)?;
            Ok(())
        })
    }

    /// Every recorded version of `ino`, oldest first.
    pub fn versions(&self, ino: Ino) -> Result<Vec<crate::catalog::VersionRow>> {
        Ok(self.catalog.lock().versions(ino)?)
    }

    pub fn stats(&self) -> Result<crate::catalog::Stats> {
        Ok(self.catalog.lock().stats()?)
    }
}

/// Stores a sealed ACL, and records that the store holds ACLs: every ACL
/// written (set, inherited or rewritten by a chmod) goes through here.
fn store_acl(
    c: &Catalog,
    ino: Ino,
    hash: &NameHash,
    sealed_name: &[u8],
    sealed_value: &[u8],
    at: i64,
) -> Result<()> {
    c.meta_set_once(ACLS_KEPT, "yes")?;
    Ok(c.xattr_set(ino, hash, sealed_name, sealed_value, at)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_support::{new_file, open_vault};

    /// Builds before this mount refused SELinux labels stored them like any
    /// other name. Such a row must not be listed, as reading it is refused:
    /// `cp -a` and `rsync -X` copy every listed name and would fail.
    #[test]
    fn a_label_stored_by_an_older_build_is_neither_listed_nor_read() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let ino = new_file(&v, "labelled");
        v.setxattr(&Caller::default(), ino, b"user.kept", b"1", 0)
            .unwrap();
        let hash = v.keys.names.lookup_hash(ino, SELINUX_XATTR);
        let sealed_name = v.keys.names.encrypt(domain::XATTR_NAME, ino, SELINUX_XATTR);
        let sealed_value = v
            .keys
            .names
            .encrypt(domain::XATTR_VALUE, ino, b"system_u:object_r:x");
        v.catalog
            .lock()
            .xattr_set(ino, &hash, &sealed_name, &sealed_value, 1)
            .unwrap();

        assert_eq!(v.listxattr(ino).unwrap(), b"user.kept\0");
        assert!(matches!(
            v.getxattr(ino, SELINUX_XATTR),
            Err(VaultError::NotSupported)
        ));
        assert_eq!(v.getxattr(ino, b"user.kept").unwrap(), b"1");
    }
}
