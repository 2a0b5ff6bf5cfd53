//! Retention: whole segments all of whose records are older than a cutoff
//! go, the oldest first, never the active (newest) one. The new anchor is
//! written first, so the kept trail verifies from it. `prune_plan` says
//! what a prune would remove without changing anything.

use super::frame;
use super::index::Index;
use super::trail::{Anchor, Trail};
use super::{AuditError, AuditPruneReport, AuditReader, IoAt, PrunedSegment};

/// The segments a prune removes and the anchor it leaves.
struct Plan {
    segments: Vec<PrunedSegment>,
    anchor: Option<Anchor>,
    /// The anchor the trail has now.
    first_seq: u64,
}

impl AuditReader {
    /// Deletes the oldest segments whose records are all older than
    /// `older_than_ns`.
    pub fn prune(&self, older_than_ns: i64) -> Result<AuditPruneReport, AuditError> {
        let trail = &self.trail;
        let plan = self.plan(older_than_ns)?;
        if let Some(a) = &plan.anchor {
            trail.write_anchor(&self.keys, a)?;
        }
        let report = plan.report();
        if plan.segments.is_empty() {
            return Ok(report);
        }
        for s in &plan.segments {
            let path = trail.segment_path(s.first_seq);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&path),
                _ => {}
            }
        }
        trail.fsync_dir()?;
        // The index is derived: rows left behind are skipped by queries
        // and dropped by the next prune.
        if let Err(e) = Index::open(trail, true).and_then(|ix| ix.forget_before(report.first_seq)) {
            tracing::warn!("audit index not pruned: {e}");
        }
        Ok(report)
    }

    /// What `prune(older_than_ns)` would remove now; changes nothing.
    pub fn prune_plan(&self, older_than_ns: i64) -> Result<AuditPruneReport, AuditError> {
        Ok(self.plan(older_than_ns)?.report())
    }

    fn plan(&self, older_than_ns: i64) -> Result<Plan, AuditError> {
        let trail = &self.trail;
        let mut plan = Plan {
            segments: Vec::new(),
            anchor: None,
            first_seq: 1,
        };
        if !trail.dir().exists() {
            return Ok(plan);
        }
        let anchor = trail.anchor(&self.keys)?;
        plan.first_seq = anchor.first_seq;
        let segments = trail.segments()?;
        let closed = &segments[..segments.len().saturating_sub(1)];
        for (i, &first) in closed.iter().enumerate() {
            let path = trail.segment_path(first);
            if segments[i + 1] <= anchor.first_seq {
                // Left by a prune interrupted after its anchor was written.
                plan.segments.push(PrunedSegment {
                    first_seq: first,
                    bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                    path,
                    ..PrunedSegment::default()
                });
                continue;
            }
            let Some((segment, last)) = read_summary(trail, first, older_than_ns)? else {
                break;
            };
            plan.segments.push(segment);
            plan.anchor = Some(last);
        }
        Ok(plan)
    }
}

impl Plan {
    fn report(&self) -> AuditPruneReport {
        AuditPruneReport {
            segments: self.segments.len() as u64,
            records: self.segments.iter().map(|s| s.records).sum(),
            first_seq: self.anchor.map_or(self.first_seq, |a| a.first_seq),
            removed: self.segments.clone(),
        }
    }
}

/// Segment `first`'s summary and the anchor after it, if all its records
/// are older than `older_than_ns`; None if it must stay (a damaged segment
/// stays too, for `verify` to name).
fn read_summary(
    trail: &Trail,
    first: u64,
    older_than_ns: i64,
) -> Result<Option<(PrunedSegment, Anchor)>, AuditError> {
    let path = trail.segment_path(first);
    let bytes = std::fs::read(&path).at(&path)?;
    let body = bytes.get(frame::SEGMENT_HEADER as usize..).unwrap_or(&[]);
    let mut frames = frame::frames(body);
    let mut s = PrunedSegment {
        first_seq: first,
        bytes: bytes.len() as u64,
        path,
        ..PrunedSegment::default()
    };
    let (mut newest, mut last) = (i64::MIN, None);
    for (_, f) in frames.by_ref() {
        newest = newest.max(f.time);
        s.first_time_ns.get_or_insert(f.time);
        s.last_time_ns = Some(f.time);
        last = Some(Anchor {
            first_seq: f.seq + 1,
            chain: f.chain,
        });
        s.records += 1;
    }
    match last {
        Some(a) if frames.stopped.is_none() && newest < older_than_ns => Ok(Some((s, a))),
        _ => Ok(None),
    }
}
