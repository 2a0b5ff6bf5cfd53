//! Reading file content: buffered blocks, then the block cache, then the
//! packs, decrypted and checked.
//!
//! A read writes into the caller's buffer, which for a mount is the kernel's
//! reply buffer itself (the io_uring entry). A stored block the read covers
//! whole, and that is not cached, is decrypted straight into that buffer:
//! a sequential reader's blocks are never copied in the daemon, and the
//! kernel's page cache keeps them, so they do not take block-cache room
//! either. A block read in part goes through the cache, so that the reads of
//! its other parts (4 KiB pages, say) decrypt it once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rayon::prelude::*;

use super::{Result, Vault, VaultError};
use crate::catalog::{BlockRef, Ino};

/// Where one block's share of a read goes.
struct Piece<'a> {
    idx: u64,
    /// Offset of the piece within its block.
    from: usize,
    dest: &'a mut [u8],
}

impl Vault {
    pub fn read(&self, ino: Ino, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len as usize];
        let n = self.read_into(ino, offset, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads up to `out.len()` bytes at `offset` into `out`; returns how
    /// many (fewer only at end of file). Holes and the unwritten tails of
    /// short blocks read as zeros. On an error `out` holds garbage.
    pub fn read_into(&self, ino: Ino, offset: u64, out: &mut [u8]) -> Result<usize> {
        let entry = self.files.lock().get(&ino).cloned();
        let bs = self.block_size;
        // Under the file's lock: its size, its buffered blocks (copied out
        // at once) and where the rest lives. Decryption runs without it, so
        // concurrent read-ahead requests for one file run in parallel.
        let (size, end, mut pieces, stored) = {
            let guard = entry.as_ref().map(|e| e.lock());
            let size = match guard.as_ref() {
                Some(f) => f.size(),
                None => Self::inode_of(&*self.catalog_to_read()?, ino)?.size,
            };
            if offset >= size || out.is_empty() {
                return Ok(0);
            }
            let end = size.min(offset + out.len() as u64);
            let pieces = split_by_block(&mut out[..(end - offset) as usize], offset, bs);
            let (first, last) = (offset / bs, (end - 1) / bs);
            let stored: HashMap<u64, BlockRef> = self
                .catalog_to_read()?
                .live_extents(ino, first, last)?
                .into_iter()
                .collect();
            let mut pending = Vec::with_capacity(pieces.len());
            for p in pieces {
                match guard.as_ref().and_then(|f| f.dirty_block(p.idx)) {
                    // A buffered block is whole-size and zero-padded.
                    Some(buf) => p.dest.copy_from_slice(&buf[p.from..p.from + p.dest.len()]),
                    None => pending.push(p),
                }
            }
            (size, end, pending, stored)
        };
        let ahead = self.decrypt_ahead.load(Ordering::Relaxed);
        if let Some(e) = entry.as_ref().filter(|_| ahead) {
            self.read_ahead(&e.read_ahead, ino, offset, end, size);
        }
        let fill = |p: &mut Piece<'_>| match stored.get(&p.idx) {
            // With decryption ahead, the blocks go through the cache:
            // decrypting one in place that the read-ahead is about to
            // decrypt as well would do the work twice.
            Some(b) => self.fill_from_block(ino, p, b, !ahead),
            None => {
                p.dest.fill(0);
                Ok(())
            }
        };
        if pieces.len() > 1 {
            self.packs.will_need(
                pieces
                    .iter()
                    .filter_map(|p| stored.get(&p.idx))
                    .map(|b| b.location),
            );
            pieces.par_iter_mut().try_for_each(fill)?;
        } else {
            pieces.iter_mut().try_for_each(fill)?;
        }
        Ok((end - offset) as usize)
    }

    /// Fills a piece from stored block `b`. With `in_place`, decrypted into
    /// place when the piece covers all the block holds and no one has it
    /// decrypted already.
    fn fill_from_block(
        &self,
        ino: Ino,
        p: &mut Piece<'_>,
        b: &BlockRef,
        in_place: bool,
    ) -> Result<()> {
        let held = b.plain_len as usize;
        let whole = in_place && p.from == 0 && p.dest.len() >= held;
        if whole && self.cache.get(&b.id).is_none() && !self.loading.lock().contains_key(&b.id) {
            let (plain, tail) = p.dest.split_at_mut(held);
            self.open_block_into(ino, p.idx, b, plain)?;
            tail.fill(0);
            return Ok(());
        }
        let plain = self.read_block(ino, p.idx, b)?;
        // A short block may end before the piece starts.
        let held = plain.get(p.from..).unwrap_or_default();
        let avail = held.len().min(p.dest.len());
        let (data, tail) = p.dest.split_at_mut(avail);
        data.copy_from_slice(&held[..avail]);
        tail.fill(0);
        Ok(())
    }

    /// Fetches, decrypts and verifies one stored block (through the cache).
    /// Concurrent requests for one block (a read and the read-ahead, say)
    /// decrypt it once: the others wait for that result.
    pub(super) fn read_block(&self, ino: Ino, idx: u64, b: &BlockRef) -> Result<Arc<Vec<u8>>> {
        if let Some(hit) = self.cache.get(&b.id) {
            return Ok(hit);
        }
        let cell = self.loading.lock().entry(b.id).or_default().clone();
        let loaded = cell
            .get_or_init(|| {
                let res = self.load_block(ino, idx, b).ok();
                self.loading.lock().remove(&b.id);
                res
            })
            .clone();
        match loaded {
            Some(plain) => Ok(plain),
            // The loader failed: fail with this caller's own error.
            None => self.load_block(ino, idx, b),
        }
    }

    /// Decrypts block `b` into the cache.
    fn load_block(&self, ino: Ino, idx: u64, b: &BlockRef) -> Result<Arc<Vec<u8>>> {
        let plain = self.open_block(ino, idx, b, |rec| {
            self.keys
                .blocks
                .open(&b.id, &rec.nonce, rec.ciphertext, b.plain_len as usize)
        })?;
        let plain = Arc::new(plain);
        self.cache.put(b.id, plain.clone());
        Ok(plain)
    }

    /// Decrypts block `b` into `out`, bypassing the cache.
    fn open_block_into(&self, ino: Ino, idx: u64, b: &BlockRef, out: &mut [u8]) -> Result<()> {
        self.open_block(ino, idx, b, |rec| {
            self.keys
                .blocks
                .open_into(&b.id, &rec.nonce, rec.ciphertext, out)
        })
    }

    /// Reads block `b`'s record and hands it to `open`. Whatever fails (a
    /// damaged or missing pack, a record of another block, a tampered or
    /// misplaced ciphertext) is logged with the file and block, and is an
    /// I/O error for the reader, never wrong data.
    fn open_block<T>(
        &self,
        ino: Ino,
        idx: u64,
        b: &BlockRef,
        open: impl FnOnce(crate::store::RawRecord) -> std::result::Result<T, crate::crypto::CryptoError>,
    ) -> Result<T> {
        let result = self
            .packs
            .read(&b.location)
            .map_err(VaultError::from)
            .and_then(|rec| {
                if rec.id != b.id {
                    return Err(VaultError::Corrupt {
                        ino,
                        block: idx,
                        reason: "pack record holds a different block".into(),
                    });
                }
                Ok(open(rec)?)
            });
        result.map_err(|e| {
            let path = self.path_for_message(ino).unwrap_or_else(|| format!("inode {ino}"));
            tracing::error!(
                "integrity error reading {path}, block {idx} (bytes {}..{}), pack {} offset {}: {e}",
                idx * self.block_size,
                (idx + 1) * self.block_size,
                b.location.pack,
                b.location.offset
            );
            VaultError::Corrupt {
                ino,
                block: idx,
                reason: e.to_string(),
            }
        })
    }
}

/// Cuts `out`, which holds the file's bytes from `offset` on, at block
/// boundaries.
fn split_by_block(out: &mut [u8], offset: u64, block_size: u64) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = out;
    let mut pos = offset;
    while !rest.is_empty() {
        let idx = pos / block_size;
        let from = (pos - idx * block_size) as usize;
        let len = rest.len().min(block_size as usize - from);
        let (dest, tail) = std::mem::take(&mut rest).split_at_mut(len);
        pieces.push(Piece { idx, from, dest });
        rest = tail;
        pos += len as u64;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (block, offset in it, length) of each piece of a read of `len`
    /// bytes at `offset`, with blocks of 100 bytes.
    fn shape(len: usize, offset: u64) -> Vec<(u64, usize, usize)> {
        let mut out = vec![0u8; len];
        split_by_block(&mut out, offset, 100)
            .iter()
            .map(|p| (p.idx, p.from, p.dest.len()))
            .collect()
    }

    #[test]
    fn a_read_is_cut_at_block_boundaries() {
        assert_eq!(shape(250, 150), [(1, 50, 50), (2, 0, 100), (3, 0, 100)]);
        assert_eq!(shape(10, 95), [(0, 95, 5), (1, 0, 5)]);
    }
}
