//! Pack files: append-only sequences of encrypted block records, sealed with
//! an encrypted index once full or idle, and immutable after that.
//!
//! ```text
//! pack   := "PHIPACK1" record* [index trailer]      (trailer only when sealed)
//! record := len:u32le plain_len:u32le id:[32] nonce:[12] ciphertext:[len-48]
//! index  := sealed bytes of (id:[32] offset:u64le len:u32le plain_len:u32le)*
//! trailer:= index_offset:u64le index_len:u32le "PHIPEND1"
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use rand::RngCore;

use super::layout::{make_private_dir, sync_dir};
use super::space::SpaceGuard;
use super::{IoContext, Result, StoreError};
use crate::crypto::{BlockId, CiphertextBuf, SealedBlock, BLOCK_ID_LEN, NONCE_LEN};

const PACK_MAGIC: &[u8; 8] = b"PHIPACK1";
const END_MAGIC: &[u8; 8] = b"PHIPEND1";
const TRAILER_LEN: u64 = 8 + 4 + 8;
pub const RECORD_HEADER_LEN: usize = 4 + 4 + BLOCK_ID_LEN + NONCE_LEN;
const INDEX_ENTRY_LEN: usize = BLOCK_ID_LEN + 8 + 4 + 4;
pub const PACK_TARGET_SIZE: u64 = 32 << 20;
/// Appended bytes after which the kernel is asked to start writing them to
/// disk. Without it a pack's 32 MiB sit in the page cache until its seal or
/// an fsync, which then waits for all of them while the CPU idles (measured:
/// 1 GiB `dd conv=fsync` spent half its time in that wait).
const WRITEBACK_CHUNK: u64 = 4 << 20;
/// Zeros kept written ahead of the active pack's end, so that records an
/// fsync needs can be made durable by the catalog's flush (see
/// `store::flush`). Topped up by a `sync` that finds less than half left.
const ZERO_AHEAD: u64 = 4 << 20;
const OPEN_PACK_FILES: usize = 64;

/// Bytes a block takes in a pack: its record header and ciphertext.
pub fn record_len(block: &SealedBlock) -> u64 {
    (RECORD_HEADER_LEN + block.ciphertext.len()) as u64
}

/// A pack's name: 64 random bits, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PackId(pub u64);

impl PackId {
    fn random() -> Self {
        Self(rand::rng().next_u64())
    }
    /// As stored in the catalog's INTEGER column (bit pattern preserved).
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }
    pub fn from_i64(v: i64) -> Self {
        Self(v as u64)
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLocation {
    pub pack: PackId,
    pub offset: u64,
    pub len: u32,
}

/// One record as read back from a pack, still encrypted.
pub struct RawRecord {
    pub id: BlockId,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: CiphertextBuf,
    pub plain_len: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct SealedPack {
    pub id: PackId,
    pub size: u64,
}

/// What crash recovery found in an unsealed pack.
#[derive(Clone, Copy, Debug)]
pub enum Recovered {
    /// Sealed now (or already); records before `intact_end` are whole.
    Sealed { pack: SealedPack, intact_end: u64 },
    /// Nothing committed referenced it: removed.
    Empty,
    /// The file is gone: every block the catalog placed in it is lost.
    Missing,
}

/// What an append did besides placing the records, for the catalog to record
/// in the same transaction. A pack it filled is sealed in the background and
/// shows up in `take_sealed`.
#[derive(Debug, Default)]
pub struct AppendOutcome {
    pub locations: Vec<BlockLocation>,
    pub opened: Option<PackId>,
}

/// Encrypts a pack's index; supplied by the vault so the store holds no key.
pub type IndexSealer = Arc<dyn Fn(PackId, &[u8]) -> Vec<u8> + Send + Sync>;

struct ActivePack {
    id: PackId,
    path: PathBuf,
    /// Shared so `sync` can flush it without holding the append lock.
    file: Arc<File>,
    len: u64,
    index: Vec<u8>,
    last_append: Instant,
    /// Records before this offset are durable (made so by `sync`, or by
    /// the flush reported to `flushed`).
    synced_len: u64,
    /// Bytes before this offset have been handed to the kernel's writeback.
    writeback_started: u64,
    /// Bytes before this offset are written: records, then zeros.
    zeroed_end: u64,
    /// Bytes before this offset are allocated, written and durable, so that
    /// writing records there changes no filesystem metadata.
    initialized_end: u64,
    /// Times a failed append cut the file: a cut during a sync frees blocks
    /// that sync was to make durable, so it must not count them initialized.
    cuts: u64,
}

impl ActivePack {
    /// Starts writeback of what was appended since the last call, once that
    /// is at least `WRITEBACK_CHUNK`. Does not wait for the disk; advisory,
    /// so errors are ignored (the seal's or an fsync's flush reports them).
    fn start_writeback(&mut self) {
        let pending = self.len - self.writeback_started;
        if pending < WRITEBACK_CHUNK {
            return;
        }
        // SAFETY: plain syscall on a descriptor we own.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.writeback_started as libc::off64_t,
                pending as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.writeback_started = self.len;
    }

    /// Writes zeros past the end up to `ZERO_AHEAD` ahead (not past
    /// `limit`), unless at least half of that is there. Best effort: where
    /// `space` refuses them, it writes nothing and syncs take their usual path.
    fn zero_ahead(&mut self, limit: u64, space: &SpaceGuard) {
        let from = self.zeroed_end.max(self.len);
        if from >= self.len + ZERO_AHEAD / 2 {
            return;
        }
        let to = (self.len + ZERO_AHEAD).min(limit).next_multiple_of(4096);
        if to <= from || space.claim(to - from).is_err() {
            return;
        }
        let zeros = vec![0u8; (to - from) as usize];
        if self.file.write_all_at(&zeros, from).is_ok() {
            self.zeroed_end = to;
        }
    }

    /// After a failed append cut the file back to `len`.
    fn cut_to_len(&mut self) {
        let _ = self.file.set_len(self.len);
        self.zeroed_end = self.len;
        self.initialized_end = self.initialized_end.min(self.len);
        self.cuts += 1;
    }
}

/// What `PackStore::push` did with the active pack's newest records.
#[derive(Debug)]
pub enum Pushed {
    /// Nothing was waiting to be made durable.
    Nothing,
    /// Written to the device, not yet flushed from its cache: an fdatasync
    /// on the same filesystem must complete, then `flushed` be called.
    AwaitingFlush(PushedRecords),
    /// They need a `sync` of their own.
    NeedsSync,
}

#[derive(Debug)]
pub struct PushedRecords {
    pack: PackId,
    from: u64,
    end: u64,
    file: Arc<File>,
    path: PathBuf,
}

impl PushedRecords {
    fn sync_range(&self, flags: libc::c_uint) -> Result<()> {
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.from as libc::off64_t,
                (self.end - self.from) as libc::off64_t,
                flags,
            )
        };
        if rc != 0 {
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

pub struct PackStore {
    dir: PathBuf,
    target_size: u64,
    active: Mutex<Option<ActivePack>>,
    sealer: Arc<BackgroundSealer>,
    readers: Mutex<LruCache<PackId, Arc<File>>>,
    seal_index: IndexSealer,
    /// Set when the catalog's flush makes pushed records durable (see
    /// `store::flush`): the guard consulted before zeros are written ahead,
    /// which appends do not claim. Unset, `push` answers `NeedsSync`.
    zeros_ahead: Option<Arc<SpaceGuard>>,
}

/// Seals full packs on a thread of their own: a seal waits for the disk to
/// hold the whole pack, and the append that filled it should not (measured:
/// 1 GiB `dd conv=fsync` a fifth faster).
#[derive(Default)]
struct BackgroundSealer {
    state: Mutex<SealerState>,
    idle: Condvar,
}

impl BackgroundSealer {
    /// Seals `pack` and records the outcome: sealed, for the catalog, or
    /// back among the unsealed for the next `sync` to retry.
    fn seal(&self, seal_index: &IndexSealer, pack: ActivePack) -> Result<()> {
        let res = seal(seal_index, &pack);
        let mut state = self.state.lock();
        match res {
            Ok(sealed) => {
                state.sealed.push(sealed);
                Ok(())
            }
            Err(e) => {
                state.unsealed.push(pack);
                Err(e)
            }
        }
    }
}

#[derive(Default)]
struct SealerState {
    /// Sealing threads started and not yet done.
    running: usize,
    /// Full packs not yet sealed: waiting for their thread, or their seal
    /// failed (a full disk). `sync` seals what is left here once no thread
    /// runs, so their records reach the disk before an fsync succeeds.
    unsealed: Vec<ActivePack>,
    /// Sealed since the last `take_sealed`, for the catalog to record.
    sealed: Vec<SealedPack>,
}

impl PackStore {
    pub fn new(dir: PathBuf, seal_index: IndexSealer) -> Self {
        Self::with_target_size(dir, PACK_TARGET_SIZE, seal_index)
    }

    pub fn with_target_size(dir: PathBuf, target_size: u64, seal_index: IndexSealer) -> Self {
        Self {
            dir,
            target_size,
            active: Mutex::new(None),
            sealer: Arc::default(),
            readers: Mutex::new(LruCache::new(OPEN_PACK_FILES.try_into().expect("nonzero"))),
            seal_index,
            zeros_ahead: None,
        }
    }

    /// Lets `push` make records durable without a flush of their own, for
    /// a caller that always follows it with an fdatasync on the same
    /// filesystem (see `store::wal_flush_covers_packs`).
    pub fn with_flush_follows_push(mut self, space: Arc<SpaceGuard>) -> Self {
        self.zeros_ahead = Some(space);
        self
    }

    pub fn pack_path(&self, id: PackId) -> PathBuf {
        pack_path_in(&self.dir, id)
    }

    /// Appends sealed blocks to the active pack in one write.
    pub fn append(&self, blocks: &[&SealedBlock]) -> Result<AppendOutcome> {
        let mut buf =
            Vec::with_capacity(blocks.iter().map(|b| record_len(b)).sum::<u64>() as usize);
        for b in blocks {
            let len = record_len(b) as u32;
            buf.extend_from_slice(&(len - 4).to_le_bytes());
            buf.extend_from_slice(&b.plain_len.to_le_bytes());
            buf.extend_from_slice(&b.id.0);
            buf.extend_from_slice(&b.nonce);
            buf.extend_from_slice(&b.ciphertext);
        }
        self.append_encoded(buf, blocks.len())
    }

    /// Appends whole records as `read_record_bytes` gives them (compaction
    /// copies them verbatim: the ciphertext stays bound to its block id).
    pub fn append_records(&self, records: &[Vec<u8>]) -> Result<AppendOutcome> {
        self.append_encoded(records.concat(), records.len())
    }

    /// Appends `count` encoded records, back to back in `buf`, in one write.
    fn append_encoded(&self, buf: Vec<u8>, count: usize) -> Result<AppendOutcome> {
        let mut out = AppendOutcome::default();
        let mut guard = self.active.lock();
        if guard.is_none() {
            let pack = self.create_pack()?;
            out.opened = Some(pack.id);
            *guard = Some(pack);
        }
        let pack = guard.as_mut().expect("just ensured");
        let mut pos = 0usize;
        while pos < buf.len() {
            let offset = pack.len + pos as u64;
            let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4")) + 4;
            pack.index
                .extend_from_slice(&buf[pos + 8..pos + 8 + BLOCK_ID_LEN]);
            pack.index.extend_from_slice(&offset.to_le_bytes());
            pack.index.extend_from_slice(&len.to_le_bytes());
            pack.index.extend_from_slice(&buf[pos + 4..pos + 8]);
            out.locations.push(BlockLocation {
                pack: pack.id,
                offset,
                len,
            });
            pos += len as usize;
        }
        debug_assert_eq!(out.locations.len(), count);
        if let Err(e) = pack.file.write_all_at(&buf, pack.len) {
            // A partial record may be on disk; cut it so the pack stays parseable.
            pack.cut_to_len();
            pack.index
                .truncate(pack.index.len() - count * INDEX_ENTRY_LEN);
            return Err(StoreError::Io {
                path: pack.path.clone(),
                source: e,
            });
        }
        pack.len += buf.len() as u64;
        pack.zeroed_end = pack.zeroed_end.max(pack.len);
        pack.last_append = Instant::now();
        pack.start_writeback();
        if pack.len >= self.target_size {
            // Appends go on into a new pack while this one is flushed.
            let full = guard.take().expect("active");
            drop(guard);
            self.seal_in_background(full);
        }
        Ok(out)
    }

    fn seal_in_background(&self, pack: ActivePack) {
        {
            let mut state = self.sealer.state.lock();
            state.unsealed.push(pack);
            state.running += 1;
        }
        let sealer = self.sealer.clone();
        let seal_index = self.seal_index.clone();
        let spawned = std::thread::Builder::new()
            .name("phivault-seal".into())
            .spawn(move || {
                // None: `finish_seals` took it first, and seals it itself.
                let pack = sealer.state.lock().unsealed.pop();
                if let Some(pack) = pack {
                    if let Err(e) = sealer.seal(&seal_index, pack) {
                        tracing::error!(
                            "sealing a full pack failed (retried at the next sync): {e}"
                        );
                    }
                }
                sealer.state.lock().running -= 1;
                sealer.idle.notify_all();
            });
        if let Err(e) = spawned {
            tracing::warn!("no thread to seal a pack ({e}); the next sync seals it");
            self.sealer.state.lock().running -= 1;
            self.sealer.idle.notify_all();
        }
    }

    /// Waits for the sealing threads, then seals what they left (failed or
    /// never started) here.
    fn finish_seals(&self) -> Result<()> {
        let left = {
            let mut state = self.sealer.state.lock();
            while state.running > 0 {
                self.sealer.idle.wait(&mut state);
            }
            std::mem::take(&mut state.unsealed)
        };
        let mut left = left.into_iter();
        while let Some(pack) = left.next() {
            if let Err(e) = self.sealer.seal(&self.seal_index, pack) {
                self.sealer.state.lock().unsealed.extend(left);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Packs sealed since the last call (in the background, by `sync`, at
    /// idle time or at shutdown), which the catalog has yet to mark sealed.
    pub fn take_sealed(&self) -> Vec<SealedPack> {
        std::mem::take(&mut self.sealer.state.lock().sealed)
    }

    /// Flushes appended records to stable storage (fdatasync of the active
    /// pack; a full pack was flushed when it was sealed). Appends go on
    /// while the disk works: the lock is not held during the flush.
    pub fn sync(&self) -> Result<()> {
        let active = match self.active.lock().as_mut() {
            Some(p) if p.len != p.synced_len => {
                if let Some(space) = &self.zeros_ahead {
                    // Made durable by the same flush, for the next pushes.
                    p.zero_ahead(self.target_size, space);
                }
                Some((
                    p.id,
                    p.file.clone(),
                    p.path.clone(),
                    p.len,
                    p.zeroed_end,
                    p.cuts,
                ))
            }
            _ => None,
        };
        // A pack taken out of `active` before the look above is being
        // sealed: its seal flushes it, wait for that.
        self.finish_seals()?;
        let Some((id, file, path, len, zeroed_end, cuts)) = active else {
            return Ok(());
        };
        file.sync_data().at(&path)?;
        if let Some(p) = self.active.lock().as_mut().filter(|p| p.id == id) {
            p.synced_len = p.synced_len.max(len);
            if p.cuts == cuts {
                p.initialized_end = p.initialized_end.max(zeroed_end);
            }
        }
        Ok(())
    }

    /// Starts writing the active pack's unsynced records to the device,
    /// when they lie in its initialized tail (see `store::flush`). The
    /// caller must then call `wait_pushed`, complete an fdatasync on the
    /// same filesystem after it, and call `flushed`.
    pub fn push(&self) -> Result<Pushed> {
        if self.zeros_ahead.is_none() {
            return Ok(Pushed::NeedsSync);
        }
        let active = match self.active.lock().as_ref() {
            Some(p) if p.len == p.synced_len => None,
            Some(p) if p.len > p.initialized_end => return Ok(Pushed::NeedsSync),
            Some(p) => Some(PushedRecords {
                pack: p.id,
                from: p.synced_len,
                end: p.len,
                file: p.file.clone(),
                path: p.path.clone(),
            }),
            None => None,
        };
        // As in `sync`: a pack being sealed holds records this push covers.
        self.finish_seals()?;
        let Some(pushed) = active else {
            return Ok(Pushed::Nothing);
        };
        pushed.sync_range(libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE)?;
        Ok(Pushed::AwaitingFlush(pushed))
    }

    /// Waits until the records `push` started writing are on the device
    /// (in its cache: only a flush makes them durable).
    pub fn wait_pushed(&self, pushed: &PushedRecords) -> Result<()> {
        pushed.sync_range(
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    }

    /// Records that a flush completed after `push` returned `pushed`.
    pub fn flushed(&self, pushed: PushedRecords) {
        if let Some(p) = self.active.lock().as_mut().filter(|p| p.id == pushed.pack) {
            p.synced_len = p.synced_len.max(pushed.end);
        }
    }

    /// Seals the active pack if nothing was appended for `idle`.
    pub fn seal_if_idle(&self, idle: Duration) -> Result<()> {
        let mut guard = self.active.lock();
        match guard.as_ref() {
            Some(p) if p.last_append.elapsed() >= idle => {
                let p = guard.take().expect("checked");
                self.sealer.seal(&self.seal_index, p)
            }
            _ => Ok(()),
        }
    }

    /// Seals the active pack now, after any still sealing (clean shutdown).
    pub fn seal_active(&self) -> Result<()> {
        self.finish_seals()?;
        let mut guard = self.active.lock();
        match guard.take() {
            Some(p) => self.sealer.seal(&self.seal_index, p),
            None => Ok(()),
        }
    }

    pub fn read(&self, loc: &BlockLocation) -> Result<RawRecord> {
        let buf = self.read_record_bytes(loc)?;
        parse_record(loc.pack, loc.offset, buf)
    }

    /// One record as stored, header and ciphertext, checked to be whole.
    pub fn read_record_bytes(&self, loc: &BlockLocation) -> Result<Vec<u8>> {
        let file = self.reader(loc.pack)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::DamagedRecord {
                    pack: loc.pack,
                    offset: loc.offset,
                    what: "pack is shorter than the catalog says",
                }
            } else {
                StoreError::Io {
                    path: self.pack_path(loc.pack),
                    source: e,
                }
            }
        })?;
        check_record(loc.pack, loc.offset, &buf)?;
        Ok(buf)
    }

    /// Deletes a pack file no block is stored in any more (compaction, once
    /// the catalog has forgotten it), and closes the descriptor the reader
    /// cache holds on it, so that its space really comes back. A file
    /// already gone is not an error: deletion is retried after a crash.
    pub fn remove_pack(&self, id: PackId) -> Result<bool> {
        self.readers.lock().pop(&id);
        let path = self.pack_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Puts `bytes` in place of sealed pack `id` (a copy from a replica):
    /// written beside it, made durable, then renamed over it.
    pub fn replace_sealed(&self, id: PackId, bytes: &[u8]) -> Result<()> {
        let path = self.pack_path(id);
        make_private_dir(path.parent().expect("a pack has a folder"))?;
        super::write_atomic(&path, bytes)?;
        // A reader still open on the damaged file would go on reading it.
        self.readers.lock().pop(&id);
        Ok(())
    }

    /// After a crash: cuts an unsealed pack back to what the catalog committed
    /// (`committed_end`), then seals it. Returns None if nothing in it was
    /// committed (the file is removed).
    pub fn recover_unsealed(&self, id: PackId, committed_end: u64) -> Result<Recovered> {
        let path = self.pack_path(id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let nothing_committed = committed_end <= PACK_MAGIC.len() as u64;
                return Ok(if nothing_committed {
                    Recovered::Empty
                } else {
                    Recovered::Missing
                });
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let len = file.metadata().at(&path)?.len();
        if let Some(size) = sealed_size(&file, len) {
            return Ok(Recovered::Sealed {
                pack: SealedPack { id, size },
                intact_end: u64::MAX,
            });
        }
        if committed_end <= PACK_MAGIC.len() as u64 {
            drop(file);
            fs::remove_file(&path).at(&path)?;
            return Ok(Recovered::Empty);
        }
        let end = committed_end.min(len);
        file.set_len(end).at(&path)?;
        let mut index = Vec::new();
        let mut pos = PACK_MAGIC.len() as u64;
        while pos + RECORD_HEADER_LEN as u64 <= end {
            let mut head = [0u8; RECORD_HEADER_LEN];
            file.read_exact_at(&mut head, pos).at(&path)?;
            let body = u32::from_le_bytes(head[0..4].try_into().expect("4")) as u64;
            let total = body + 4;
            // A record with no ciphertext is where the zeros written ahead
            // begin: records after them (if any) never became durable.
            if total <= RECORD_HEADER_LEN as u64 || pos + total > end {
                break;
            }
            // So is a record torn by the power loss: its header reached the
            // disk, a later sector did not and still holds zeros.
            let mut record = vec![0u8; total as usize];
            file.read_exact_at(&mut record, pos).at(&path)?;
            if has_zero_sector(&record, pos) {
                break;
            }
            index.extend_from_slice(&head[8..8 + BLOCK_ID_LEN]);
            index.extend_from_slice(&pos.to_le_bytes());
            index.extend_from_slice(&(total as u32).to_le_bytes());
            index.extend_from_slice(&head[4..8]);
            pos += total;
        }
        file.set_len(pos).at(&path)?;
        let pack = ActivePack {
            id,
            path,
            file: Arc::new(file),
            len: pos,
            index,
            last_append: Instant::now(),
            synced_len: 0,
            writeback_started: 0,
            zeroed_end: pos,
            initialized_end: 0,
            cuts: 0,
        };
        let sealed = seal(&self.seal_index, &pack)?;
        Ok(Recovered::Sealed {
            pack: sealed,
            intact_end: pos,
        })
    }

    fn create_pack(&self) -> Result<ActivePack> {
        let id = PackId::random();
        let path = self.pack_path(id);
        let sub = path.parent().expect("pack has a parent dir");
        make_private_dir(sub)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        file.write_all_at(PACK_MAGIC, 0).at(&path)?;
        Ok(ActivePack {
            id,
            path,
            file: Arc::new(file),
            len: PACK_MAGIC.len() as u64,
            index: Vec::new(),
            last_append: Instant::now(),
            synced_len: 0,
            writeback_started: 0,
            zeroed_end: PACK_MAGIC.len() as u64,
            initialized_end: 0,
            cuts: 0,
        })
    }

    /// Tells the kernel these records will be read soon, so the disk reads
    /// them in large requests ahead of the decryption that needs them.
    /// Advisory: errors are ignored.
    pub fn will_need(&self, locations: impl IntoIterator<Item = BlockLocation>) {
        let mut spans: Vec<(PackId, u64, u64)> = Vec::new();
        for loc in locations {
            let end = loc.offset + loc.len as u64;
            match spans.iter_mut().find(|(p, ..)| *p == loc.pack) {
                Some((_, start, stop)) => {
                    *start = (*start).min(loc.offset);
                    *stop = (*stop).max(end);
                }
                None => spans.push((loc.pack, loc.offset, end)),
            }
        }
        for (pack, start, stop) in spans {
            if let Ok(f) = self.reader(pack) {
                // SAFETY: plain syscall on a descriptor we own.
                unsafe {
                    libc::posix_fadvise(
                        f.as_raw_fd(),
                        start as libc::off_t,
                        (stop - start) as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    );
                }
            }
        }
    }

    fn reader(&self, id: PackId) -> Result<Arc<File>> {
        if let Some(f) = self.readers.lock().get(&id) {
            return Ok(f.clone());
        }
        let path = self.pack_path(id);
        let f = Arc::new(File::open(&path).at(&path)?);
        self.readers.lock().put(id, f.clone());
        Ok(f)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes the encrypted index and trailer after the records and flushes the
/// pack: from then on it is immutable.
fn seal(seal_index: &IndexSealer, pack: &ActivePack) -> Result<SealedPack> {
    let sealed_index = seal_index(pack.id, &pack.index);
    let mut tail = sealed_index;
    let index_len = tail.len() as u32;
    tail.extend_from_slice(&pack.len.to_le_bytes());
    tail.extend_from_slice(&index_len.to_le_bytes());
    tail.extend_from_slice(END_MAGIC);
    pack.file.write_all_at(&tail, pack.len).at(&pack.path)?;
    let end = pack.len + tail.len() as u64;
    if pack.file.metadata().at(&pack.path)?.len() != end {
        // The trailer ends the file: drop the zeros written ahead.
        pack.file.set_len(end).at(&pack.path)?;
    }
    pack.file.sync_all().at(&pack.path)?;
    if let Some(parent) = pack.path.parent() {
        sync_dir(parent)?;
    }
    Ok(SealedPack {
        id: pack.id,
        size: end,
    })
}

/// Whether `record`, read from file offset `at`, holds a whole 512-byte disk
/// sector of zeros. Never true of a record that reached the disk: its
/// header carries a block hash and its ciphertext is indistinguishable from
/// random bytes.
fn has_zero_sector(record: &[u8], at: u64) -> bool {
    const SECTOR: u64 = 512;
    let end = at + record.len() as u64;
    let mut sector = at.next_multiple_of(SECTOR);
    while sector + SECTOR <= end {
        let from = (sector - at) as usize;
        if record[from..from + SECTOR as usize].iter().all(|&b| b == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

fn sealed_size(file: &File, len: u64) -> Option<u64> {
    if len < PACK_MAGIC.len() as u64 + TRAILER_LEN {
        return None;
    }
    let mut t = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut t, len - TRAILER_LEN).ok()?;
    (&t[12..] == END_MAGIC).then_some(len)
}

/// Fails unless `buf` is a whole record of the length the catalog gave.
fn check_record(pack: PackId, offset: u64, buf: &[u8]) -> Result<()> {
    let damaged = |what| StoreError::DamagedRecord { pack, offset, what };
    if buf.len() < RECORD_HEADER_LEN {
        return Err(damaged("record shorter than its header"));
    }
    let body = u32::from_le_bytes(buf[0..4].try_into().expect("4")) as usize;
    if body + 4 != buf.len() {
        return Err(damaged("record length field disagrees with the catalog"));
    }
    Ok(())
}

/// Where pack `id` lives under the packs directory `dir`: `xx/ID`.
pub fn pack_path_in(dir: &Path, id: PackId) -> PathBuf {
    let name = id.to_string();
    dir.join(&name[..2]).join(name)
}

/// The records of a sealed pack's bytes, in order: what a copy of the pack
/// must hold. Reads the record headers, not the (encrypted) index.
pub fn sealed_records(pack: PackId, bytes: &[u8]) -> Result<Vec<RawRecord>> {
    let layout = sealed_layout(pack, bytes)?;
    layout
        .records
        .into_iter()
        .map(|r| parse_record(pack, r.start as u64, bytes[r].to_vec()))
        .collect()
}

/// Where the parts of a sealed pack's bytes are: its magic, then its
/// records, one after the other, then its index and trailer (`tail`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedLayout {
    pub magic: std::ops::Range<usize>,
    /// Each record whole, its `len` field included.
    pub records: Vec<std::ops::Range<usize>>,
    pub tail: std::ops::Range<usize>,
}

/// The layout of a sealed pack's bytes, from its trailer and the record
/// lengths (nothing is decrypted); every record has its header whole.
pub fn sealed_layout(pack: PackId, bytes: &[u8]) -> Result<SealedLayout> {
    let damaged = |offset, what| StoreError::DamagedRecord { pack, offset, what };
    let len = bytes.len() as u64;
    if len < PACK_MAGIC.len() as u64 + TRAILER_LEN
        || &bytes[..PACK_MAGIC.len()] != PACK_MAGIC
        || &bytes[bytes.len() - END_MAGIC.len()..] != END_MAGIC
    {
        return Err(damaged(0, "not a sealed pack"));
    }
    let trailer = &bytes[bytes.len() - TRAILER_LEN as usize..];
    let index_at = u64::from_le_bytes(trailer[..8].try_into().expect("8"));
    if index_at < PACK_MAGIC.len() as u64 || index_at > len - TRAILER_LEN {
        return Err(damaged(
            len - TRAILER_LEN,
            "trailer points outside the pack",
        ));
    }
    let mut records = Vec::new();
    let mut at = PACK_MAGIC.len() as u64;
    while at < index_at {
        let head = &bytes[at as usize..index_at as usize];
        if head.len() < RECORD_HEADER_LEN {
            return Err(damaged(at, "record cut short"));
        }
        let end = at + 4 + u32::from_le_bytes(head[..4].try_into().expect("4")) as u64;
        if end > index_at || end < at + RECORD_HEADER_LEN as u64 {
            return Err(damaged(at, "record runs into the index"));
        }
        records.push(at as usize..end as usize);
        at = end;
    }
    Ok(SealedLayout {
        magic: 0..PACK_MAGIC.len(),
        records,
        tail: index_at as usize..bytes.len(),
    })
}

fn parse_record(pack: PackId, offset: u64, buf: Vec<u8>) -> Result<RawRecord> {
    check_record(pack, offset, &buf)?;
    let plain_len = u32::from_le_bytes(buf[4..8].try_into().expect("4"));
    let id = BlockId::from_slice(&buf[8..8 + BLOCK_ID_LEN]).expect("32 bytes");
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&buf[8 + BLOCK_ID_LEN..RECORD_HEADER_LEN]);
    Ok(RawRecord {
        id,
        nonce,
        ciphertext: CiphertextBuf::new(buf, RECORD_HEADER_LEN),
        plain_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, target: u64) -> PackStore {
        PackStore::with_target_size(
            dir.to_path_buf(),
            target,
            Arc::new(|_, b: &[u8]| b.to_vec()),
        )
    }

    /// Recovers `pack` after a crash that left records committed up to
    /// `end`, and checks they are all kept.
    fn recover_to(s: &PackStore, pack: PackId, end: u64) -> SealedPack {
        let Recovered::Sealed {
            pack: sealed,
            intact_end,
        } = s.recover_unsealed(pack, end).unwrap()
        else {
            panic!("a pack with committed records must be sealed")
        };
        assert_eq!(intact_end, end);
        sealed
    }

    #[test]
    fn append_read_seal_and_recover() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 1 << 40);
        let sealer = crate::crypto::Keys::derive(&crate::crypto::MasterKey::generate()).blocks;
        let a = sealer.seal(b"first block");
        let b = sealer.seal(b"second block");
        let out = s.append(&[&a, &b]).unwrap();
        assert!(out.opened.is_some());
        let rec = s.read(&out.locations[1]).unwrap();
        assert_eq!(rec.id, b.id);
        let plain = sealer
            .open(&rec.id, &rec.nonce, rec.ciphertext, rec.plain_len as usize)
            .unwrap();
        assert_eq!(plain, b"second block");

        // Pretend a crash: only the first record was committed.
        let pack = out.locations[0].pack;
        let end = out.locations[0].offset + out.locations[0].len as u64;
        drop(s);
        let s = store(tmp.path(), 1 << 40);
        let sealed = recover_to(&s, pack, end);
        assert!(sealed.size > end);
        assert!(s.read(&out.locations[0]).is_ok());
        // Recovery is idempotent on a sealed pack.
        let Recovered::Sealed { pack: again, .. } = s.recover_unsealed(pack, end).unwrap() else {
            panic!("still sealed")
        };
        assert_eq!(again.size, sealed.size);
    }

    #[test]
    fn full_packs_seal_in_the_background_and_sync_waits_for_them() {
        let tmp = tempfile::tempdir().unwrap();
        // Every append of one record fills a pack.
        let s = store(tmp.path(), 64);
        let sealer = crate::crypto::Keys::derive(&crate::crypto::MasterKey::generate()).blocks;
        let blocks: Vec<_> = (0..8u8).map(|i| sealer.seal(&[i; 1000])).collect();
        let mut packs = Vec::new();
        for b in &blocks {
            let out = s.append(&[b]).unwrap();
            packs.push(out.locations[0].pack);
        }
        packs.dedup();
        assert_eq!(packs.len(), blocks.len(), "each append filled its own pack");
        s.sync().unwrap();
        let mut sealed: Vec<PackId> = s.take_sealed().iter().map(|p| p.id).collect();
        sealed.sort();
        packs.sort();
        assert_eq!(sealed, packs, "after sync every full pack is sealed, once");
        assert!(s.take_sealed().is_empty());
        for id in packs {
            let file = File::open(s.pack_path(id)).unwrap();
            let len = file.metadata().unwrap().len();
            assert_eq!(
                sealed_size(&file, len),
                Some(len),
                "pack {id} has its trailer"
            );
        }
    }

    #[test]
    fn records_in_the_zeroed_tail_are_pushed_then_sealed_and_recovered() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 1 << 40)
            .with_flush_follows_push(Arc::new(SpaceGuard::new(tmp.path(), 0)));
        let sealer = crate::crypto::Keys::derive(&crate::crypto::MasterKey::generate()).blocks;
        let first = sealer.seal(b"first block");
        let out = s.append(&[&first]).unwrap();
        let pack = out.locations[0].pack;
        let path = s.pack_path(pack);
        // A fresh pack has no initialized tail: its first records need a sync,
        // which writes the zeros ahead and makes them durable with them.
        assert!(matches!(s.push().unwrap(), Pushed::NeedsSync));
        s.sync().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= ZERO_AHEAD, "{len} bytes: no zeros written ahead");
        assert!(matches!(s.push().unwrap(), Pushed::Nothing));

        let second = sealer.seal(b"second block");
        let out2 = s.append(&[&second]).unwrap();
        let Pushed::AwaitingFlush(pushed) = s.push().unwrap() else {
            panic!("a record in the initialized tail is pushed")
        };
        s.wait_pushed(&pushed).unwrap();
        // Until the caller's flush is reported, the record is not durable.
        assert!(matches!(s.push().unwrap(), Pushed::AwaitingFlush(_)));
        s.flushed(pushed);
        assert!(matches!(s.push().unwrap(), Pushed::Nothing));
        let rec = s.read(&out2.locations[0]).unwrap();
        assert_eq!(rec.id, second.id);

        // A crash now: recovery cuts the zeros and seals after the records.
        let end = out2.locations[0].offset + out2.locations[0].len as u64;
        drop(s);
        let s = store(tmp.path(), 1 << 40);
        let sealed = recover_to(&s, pack, end);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), sealed.size);
        assert!(s.read(&out.locations[0]).is_ok());
        assert!(s.read(&out2.locations[0]).is_ok());
    }

    #[test]
    fn a_seal_drops_the_zeros_written_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 1 << 40)
            .with_flush_follows_push(Arc::new(SpaceGuard::new(tmp.path(), 0)));
        let sealer = crate::crypto::Keys::derive(&crate::crypto::MasterKey::generate()).blocks;
        let block = sealer.seal(b"only block");
        let out = s.append(&[&block]).unwrap();
        s.sync().unwrap();
        s.seal_active().unwrap();
        let sealed = s.take_sealed();
        assert_eq!(sealed.len(), 1);
        let file = File::open(s.pack_path(out.locations[0].pack)).unwrap();
        let len = file.metadata().unwrap().len();
        assert_eq!(len, sealed[0].size);
        assert_eq!(
            sealed_size(&file, len),
            Some(len),
            "the trailer ends the file"
        );
        assert!(s.read(&out.locations[0]).is_ok());
    }

    #[test]
    fn a_record_torn_by_a_power_loss_ends_what_recovery_keeps() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 1 << 40);
        let sealer = crate::crypto::Keys::derive(&crate::crypto::MasterKey::generate()).blocks;
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let first = sealer.seal(b"first block");
        let second = sealer.seal(&noise);
        let out = s.append(&[&first, &second]).unwrap();
        let pack = out.locations[0].pack;
        let torn = out.locations[1];
        let end = torn.offset + torn.len as u64;
        drop(s);
        // The second record's header reached the disk, a sector of it did not.
        let f = OpenOptions::new()
            .write(true)
            .open(store(tmp.path(), 1 << 40).pack_path(pack))
            .unwrap();
        let hole = (torn.offset + 64).next_multiple_of(512);
        assert!(hole + 512 <= end, "the record spans a whole sector");
        f.write_all_at(&[0u8; 512], hole).unwrap();
        drop(f);
        let s = store(tmp.path(), 1 << 40);
        let Recovered::Sealed { intact_end, .. } = s.recover_unsealed(pack, end).unwrap() else {
            panic!("the first record is intact")
        };
        assert_eq!(intact_end, torn.offset, "the torn record is not kept");
        assert!(s.read(&out.locations[0]).is_ok());
    }
}
