//! What a remote lacks, read from the store's files without its key: sealed
//! packs it does not hold, catalog changes and audit records since its last
//! pass.

use std::time::{Duration, SystemTime};

use super::remotes::remote_dir;
use super::state::{page_hashes, Shipped, StateDir};
use super::ReplicateError;
use crate::audit::ship::TrailFiles;
use crate::catalog::CatalogSnapshot;
use crate::store::{pack_path_in, PackId, StoreDir};

/// Objects (about) and bytes not shipped yet, and how old the oldest is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub objects: u64,
    pub bytes: u64,
    pub oldest: Option<Duration>,
}

pub fn lag(dir: &StoreDir, remote: &str) -> Result<(Shipped, Lag), ReplicateError> {
    let state = StateDir::new(remote_dir(dir, remote));
    let shipped = state.load()?;
    let mut lag = Lag::default();
    let mut oldest: Option<SystemTime> = None;
    let mut note = |bytes: u64, modified: Option<SystemTime>| {
        lag.objects += 1;
        lag.bytes += bytes;
        if let Some(m) = modified {
            oldest = Some(oldest.map_or(m, |o| o.min(m)));
        }
    };
    let read = |e: crate::catalog::CatalogError| {
        ReplicateError::State(format!("reading the catalog: {e}"))
    };
    let image = CatalogSnapshot::begin(&dir.catalog_path())
        .and_then(CatalogSnapshot::image)
        .map_err(read)?;
    for &(id, size) in &image.sealed_packs {
        if !shipped.packs.contains_key(&id) {
            let path = pack_path_in(&dir.packs_dir(), PackId::from_i64(id));
            note(
                size,
                std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            );
        }
    }
    let last = state
        .status()
        .last_success_ns
        .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64));
    let changed = shipped
        .changed_pages(image.page_size, &page_hashes(&image).map_err(read)?)
        .len() as u64;
    if changed > 0 {
        let since = last.or_else(|| {
            std::fs::metadata(dir.catalog_path())
                .and_then(|m| m.modified())
                .ok()
        });
        note(changed * image.page_size as u64, since);
    }
    let trail = TrailFiles::new(dir.root().join("audit"));
    for first in trail.segments()? {
        let path = trail.segment_path(first);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let done = shipped.audit.get(&first).copied().unwrap_or(0);
        if meta.len() > done {
            note(meta.len() - done, last.or(meta.modified().ok()));
        }
    }
    lag.oldest = oldest.map(|o| SystemTime::now().duration_since(o).unwrap_or_default());
    Ok((shipped, lag))
}
