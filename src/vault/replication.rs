//! What a replica needs of a live vault: a cut, a committed catalog state
//! whose every pack is sealed (so a replica that ships the cut and its packs
//! never names a pack it cannot have), and where packs and the audit trail
//! live.

use std::path::PathBuf;

use super::{Result, Vault};
use crate::catalog::{CatalogImage, CatalogSnapshot};
use crate::store::PackId;

impl Vault {
    /// Seals the active pack, records every sealed pack, commits, and copies
    /// the catalog as of that commit. Blocks appended meanwhile go to a new
    /// pack whose catalog rows commit after that state, and so belong to the
    /// next cut.
    pub fn replication_cut(&self) -> Result<CatalogImage> {
        if self.read_only {
            return Ok(CatalogSnapshot::begin(&self.dir.catalog_path())?.image()?);
        }
        let snapshot = {
            let cat = self.catalog.lock();
            self.packs.seal_active()?;
            for pack in self.packs.take_sealed() {
                cat.mark_pack_sealed(pack.id.as_i64(), pack.size)?;
            }
            cat.commit()?;
            // The copy reads this state after the lock is let go: writers
            // wait for a seal and a commit, not for the whole catalog.
            CatalogSnapshot::begin(&self.dir.catalog_path())?
        };
        Ok(snapshot.image()?)
    }

    /// Where sealed pack `id` is.
    pub fn pack_file(&self, id: i64) -> PathBuf {
        self.packs.pack_path(PackId::from_i64(id))
    }

    /// Checks a copy of sealed pack `id`: every block decrypts, decompresses
    /// and matches its id. Returns how many blocks it holds.
    pub fn check_pack_copy(&self, id: i64, bytes: &[u8]) -> Result<usize> {
        use rayon::prelude::*;
        let records = crate::store::sealed_records(PackId::from_i64(id), bytes)?;
        let count = records.len();
        records.into_par_iter().try_for_each(|r| {
            self.keys
                .blocks
                .open(&r.id, &r.nonce, r.ciphertext, r.plain_len as usize)
                .map(|_| ())
        })?;
        Ok(count)
    }

    /// How long a replica keeps what pruning removed here: the retention
    /// lock (the longer of the one the store was opened with and the one
    /// vault.toml holds now), and a day more.
    pub fn replica_hold_ns(&self) -> i64 {
        let mut days = self.config.retention.lock_days;
        if let Ok(now) = crate::store::VaultConfig::load(&self.dir) {
            days = days.max(now.retention.lock_days);
        }
        (days as i64 + 1) * 86_400_000_000_000
    }

    /// The engine's clock (a test's, in tests).
    pub fn clock_ns(&self) -> i64 {
        self.time.now_ns()
    }

    /// The audit trail's directory.
    pub fn audit_dir(&self) -> PathBuf {
        super::audit::audit_dir(&self.dir)
    }
}
