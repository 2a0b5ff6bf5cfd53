//! File content: open handles, buffered writes, reads, truncate, fallocate,
//! fsync, and turning changes into versions.
//!
//! Writes land in whole-block buffers; a block is sealed into a pack as soon
//! as a write reaches its end, when dirty memory runs over the limit, and on
//! release or fsync, which also record the version.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use rayon::prelude::*;

use super::readahead::ReadAhead;
use super::{Result, Vault, VaultError};
use crate::catalog::{Catalog, Ino, Inode, Kind, VersionReason, VersionRow};
use crate::crypto::{BlockId, SealedBlock};
use crate::store::record_len;

/// Per-inode state while at least one handle is open.
pub(super) struct FileEntry {
    handles: AtomicU32,
    state: Mutex<OpenFile>,
    pub(super) read_ahead: ReadAhead,
}

impl FileEntry {
    pub(super) fn lock(&self) -> MutexGuard<'_, OpenFile> {
        self.state.lock()
    }

    /// Open handles; 0 while tracked only for a request without one.
    pub(super) fn handles(&self) -> u32 {
        self.handles.load(Ordering::Acquire)
    }
}

pub(super) struct OpenFile {
    size: u64,
    mtime: i64,
    ctime: i64,
    /// size/mtime/ctime differ from the catalog.
    meta_dirty: bool,
    /// Changes since the last recorded version (mirrors inodes.version_open).
    version_open: bool,
    /// Full-size plaintext buffers of blocks written since they were stored.
    dirty: BTreeMap<u64, Vec<u8>>,
    /// The catalog groups holding changes of this file that may not be
    /// committed yet: if one of them is lost, so is the file's content since
    /// its last version. Emptied once they are all committed.
    unsettled: Vec<u64>,
    origin: ContentOrigin,
    /// Who opened it for writing last: the author of the versions its
    /// handles make (writeback WRITEs carry no caller).
    writer: Option<u32>,
    /// Emptied by an O_TRUNC open and not written since: its close records
    /// a truncate, not a write.
    truncated_only: bool,
}

/// Where the bytes of an open file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentOrigin {
    /// It held data when it was opened, and may still.
    Preexisting,
    /// Empty since it was created, opened with O_TRUNC or truncated to 0.
    Empty,
    /// Everything it holds was written after it was empty.
    WrittenFromEmpty,
}

/// What the release of a handle leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Other handles are open, or the file holds data it had when opened.
    Kept,
    /// The last handle is gone from a file written whole while open: a new
    /// file, or one opened with O_TRUNC (untar, cp, a saved download).
    WrittenWhole,
}

impl OpenFile {
    fn new(inode: &Inode) -> Self {
        Self {
            size: inode.size,
            mtime: inode.mtime,
            ctime: inode.ctime,
            meta_dirty: false,
            version_open: inode.version_open,
            dirty: BTreeMap::new(),
            unsettled: Vec::new(),
            writer: None,
            truncated_only: false,
            origin: if inode.size == 0 {
                ContentOrigin::Empty
            } else {
                ContentOrigin::Preexisting
            },
        }
    }

    /// What a version sealed for `reason` is: a close after an O_TRUNC open
    /// with no write since records a truncate.
    fn reason(&self, reason: VersionReason) -> VersionReason {
        if self.truncated_only && reason == VersionReason::Write {
            VersionReason::Truncate
        } else {
            reason
        }
    }

    /// Notes that the catalog's open group holds changes of this file.
    pub(super) fn changed_in(&mut self, cat: &Catalog) {
        let group = cat.group();
        if self.unsettled.last() != Some(&group) {
            self.unsettled.push(group);
        }
    }

    /// Applies what this open file knows better than the catalog.
    pub(super) fn overlay(&self, inode: &mut Inode) {
        if self.meta_dirty {
            inode.size = self.size;
            inode.mtime = self.mtime;
            inode.ctime = self.ctime;
        }
    }

    pub(super) fn set_times(&mut self, mtime: i64, ctime: i64) {
        self.mtime = mtime;
        self.ctime = ctime;
    }

    /// The bytes block `idx` holds in the file: its dirty buffer cut at end
    /// of file. None if it is not dirty or lies past the end.
    fn dirty_block_in_file(&self, idx: u64, block_size: u64) -> Option<&[u8]> {
        let start = idx * block_size;
        let buf = self.dirty.get(&idx).filter(|_| start < self.size)?;
        Some(&buf[..(self.size - start).min(block_size) as usize])
    }

    pub(super) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// The file's size, buffered changes included.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// Block `idx` as written since it was stored: whole-size, zero-padded.
    pub(super) fn dirty_block(&self, idx: u64) -> Option<&[u8]> {
        self.dirty.get(&idx).map(Vec::as_slice)
    }
}

/// How often `store_blocks` looks again when blocks it shares vanish.
const STORE_ATTEMPTS: usize = 3;

/// How one attempt of `store_blocks` ended.
enum Stored {
    Done,
    /// Block `block` of the file is a copy of a stored block whose row a
    /// lost group took away after it was found; nothing was recorded.
    SharedBlockVanished {
        block: u64,
    },
}

/// When a truncate becomes a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seal {
    /// At once (truncate(2), ftruncate(2)).
    Now,
    /// At the file's close or fsync (an O_TRUNC open).
    AtClose,
}

/// FALLOC_FL_* bits we understand.
const FALLOC_KEEP_SIZE: i32 = 0x01;
const FALLOC_PUNCH_HOLE: i32 = 0x02;
const FALLOC_ZERO_RANGE: i32 = 0x10;

impl Vault {
    /// Registers an open handle on `ino`; with `truncate`, empties the file.
    pub fn open_file(&self, ino: Ino, truncate: bool) -> Result<()> {
        self.open_file_as(ino, truncate, None)
    }

    /// `open_file` by `writer`, the uid of a caller that opened it for
    /// writing: the versions the file's handles make are recorded as its.
    /// An O_TRUNC open and the writes and close that follow are one version.
    pub fn open_file_as(&self, ino: Ino, truncate: bool, writer: Option<u32>) -> Result<()> {
        {
            let mut files = self.files.lock();
            if let Some(e) = files.get(&ino) {
                e.handles.fetch_add(1, Ordering::AcqRel);
            } else {
                let inode = Self::inode_of(&self.catalog.lock(), ino)?;
                files.insert(
                    ino,
                    Arc::new(FileEntry {
                        handles: AtomicU32::new(1),
                        state: Mutex::new(OpenFile::new(&inode)),
                        read_ahead: ReadAhead::default(),
                    }),
                );
            }
        }
        if writer.is_some() {
            if let Some(e) = self.files.lock().get(&ino) {
                e.lock().writer = writer;
            }
        }
        if truncate {
            if let Err(e) = self.truncate_as(ino, 0, writer, Seal::AtClose) {
                let _ = self.release_file(ino);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Closes a handle: stores what it wrote and records the version. Says
    /// whether that was the last handle of a file written whole.
    pub fn release_file(&self, ino: Ino) -> Result<Released> {
        let Some(entry) = self.files.lock().get(&ino).cloned() else {
            return Ok(Released::Kept);
        };
        let res = self.flush_file(ino, &mut entry.lock(), Some(VersionReason::Write));
        let last = {
            let mut files = self.files.lock();
            let last = entry.handles.fetch_sub(1, Ordering::AcqRel) <= 1;
            if last {
                files.remove(&ino);
            }
            last
        };
        if last {
            self.flush_file(ino, &mut entry.lock(), Some(VersionReason::Write))?;
        }
        res?;
        self.catalog.lock().commit()?;
        self.check_committed(ino, &entry)?;
        if last {
            self.deallocate_if_orphaned(ino)?;
        }
        let origin = entry.lock().origin;
        Ok(match origin {
            ContentOrigin::WrittenFromEmpty if last => Released::WrittenWhole,
            _ => Released::Kept,
        })
    }

    /// close(2): stores buffered data and records the version.
    pub fn flush(&self, ino: Ino) -> Result<()> {
        let Some(entry) = self.files.lock().get(&ino).cloned() else {
            return Ok(());
        };
        // close(2) after a write is a version: record it now, not at the
        // asynchronous release, so one close costs one catalog commit. A
        // close of a file emptied by an O_TRUNC open and not written since
        // waits: a shell's `> f` closes the descriptor it opened once it has
        // dup'ed it, before anything is written, and the truncate and the
        // writes that follow are one version, recorded at the last close.
        let mut f = entry.lock();
        let seal = (!f.truncated_only).then_some(VersionReason::Write);
        self.flush_file(ino, &mut f, seal)?;
        drop(f);
        // What a program wrote and closed survives a kill -9 of the daemon.
        self.catalog.lock().commit()?;
        self.check_committed(ino, &entry)
    }

    pub fn fsync(&self, ino: Ino) -> Result<()> {
        let entry = self.files.lock().get(&ino).cloned();
        tracing::debug!("inode {ino}: fsync (open: {})", entry.is_some());
        if let Some(entry) = &entry {
            self.flush_file(ino, &mut entry.lock(), Some(VersionReason::Fsync))?;
        }
        self.sync_all()?;
        match &entry {
            Some(entry) => self.check_committed(ino, entry),
            None => Ok(()),
        }
    }

    /// After the commit that follows a flush: reports the loss of this
    /// file's changes if that commit, or one another thread made since the
    /// flush (the flusher's, another file's close), was rolled back.
    fn check_committed(&self, ino: Ino, entry: &FileEntry) -> Result<()> {
        let mut f = entry.lock();
        self.check_not_lost(&self.catalog.lock(), ino, &mut f)
    }

    fn entry(&self, ino: Ino) -> Result<Arc<FileEntry>> {
        let mut files = self.files.lock();
        if let Some(e) = files.get(&ino) {
            return Ok(e.clone());
        }
        // A write or read without a registered handle: track it without one;
        // the next release or shutdown stores it.
        let inode = Self::inode_of(&self.catalog.lock(), ino)?;
        let e = Arc::new(FileEntry {
            handles: AtomicU32::new(0),
            state: Mutex::new(OpenFile::new(&inode)),
            read_ahead: ReadAhead::default(),
        });
        files.insert(ino, e.clone());
        Ok(e)
    }

    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        self.writable()?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(VaultError::TooBig)?;
        if end > i64::MAX as u64 {
            return Err(VaultError::TooBig);
        }
        let entry = self.entry(ino)?;
        let mut f = entry.lock();
        let bs = self.block_size;
        let mut completed = Vec::new();
        let mut pos = offset;
        while pos < end {
            let idx = pos / bs;
            let bstart = idx * bs;
            let from = (pos - bstart) as usize;
            let to = ((end.min(bstart + bs)) - bstart) as usize;
            if !f.dirty.contains_key(&idx) {
                let buf = if from == 0 && to == bs as usize || bstart >= f.size {
                    vec![0u8; bs as usize]
                } else {
                    self.block_for_update(ino, idx)?
                };
                f.dirty.insert(idx, buf);
                self.dirty_bytes.fetch_add(bs as usize, Ordering::Relaxed);
            }
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + (to - from)];
            f.dirty.get_mut(&idx).expect("inserted")[from..to].copy_from_slice(src);
            if to == bs as usize {
                completed.push(idx);
            }
            pos = bstart + to as u64;
        }
        let t = self.tick();
        f.size = f.size.max(end);
        f.mtime = t.wall;
        f.ctime = t.wall;
        f.meta_dirty = true;
        f.truncated_only = false;
        if f.origin == ContentOrigin::Empty {
            f.origin = ContentOrigin::WrittenFromEmpty;
        }
        if self.dirty_bytes.load(Ordering::Relaxed) > self.dirty_limit {
            let all: Vec<u64> = f.dirty.keys().copied().collect();
            self.store_blocks(ino, &mut f, &all, None)?;
        } else if !completed.is_empty() {
            self.store_blocks(ino, &mut f, &completed, None)?;
        }
        Ok(data.len())
    }

    /// The current content of block `idx`, padded to a full block for editing.
    fn block_for_update(&self, ino: Ino, idx: u64) -> Result<Vec<u8>> {
        let bref = self.catalog.lock().live_extent(ino, idx)?;
        let mut buf = match bref {
            Some(b) => self.read_block(ino, idx, &b)?.as_ref().clone(),
            None => Vec::new(),
        };
        buf.resize(self.block_size as usize, 0);
        Ok(buf)
    }

    /// Seals the given dirty blocks into the store and points the file at them,
    /// as part of the file's open version.
    /// With `seal`, the same transaction also records the version, so a
    /// close or fsync costs one catalog commit.
    fn store_blocks(
        &self,
        ino: Ino,
        f: &mut OpenFile,
        idxs: &[u64],
        seal: Option<VersionReason>,
    ) -> Result<()> {
        // A block found already stored may vanish before the catalog is
        // locked again: its group (another file's uncommitted writes) was
        // rolled back by a failed commit meanwhile. Looking again seals it.
        for _ in 0..STORE_ATTEMPTS - 1 {
            if let Stored::Done = self.try_store_blocks(ino, f, idxs, seal)? {
                return Ok(());
            }
            tracing::warn!("inode {ino}: a shared block was rolled back meanwhile; storing again");
        }
        match self.try_store_blocks(ino, f, idxs, seal)? {
            Stored::Done => Ok(()),
            Stored::SharedBlockVanished { block } => Err(VaultError::Corrupt {
                ino,
                block,
                reason: "deduplicated block vanished from the index".into(),
            }),
        }
    }

    fn try_store_blocks(
        &self,
        ino: Ino,
        f: &mut OpenFile,
        idxs: &[u64],
        seal: Option<VersionReason>,
    ) -> Result<Stored> {
        let bs = self.block_size;
        let t = self.tick();
        let size = f.size;
        let beyond_eof: Vec<u64> = idxs
            .iter()
            .copied()
            .filter(|idx| f.dirty.contains_key(idx) && f.dirty_block_in_file(*idx, bs).is_none())
            .collect();
        // Each block's id (None: all zeros, a hole), on every core and
        // without the catalog: hashing a 1 MiB write one block after the
        // other under the lock was a third of a sequential write's time.
        let ids: Vec<(u64, Option<BlockId>)> = {
            let blocks: Vec<(u64, &[u8])> = idxs
                .iter()
                .filter_map(|&idx| f.dirty_block_in_file(idx, bs).map(|plain| (idx, plain)))
                .collect();
            let id_of = |&(idx, plain): &(u64, &[u8])| {
                let id = (!plain.iter().all(|&b| b == 0)).then(|| self.keys.blocks.id_of(plain));
                (idx, id)
            };
            if blocks.len() > 1 {
                blocks.par_iter().map(id_of).collect()
            } else {
                blocks.iter().map(id_of).collect()
            }
        };
        let mut plan: Vec<(u64, Option<BlockId>)> = Vec::with_capacity(ids.len());
        let mut fresh: Vec<(BlockId, &[u8])> = Vec::new();
        {
            let cat = self.catalog.lock();
            self.check_not_lost(&cat, ino, f)?;
            for &(idx, id) in &ids {
                if let Some(id) = id {
                    if cat.block_by_hash(&id.0)?.is_none() && !fresh.iter().any(|(i, _)| *i == id) {
                        let plain = f.dirty_block_in_file(idx, bs).expect("hashed above");
                        fresh.push((id, plain));
                    }
                }
                plan.push((idx, id));
            }
        }
        let sealed: Vec<SealedBlock> = if fresh.len() > 1 {
            fresh
                .par_iter()
                .map(|(id, p)| self.keys.blocks.seal_with_id(*id, p))
                .collect()
        } else {
            fresh
                .iter()
                .map(|(id, p)| self.keys.blocks.seal_with_id(*id, p))
                .collect()
        };
        let with_data = plan.iter().filter(|p| p.1.is_some()).map(|p| p.0);
        let filled = self.allocated_among(ino, with_data);
        let outcome = if sealed.is_empty() {
            Default::default()
        } else {
            self.claim_space(unallocated_bytes(&plan, &sealed, &filled))?;
            self.packs.append(&sealed.iter().collect::<Vec<_>>())?
        };
        #[cfg(test)]
        tests::between_looks();
        {
            let cat = self.catalog.lock();
            // The catalog was unlocked while sealing: a group lost since
            // may have held this file's earlier changes, or blocks it shares.
            self.check_not_lost(&cat, ino, f)?;
            let mut rows = HashMap::new();
            for (idx, id) in &plan {
                let Some(id) = id else { continue };
                if rows.contains_key(id) || sealed.iter().any(|s| s.id == *id) {
                    continue;
                }
                match cat.block_by_hash(&id.0)? {
                    Some(row) => rows.insert(*id, row),
                    None => return Ok(Stored::SharedBlockVanished { block: *idx }),
                };
            }
            let change = cat.tx(|c| -> Result<_> {
                c.record_append(&outcome)?;
                for (s, loc) in sealed.iter().zip(&outcome.locations) {
                    rows.insert(s.id, c.insert_block(&s.id.0, loc, s.plain_len)?);
                }
                let mut inode = Self::inode_of(c, ino)?;
                Self::open_version(&mut inode);
                for (idx, id) in &plan {
                    match id {
                        None => c.drop_extents(ino, *idx, *idx, inode.version)?,
                        Some(id) => c.put_extent(ino, *idx, rows[id], inode.version)?,
                    }
                }
                f.overlay(&mut inode);
                if let Some(reason) = seal {
                    Self::close_version(c, &mut inode, t.at, f.reason(reason), f.writer)?;
                }
                c.update_inode(&inode, t.at)?;
                if filled.is_empty() {
                    return Ok(None);
                }
                self.fill_in(c, ino, &filled)
            })?;
            self.apply(change);
            f.changed_in(&cat);
        }
        // The stored buffers become cache entries as they are (no copy).
        let mut freed = 0;
        for (idx, id) in &plan {
            let Some(buf) = f.dirty.remove(idx) else {
                continue;
            };
            freed += 1;
            if let Some(id) = id.filter(|id| sealed.iter().any(|s| s.id == *id)) {
                // A short last block is copied out, so the cache does not
                // hold a full block's allocation for a few bytes.
                let len = (size - idx * bs).min(bs) as usize;
                let plain = if len == buf.len() {
                    buf
                } else {
                    buf[..len].to_vec()
                };
                self.cache.put(id, Arc::new(plain));
            }
        }
        for idx in beyond_eof {
            freed += f.dirty.remove(&idx).map_or(0, |_| 1);
        }
        self.dirty_bytes
            .fetch_sub(freed * bs as usize, Ordering::Relaxed);
        f.meta_dirty = false;
        f.version_open = seal.is_none();
        Ok(Stored::Done)
    }

    /// Records the open version of `inode` (if any) as of `t`.
    pub(super) fn close_version(
        c: &Catalog,
        inode: &mut Inode,
        t: i64,
        reason: VersionReason,
        uid: Option<u32>,
    ) -> Result<()> {
        if inode.version_open {
            tracing::debug!(
                "inode {}: version {} recorded ({reason:?})",
                inode.ino,
                inode.version
            );
            c.insert_version(&VersionRow {
                ino: inode.ino,
                version: inode.version,
                time: t,
                size: inode.size,
                reason,
                uid,
            })?;
            inode.version_open = false;
        }
        Ok(())
    }

    fn open_version(inode: &mut Inode) {
        if !inode.version_open {
            inode.version += 1;
            inode.version_open = true;
        }
    }

    /// Stores all buffered data; with `seal`, closes the open version.
    pub(super) fn flush_file(
        &self,
        ino: Ino,
        f: &mut OpenFile,
        seal: Option<VersionReason>,
    ) -> Result<()> {
        if !f.dirty.is_empty() {
            let all: Vec<u64> = f.dirty.keys().copied().collect();
            self.store_blocks(ino, f, &all, seal)?;
        }
        let sealing = seal.is_some() && f.version_open;
        let t = self.tick();
        let cat = self.catalog.lock();
        self.check_not_lost(&cat, ino, f)?;
        if !f.meta_dirty && !sealing {
            return Ok(());
        }
        cat.tx(|c| -> Result<()> {
            let Some(mut inode) = c.inode(ino)? else {
                return Ok(());
            };
            f.overlay(&mut inode);
            if let Some(reason) = seal {
                Self::close_version(c, &mut inode, t.at, f.reason(reason), f.writer)?;
            }
            c.update_inode(&inode, t.at)?;
            Ok(())
        })?;
        f.changed_in(&cat);
        f.meta_dirty = false;
        if seal.is_some() {
            f.version_open = false;
            f.truncated_only = false;
        }
        Ok(())
    }

    /// Fails if catalog changes of this file, or its creation, were rolled
    /// back after they were answered (see `catalog::lost`). The file then
    /// starts over from what the catalog holds: its last version.
    fn check_not_lost(&self, cat: &Catalog, ino: Ino, f: &mut OpenFile) -> Result<()> {
        let lost = f.unsettled.iter().find_map(|g| cat.lost_in(*g));
        if lost.is_none() && f.unsettled.last().is_some_and(|g| cat.settled(*g)) {
            f.unsettled.clear();
        }
        let lost = lost.or_else(|| cat.lost_inode(ino));
        let Some(cause) = lost else {
            return Ok(());
        };
        self.dirty_bytes
            .fetch_sub(f.dirty.len() * self.block_size as usize, Ordering::Relaxed);
        match cat.inode(ino)? {
            Some(inode) => *f = OpenFile::new(&inode),
            // Its creation was lost: nothing of it is left to store.
            None => {
                f.dirty.clear();
                f.size = 0;
                f.meta_dirty = false;
                f.version_open = false;
                f.unsettled.clear();
            }
        }
        tracing::error!("inode {ino}: changes since its last version were lost ({cause:?})");
        Err(VaultError::ChangesLost(cause))
    }

    /// Sets the file size; shrinking drops blocks from the live file (they
    /// stay in history), growing leaves a hole. Each size change is a version.
    pub fn truncate(&self, ino: Ino, new_size: u64) -> Result<()> {
        self.truncate_as(ino, new_size, None, Seal::Now)
    }

    /// `truncate` by `by`; with `Seal::AtClose` (an O_TRUNC open) the
    /// version stays open for the writes that follow, and the file's
    /// close records it.
    pub(super) fn truncate_as(
        &self,
        ino: Ino,
        new_size: u64,
        by: Option<u32>,
        seal: Seal,
    ) -> Result<()> {
        self.writable()?;
        if new_size > i64::MAX as u64 {
            return Err(VaultError::TooBig);
        }
        let entry = self.files.lock().get(&ino).cloned();
        let mut guard = entry.as_ref().map(|e| e.lock());
        let bs = self.block_size;
        if let Some(f) = guard.as_deref_mut() {
            let cut: Vec<u64> = f
                .dirty
                .range(new_size.div_ceil(bs)..)
                .map(|(k, _)| *k)
                .collect();
            for idx in cut {
                f.dirty.remove(&idx);
                self.dirty_bytes.fetch_sub(bs as usize, Ordering::Relaxed);
            }
            if let Some(buf) = f.dirty.get_mut(&(new_size / bs)) {
                buf[(new_size % bs) as usize..].fill(0);
            }
            if new_size == 0 {
                f.origin = ContentOrigin::Empty;
            }
            self.flush_file(ino, f, None)?;
        }
        let t = self.tick();
        let cat = self.catalog.lock();
        let (old_size, kind) = {
            let i = Self::inode_of(&cat, ino)?;
            (i.size, i.kind)
        };
        match kind {
            Kind::File => {}
            Kind::Dir => return Err(VaultError::IsDir),
            _ => return Err(VaultError::Invalid),
        }
        let boundary = (new_size < old_size && !new_size.is_multiple_of(bs))
            .then(|| cat.live_extent(ino, new_size / bs))
            .transpose()?
            .flatten();
        // Re-store the block that the new end of file cuts through.
        let cut_block = match boundary {
            Some(b) => {
                let idx = new_size / bs;
                let data = self.read_block(ino, idx, &b)?;
                let keep = ((new_size % bs) as usize).min(data.len());
                Some((idx, data[..keep].to_vec()))
            }
            None => None,
        };
        let sealed = cut_block
            .as_ref()
            .filter(|(_, p)| p.iter().any(|&b| b != 0))
            .map(|(_, p)| self.keys.blocks.seal(p));
        let outcome = match &sealed {
            Some(s) if cat.block_by_hash(&s.id.0)?.is_none() => {
                self.claim_space(record_len(s))?;
                Some(self.packs.append(&[s])?)
            }
            _ => None,
        };
        let change = cat.tx_commit(|c| -> Result<_> {
            let mut inode = Self::inode_of(c, ino)?;
            if let Some(f) = guard.as_deref() {
                f.overlay(&mut inode);
            }
            // As on ext4: blocks allocated past the new end go, also those
            // beyond the old one (KEEP_SIZE), unless the file grows.
            let change = if new_size <= inode.size {
                self.deallocate_in(c, ino, new_size.div_ceil(bs), u64::MAX)?
            } else {
                None
            };
            Self::open_version(&mut inode);
            if new_size < inode.size {
                c.drop_extents(ino, new_size.div_ceil(bs), u64::MAX, inode.version)?;
            }
            if let Some((idx, _)) = &cut_block {
                match &sealed {
                    None => c.drop_extents(ino, *idx, *idx, inode.version)?,
                    Some(s) => {
                        let row = match &outcome {
                            Some(o) => {
                                c.record_append(o)?;
                                c.insert_block(&s.id.0, &o.locations[0], s.plain_len)?
                            }
                            None => c.block_by_hash(&s.id.0)?.ok_or(VaultError::Invalid)?,
                        };
                        c.put_extent(ino, *idx, row, inode.version)?;
                    }
                }
            }
            inode.size = new_size;
            inode.mtime = t.wall;
            inode.ctime = t.wall;
            if seal == Seal::Now {
                c.insert_version(&VersionRow {
                    ino,
                    version: inode.version,
                    time: t.at,
                    size: new_size,
                    reason: VersionReason::Truncate,
                    uid: by,
                })?;
                inode.version_open = false;
            }
            c.update_inode(&inode, t.at)?;
            Ok(change)
        })?;
        self.apply(change);
        if let Some(f) = guard.as_deref_mut() {
            f.size = new_size;
            f.mtime = t.wall;
            f.ctime = t.wall;
            f.meta_dirty = false;
            f.version_open = seal == Seal::AtClose;
            f.truncated_only = seal == Seal::AtClose;
        }
        Ok(())
    }

    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<()> {
        self.writable()?;
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or(VaultError::TooBig)?;
        let keep_size = mode & FALLOC_KEEP_SIZE != 0;
        match mode & !FALLOC_KEEP_SIZE {
            0 => self.allocate(ino, offset, end, false)?,
            FALLOC_PUNCH_HOLE if keep_size => self.punch_hole(ino, offset, end)?,
            FALLOC_ZERO_RANGE => self.allocate(ino, offset, end, true)?,
            _ => return Err(VaultError::NotSupported),
        }
        if !keep_size {
            let size = self.getattr(ino)?.size;
            if end > size {
                let entry = self.entry(ino)?;
                let mut f = entry.lock();
                f.size = end;
                f.meta_dirty = true;
                f.ctime = self.tick().wall;
            }
        }
        Ok(())
    }

    /// Makes [offset, end) read as zeros and gives back the blocks that lie
    /// wholly inside it, their allocation too.
    fn punch_hole(&self, ino: Ino, offset: u64, end: u64) -> Result<()> {
        self.zero_range(ino, offset, end)?;
        let bs = self.block_size;
        let (first, last) = (offset.div_ceil(bs), end / bs);
        if first >= last || !self.has_allocation(ino) {
            return Ok(());
        }
        let cat = self.catalog.lock();
        let change = cat.tx(|c| self.deallocate_in(c, ino, first, last))?;
        self.apply(change);
        Ok(())
    }

    /// Makes [offset, end) read as zeros within the current size.
    pub(super) fn zero_range(&self, ino: Ino, offset: u64, end: u64) -> Result<()> {
        let size = self.getattr(ino)?.size;
        let end = end.min(size);
        if offset >= end {
            return Ok(());
        }
        let bs = self.block_size;
        let first_full = offset.div_ceil(bs);
        let last_full = end / bs; // exclusive
        let zeros = vec![0u8; bs as usize];
        let edge = |from: u64, to: u64| -> Result<()> {
            if to > from {
                self.write(ino, from, &zeros[..(to - from) as usize])?;
            }
            Ok(())
        };
        if first_full >= last_full {
            let mut pos = offset;
            while pos < end {
                let to = end.min((pos / bs + 1) * bs);
                edge(pos, to)?;
                pos = to;
            }
            return Ok(());
        }
        edge(offset, first_full * bs)?;
        edge(last_full * bs, end)?;
        let entry = self.entry(ino)?;
        let mut f = entry.lock();
        let doomed: Vec<u64> = f
            .dirty
            .range(first_full..last_full)
            .map(|(k, _)| *k)
            .collect();
        for idx in doomed {
            f.dirty.remove(&idx);
            self.dirty_bytes.fetch_sub(bs as usize, Ordering::Relaxed);
        }
        let t = self.tick();
        let cat = self.catalog.lock();
        cat.tx(|c| -> Result<()> {
            let mut inode = Self::inode_of(c, ino)?;
            f.overlay(&mut inode);
            Self::open_version(&mut inode);
            c.drop_extents(ino, first_full, last_full - 1, inode.version)?;
            inode.mtime = t.wall;
            inode.ctime = t.wall;
            c.update_inode(&inode, t.at)?;
            Ok(())
        })?;
        f.changed_in(&cat);
        f.mtime = t.wall;
        f.ctime = t.wall;
        f.version_open = true;
        Ok(())
    }

    /// A best-effort path for messages (any one name of a hard-linked file).
    pub fn path_for_message(&self, ino: Ino) -> Option<String> {
        let cat = self.catalog.lock();
        let mut parts = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == crate::catalog::ROOT_INO {
                parts.reverse();
                return Some(format!("/{}", parts.join("/")));
            }
            let (parent, sealed) = cat.entry_of(cur).ok()??;
            let name = self.open_name(parent, &sealed).ok()?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            cur = parent;
        }
        None
    }
}

/// Bytes of the `sealed` records to claim: not those of blocks stored at
/// indexes fallocate allocated (`filled`), which draw on the room held.
fn unallocated_bytes(
    plan: &[(u64, Option<BlockId>)],
    sealed: &[SealedBlock],
    filled: &[u64],
) -> u64 {
    let all = sealed.iter();
    if filled.is_empty() {
        return all.map(record_len).sum();
    }
    let filled: HashSet<u64> = filled.iter().copied().collect();
    let drawn: HashSet<BlockId> = plan
        .iter()
        .filter(|(idx, _)| filled.contains(idx))
        .filter_map(|(_, id)| *id)
        .collect();
    all.filter(|s| !drawn.contains(&s.id)).map(record_len).sum()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::vault::test_support::{new_file, open_vault};

    thread_local! {
        static BETWEEN_LOOKS: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// Runs, once, what the test set to happen between `store_blocks`'
    /// two looks at the catalog (the blocks are sealed in between).
    pub(super) fn between_looks() {
        if let Some(hook) = BETWEEN_LOOKS.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }

    fn on_next_store(hook: impl FnOnce() + 'static) {
        BETWEEN_LOOKS.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    fn block_of(v: &Vault, byte: u8) -> Vec<u8> {
        (0..v.block_size as usize)
            .map(|i| byte ^ (i % 251) as u8)
            .collect()
    }

    /// `store_blocks` finds a block already stored by another file's
    /// uncommitted writes; before it records the copy, that group is rolled
    /// back (a commit failed). It must seal the block itself, not fail the
    /// write or point the file at a block that no longer exists.
    #[test]
    fn a_shared_block_rolled_back_between_looks_is_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let block = block_of(&v, 7);
        let kept = new_file(&v, "kept");
        v.catalog.lock().commit().unwrap();

        // A whole block is stored at once, in the open group.
        let other = new_file(&v, "other");
        v.write(other, 0, &block).unwrap();
        let lost = v.clone();
        on_next_store(move || lost.catalog.lock().lose_open_group());
        v.write(kept, 0, &block)
            .expect("the block is sealed again, not reported vanished");
        assert!(
            BETWEEN_LOOKS.with(|h| h.borrow().is_none()),
            "the group was lost between the looks"
        );
        v.release_file(kept).unwrap();
        assert_eq!(v.read(kept, 0, block.len() as u32).unwrap(), block);
        assert_eq!(v.release_file(other).unwrap_err().errno(), libc::EIO);
    }

    /// The file's own earlier writes were in the group rolled back between
    /// the looks: the write reports the loss and records nothing, so no
    /// version with a hole where they were is ever committed.
    #[test]
    fn a_files_own_group_rolled_back_between_looks_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let file = new_file(&v, "file");
        v.catalog.lock().commit().unwrap();

        let bs = v.block_size;
        v.write(file, 0, &block_of(&v, 1)).unwrap();
        let lost = v.clone();
        on_next_store(move || lost.catalog.lock().lose_open_group());
        let err = v.write(file, bs, &block_of(&v, 2)).unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        v.release_file(file).unwrap();
        v.catalog.lock().commit().unwrap();
        assert_eq!(v.getattr(file).unwrap().size, 0, "as last closed: empty");
    }

    /// Only the last release of a file written from empty says so: the
    /// kernel's cached pages of such a file are only what was written.
    #[test]
    fn release_tells_a_file_written_whole_from_one_with_older_content() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());

        let untouched = new_file(&v, "untouched");
        assert_eq!(v.release_file(untouched).unwrap(), Released::Kept);

        let new = new_file(&v, "new");
        v.open_file(new, false).unwrap();
        v.write(new, 0, b"written whole").unwrap();
        assert_eq!(
            v.release_file(new).unwrap(),
            Released::Kept,
            "a handle is left"
        );
        assert_eq!(v.release_file(new).unwrap(), Released::WrittenWhole);

        v.open_file(new, false).unwrap();
        v.write(new, 13, b", then appended").unwrap();
        assert_eq!(
            v.release_file(new).unwrap(),
            Released::Kept,
            "opened holding data"
        );

        v.open_file(new, true).unwrap();
        v.write(new, 0, b"after O_TRUNC").unwrap();
        assert_eq!(v.release_file(new).unwrap(), Released::WrittenWhole);

        v.open_file(new, false).unwrap();
        v.truncate(new, 0).unwrap();
        v.write(new, 0, b"after truncate to 0").unwrap();
        assert_eq!(v.release_file(new).unwrap(), Released::WrittenWhole);

        v.open_file(new, false).unwrap();
        v.truncate(new, 0).unwrap();
        assert_eq!(
            v.release_file(new).unwrap(),
            Released::Kept,
            "emptied, nothing written: nothing cached"
        );
        assert_eq!(v.getattr(new).unwrap().size, 0);
    }
}
