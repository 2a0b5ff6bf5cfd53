//! Extended attributes, names and values encrypted like file names.

use super::{Result, Vault, VaultError, NEW_NAME_BYTES};
use crate::catalog::Ino;
use crate::crypto::names::domain;

const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

impl Vault {
    fn xattr_key(&self, ino: Ino, name: &[u8]) -> Result<[u8; 16]> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(VaultError::Range);
        }
        // POSIX ACLs would need enforcing, not just storing: refuse them.
        if name.starts_with(b"system.") {
            return Err(VaultError::NotSupported);
        }
        Ok(self.keys.names.lookup_hash(ino, name))
    }

    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        self.writable()?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(VaultError::TooBig);
        }
        self.claim_space(NEW_NAME_BYTES + value.len() as u64)?;
        let hash = self.xattr_key(ino, name)?;
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
            c.xattr_set(ino, &hash, &sealed_name, &sealed_value)?;
            let mut i = Self::inode_of(c, ino)?;
            i.ctime = t;
            c.update_inode(&i)?;
            Ok(())
        })
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
            out.extend(self.keys.names.decrypt(domain::XATTR_NAME, ino, &sealed)?);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        let hash = self.xattr_key(ino, name)?;
        let t = self.tick();
        let cat = self.catalog.lock();
        cat.tx(|c| {
            if !c.xattr_remove(ino, &hash)? {
                return Err(VaultError::NoAttr);
            }
            let mut i = Self::inode_of(c, ino)?;
            i.ctime = t;
            c.update_inode(&i)?;
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
