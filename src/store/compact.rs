//! Compaction's half in the store: copying the records still in use out of
//! packs that are mostly garbage, verbatim, into the active pack.
//!
//! Never decides what is garbage (the catalog and the engine do) and never
//! deletes a pack itself: the engine deletes one with `remove_pack` once the
//! catalog has switched every block to its copy and a grace period passed.

use super::{BlockLocation, PackStore, Result, StoreError};
use crate::crypto::BLOCK_ID_LEN;

/// Records copied per write.
const COPY_BATCH: usize = 64;

impl PackStore {
    /// Copies the records at `from` into the active pack and makes the
    /// copies durable before it returns (the catalog may then point at
    /// them). Each record must hold the block id given with it: a record
    /// that does not is a damaged pack, and nothing is copied blind.
    /// Returns the new locations in the order of `from`.
    pub fn copy_records(&self, from: &[(BlockLocation, &[u8])]) -> Result<Vec<BlockLocation>> {
        let mut out = Vec::with_capacity(from.len());
        for chunk in from.chunks(COPY_BATCH) {
            let mut records = Vec::with_capacity(chunk.len());
            for (loc, id) in chunk {
                let rec = self.read_record_bytes(loc)?;
                if &rec[8..8 + BLOCK_ID_LEN] != *id {
                    return Err(StoreError::DamagedRecord {
                        pack: loc.pack,
                        offset: loc.offset,
                        what: "record holds another block than the catalog says",
                    });
                }
                records.push(rec);
            }
            out.extend(self.append_records(&records)?.locations);
        }
        if !out.is_empty() {
            self.sync()?;
        }
        Ok(out)
    }
}
