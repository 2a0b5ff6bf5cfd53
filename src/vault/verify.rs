//! `verify`: every block a kept version needs is where the catalog says,
//! and, for the packs asked for, decrypts and matches its id. A damaged
//! block is named by the files and versions that use it.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::{Result, Vault};
use crate::catalog::BlockUse;
use crate::store::{BlockLocation, PackId};

/// A block that cannot be read back as it was written.
#[derive(Clone, Debug)]
pub struct DamagedBlock {
    pub pack: i64,
    pub offset: u64,
    pub what: String,
    /// The files (path, or "inode N" for one no longer in the tree) and
    /// versions that use it.
    pub uses: Vec<(String, BlockUse)>,
}

/// What a verification found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    pub packs: u64,
    pub packs_read: u64,
    pub blocks_read: u64,
    /// Packs the catalog needs whose file is gone.
    pub missing: Vec<i64>,
    pub damaged: Vec<DamagedBlock>,
}

impl Verified {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.damaged.is_empty()
    }

    /// Packs with a damaged block or gone: what a repair replaces.
    pub fn bad_packs(&self) -> Vec<i64> {
        let mut packs: Vec<i64> = self.missing.clone();
        packs.extend(self.damaged.iter().map(|d| d.pack));
        packs.sort_unstable();
        packs.dedup();
        packs
    }
}

impl Vault {
    /// Checks that every pack holding blocks exists; reads and checks every
    /// block of the packs `read(index, pack)` picks. `progress(done, total)`
    /// counts packs.
    pub fn verify_packs(
        &self,
        read: &(dyn Fn(usize, i64) -> bool + Sync),
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Verified> {
        let packs = self.catalog.lock().packs_with_blocks()?;
        let total = packs.len() as u64;
        let done = AtomicU64::new(0);
        let mut out = Verified {
            packs: total,
            ..Default::default()
        };
        for (i, &(pack, _)) in packs.iter().enumerate() {
            let path = self.pack_file(pack);
            if !path.exists() {
                out.missing.push(pack);
                for block in self.catalog.lock().blocks_in_pack(pack)? {
                    out.damaged.push(self.damaged(
                        pack,
                        block.id,
                        block.location.offset,
                        "its pack file is missing",
                    )?);
                }
            } else if read(i, pack) {
                out.packs_read += 1;
                let blocks = self.catalog.lock().blocks_in_pack(pack)?;
                out.blocks_read += blocks.len() as u64;
                let bad: Vec<(i64, u64, String)> = blocks
                    .par_iter()
                    .filter_map(|b| {
                        self.check_block(&b.location)
                            .err()
                            .map(|e| (b.id, b.location.offset, e))
                    })
                    .collect();
                for (id, offset, what) in bad {
                    out.damaged.push(self.damaged(pack, id, offset, &what)?);
                }
            }
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        }
        Ok(out)
    }

    fn check_block(&self, loc: &BlockLocation) -> std::result::Result<(), String> {
        let raw = self.packs.read(loc).map_err(|e| e.to_string())?;
        self.keys
            .blocks
            .open(&raw.id, &raw.nonce, raw.ciphertext, raw.plain_len as usize)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn damaged(&self, pack: i64, block: i64, offset: u64, what: &str) -> Result<DamagedBlock> {
        let uses = self.catalog.lock().uses_of_block(block)?;
        let uses = uses
            .into_iter()
            .map(|u| {
                let name = self
                    .path_for_message(u.ino)
                    .unwrap_or_else(|| format!("inode {} (no longer in the tree)", u.ino));
                (name, u)
            })
            .collect();
        Ok(DamagedBlock {
            pack,
            offset,
            what: what.to_string(),
            uses,
        })
    }

    /// Puts a checked copy of sealed pack `id` in place of the local one.
    pub fn replace_pack(&self, id: i64, bytes: &[u8]) -> Result<()> {
        self.check_pack_copy(id, bytes)?;
        Ok(self.packs.replace_sealed(PackId::from_i64(id), bytes)?)
    }
}
