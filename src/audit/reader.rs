//! The read side: queries through the index (brought up to the segments'
//! end first, or the missing tail read in memory where the index cannot be
//! written), and `follow`. Works while another process appends.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;

use super::frame::{self, Parsed, SEGMENT_HEADER};
use super::index::{Index, Place};
use super::trail::Trail;
use super::{AuditError, IoAt, Query, Record};
use crate::crypto::AuditKeys;

/// How often `follow` looks for new records.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct AuditReader {
    pub(super) trail: Trail,
    pub(super) keys: AuditKeys,
    index: Mutex<Option<Index>>,
}

impl AuditReader {
    /// A reader of the trail in `dir`; a missing directory reads as an
    /// empty trail.
    pub fn open(dir: &Path, keys: AuditKeys) -> AuditReader {
        AuditReader {
            trail: Trail::new(dir),
            keys,
            index: Mutex::new(None),
        }
    }

    /// The records matching `q`, ascending by seq (descending with
    /// `newest_first`), at most `q.limit`.
    pub fn query(&self, q: &Query) -> Result<Vec<Record>, AuditError> {
        let mut index = self.index.lock();
        let tail = self.catch_up(&mut index)?;
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut tail: Vec<Record> = tail.into_iter().filter(|r| q.matches(r)).collect();
        let mut out = Vec::new();
        if q.newest_first {
            tail.reverse();
            out.extend(tail.drain(..).take(limit));
        }
        if out.len() < limit {
            if let Some(ix) = index.as_ref() {
                let mut files = HashMap::new();
                ix.places(q, &mut |p| {
                    if let Some(r) = self.read(&mut files, p)? {
                        if q.matches(&r) {
                            out.push(r);
                        }
                    }
                    Ok(out.len() < limit)
                })?;
            }
        }
        let room = limit - out.len().min(limit);
        out.extend(tail.into_iter().take(room));
        Ok(out)
    }

    /// Calls `each` with every record matching `q` (oldest first; its
    /// `limit`, `after_seq` and `newest_first` are ignored), reading
    /// `page` records at a time so that memory stays bounded however many
    /// match. Records appended after the call began are left out.
    pub fn for_each<E: From<AuditError>>(
        &self,
        q: &Query,
        page: usize,
        mut each: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        let newest = Query {
            limit: Some(1),
            newest_first: true,
            ..Query::default()
        };
        let Some(last) = self.query(&newest)?.first().map(|r| r.seq) else {
            return Ok(());
        };
        let mut q = Query {
            after_seq: None,
            limit: Some(page.max(1)),
            newest_first: false,
            ..q.clone()
        };
        if self.index.lock().is_none() {
            // Without an index every query reads the whole trail: once,
            // then, rather than once a page.
            q.limit = None;
        }
        loop {
            let records = self.query(&q)?;
            let full = q.limit == Some(records.len());
            for r in records {
                if r.seq > last {
                    return Ok(());
                }
                q.after_seq = Some(r.seq);
                each(r)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Brings the index up to date; returns the records it could not
    /// hold (all of them when there is no index).
    fn catch_up(&self, index: &mut Option<Index>) -> Result<Vec<Record>, AuditError> {
        if !self.trail.dir().exists() {
            return Ok(Vec::new());
        }
        if index.is_none() {
            *index = Index::open(&self.trail, true)
                .or_else(|_| Index::open(&self.trail, false))
                .ok();
        }
        let Some(ix) = index.as_mut() else {
            let mut all = Vec::new();
            super::index::for_each_new_record(&self.trail, &self.keys, None, |_, r| {
                all.push(r);
                Ok(true)
            })?;
            return Ok(all);
        };
        if ix.writable() {
            // Busy: the writer's indexer holds it for a batch; take turns
            // with it (each batch gets nearer the end) rather than decrypt
            // the backlog here for this query alone.
            loop {
                match ix.catch_up(&self.trail, &self.keys, true, &|| false) {
                    Ok(_) => return Ok(Vec::new()),
                    Err(e) if busy(&e) => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => {
                        tracing::info!("audit index not updated ({e}): reading the tail");
                        break;
                    }
                }
            }
        }
        ix.catch_up(&self.trail, &self.keys, false, &|| false)
    }

    fn read(&self, files: &mut HashMap<u64, File>, p: Place) -> Result<Option<Record>, AuditError> {
        let path = self.trail.segment_path(p.segment);
        let file = match files.entry(p.segment) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match File::open(&path) {
                Ok(f) => v.insert(f),
                // Pruned since the index was read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).at(&path),
            },
        };
        let mut buf = vec![0u8; p.len as usize];
        file.read_exact_at(&mut buf, p.offset).at(&path)?;
        Ok(match frame::parse(&buf) {
            Parsed::Frame(f) if f.seq == p.seq => f.open(&self.keys),
            _ => None,
        })
    }

    /// Calls `each` with every record after `after_seq`, in order, then
    /// with each new one as it is appended, until `each` returns false.
    pub fn follow(
        &self,
        after_seq: u64,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), AuditError> {
        let mut after = after_seq;
        let mut at: Option<(u64, u64)> = None;
        loop {
            let segments = self.trail.segments()?;
            let (segment, offset) = match at {
                Some(p) => p,
                None => {
                    let Some(&s) = segments
                        .iter()
                        .rev()
                        .find(|&&s| s <= after + 1)
                        .or(segments.first())
                    else {
                        std::thread::sleep(FOLLOW_POLL);
                        continue;
                    };
                    (s, SEGMENT_HEADER)
                }
            };
            let path = self.trail.segment_path(segment);
            let bytes = match File::open(&path) {
                Ok(f) => {
                    let len = f.metadata().at(&path)?.len();
                    let mut b = vec![0u8; len.saturating_sub(offset) as usize];
                    f.read_exact_at(&mut b, offset).at(&path)?;
                    b
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    at = None;
                    continue;
                }
                Err(e) => return Err(e).at(&path),
            };
            let mut frames = frame::frames(&bytes);
            for (_, f) in frames.by_ref() {
                if f.seq > after {
                    if let Some(r) = f.open(&self.keys) {
                        after = f.seq;
                        if !each(r) {
                            return Ok(());
                        }
                    }
                }
            }
            let offset = offset + frames.pos as u64;
            let next = segments.iter().find(|&&s| s > segment).copied();
            // The writer finishes a segment before it starts the next: if
            // there is a next one, this one is complete (or damaged).
            at = match next {
                Some(n) => Some((n, SEGMENT_HEADER)),
                None => {
                    std::thread::sleep(FOLLOW_POLL);
                    Some((segment, offset))
                }
            };
        }
    }
}

fn busy(e: &AuditError) -> bool {
    matches!(e, AuditError::Index(e) if matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    ))
}
