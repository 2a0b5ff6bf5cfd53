//! The writing end: each record in one write(2) to the active segment
//! (O_APPEND), so it is in the OS when `append` returns. A thread makes it
//! durable within `sync_interval`; another brings the index up to date.
//!
//! Several processes may write one trail (a read-write daemon beside
//! read-only mounts of the same store): each append, roll, recovery and
//! head write happens under the writers' lock (`lock`), after catching up
//! with what the others appended (`tail`), so the chain stays one.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::index::Index;
use super::lock::WritersLock;
use super::tail::{self, Tail};
use super::trail::Trail;
use super::{frame, AuditError, AuditReader, ChainHead, IoAt, Record};
use crate::crypto::AuditKeys;

#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// A segment is closed once it holds this many bytes...
    pub segment_bytes: u64,
    /// ...or once a record is this much younger than its first, so that
    /// retention can drop whole months.
    pub segment_age_ns: i64,
    /// How soon an appended record is made durable (fdatasync).
    pub sync_interval: Duration,
    /// How soon the index catches up; None: no indexing thread (readers
    /// index what they find missing).
    pub index_interval: Option<Duration>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_bytes: 64 << 20,
            segment_age_ns: 30 * 86_400 * 1_000_000_000,
            sync_interval: Duration::from_millis(500),
            index_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// The writing end of a store's audit trail.
pub struct AuditLog {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    trail: Trail,
    keys: AuditKeys,
    opts: WriterOptions,
    lock: WritersLock,
    state: Mutex<State>,
    /// Serializes syncs; holds the head file and the last head written there.
    synced: Mutex<(File, ChainHead)>,
    stop: AtomicBool,
}

struct State {
    tail: Tail,
    frame: Vec<u8>,
    scratch: Vec<u8>,
}

impl AuditLog {
    /// Opens (creating it if needed) the trail in `dir`: trims a frame torn
    /// by a crash and resumes the chain from the last good record. Other
    /// writers of the trail may be running.
    pub fn open(dir: &Path, keys: AuditKeys, opts: WriterOptions) -> Result<AuditLog, AuditError> {
        let trail = Trail::new(dir);
        trail.create_dir()?;
        let lock = WritersLock::open(&trail)?;
        let held = lock.lock()?;
        let anchor = trail.anchor(&keys)?;
        let mut segments = trail.segments()?;
        tail::finish_prune(&trail, &mut segments, anchor.first_seq)?;
        let (active, head) =
            tail::recover(&trail, &keys, &mut segments, anchor.first_seq, anchor.chain)?;
        let newest = segments.last().copied().unwrap_or(0);
        let end = active
            .as_ref()
            .filter(|s| s.first_seq == newest)
            .map_or(0, |s| s.size);
        held.wrote(newest, end);
        let head_file = trail.open_head_file()?;
        let synced = trail.head(&keys).ok().flatten().unwrap_or_default();
        if trail.index_path().exists() {
            Index::open(&trail, true)?.forget_after(head.seq)?;
        }
        drop(held);
        let shared = Arc::new(Shared {
            trail,
            keys,
            opts,
            lock,
            state: Mutex::new(State {
                tail: Tail {
                    active,
                    head,
                    newest,
                },
                frame: Vec::with_capacity(512),
                scratch: Vec::with_capacity(512),
            }),
            synced: Mutex::new((head_file, synced)),
            stop: AtomicBool::new(false),
        });
        let mut threads = vec![spawn_syncer(&shared)];
        if let Some(every) = shared.opts.index_interval {
            threads.push(spawn_indexer(&shared, every));
        }
        Ok(AuditLog {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Appends `rec`, assigning its sequence number, which it returns. When
    /// this returns the record survives a kill -9 of the process.
    pub fn append(&self, mut rec: Record) -> Result<u64, AuditError> {
        let sh = &*self.shared;
        let mut guard = sh.state.lock();
        let st = &mut *guard;
        let held = sh.lock.lock()?;
        tail::catch_up(&sh.trail, &sh.keys, &held, &mut st.tail)?;
        let seq = st.tail.head.seq + 1;
        rec.seq = seq;
        let roll = match &st.tail.active {
            None => true,
            Some(s) => {
                s.size >= sh.opts.segment_bytes
                    || rec.time_ns.saturating_sub(s.first_time) >= sh.opts.segment_age_ns
            }
        };
        if roll {
            tail::roll(&sh.trail, &held, &mut st.tail, seq, rec.time_ns)?;
        }
        let chain = frame::seal(
            &sh.keys,
            &rec,
            &st.tail.head.mac,
            &mut st.scratch,
            &mut st.frame,
        );
        let active = st.tail.active.as_mut().expect("an active segment");
        held.writing();
        if let Err(e) = (&*active.file).write_all(&st.frame) {
            // Leave no partial frame behind for the next append to follow.
            if active.file.set_len(active.size).is_ok() {
                held.wrote(active.first_seq, active.size);
            }
            return Err(e).at(&sh.trail.segment_path(active.first_seq));
        }
        active.size += st.frame.len() as u64;
        held.wrote(active.first_seq, active.size);
        st.tail.head = ChainHead { seq, mac: chain };
        Ok(seq)
    }

    /// Makes every appended record durable now, and records the head.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.shared.sync()
    }

    /// seq and chain MAC of the last record this writer appended or saw
    /// another append.
    pub fn head(&self) -> ChainHead {
        self.shared.state.lock().tail.head
    }

    /// A reader of the same trail.
    pub fn reader(&self) -> AuditReader {
        AuditReader::open(self.shared.trail.dir(), self.shared.keys.clone())
    }

    /// Stops the background threads after a last sync.
    pub fn close(&self) -> Result<(), AuditError> {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.lock().drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
        self.shared.sync()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!("audit trail: last sync failed: {e}");
        }
    }
}

impl Shared {
    fn sync(&self) -> Result<(), AuditError> {
        let mut synced = self.synced.lock();
        let (file, head) = {
            let st = self.state.lock();
            let active = st.tail.active.as_ref();
            (active.map(|s| (s.file.clone(), s.first_seq)), st.tail.head)
        };
        if head.seq <= synced.1.seq && head.seq != 0 {
            return Ok(());
        }
        // Every record up to `head` is in this segment or in one synced
        // before a roll.
        if let Some((file, first)) = file {
            file.sync_data().at(&self.trail.segment_path(first))?;
        }
        if head.seq == 0 {
            return Ok(());
        }
        let _held = self.lock.lock()?;
        // Another writer may have recorded a later head: it stays.
        let written = self.trail.head(&self.keys).ok().flatten();
        if written.is_none_or(|w| w.seq < head.seq) {
            self.trail.write_head(&synced.0, &self.keys, &head)?;
        }
        synced.1 = head;
        Ok(())
    }

    fn synced_head(&self) -> ChainHead {
        self.synced.lock().1
    }
}

/// Repeats `work` every `every` until stopped; logs failures, at most one
/// every 10 s.
fn spawn_loop(
    shared: &Arc<Shared>,
    name: &str,
    every: Duration,
    mut work: impl FnMut(&Shared) -> Result<(), AuditError> + Send + 'static,
) -> JoinHandle<()> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut last_error: Option<Instant> = None;
            while !shared.stop.load(Ordering::Acquire) {
                std::thread::park_timeout(every);
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
                if let Err(e) = work(&shared) {
                    if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!("audit trail: {e}");
                        last_error = Some(Instant::now());
                    }
                }
            }
        })
        .expect("spawn an audit thread")
}

fn spawn_syncer(shared: &Arc<Shared>) -> JoinHandle<()> {
    let every = shared.opts.sync_interval;
    spawn_loop(shared, "phivault-audit-sync", every, |sh| sh.sync())
}

fn spawn_indexer(shared: &Arc<Shared>, every: Duration) -> JoinHandle<()> {
    let mut index: Option<Index> = None;
    spawn_loop(shared, "phivault-audit-index", every, move |sh| {
        let ix = match &mut index {
            Some(ix) => ix,
            None => {
                run_only_when_idle();
                index.insert(Index::open(&sh.trail, true)?)
            }
        };
        ix.catch_up(&sh.trail, &sh.keys, true, &|| {
            sh.stop.load(Ordering::Relaxed)
        })?;
        ix.store_head(&sh.keys, &sh.synced_head())
    })
}

/// The index is derived and readers bring it up to date themselves, so
/// indexing waits for CPU time nobody else wants: decrypting every record
/// to index it took a core from the requests the mount serves (an untar
/// ran 35% slower with it at normal priority).
fn run_only_when_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::debug!(
            "audit index: stays at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
