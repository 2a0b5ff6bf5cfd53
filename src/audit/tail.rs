//! Where a writer appends: the active segment and the head of the chain,
//! found at open by recovering from a crash, and kept up with the records
//! other writers of the same trail appended (see `lock`). Every function
//! here that changes the trail runs under the writers' lock, so that a
//! frame it cuts as torn is never one another writer is still writing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;

use super::frame::{self, Mac, Stop, SEGMENT_HEADER};
use super::lock::Held;
use super::trail::Trail;
use super::{AuditError, ChainHead, IoAt};
use crate::crypto::AuditKeys;

/// What a writer knows of the end of the trail.
pub struct Tail {
    /// The segment to append to; None: the next append starts one.
    pub active: Option<Segment>,
    pub head: ChainHead,
    /// The newest segment as the writers' board named it when this
    /// writer last looked: when it names another, some writer rolled.
    pub newest: u64,
}

pub struct Segment {
    /// Read and append: a writer reads back what others appended.
    pub file: Arc<File>,
    pub first_seq: u64,
    /// Bytes this writer has read or written (the header included).
    pub size: u64,
    pub first_time: i64,
}

/// How a run of frames ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// With the bytes.
    Clean,
    /// Inside a frame or in zeros: a write that a crash cut short.
    Torn,
    /// At a frame that does not authenticate or does not chain on.
    Damaged,
}

/// The frames at the start of a segment body that chain on.
struct Scan {
    /// seq, time and chain MAC of the last good frame.
    last: Option<(u64, i64, Mac)>,
    first_time: Option<i64>,
    /// Bytes the good frames take.
    end: usize,
    ended: End,
}

/// Walks the frames of `body`, each of which must authenticate and chain
/// on from the one before; the first one from `prev` (seq, chain MAC) if
/// given, else it is taken as it is.
fn scan(keys: &AuditKeys, body: &[u8], mut prev: Option<(u64, Mac)>) -> Scan {
    let mut s = Scan {
        last: None,
        first_time: None,
        end: 0,
        ended: End::Clean,
    };
    let mut frames = frame::frames(body);
    for (at, f) in frames.by_ref() {
        let chained =
            prev.is_none_or(|(seq, chain)| f.seq == seq + 1 && f.chains_from(keys, &chain));
        if !f.authentic(keys) || !chained {
            break;
        }
        s.first_time.get_or_insert(f.time);
        s.last = Some((f.seq, f.time, f.chain));
        prev = Some((f.seq, f.chain));
        s.end = at + f.size;
    }
    let rest = &body[s.end..];
    s.ended = if rest.is_empty() {
        End::Clean
    } else if rest.iter().all(|&b| b == 0)
        || (frames.stopped == Some(Stop::Incomplete) && frames.pos == s.end)
    {
        End::Torn
    } else {
        End::Damaged
    };
    s
}

/// Whether `bytes` are what a crash left of a segment it was creating:
/// nothing in it was ever acknowledged.
fn torn_header(bytes: &[u8]) -> bool {
    bytes.len() < SEGMENT_HEADER as usize && frame::SEGMENT_MAGIC.starts_with(bytes)
        || bytes.iter().all(|&b| b == 0)
}

fn open_segment(trail: &Trail, first_seq: u64) -> Result<File, AuditError> {
    let path = trail.segment_path(first_seq);
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .at(&path)
}

/// Cuts `file` back to `len` bytes, durably.
fn cut(trail: &Trail, first_seq: u64, file: &File, len: u64) -> Result<(), AuditError> {
    let path = trail.segment_path(first_seq);
    tracing::warn!(
        "{}: a record torn by a crash removed after byte {len}",
        path.display()
    );
    file.set_len(len).at(&path)?;
    file.sync_data().at(&path)
}

fn damaged(trail: &Trail, first_seq: u64, at: u64) {
    tracing::error!(
        "{}: damaged after byte {at}; left for `phivault audit verify`, appending to a new segment",
        trail.segment_path(first_seq).display()
    );
}

fn remove_segment(trail: &Trail, first_seq: u64) -> Result<(), AuditError> {
    let path = trail.segment_path(first_seq);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&path),
        _ => trail.fsync_dir(),
    }
}

/// Starts segment `first_seq` and makes it the one appended to: the
/// records before it are made durable first (a head written later covers
/// them), and other writers are told through the board.
pub fn roll(
    trail: &Trail,
    held: &Held,
    tail: &mut Tail,
    first_seq: u64,
    first_time: i64,
) -> Result<(), AuditError> {
    if let Some(old) = &tail.active {
        let path = trail.segment_path(old.first_seq);
        old.file.sync_data().at(&path)?;
    }
    let path = trail.segment_path(first_seq);
    held.writing();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .at(&path)?;
    let written = file.write_all(&frame::segment_header(first_seq)).at(&path);
    tail.active = Some(Segment {
        file: Arc::new(file),
        first_seq,
        size: SEGMENT_HEADER,
        first_time,
    });
    tail.newest = first_seq;
    written?;
    held.wrote(first_seq, SEGMENT_HEADER);
    trail.fsync_dir()
}

/// Brings `tail` up to the end of the trail, past the records other
/// writers appended since this one last looked; a record torn by a writer
/// that died is cut, a segment it was starting removed. No syscall when
/// the board is as this writer left it.
pub fn catch_up(
    trail: &Trail,
    keys: &AuditKeys,
    held: &Held,
    tail: &mut Tail,
) -> Result<(), AuditError> {
    let seen = held.seen();
    let mine = tail.active.as_ref().map(|s| (s.first_seq, s.size));
    if !seen.under_way && seen.newest == tail.newest && mine == Some((seen.newest, seen.end)) {
        return Ok(());
    }
    let same_newest = seen.newest == tail.newest;
    if let Some(seg) = &tail.active {
        let path = trail.segment_path(seg.first_seq);
        let len = seg.file.metadata().at(&path)?.len();
        if len != seg.size {
            follow_active(trail, keys, tail, len, same_newest)?;
        }
    }
    // A writer that died while starting a segment left no word of it.
    if !same_newest || seen.under_way {
        follow_newer_segments(trail, keys, tail)?;
    }
    tail.newest = tail.active.as_ref().map_or(seen.newest, |s| s.first_seq);
    let end = tail.active.as_ref().map_or(0, |s| s.size);
    held.wrote(tail.newest, end);
    Ok(())
}

/// Reads what others appended to the active segment, up to `len` bytes.
fn follow_active(
    trail: &Trail,
    keys: &AuditKeys,
    tail: &mut Tail,
    len: u64,
    is_newest: bool,
) -> Result<(), AuditError> {
    let seg = tail.active.as_mut().expect("an active segment");
    let path = trail.segment_path(seg.first_seq);
    if len < seg.size {
        // Cut by someone else: not what writers do.
        damaged(trail, seg.first_seq, len);
        tail.active = None;
        return Ok(());
    }
    let mut bytes = vec![0; (len - seg.size) as usize];
    seg.file.read_exact_at(&mut bytes, seg.size).at(&path)?;
    let s = scan(keys, &bytes, Some((tail.head.seq, tail.head.mac)));
    if let Some((seq, _, mac)) = s.last {
        tail.head = ChainHead { seq, mac };
    }
    let good_end = seg.size + s.end as u64;
    match s.ended {
        End::Clean => seg.size = len,
        End::Torn if is_newest => {
            cut(trail, seg.first_seq, &seg.file, good_end)?;
            seg.size = good_end;
        }
        _ => {
            damaged(trail, seg.first_seq, good_end);
            tail.active = None;
        }
    }
    Ok(())
}

/// Follows the segments other writers started after the head, the newest
/// becoming the active one.
fn follow_newer_segments(
    trail: &Trail,
    keys: &AuditKeys,
    tail: &mut Tail,
) -> Result<(), AuditError> {
    let newer: Vec<u64> = trail
        .segments()?
        .into_iter()
        .filter(|&first| first > tail.head.seq)
        .collect();
    for (i, &first) in newer.iter().enumerate() {
        let is_newest = i + 1 == newer.len();
        let path = trail.segment_path(first);
        let bytes = std::fs::read(&path).at(&path)?;
        if is_newest && torn_header(&bytes) {
            // A roll that its writer did not live to finish.
            tail.active = None;
            return remove_segment(trail, first);
        }
        if frame::parse_segment_header(&bytes) != Some(first) || first != tail.head.seq + 1 {
            damaged(trail, first, 0);
            tail.active = None;
            return Ok(());
        }
        let body = &bytes[SEGMENT_HEADER as usize..];
        let s = scan(keys, body, Some((tail.head.seq, tail.head.mac)));
        if let Some((seq, _, mac)) = s.last {
            tail.head = ChainHead { seq, mac };
        }
        let good_end = SEGMENT_HEADER + s.end as u64;
        let file = open_segment(trail, first)?;
        match s.ended {
            End::Clean => {}
            End::Torn if is_newest => cut(trail, first, &file, good_end)?,
            _ => {
                damaged(trail, first, good_end);
                tail.active = None;
                return Ok(());
            }
        }
        tail.active = Some(Segment {
            file: Arc::new(file),
            first_seq: first,
            size: good_end,
            first_time: s.first_time.unwrap_or(0),
        });
    }
    Ok(())
}

/// Removes segments a prune had anchored past but not yet deleted.
pub fn finish_prune(
    trail: &Trail,
    segments: &mut Vec<u64>,
    first_kept: u64,
) -> Result<(), AuditError> {
    let mut removed = false;
    while segments.len() > 1 && segments[1] <= first_kept {
        let path = trail.segment_path(segments.remove(0));
        // A prune running in another process may be removing it too.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&path),
            _ => removed = true,
        }
    }
    if removed {
        trail.fsync_dir()?;
    }
    Ok(())
}

/// Finds the last good record, newest segment first, trimming what a crash
/// tore off; returns the segment to append to and the head. `segments`
/// keeps those left.
pub fn recover(
    trail: &Trail,
    keys: &AuditKeys,
    segments: &mut Vec<u64>,
    anchor_seq: u64,
    anchor_chain: Mac,
) -> Result<(Option<Segment>, ChainHead), AuditError> {
    while let Some(&first) = segments.last() {
        let path = trail.segment_path(first);
        let bytes = std::fs::read(&path).at(&path)?;
        if torn_header(&bytes) {
            remove_segment(trail, first)?;
            segments.pop();
            continue;
        }
        if frame::parse_segment_header(&bytes) != Some(first) {
            return Err(AuditError::Damaged(format!(
                "{}: not an audit segment (see `phivault audit verify`)",
                path.display()
            )));
        }
        let s = scan(keys, &bytes[SEGMENT_HEADER as usize..], None);
        let torn = s.ended != End::Damaged;
        let good_end = SEGMENT_HEADER + s.end as u64;
        let file = open_segment(trail, first)?;
        if !torn {
            damaged(trail, first, good_end);
        } else if s.ended == End::Torn {
            cut(trail, first, &file, good_end)?;
        }
        let Some((seq, _, chain)) = s.last else {
            if torn {
                drop(file);
                remove_segment(trail, first)?;
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
        let active = Segment {
            file: Arc::new(file),
            first_seq: first,
            size: good_end,
            first_time: s.first_time.unwrap_or(0),
        };
        return Ok((Some(active), head));
    }
    let head = ChainHead {
        seq: anchor_seq - 1,
        mac: anchor_chain,
    };
    Ok((None, head))
}
