//! Retention: whole segments all of whose records are older than a cutoff
//! go, the oldest first, never the active (newest) one. The new anchor is
//! written first, so the kept trail verifies from it.

use super::frame;
use super::index::Index;
use super::trail::Anchor;
use super::{AuditError, AuditPruneReport, AuditReader, IoAt};

impl AuditReader {
    /// Deletes the oldest segments whose records are all older than
    /// `older_than_ns`.
    pub fn prune(&self, older_than_ns: i64) -> Result<AuditPruneReport, AuditError> {
        let trail = &self.trail;
        if !trail.dir().exists() {
            return Ok(AuditPruneReport::default());
        }
        let anchor = trail.anchor(&self.keys)?;
        let segments = trail.segments()?;
        let mut report = AuditPruneReport {
            first_seq: anchor.first_seq,
            ..Default::default()
        };
        let mut gone = Vec::new();
        let mut new_anchor = None;
        let closed = &segments[..segments.len().saturating_sub(1)];
        for (i, &first) in closed.iter().enumerate() {
            if segments[i + 1] <= anchor.first_seq {
                gone.push(first);
                continue;
            }
            let path = trail.segment_path(first);
            let bytes = std::fs::read(&path).at(&path)?;
            let body = bytes.get(frame::SEGMENT_HEADER as usize..).unwrap_or(&[]);
            let mut frames = frame::frames(body);
            let (mut newest, mut last, mut count) = (i64::MIN, None, 0u64);
            for (_, f) in frames.by_ref() {
                newest = newest.max(f.time);
                last = Some((f.seq, f.chain));
                count += 1;
            }
            // A damaged segment stays for `verify` to name.
            let Some((seq, chain)) = last else { break };
            if frames.stopped.is_some() || newest >= older_than_ns {
                break;
            }
            gone.push(first);
            report.records += count;
            new_anchor = Some(Anchor {
                first_seq: seq + 1,
                chain,
            });
        }
        if let Some(a) = new_anchor {
            trail.write_anchor(&self.keys, &a)?;
            report.first_seq = a.first_seq;
        }
        if gone.is_empty() {
            return Ok(report);
        }
        for &first in &gone {
            let path = trail.segment_path(first);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&path),
                _ => {}
            }
        }
        report.segments = gone.len() as u64;
        trail.fsync_dir()?;
        // The index is derived: rows left behind are skipped by queries
        // and dropped by the next prune.
        if let Err(e) = Index::open(trail, true).and_then(|ix| ix.forget_before(report.first_seq)) {
            tracing::warn!("audit index not pruned: {e}");
        }
        Ok(report)
    }
}
