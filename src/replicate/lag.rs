//! What a remote lacks, read from the store's files without its key: sealed
//! packs it does not hold, catalog changes and audit records since its last
//! pass.

use std::time::{Duration, SystemTime};

use super::remotes::remote_dir;
use super::state::{Shipped, StateDir};
use super::ReplicateError;
use crate::audit::ship::TrailFiles;
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
    for (id, size) in sealed_packs(dir)? {
        if !shipped.packs.contains(&id) {
            let path = pack_path_in(&dir.packs_dir(), PackId::from_i64(id));
            note(
                size,
                std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            );
        }
    }
    // The catalog changed since the last head if its files did.
    let last = state
        .status()
        .last_success_ns
        .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64));
    let catalog = dir.catalog_path();
    let wal = catalog.with_extension("db-wal");
    let changed = [catalog, wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max();
    if let Some(changed) = changed {
        if last.is_none_or(|l| changed > l) {
            note(0, Some(last.unwrap_or(changed).min(changed)));
        }
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

fn sealed_packs(dir: &StoreDir) -> Result<Vec<(i64, u64)>, ReplicateError> {
    let query = || -> rusqlite::Result<Vec<(i64, u64)>> {
        let conn = rusqlite::Connection::open_with_flags(
            dir.catalog_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut st = conn.prepare("SELECT id, size FROM packs WHERE sealed=1")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect()
    };
    query().map_err(|e| ReplicateError::State(format!("reading the catalog: {e}")))
}
