//! One replication pass: what the store holds and the remote does not yet
//! is sealed into objects, each checked once more, uploaded create-only,
//! and committed by a head naming them.
//!
//! Killed anywhere, a rerun loses and duplicates nothing: objects are named
//! by their bytes and sealed deterministically, so one rebuilt is one found
//! already there; the local state moves only once the head is on the remote
//! (`state::StateDir::settle`).

use super::objects::{self, AuditPartRef, AuditRef, CatalogRef, Head, PackRef, Pages};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::place::{NamedBytes, ObjectKind, ObjectPlace, PutOptions, PutOutcome};
use super::state::{page_hashes, HeadEntry, Shipped, StateDir};
use super::{pack_object, ReplicateError};
use crate::audit::ship::TrailFiles;
use crate::catalog::CatalogImage;
use crate::crypto::{Compress, EnvelopeKey};
use crate::vault::Vault;

/// Bytes done of bytes to do, for a progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// What a pass shipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Objects and bytes uploaded (not those found already there).
    pub objects: u64,
    pub bytes: u64,
    /// The seq of the head it wrote; none if nothing had changed.
    pub head: Option<u64>,
    /// Packs deleted: those pruning removed a retention lock ago.
    pub deleted: u64,
}

/// One pass of `vault` to `place`.
pub struct Pass<'a> {
    pub vault: &'a Vault,
    pub key: &'a EnvelopeKey,
    pub place: &'a dyn ObjectPlace,
    pub state: &'a StateDir,
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// Set when the pass must end early (an unmount): it stops before its
    /// next pack, records nothing, and the next pass finds what this one
    /// uploaded already there.
    pub stop: Option<&'a AtomicBool>,
}

impl Pass<'_> {
    pub fn run(&self) -> Result<PassReport, ReplicateError> {
        self.state.settle(self.place)?;
        let loaded = self.state.load()?;
        let mut shipped = loaded.clone();
        if shipped.head.is_none() {
            self.adopt_remote_chain(&mut shipped)?;
        }
        if !shipped.history_known {
            self.learn_history(&mut shipped)?;
        }
        if shipped != loaded {
            self.state.save(&shipped)?;
        }
        let mut next = shipped.clone();
        let mut report = PassReport::default();

        let config_path = self.vault.store_dir().config_path();
        let vault_toml =
            std::fs::read(&config_path).map_err(|e| ReplicateError::io(&config_path, e))?;
        let keys_object = NamedBytes::new(ObjectKind::Keys, &vault_toml);
        let keys = *keys_object.name();
        if shipped.keys.as_deref() != Some(&keys.hex()) {
            self.upload(keys_object, &mut report)?;
            next.keys = Some(keys.hex());
        }

        let image = self.vault.replication_cut()?;
        let base = self.base_due(&shipped, image.page_count());
        let mut packs = self.ship_packs(&image, &mut next, &mut report)?;
        let (catalog, pages) = self.ship_pages(&image, &mut next, base, &mut report)?;
        let mut audit = self.ship_audit(&mut next, &mut report)?;

        if next == shipped && catalog.is_none() {
            self.tidy_remote(&image, &mut report)?;
            return Ok(report);
        }
        if base {
            packs = next
                .packs
                .iter()
                .map(|(&id, object)| PackRef {
                    id,
                    object: object.clone(),
                })
                .collect();
            audit.parts = next.audit_parts.clone();
        }
        let head = Head {
            format: objects::HEAD_FORMAT,
            seq: shipped.seq + 1,
            prev: shipped.head.clone(),
            base,
            time_ns: self.vault.clock_ns(),
            vault_toml: String::from_utf8_lossy(&vault_toml).into_owned(),
            keys: keys.hex(),
            catalog,
            packs,
            audit,
        };
        self.check_stop()?;
        let payload = objects::encode_head(&head);
        let object = self.seal_checked(objects::KIND_HEAD, &payload, Compress::Yes)?;
        let named = NamedBytes::new(ObjectKind::Head, &object);
        let name = *named.name();
        next.seq = head.seq;
        next.head = Some(name.hex());
        next.heads.push(HeadEntry {
            seq: head.seq,
            name: name.hex(),
            time_ns: head.time_ns,
            base,
            pages_object: head.catalog.as_ref().map(|c| c.object.clone()),
            pages,
        });
        next.objects = shipped.objects + report.objects + 1;
        next.bytes = shipped.bytes + report.bytes + object.len() as u64;
        self.state.prepare(&next)?;
        self.upload(named, &mut report)?;
        self.state.commit()?;
        report.head = Some(head.seq);
        self.tidy_remote(&image, &mut report)?;
        Ok(report)
    }

    fn ship_packs(
        &self,
        image: &CatalogImage,
        next: &mut Shipped,
        report: &mut PassReport,
    ) -> Result<Vec<PackRef>, ReplicateError> {
        let new: Vec<(i64, u64)> = image
            .sealed_packs
            .iter()
            .copied()
            .filter(|(id, _)| !next.packs.contains_key(id))
            .collect();
        let total = new.iter().map(|(_, size)| size).sum();
        let done = AtomicU64::new(0);
        (self.progress)(Progress { done: 0, total });
        // Packs are independent: as many at once as there are cores, each
        // read, checked, sealed and uploaded by one.
        let shipped: Vec<(PackRef, Option<u64>)> =
            super::with_concurrency(self.place.concurrency(), || {
                new.par_iter()
                    .with_max_len(1)
                    .map(|&(id, size)| {
                        let shipped = self.ship_pack(id)?;
                        let done = done.fetch_add(size, Ordering::Relaxed) + size;
                        (self.progress)(Progress { done, total });
                        Ok(shipped)
                    })
                    .collect::<Result<_, ReplicateError>>()
            })?;
        let mut refs = Vec::with_capacity(shipped.len());
        for (pack, created) in shipped {
            report.count(created);
            next.packs.insert(pack.id, pack.object.clone());
            refs.push(pack);
        }
        refs.sort_by_key(|p| p.id);
        Ok(refs)
    }

    fn ship_pack(&self, id: i64) -> Result<(PackRef, Option<u64>), ReplicateError> {
        self.check_stop()?;
        let path = self.vault.pack_file(id);
        let bytes = std::fs::read(&path).map_err(|e| ReplicateError::io(&path, e))?;
        let damaged = |e: &dyn std::fmt::Display| {
            ReplicateError::Damaged(format!(
                "pack {} is damaged, not shipped: {e} (run `phivault verify`)",
                path.display()
            ))
        };
        let object = pack_object::encode(self.key, id, &bytes).map_err(|e| damaged(&e))?;
        // A compression or encryption bug must not reach the only good
        // copy: what leaves is decoded again, must give the pack back byte
        // for byte, and every block of it must open and match its id.
        if !pack_object::decodes_to(self.key, &object, id, &bytes)? {
            return Err(ReplicateError::Damaged(format!(
                "pack {}: its object does not decode to it; nothing was shipped",
                path.display()
            )));
        }
        // The object gives back exactly these bytes, so opening them opens
        // what the object carries.
        self.vault
            .check_pack_copy(id, &bytes)
            .map_err(|e| damaged(&e))?;
        drop(bytes);
        let named = NamedBytes::new(ObjectKind::Data, &object);
        let name = *named.name();
        let created = self.put(named)?;
        Ok((
            PackRef {
                id,
                object: name.hex(),
            },
            created,
        ))
    }

    /// The catalog pages that differ from those shipped (all of them for a
    /// snapshot), and how many that is.
    fn ship_pages(
        &self,
        image: &CatalogImage,
        next: &mut Shipped,
        base: bool,
        report: &mut PassReport,
    ) -> Result<(Option<CatalogRef>, u64), ReplicateError> {
        let hashes = page_hashes(image).map_err(crate::vault::VaultError::from)?;
        if !base && next.holds_catalog(image.page_size, &hashes) {
            return Ok((None, 0));
        }
        let pgnos: Vec<u32> = match base {
            true => (1..=image.page_count()).collect(),
            false => next
                .changed_pages(image.page_size, &hashes)
                .into_iter()
                .map(|i| i as u32 + 1)
                .collect(),
        };
        let changed = image
            .read_pages(&pgnos)
            .map_err(crate::vault::VaultError::from)?;
        let count = changed.len() as u64;
        let pages = Pages {
            page_size: image.page_size,
            page_count: image.page_count(),
            pages: changed,
        };
        let payload = objects::encode_pages(&pages);
        let object = self.seal_checked(objects::KIND_PAGES, &payload, Compress::Yes)?;
        let named = NamedBytes::new(ObjectKind::Data, &object);
        let name = *named.name();
        self.upload(named, report)?;
        next.page_size = image.page_size;
        next.page_hashes = hashes;
        let catalog = CatalogRef {
            page_size: pages.page_size,
            page_count: pages.page_count,
            object: name.hex(),
        };
        Ok((Some(catalog), count))
    }

    /// The anchor and head first, then the frames: the shipped trail then
    /// always reaches at least as far as the shipped head says.
    fn ship_audit(
        &self,
        next: &mut Shipped,
        report: &mut PassReport,
    ) -> Result<AuditRef, ReplicateError> {
        let trail = TrailFiles::new(self.vault.audit_dir());
        let read_hex = |path: std::path::PathBuf| match std::fs::read(&path) {
            Ok(b) => Ok(Some(hex::encode(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReplicateError::io(&path, e)),
        };
        let anchor = read_hex(trail.anchor_path())?;
        let head = read_hex(trail.head_path())?;
        let segments = trail.segments()?;
        check_not_cut(&trail, &segments, next)?;
        let mut parts = Vec::new();
        for &first in &segments {
            let from = next.audit.get(&first).copied().unwrap_or(0);
            let bytes = trail.whole_frames_from(first, from)?;
            if bytes.is_empty() {
                continue;
            }
            let payload = objects::encode_audit_part(first, from, &bytes);
            let object = self.seal_checked(objects::KIND_AUDIT, &payload, Compress::No)?;
            let named = NamedBytes::new(ObjectKind::Data, &object);
            let name = *named.name();
            self.upload(named, report)?;
            let part = AuditPartRef {
                segment: first,
                offset: from,
                object: name.hex(),
            };
            next.audit_parts.push(part.clone());
            parts.push(part);
            next.audit.insert(first, from + bytes.len() as u64);
        }
        next.audit.retain(|first, _| segments.contains(first));
        next.audit_parts.retain(|p| segments.contains(&p.segment));
        next.audit_anchor = anchor.clone();
        next.audit_head = head.clone();
        Ok(AuditRef {
            anchor,
            head,
            segments,
            parts,
        })
    }

    fn check_stop(&self) -> Result<(), ReplicateError> {
        match self.stop {
            Some(stop) if stop.load(Ordering::Relaxed) => Err(ReplicateError::Stopped),
            _ => Ok(()),
        }
    }

    /// Seals `payload` and opens the result again: what leaves is known to
    /// give `payload` back.
    fn seal_checked(
        &self,
        kind: u8,
        payload: &[u8],
        compress: Compress,
    ) -> Result<Vec<u8>, ReplicateError> {
        let object = self.key.seal(kind, payload, compress);
        if self.key.open(kind, &object)? != payload {
            return Err(ReplicateError::Damaged(
                "an object did not open to what was sealed; nothing was shipped".into(),
            ));
        }
        Ok(object)
    }

    fn upload(
        &self,
        object: NamedBytes<'_>,
        report: &mut PassReport,
    ) -> Result<(), ReplicateError> {
        report.count(self.put(object)?);
        Ok(())
    }

    /// Stores the object, locked on a remote with Object Lock for as long
    /// as the replica keeps what pruning removed; its size if this call
    /// created it.
    fn put(&self, object: NamedBytes<'_>) -> Result<Option<u64>, ReplicateError> {
        let options = PutOptions {
            retain_until: self.place.locks_objects().then(|| {
                let until = self.vault.clock_ns() + self.vault.replica_hold_ns();
                jiff::Timestamp::from_nanosecond(until as i128).unwrap_or(jiff::Timestamp::MAX)
            }),
        };
        Ok(match self.place.put_new(object, &options)? {
            PutOutcome::Created => Some(object.bytes().len() as u64),
            PutOutcome::AlreadyThere => None,
        })
    }
}

impl PassReport {
    fn count(&mut self, created: Option<u64>) {
        if let Some(bytes) = created {
            self.objects += 1;
            self.bytes += bytes;
        }
    }
}

/// Refuses to go on from a trail shorter than what the remote holds: a
/// segment cut below what was shipped, or one gone that pruning (which
/// removes the oldest first, and never the newest) would have kept. The remote keeps its copy
/// and the pass ships nothing over it; a person must look.
fn check_not_cut(
    trail: &TrailFiles,
    segments: &[u64],
    shipped: &Shipped,
) -> Result<(), ReplicateError> {
    // Audit prune removes the oldest segments and never the newest one.
    let oldest = segments.first().copied().unwrap_or(0);
    for (&first, &len) in &shipped.audit {
        let path = trail.segment_path(first);
        let now = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && first < oldest => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ReplicateError::io(&path, e)),
        };
        if now < len {
            return Err(ReplicateError::Damaged(format!(
                "the audit trail was cut: {} holds {now} bytes, the remote {len}; records were \
                 removed here after they were replicated (`phivault audit verify`); nothing \
                 more is shipped until this is resolved",
                path.display()
            )));
        }
    }
    Ok(())
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
