//! Nodes by number, for file handles (`open_by_handle_at`, NFS export): a
//! handle names an inode by its number and generation, and a directory's
//! handle is reconnected to the tree through its parents.

use super::{Attr, Result, Vault, VaultError};
use crate::catalog::{Ino, ROOT_INO};

impl Vault {
    /// The node numbered `ino`, while anything keeps it: a live directory
    /// entry or an open handle. A node that is gone is NotFound (the kernel
    /// then answers ESTALE), though its row stays for the history.
    pub fn lookup_id(&self, ino: Ino) -> Result<Attr> {
        let attr = self.getattr(ino)?;
        if attr.nlink == 0 && !self.files.lock().contains_key(&ino) {
            return Err(VaultError::NotFound);
        }
        Ok(attr)
    }

    /// The directory holding directory `dir`; the root is its own parent.
    pub fn lookup_parent(&self, dir: Ino) -> Result<Attr> {
        if dir == ROOT_INO {
            return self.getattr(ROOT_INO);
        }
        let parent = {
            let cat = self.catalog_to_read()?;
            Self::dir_of(&cat, dir)?;
            cat.parent_of(dir)?.ok_or(VaultError::NotFound)?
        };
        self.getattr(parent)
    }

    /// The generation of `ino`: with the number, what a file handle holds,
    /// so that a number handed out again never opens the new node through
    /// an old handle (see `catalog::generations`).
    pub fn generation(&self, ino: Ino) -> u64 {
        self.generations.of(ino)
    }
}
