//! The writing end: one process appends, each record in one write(2) to
//! the active segment (O_APPEND), so it is in the OS when `append`
//! returns. A thread makes it durable within `sync_interval`; another
//! brings the index up to date.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::frame::{self, Mac, Stop, SEGMENT_HEADER};
use super::index::Index;
use super::trail::Trail;
use super::{AuditError, AuditReader, ChainHead, IoAt, Record};
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
    state: Mutex<State>,
    /// Serializes syncs; holds the head file and the last head written there.
    synced: Mutex<(File, ChainHead)>,
    stop: AtomicBool,
}

struct State {
    active: Option<Segment>,
    head: ChainHead,
    frame: Vec<u8>,
    scratch: Vec<u8>,
}

struct Segment {
    file: Arc<File>,
    first_seq: u64,
    size: u64,
    first_time: i64,
}

impl AuditLog {
    /// Opens (creating it if needed) the trail in `dir`: trims a frame torn
    /// by a crash and resumes the chain from the last good record.
    pub fn open(dir: &Path, keys: AuditKeys, opts: WriterOptions) -> Result<AuditLog, AuditError> {
        let trail = Trail::new(dir);
        trail.create_dir()?;
        let anchor = trail.anchor(&keys)?;
        let mut segments = trail.segments()?;
        finish_prune(&trail, &mut segments, anchor.first_seq)?;
        let (active, head) = recover(&trail, &keys, &mut segments, anchor.first_seq, anchor.chain)?;
        let head_file = trail.open_head_file()?;
        let synced = trail.head(&keys).ok().flatten().unwrap_or_default();
        if trail.index_path().exists() {
            Index::open(&trail, true)?.forget_after(head.seq)?;
        }
        let shared = Arc::new(Shared {
            trail,
            keys,
            opts,
            state: Mutex::new(State {
                active,
                head,
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
        let seq = st.head.seq + 1;
        rec.seq = seq;
        let roll = match &st.active {
            None => true,
            Some(s) => {
                s.size >= sh.opts.segment_bytes
                    || rec.time_ns.saturating_sub(s.first_time) >= sh.opts.segment_age_ns
            }
        };
        if roll {
            let next = new_segment(&sh.trail, seq, rec.time_ns)?;
            if let Some(old) = st.active.replace(next) {
                let path = sh.trail.segment_path(old.first_seq);
                old.file.sync_data().at(&path)?;
            }
            sh.trail.fsync_dir()?;
        }
        let chain = frame::seal(&sh.keys, &rec, &st.head.mac, &mut st.scratch, &mut st.frame);
        let active = st.active.as_mut().expect("an active segment");
        if let Err(e) = (&*active.file).write_all(&st.frame) {
            // Leave no partial frame behind for the next append to follow.
            let _ = active.file.set_len(active.size);
            return Err(e).at(&sh.trail.segment_path(active.first_seq));
        }
        active.size += st.frame.len() as u64;
        st.head = ChainHead { seq, mac: chain };
        Ok(seq)
    }

    /// Makes every appended record durable now, and records the head.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.shared.sync()
    }

    /// seq and chain MAC of the last record appended.
    pub fn head(&self) -> ChainHead {
        self.shared.state.lock().head
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
            (
                st.active.as_ref().map(|s| (s.file.clone(), s.first_seq)),
                st.head,
            )
        };
        if head.seq <= synced.1.seq && head.seq != 0 {
            return Ok(());
        }
        if let Some((file, first)) = file {
            file.sync_data().at(&self.trail.segment_path(first))?;
        }
        if head.seq == 0 {
            return Ok(());
        }
        self.trail.write_head(&synced.0, &self.keys, &head)?;
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

fn new_segment(trail: &Trail, first_seq: u64, first_time: i64) -> Result<Segment, AuditError> {
    let path = trail.segment_path(first_seq);
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .at(&path)?;
    if let Err(e) = file.write_all(&frame::segment_header(first_seq)) {
        // Left behind, it would make every later start of this segment
        // fail (EEXIST) after the disk has room again.
        let _ = std::fs::remove_file(&path);
        return Err(e).at(&path);
    }
    Ok(Segment {
        file: Arc::new(file),
        first_seq,
        size: SEGMENT_HEADER,
        first_time,
    })
}

/// Removes segments a prune had anchored past but not yet deleted.
fn finish_prune(trail: &Trail, segments: &mut Vec<u64>, first_kept: u64) -> Result<(), AuditError> {
    let mut removed = false;
    while segments.len() > 1 && segments[1] <= first_kept {
        let path = trail.segment_path(segments.remove(0));
        std::fs::remove_file(&path).at(&path)?;
        removed = true;
    }
    if removed {
        trail.fsync_dir()?;
    }
    Ok(())
}

/// Finds the last good record, newest segment first, trimming what a crash
/// tore off; returns the segment to append to and the head.
fn recover(
    trail: &Trail,
    keys: &AuditKeys,
    segments: &mut Vec<u64>,
    anchor_seq: u64,
    anchor_chain: Mac,
) -> Result<(Option<Segment>, ChainHead), AuditError> {
    while let Some(&first) = segments.last() {
        let path = trail.segment_path(first);
        let bytes = std::fs::read(&path).at(&path)?;
        let torn_header = bytes.len() < SEGMENT_HEADER as usize
            && frame::SEGMENT_MAGIC.starts_with(&bytes)
            || bytes.iter().all(|&b| b == 0);
        if torn_header {
            // Created, then the crash: nothing in it was ever acknowledged.
            std::fs::remove_file(&path).at(&path)?;
            trail.fsync_dir()?;
            segments.pop();
            continue;
        }
        if frame::parse_segment_header(&bytes) != Some(first) {
            return Err(AuditError::Damaged(format!(
                "{}: not an audit segment (see `phivault audit verify`)",
                path.display()
            )));
        }
        let body = &bytes[SEGMENT_HEADER as usize..];
        let mut last: Option<(u64, i64, Mac)> = None;
        let mut first_time = None;
        let mut end = 0;
        let mut frames = frame::frames(body);
        for (at, f) in frames.by_ref() {
            let chained =
                last.is_none_or(|(seq, _, chain)| f.seq == seq + 1 && f.chains_from(keys, &chain));
            if !f.authentic(keys) || !chained {
                break;
            }
            first_time.get_or_insert(f.time);
            last = Some((f.seq, f.time, f.chain));
            end = at + f.size;
        }
        let rest = &body[end..];
        let torn = rest.iter().all(|&b| b == 0)
            || (frames.stopped == Some(Stop::Incomplete) && frames.pos == end);
        if !torn {
            tracing::error!(
                "{}: damaged after byte {}; left for `phivault audit verify`, appending to a new segment",
                path.display(),
                end as u64 + SEGMENT_HEADER
            );
        } else if !rest.is_empty() {
            tracing::warn!(
                "{}: {} bytes of a record torn by a crash removed",
                path.display(),
                rest.len()
            );
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            f.set_len(end as u64 + SEGMENT_HEADER).at(&path)?;
            f.sync_data().at(&path)?;
        }
        let Some((seq, _, chain)) = last else {
            if torn {
                std::fs::remove_file(&path).at(&path)?;
                trail.fsync_dir()?;
                segments.pop();
                continue;
            }
            return Err(AuditError::Damaged(format!(
                "{}: no readable record (see `phivault audit verify`)",
                path.display()
            )));
        };
        let head = ChainHead { seq, mac: chain };
        if !torn {
            return Ok((None, head));
        }
        let file = OpenOptions::new().append(true).open(&path).at(&path)?;
        let active = Segment {
            file: Arc::new(file),
            first_seq: first,
            size: end as u64 + SEGMENT_HEADER,
            first_time: first_time.unwrap_or(0),
        };
        return Ok((Some(active), head));
    }
    let head = ChainHead {
        seq: anchor_seq - 1,
        mac: anchor_chain,
    };
    Ok((None, head))
}
