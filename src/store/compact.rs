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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::{Keys, MasterKey};

    #[test]
    fn copied_records_open_as_the_originals_and_a_wrong_id_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = PackStore::with_target_size(
            tmp.path().to_path_buf(),
            1 << 40,
            Arc::new(|_, b: &[u8]| b.to_vec()),
        );
        let sealer = Keys::derive(&MasterKey::generate()).blocks;
        let a = sealer.seal(b"first block");
        let b = sealer.seal(&[7u8; 5000]);
        let out = s.append(&[&a, &b]).unwrap();
        s.seal_active().unwrap();
        let from = [
            (out.locations[0], a.id.0.as_slice()),
            (out.locations[1], b.id.0.as_slice()),
        ];
        let to = s.copy_records(&from).unwrap();
        assert_ne!(to[0].pack, out.locations[0].pack, "copied into a new pack");
        for (loc, block, plain) in [
            (to[0], &a, b"first block".to_vec()),
            (to[1], &b, vec![7u8; 5000]),
        ] {
            let rec = s.read(&loc).unwrap();
            assert_eq!(rec.id, block.id);
            let got = sealer
                .open(&rec.id, &rec.nonce, rec.ciphertext, rec.plain_len as usize)
                .unwrap();
            assert_eq!(got, plain);
        }
        let wrong = [(out.locations[0], b.id.0.as_slice())];
        assert!(matches!(
            s.copy_records(&wrong),
            Err(StoreError::DamagedRecord { .. })
        ));
        assert!(s.remove_pack(out.locations[0].pack).unwrap());
        assert!(
            !s.remove_pack(out.locations[0].pack).unwrap(),
            "already gone"
        );
        assert!(s.read(&out.locations[0]).is_err());
    }
}
