use super::{Result, Vault, VaultError, NAME_MAX};
use crate::catalog::{Ino, NameHash};
use crate::crypto::names::domain;

/// A validated name with its lookup hash and ciphertext under one parent.
pub(super) struct SealedName {
    pub hash: NameHash,
    pub sealed: Vec<u8>,
}

impl Vault {
    pub(super) fn check_name(name: &[u8]) -> Result<()> {
        if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
            return Err(VaultError::Invalid);
        }
        if name.len() > NAME_MAX {
            return Err(VaultError::NameTooLong);
        }
        Ok(())
    }

    pub(super) fn name_hash(&self, parent: Ino, name: &[u8]) -> Result<NameHash> {
        Self::check_name(name)?;
        Ok(self.keys.names.lookup_hash(parent, name))
    }

    pub(super) fn seal_name(&self, parent: Ino, name: &[u8]) -> Result<SealedName> {
        let hash = self.name_hash(parent, name)?;
        Ok(SealedName {
            hash,
            sealed: self.keys.names.encrypt(domain::ENTRY, parent, name),
        })
    }

    pub(super) fn open_name(&self, parent: Ino, sealed: &[u8]) -> Result<Vec<u8>> {
        Ok(self.keys.names.decrypt(domain::ENTRY, parent, sealed)?)
    }
}
