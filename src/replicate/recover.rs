//! A whole store rebuilt from a remote alone, with a passphrase: the key
//! slots unlock the master key, the chain of heads says what was shipped,
//! and the catalog pages, packs and audit trail are put back where they
//! were.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::objects::{self, Head};
use super::pass::Progress;
use super::place::{ObjectKind, ObjectName, ObjectPlace};
use super::ReplicateError;
use crate::audit::ship::TrailFiles;
use crate::crypto::{unlock, EnvelopeKey, MasterKey, Passphrase};
use crate::store::{make_private_dir, pack_path_in, PackId, StoreDir, VaultConfig};

/// What a recovery put back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovered {
    pub heads: u64,
    pub packs: u64,
    pub bytes: u64,
    pub audit_segments: u64,
}

/// Unlocks the remote: the master key and the store's settings of the
/// newest keys object the passphrase opens.
pub fn unlock_remote(
    place: &dyn ObjectPlace,
    pass: &Passphrase,
) -> Result<(MasterKey, VaultConfig), ReplicateError> {
    let keys = place.list(ObjectKind::Keys)?;
    if keys.is_empty() {
        return Err(ReplicateError::State(format!(
            "{} holds no phivault replica (no keys/ objects)",
            place.describe()
        )));
    }
    let mut last_error = None;
    for (name, _) in keys {
        let bytes = place.get(&name)?;
        let config: VaultConfig = toml::from_str(&String::from_utf8_lossy(&bytes))
            .map_err(|e| ReplicateError::Damaged(format!("{}: {e}", name.key())))?;
        match unlock(&config.slots, pass) {
            Ok((master, _)) => return Ok((master, config)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one keys object").into())
}

/// The heads from the first the remote keeps to the newest, checked to
/// form one chain: it begins with the first head, or with a snapshot
/// whose earlier heads compaction deleted (`Head::base`).
pub fn head_chain(
    place: &dyn ObjectPlace,
    key: &EnvelopeKey,
) -> Result<Vec<(ObjectName, Head)>, ReplicateError> {
    let mut by_name = HashMap::new();
    for (name, _) in place.list(ObjectKind::Head)? {
        let head = objects::decode_head(&key.open(objects::KIND_HEAD, &place.get(&name)?)?)?;
        by_name.insert(name.hex(), (name, head));
    }
    let Some(newest) = by_name
        .values()
        .max_by_key(|(name, h)| (h.seq, name.hex()))
        .map(|(n, _)| n.hex())
    else {
        return Err(ReplicateError::State(format!(
            "{} holds no head: nothing was ever replicated there completely",
            place.describe()
        )));
    };
    let mut chain = Vec::new();
    let mut cursor = Some(newest);
    while let Some(hex) = cursor {
        let Some((name, head)) = by_name.remove(&hex) else {
            if chain
                .last()
                .is_some_and(|(_, h): &(ObjectName, Head)| h.base)
            {
                break;
            }
            return Err(ReplicateError::Damaged(format!(
                "head {hex} is missing on {}: the chain of passes is broken",
                place.describe()
            )));
        };
        let expected = chain
            .last()
            .map_or(head.seq, |(_, h): &(ObjectName, Head)| h.seq - 1);
        if head.seq != expected {
            return Err(ReplicateError::Damaged(format!(
                "head {hex} has seq {} where {expected} was expected",
                head.seq
            )));
        }
        cursor = head.prev.clone();
        chain.push((name, head));
    }
    if chain.last().is_some_and(|(_, h)| h.seq != 1 && !h.base) {
        return Err(ReplicateError::Damaged("the first head is missing".into()));
    }
    chain.reverse();
    Ok(chain)
}

/// Rebuilds the store in `dest` (missing or empty) from `place`: as of its
/// last pass, or of the last pass at or before `at` (ns since the epoch).
pub fn recover(
    place: &dyn ObjectPlace,
    pass: &Passphrase,
    dest: &StoreDir,
    at: Option<i64>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Recovered, ReplicateError> {
    let (master, config) = unlock_remote(place, pass)?;
    let key = master.envelope_key(&config.vault_id);
    let mut chain = head_chain(place, &key)?;
    if let Some(at) = at {
        let oldest = chain[0].1.time_ns;
        chain.retain(|(_, h)| h.time_ns <= at);
        if chain.is_empty() {
            let oldest = jiff::Timestamp::from_nanosecond(oldest as i128)
                .map_or_else(|_| oldest.to_string(), |t| t.to_string());
            return Err(ReplicateError::State(format!(
                "{} holds no pass made at or before that time: the oldest it keeps is from \
                 {oldest}",
                place.describe()
            )));
        }
    }
    // Replay from the last snapshot: it holds all that came before.
    let start = chain
        .iter()
        .rposition(|(_, h)| h.base || h.prev.is_none())
        .unwrap_or(0);
    chain.drain(..start);
    dest.create_root().map_err(ReplicateError::Store)?;
    let mut done = Recovered {
        heads: chain.len() as u64,
        ..Default::default()
    };

    let catalog_path = dest.catalog_path();
    let catalog = create_private(&catalog_path)?;
    let trail = TrailFiles::new(dest.root().join("audit"));
    let mut packs = HashMap::new();
    for (_, head) in &chain {
        if let Some(c) = &head.catalog {
            let name = ObjectName::from_hex(ObjectKind::Data, &c.object)
                .map_err(|e| ReplicateError::Damaged(e.to_string()))?;
            let pages = objects::decode_pages(&key.open(objects::KIND_PAGES, &place.get(&name)?)?)?;
            for (pgno, page) in &pages.pages {
                let at = (*pgno as u64 - 1) * pages.page_size as u64;
                catalog
                    .write_all_at(page, at)
                    .map_err(|e| ReplicateError::io(&catalog_path, e))?;
            }
            catalog
                .set_len(pages.page_count as u64 * pages.page_size as u64)
                .map_err(|e| ReplicateError::io(&catalog_path, e))?;
        }
        for p in &head.packs {
            packs.insert(p.id, p.object.clone());
        }
        for part in &head.audit.parts {
            make_private_dir(trail.dir()).map_err(ReplicateError::Store)?;
            let name = ObjectName::from_hex(ObjectKind::Data, &part.object)
                .map_err(|e| ReplicateError::Damaged(e.to_string()))?;
            let payload = key.open(objects::KIND_AUDIT, &place.get(&name)?)?;
            let (segment, offset, bytes) = objects::decode_audit_part(&payload)?;
            if (segment, offset) != (part.segment, part.offset) {
                return Err(ReplicateError::Damaged(format!(
                    "audit part {} is not the one its head names",
                    part.object
                )));
            }
            let path = trail.segment_path(segment);
            let f = open_private(&path)?;
            f.write_all_at(bytes, offset)
                .map_err(|e| ReplicateError::io(&path, e))?;
            f.sync_all().map_err(|e| ReplicateError::io(&path, e))?;
        }
    }
    catalog
        .sync_all()
        .map_err(|e| ReplicateError::io(&catalog_path, e))?;
    drop(catalog);

    let (_, newest) = chain.last().expect("a chain has a head");
    done.audit_segments = restore_trail_files(&trail, newest)?;
    done.bytes = restore_packs(place, &key, dest, &packs, &mut done, progress)?;
    crate::store::write_atomic(&dest.config_path(), newest.vault_toml.as_bytes())
        .map_err(ReplicateError::Store)?;
    Ok(done)
}

/// The anchor and head of the newest pass; segments pruned before it go.
fn restore_trail_files(trail: &TrailFiles, newest: &Head) -> Result<u64, ReplicateError> {
    let audit = &newest.audit;
    if audit.anchor.is_none() && audit.head.is_none() && audit.segments.is_empty() {
        return Ok(0);
    }
    make_private_dir(trail.dir()).map_err(ReplicateError::Store)?;
    for (hex, path) in [
        (&audit.anchor, trail.anchor_path()),
        (&audit.head, trail.head_path()),
    ] {
        if let Some(hex) = hex {
            let bytes = hex::decode(hex).map_err(|e| ReplicateError::Damaged(e.to_string()))?;
            crate::store::write_atomic(&path, &bytes).map_err(ReplicateError::Store)?;
        }
    }
    let mut kept = 0;
    for first in trail.segments()? {
        if audit.segments.contains(&first) {
            kept += 1;
        } else {
            let path = trail.segment_path(first);
            std::fs::remove_file(&path).map_err(|e| ReplicateError::io(&path, e))?;
        }
    }
    Ok(kept)
}

/// Every pack the recovered catalog names, fetched and put in place.
fn restore_packs(
    place: &dyn ObjectPlace,
    key: &EnvelopeKey,
    dest: &StoreDir,
    shipped: &HashMap<i64, String>,
    done: &mut Recovered,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<u64, ReplicateError> {
    let needed = packs_named_by(&dest.catalog_path())?;
    let total = needed.iter().map(|(_, size)| size).sum();
    let bytes_done = AtomicU64::new(0);
    progress(Progress { done: 0, total });
    // As many packs at a time as the place moves well (one per core for a
    // disk): fetch, decode, write, fsync.
    super::with_concurrency(place.concurrency(), || {
        needed
            .par_iter()
            .with_max_len(1)
            .try_for_each(|&(id, size)| {
                restore_pack(place, key, dest, shipped, id)?;
                let done = bytes_done.fetch_add(size, Ordering::Relaxed) + size;
                progress(Progress { done, total });
                Ok::<_, ReplicateError>(())
            })
    })?;
    done.packs = needed.len() as u64;
    Ok(bytes_done.into_inner())
}

/// Every pack the remote's heads name, with the object holding it.
pub fn shipped_packs(
    chain: &[(ObjectName, Head)],
) -> Result<HashMap<i64, ObjectName>, ReplicateError> {
    let mut packs = HashMap::new();
    for (_, head) in chain {
        for p in &head.packs {
            let name = ObjectName::from_hex(ObjectKind::Data, &p.object)
                .map_err(|e| ReplicateError::Damaged(e.to_string()))?;
            packs.insert(p.id, name);
        }
    }
    Ok(packs)
}

/// Sealed pack `id`'s bytes, from object `name` of the remote.
pub fn fetch_pack(
    place: &dyn ObjectPlace,
    key: &EnvelopeKey,
    id: i64,
    name: &ObjectName,
) -> Result<Vec<u8>, ReplicateError> {
    let (got, bytes) = super::pack_object::decode(key, &place.get(name)?)?;
    if got != id {
        return Err(ReplicateError::Damaged(format!(
            "object {} holds pack {} where pack {} was expected",
            name.hex(),
            PackId::from_i64(got),
            PackId::from_i64(id)
        )));
    }
    Ok(bytes)
}

fn restore_pack(
    place: &dyn ObjectPlace,
    key: &EnvelopeKey,
    dest: &StoreDir,
    shipped: &HashMap<i64, String>,
    id: i64,
) -> Result<(), ReplicateError> {
    let object = shipped.get(&id).ok_or_else(|| {
        ReplicateError::Damaged(format!(
            "pack {} is named by the catalog but was never shipped",
            PackId::from_i64(id)
        ))
    })?;
    let name = ObjectName::from_hex(ObjectKind::Data, object)
        .map_err(|e| ReplicateError::Damaged(e.to_string()))?;
    let bytes = fetch_pack(place, key, id, &name)?;
    let path = pack_path_in(&dest.packs_dir(), PackId::from_i64(id));
    make_private_dir(path.parent().expect("a pack has a folder")).map_err(ReplicateError::Store)?;
    let f = create_private(&path)?;
    f.write_all_at(&bytes, 0)
        .map_err(|e| ReplicateError::io(&path, e))?;
    f.sync_all().map_err(|e| ReplicateError::io(&path, e))
}

fn packs_named_by(catalog: &Path) -> Result<Vec<(i64, u64)>, ReplicateError> {
    let conn = rusqlite::Connection::open_with_flags(
        catalog,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| ReplicateError::Damaged(format!("recovered catalog: {e}")))?;
    let mut st = conn
        .prepare("SELECT id, size FROM packs ORDER BY id")
        .map_err(|e| ReplicateError::Damaged(format!("recovered catalog: {e}")))?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| ReplicateError::Damaged(format!("recovered catalog: {e}")))?;
    Ok(rows)
}

fn create_private(path: &Path) -> Result<File, ReplicateError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ReplicateError::io(path, e))
}

fn open_private(path: &Path) -> Result<File, ReplicateError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| ReplicateError::io(path, e))
}
