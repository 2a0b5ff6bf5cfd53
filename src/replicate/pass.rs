//! One replication pass: what the store holds and the remote does not yet
//! is sealed into objects, each checked once more, uploaded create-only,
//! and committed by a head naming them.
//!
//! Killed anywhere, a rerun loses and duplicates nothing: objects are named
//! by their bytes and sealed deterministically, so one rebuilt is one found
//! already there; the local state moves only once the head is on the remote
//! (`state::StateDir::settle`).

use std::time::{SystemTime, UNIX_EPOCH};

use super::objects::{self, AuditPartRef, AuditRef, CatalogRef, Head, PackRef, Pages};
use super::place::{ObjectKind, ObjectName, ObjectPlace, PutOptions};
use super::state::{Shipped, StateDir, PAGE_HASH_LEN};
use super::ReplicateError;
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
}

/// One pass of `vault` to `place`.
pub struct Pass<'a> {
    pub vault: &'a Vault,
    pub key: &'a EnvelopeKey,
    pub place: &'a dyn ObjectPlace,
    pub state: &'a StateDir,
    pub progress: &'a (dyn Fn(Progress) + Sync),
}

impl Pass<'_> {
    pub fn run(&self) -> Result<PassReport, ReplicateError> {
        self.state.settle(self.place)?;
        let shipped = self.state.load()?;
        let mut next = shipped.clone();
        let mut report = PassReport::default();

        let config_path = self.vault.store_dir().config_path();
        let vault_toml =
            std::fs::read(&config_path).map_err(|e| ReplicateError::io(&config_path, e))?;
        let keys = ObjectName::of(ObjectKind::Keys, &vault_toml);
        if shipped.keys.as_deref() != Some(&keys.hex()) {
            self.upload(&keys, &vault_toml, &mut report)?;
            next.keys = Some(keys.hex());
        }

        let image = self.vault.replication_cut()?;
        let packs = self.ship_packs(&image, &mut next, &mut report)?;
        let catalog = self.ship_pages(&image, &mut next, &mut report)?;
        let audit = self.ship_audit(&mut next, &mut report)?;

        if next == shipped && catalog.is_none() {
            return Ok(report);
        }
        let head = Head {
            format: objects::HEAD_FORMAT,
            seq: shipped.seq + 1,
            prev: shipped.head.clone(),
            time_ns: now_ns(),
            vault_toml: String::from_utf8_lossy(&vault_toml).into_owned(),
            keys: keys.hex(),
            catalog,
            packs,
            audit,
        };
        let payload = objects::encode_head(&head);
        let object = self.seal_checked(objects::KIND_HEAD, &payload, Compress::Yes)?;
        let name = ObjectName::of(ObjectKind::Head, &object);
        next.seq = head.seq;
        next.head = Some(name.hex());
        next.objects = shipped.objects + report.objects + 1;
        next.bytes = shipped.bytes + report.bytes + object.len() as u64;
        self.state.prepare(&next)?;
        self.upload(&name, &object, &mut report)?;
        self.state.commit()?;
        report.head = Some(head.seq);
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
            .filter(|(id, _)| !next.packs.contains(id))
            .collect();
        let total = new.iter().map(|(_, size)| size).sum();
        let mut done = 0;
        (self.progress)(Progress { done, total });
        let mut refs = Vec::with_capacity(new.len());
        for (id, size) in new {
            let path = self.vault.pack_file(id);
            let bytes = std::fs::read(&path).map_err(|e| ReplicateError::io(&path, e))?;
            // A compression or encryption bug must not reach the only good
            // copy: the pack is opened block by block before it leaves.
            self.vault.check_pack_copy(id, &bytes).map_err(|e| {
                ReplicateError::Damaged(format!(
                    "pack {} is damaged, not shipped: {e} (run `phivault verify`)",
                    path.display()
                ))
            })?;
            let payload = objects::encode_pack(id, &bytes);
            drop(bytes);
            let object = self.seal_checked(objects::KIND_PACK, &payload, Compress::No)?;
            let name = ObjectName::of(ObjectKind::Data, &object);
            self.upload(&name, &object, report)?;
            refs.push(PackRef {
                id,
                object: name.hex(),
            });
            next.packs.insert(id);
            done += size;
            (self.progress)(Progress { done, total });
        }
        Ok(refs)
    }

    /// The catalog pages that differ from those shipped.
    fn ship_pages(
        &self,
        image: &CatalogImage,
        next: &mut Shipped,
        report: &mut PassReport,
    ) -> Result<Option<CatalogRef>, ReplicateError> {
        let hashes: Vec<[u8; PAGE_HASH_LEN]> = image
            .pages()
            .map(|p| {
                blake3::hash(p).as_bytes()[..PAGE_HASH_LEN]
                    .try_into()
                    .unwrap()
            })
            .collect();
        let same_size = next.page_size == image.page_size;
        let changed: Vec<(u32, Vec<u8>)> = image
            .pages()
            .zip(&hashes)
            .enumerate()
            .filter(|(i, (_, h))| !same_size || next.page_hashes.get(*i) != Some(*h))
            .map(|(i, (page, _))| (i as u32 + 1, page.to_vec()))
            .collect();
        if changed.is_empty() && same_size && hashes.len() == next.page_hashes.len() {
            return Ok(None);
        }
        let pages = Pages {
            page_size: image.page_size,
            page_count: image.page_count(),
            pages: changed,
        };
        let payload = objects::encode_pages(&pages);
        let object = self.seal_checked(objects::KIND_PAGES, &payload, Compress::Yes)?;
        let name = ObjectName::of(ObjectKind::Data, &object);
        self.upload(&name, &object, report)?;
        next.page_size = image.page_size;
        next.page_hashes = hashes;
        Ok(Some(CatalogRef {
            page_size: pages.page_size,
            page_count: pages.page_count,
            object: name.hex(),
        }))
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
        let mut parts = Vec::new();
        for &first in &segments {
            let from = next.audit.get(&first).copied().unwrap_or(0);
            let bytes = trail.whole_frames_from(first, from)?;
            if bytes.is_empty() {
                continue;
            }
            let payload = objects::encode_audit_part(first, from, &bytes);
            let object = self.seal_checked(objects::KIND_AUDIT, &payload, Compress::No)?;
            let name = ObjectName::of(ObjectKind::Data, &object);
            self.upload(&name, &object, report)?;
            parts.push(AuditPartRef {
                segment: first,
                offset: from,
                object: name.hex(),
            });
            next.audit.insert(first, from + bytes.len() as u64);
        }
        next.audit.retain(|first, _| segments.contains(first));
        next.audit_anchor = anchor.clone();
        next.audit_head = head.clone();
        Ok(AuditRef {
            anchor,
            head,
            segments,
            parts,
        })
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
        name: &ObjectName,
        bytes: &[u8],
        report: &mut PassReport,
    ) -> Result<(), ReplicateError> {
        if let super::place::PutOutcome::Created =
            self.place.put_new(name, bytes, &PutOptions::default())?
        {
            report.objects += 1;
            report.bytes += bytes.len() as u64;
        }
        Ok(())
    }
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
