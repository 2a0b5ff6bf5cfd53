//! The vault's audit trail: opened with a read-write vault (created in
//! stores made before it), readable from any open, synced at shutdown.

use std::path::PathBuf;

use super::{Result, Vault};
use crate::audit::{AuditLog, AuditReader, WriterOptions};
use crate::crypto::AuditKeys;
use crate::store::StoreDir;

pub(super) fn audit_dir(dir: &StoreDir) -> PathBuf {
    dir.root().join("audit")
}

pub(super) fn open_log(dir: &StoreDir, keys: &AuditKeys) -> Result<AuditLog> {
    Ok(AuditLog::open(
        &audit_dir(dir),
        keys.clone(),
        WriterOptions::default(),
    )?)
}

impl Vault {
    /// The store's audit trail, to append to; None for a read-only open.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// A reader of the store's audit trail; works for read-only opens too
    /// (the CLI while a daemon writes).
    pub fn audit_reader(&self) -> Result<AuditReader> {
        Ok(AuditReader::open(
            &audit_dir(&self.dir),
            self.audit_keys.clone(),
        ))
    }
}
