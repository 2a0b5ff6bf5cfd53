//! What the remote keeps beyond a pass's own objects: when a head is a
//! snapshot, which heads and pages compaction deletes, when packs pruning
//! removed leave, and how a state that does not know the remote's history
//! (lost, or from before snapshots) learns it from the chain.

use super::objects::Head;
use super::pass::Pass;
use super::place::{ObjectKind, ObjectName, PlaceError};
use super::state::{HeadEntry, Shipped};
use super::{PassReport, ReplicateError};
use crate::catalog::CatalogImage;

/// A snapshot at least this often while the store changes, and after at
/// most this many heads (a day of passes a minute apart).
const SNAPSHOT_EVERY_NS: i64 = 24 * 3600 * 1_000_000_000;
const SNAPSHOT_EVERY_HEADS: usize = 1440;

impl Pass<'_> {
    /// Whether this pass's head is to be a snapshot: the first one, or
    /// when the pages shipped since the last reach the catalog's size (a
    /// recovery would replay as much as a snapshot holds), or after
    /// `SNAPSHOT_EVERY_HEADS` heads or `SNAPSHOT_EVERY_NS` of time. Like
    /// Litestream's snapshots, they bound what a recovery reads and let
    /// compaction delete the heads and pages before them.
    pub(super) fn base_due(&self, shipped: &Shipped, page_count: u32) -> bool {
        let Some(last) = shipped.heads.iter().rposition(|h| h.base) else {
            return true;
        };
        let since = &shipped.heads[last + 1..];
        let pages: u64 = since.iter().map(|h| h.pages).sum();
        let age = self.vault.clock_ns() - shipped.heads[last].time_ns;
        pages >= page_count as u64
            || since.len() >= SNAPSHOT_EVERY_HEADS
            || age >= SNAPSHOT_EVERY_NS
    }

    /// After a pass: deletes what the remote no longer needs to keep
    /// (`drop_packs`, `compact`), with one read and at most one write of
    /// the state.
    pub(super) fn tidy_remote(
        &self,
        image: &CatalogImage,
        report: &mut PassReport,
    ) -> Result<(), ReplicateError> {
        let mut state = self.state.load()?;
        let before = state.clone();
        let now = self.vault.clock_ns();
        let hold = self.vault.replica_hold_ns();
        let tidied = self
            .drop_packs(&mut state, image, now, hold, report)
            .and_then(|()| self.compact(&mut state, now - hold));
        if state != before {
            self.state.save(&state)?;
        }
        tidied
    }

    /// Deletes from the remote the packs pruning removed here, once the
    /// retention lock has passed since a pass first saw them gone: until
    /// then, the remote still holds what a compromised or mistaken prune
    /// took away.
    fn drop_packs(
        &self,
        state: &mut Shipped,
        image: &CatalogImage,
        now: i64,
        hold: i64,
        report: &mut PassReport,
    ) -> Result<(), ReplicateError> {
        for id in &image.removed_packs {
            if state.packs.contains_key(id) {
                state.dropped.entry(*id).or_insert(now);
            }
        }
        let due: Vec<i64> = state
            .dropped
            .iter()
            .filter(|&(_, &since)| now.saturating_sub(since) >= hold)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(hex) = state.packs.get(&id) {
                let name = object_name(ObjectKind::Data, hex)?;
                match self.place.delete(&name) {
                    Ok(()) => report.deleted += 1,
                    // Object Lock by the remote's clock, or a lock period
                    // made longer since the upload: a later pass retries.
                    Err(PlaceError::Locked { until, .. }) => {
                        tracing::info!("{name}: locked on the remote until {until}; kept");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            state.packs.remove(&id);
            state.dropped.remove(&id);
        }
        Ok(())
    }

    /// Deletes the heads, and the catalog pages only they name, that come
    /// before the newest snapshot made at or before `cutoff` (a replica
    /// hold ago: the retention lock and a day): every pass since then
    /// still recovers (`recover --at`), from that snapshot. Audit parts and
    /// packs are not touched here. Newest first, so that a kill midway
    /// leaves a chain that ends at the snapshot and old heads that no chain
    /// reaches.
    fn compact(&self, state: &mut Shipped, cutoff: i64) -> Result<(), ReplicateError> {
        let keep = match state
            .heads
            .iter()
            .rposition(|h| h.base && h.time_ns <= cutoff)
        {
            Some(keep) if keep > 0 => keep,
            _ => return Ok(()),
        };
        let kept_pages: std::collections::HashSet<&String> = state.heads[keep..]
            .iter()
            .filter_map(|h| h.pages_object.as_ref())
            .collect();
        for h in state.heads[..keep].iter().rev() {
            let mut names = vec![object_name(ObjectKind::Head, &h.name)?];
            if let Some(pages) = h.pages_object.as_ref().filter(|p| !kept_pages.contains(p)) {
                names.push(object_name(ObjectKind::Data, pages)?);
            }
            for name in names {
                match self.place.delete(&name) {
                    Ok(()) => {}
                    Err(PlaceError::Locked { until, .. }) => {
                        tracing::info!("{name}: locked on the remote until {until}; kept");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        state.heads.drain(..keep);
        Ok(())
    }

    /// Fills in what a state written before snapshots lacks (the heads the
    /// remote keeps, the audit parts of the live segments) from the
    /// remote's chain: once, after an upgrade.
    pub(super) fn learn_history(&self, shipped: &mut Shipped) -> Result<(), ReplicateError> {
        match shipped.seq {
            0 => {
                shipped.heads.clear();
                shipped.audit_parts.clear();
                shipped.history_known = true;
            }
            _ => fill_history(shipped, &super::recover::head_chain(self.place, self.key)?),
        }
        Ok(())
    }

    /// A store that knows nothing of the remote (its state lost, or a store
    /// recovered from this remote) continues the remote's chain of heads
    /// rather than start a second one: it takes the newest head as its
    /// last, the packs the chain holds as shipped, and its heads as the
    /// history. The catalog and the audit trail then go whole in the next
    /// head.
    pub(super) fn adopt_remote_chain(&self, shipped: &mut Shipped) -> Result<(), ReplicateError> {
        if self.place.list(ObjectKind::Head)?.is_empty() {
            return Ok(());
        }
        let chain = super::recover::head_chain(self.place, self.key)?;
        let (name, newest) = chain.last().expect("a chain has a head");
        shipped.seq = newest.seq;
        shipped.head = Some(name.hex());
        shipped.packs = super::recover::shipped_packs(&chain)?
            .into_iter()
            .map(|(id, object)| (id, object.hex()))
            .collect();
        fill_history(shipped, &chain);
        tracing::info!(
            "{}: continuing its chain of passes from pass {}",
            self.place.describe(),
            newest.seq
        );
        Ok(())
    }
}

/// The heads the remote keeps and the audit parts of the live segments, as
/// `chain` (the remote's, from its first kept head) records them. Heads
/// written before snapshots did not count their pages: 0.
fn fill_history(shipped: &mut Shipped, chain: &[(ObjectName, Head)]) {
    shipped.heads.clear();
    shipped.audit_parts.clear();
    for (name, head) in chain {
        shipped.heads.push(HeadEntry {
            seq: head.seq,
            name: name.hex(),
            time_ns: head.time_ns,
            base: head.base || head.prev.is_none(),
            pages_object: head.catalog.as_ref().map(|c| c.object.clone()),
            pages: 0,
        });
        if head.base {
            shipped.audit_parts.clear();
        }
        shipped.audit_parts.extend(
            head.audit
                .parts
                .iter()
                .filter(|p| shipped.audit.contains_key(&p.segment))
                .cloned(),
        );
    }
    shipped.history_known = true;
}

fn object_name(kind: ObjectKind, hex: &str) -> Result<ObjectName, ReplicateError> {
    ObjectName::from_hex(kind, hex).map_err(|e| ReplicateError::State(e.to_string()))
}
