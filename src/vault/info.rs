//! Facts about a store that need no passphrase: what vault.toml says, and
//! counts and sizes from the catalog (opened read-only, so it works beside
//! a mounted daemon) and the pack directory. Never reads a name or content.

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::crypto::SlotKind;
use crate::store::{StoreDir, StoreError, VaultConfig};

#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the catalog: {0}")]
    Catalog(#[from] CatalogError),
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreInfo {
    pub format: u32,
    pub vault_id: String,
    pub created: String,
    pub block_size: u32,
    pub passphrase_slots: usize,
    pub recovery_key_slots: usize,
    pub files: u64,
    pub directories: u64,
    pub other_entries: u64,
    pub versions: u64,
    /// Bytes of the current files.
    pub logical_bytes: u64,
    /// Bytes the current files' extents reference (before dedup).
    pub referenced_bytes: u64,
    pub unique_blocks: u64,
    /// Bytes of the unique blocks before compression.
    pub unique_plain_bytes: u64,
    /// Bytes of the unique blocks as stored (compressed, encrypted).
    pub stored_block_bytes: u64,
    pub packs: u64,
    /// Bytes of the pack files on disk.
    pub pack_bytes: u64,
    /// Bytes of catalog.db and its WAL on disk.
    pub catalog_bytes: u64,
}

pub fn store_info(dir: &StoreDir) -> Result<StoreInfo, InfoError> {
    let config = VaultConfig::load(dir)?;
    let s = Catalog::open_readonly(&dir.catalog_path())?.stats()?;
    let recovery = config
        .slots
        .iter()
        .filter(|s| s.kind == SlotKind::RecoveryKey)
        .count();
    let catalog = dir.catalog_path();
    let mut wal = catalog.clone().into_os_string();
    wal.push("-wal");
    Ok(StoreInfo {
        format: config.format,
        vault_id: config.vault_id,
        created: config.created,
        block_size: config.block_size,
        passphrase_slots: config.slots.len() - recovery,
        recovery_key_slots: recovery,
        files: s.files,
        directories: s.directories,
        other_entries: s.other_inodes,
        versions: s.versions,
        logical_bytes: s.logical_bytes,
        referenced_bytes: s.referenced_bytes,
        unique_blocks: s.unique_blocks,
        unique_plain_bytes: s.unique_plain_bytes,
        stored_block_bytes: s.stored_block_bytes,
        packs: s.packs,
        pack_bytes: dir_size(&dir.packs_dir()),
        catalog_bytes: file_size(&catalog) + file_size(std::path::Path::new(&wal)),
    })
}

fn file_size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
