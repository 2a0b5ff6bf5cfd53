//! What a store knows of one remote: `STORE/replica/NAME/`.
//!
//! - `state`: what the remote holds, as of its last head. Replaced whole
//!   and atomically; a pass writes `state.next` before it uploads its head,
//!   and renames it over `state` after. A pass killed in between finds
//!   `state.next` and keeps it if its head reached the remote (`settle`).
//! - `status.json`: how the last attempt went, for `phivault status`.
//! - `request`: a CLI asking the mounted daemon for a pass now.
//!
//! ```text
//! state := "PVRSTAT1" json_len:u32le json page_size:u32le page_hash:[16]*
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::objects::AuditPartRef;
use super::place::{ObjectKind, ObjectName, ObjectPlace};
use super::ReplicateError;
use crate::store::write_atomic;

const MAGIC: &[u8; 8] = b"PVRSTAT1";
pub const PAGE_HASH_LEN: usize = 16;

/// A short hash of each page of `image`, as `Shipped::page_hashes` keeps.
pub fn page_hashes(
    image: &crate::catalog::CatalogImage,
) -> crate::catalog::Result<Vec<[u8; PAGE_HASH_LEN]>> {
    let mut hashes = Vec::with_capacity(image.page_count() as usize);
    image.for_each_page(|_, page| {
        hashes.push(
            blake3::hash(page).as_bytes()[..PAGE_HASH_LEN]
                .try_into()
                .unwrap(),
        )
    })?;
    Ok(hashes)
}

/// What the remote holds, as its last head left it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shipped {
    /// Seq and hex name of the last head; 0 and none before the first.
    pub seq: u64,
    pub head: Option<String>,
    pub keys: Option<String>,
    /// The packs the remote holds, with the hex name of their object.
    pub packs: BTreeMap<i64, String>,
    /// Packs pruning removed here, with when a pass first saw that: their
    /// objects go once the retention lock has passed since.
    #[serde(default)]
    pub dropped: BTreeMap<i64, i64>,
    /// Bytes of each audit segment shipped, by first seq.
    pub audit: BTreeMap<u64, u64>,
    pub audit_anchor: Option<String>,
    pub audit_head: Option<String>,
    /// Every object and byte shipped so far.
    pub objects: u64,
    pub bytes: u64,
    /// The heads the remote keeps, oldest first: what compaction deletes
    /// and what says when the next snapshot is due. States written before
    /// snapshots lack it (`history_known` false) and learn it once from
    /// the remote's chain.
    #[serde(default)]
    pub heads: Vec<HeadEntry>,
    /// The audit parts on the remote of the live segments, in shipping
    /// order: a snapshot names them all.
    #[serde(default)]
    pub audit_parts: Vec<AuditPartRef>,
    #[serde(default)]
    pub history_known: bool,
    #[serde(skip)]
    pub page_size: u32,
    /// A short hash of each catalog page as shipped.
    #[serde(skip)]
    pub page_hashes: Vec<[u8; PAGE_HASH_LEN]>,
}

/// One head the remote keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeadEntry {
    pub seq: u64,
    pub name: String,
    pub time_ns: i64,
    pub base: bool,
    /// Its catalog pages object, and how many pages that holds (0 when
    /// learned from a head written before snapshots).
    pub pages_object: Option<String>,
    pub pages: u64,
}

impl Shipped {
    /// The (0-based) pages of a catalog with `hashes` that differ from
    /// those shipped: all of them after a change of page size.
    pub fn changed_pages(&self, page_size: u32, hashes: &[[u8; PAGE_HASH_LEN]]) -> Vec<usize> {
        let same_size = self.page_size == page_size;
        (0..hashes.len())
            .filter(|&i| !same_size || self.page_hashes.get(i) != Some(&hashes[i]))
            .collect()
    }

    /// Whether a catalog with `hashes` is the one shipped.
    pub fn holds_catalog(&self, page_size: u32, hashes: &[[u8; PAGE_HASH_LEN]]) -> bool {
        self.page_size == page_size && self.page_hashes == hashes
    }
}

/// The outcome of the last attempts, for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub last_success_ns: Option<i64>,
    pub last_error: Option<ErrorNote>,
    /// The last `request` a pass served (see `Request`).
    pub served: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorNote {
    pub at_ns: i64,
    pub message: String,
}

/// The files of one remote's state.
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn next(&self) -> PathBuf {
        self.dir.join("state.next")
    }

    fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    pub fn request_path(&self) -> PathBuf {
        self.dir.join("request")
    }

    /// What the remote holds; nothing before the first pass.
    pub fn load(&self) -> Result<Shipped, ReplicateError> {
        match std::fs::read(self.state()) {
            Ok(b) => decode(&b).ok_or_else(|| {
                ReplicateError::State(format!(
                    "{} is damaged; remove it, and the next pass takes up the remote's chain \
                     again and ships what the remote lacks",
                    self.state().display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Shipped::default()),
            Err(e) => Err(ReplicateError::io(&self.state(), e)),
        }
    }

    /// Records `next` as what the remote will hold once `head` is there.
    pub fn prepare(&self, next: &Shipped) -> Result<(), ReplicateError> {
        write_atomic(&self.next(), &encode(next)).map_err(ReplicateError::Store)
    }

    /// Records a state that differs from the last only in what was deleted
    /// from the remote: no head names deletions, so none is waited for.
    pub fn save(&self, s: &Shipped) -> Result<(), ReplicateError> {
        write_atomic(&self.state(), &encode(s)).map_err(ReplicateError::Store)
    }

    /// The head of the prepared state reached the remote: it is the state.
    pub fn commit(&self) -> Result<(), ReplicateError> {
        std::fs::rename(self.next(), self.state())
            .map_err(|e| ReplicateError::io(&self.state(), e))?;
        crate::store::sync_dir(&self.dir).map_err(ReplicateError::Store)
    }

    /// After a kill: keeps a prepared state whose head reached the remote,
    /// drops one whose head did not.
    pub fn settle(&self, place: &dyn ObjectPlace) -> Result<(), ReplicateError> {
        let bytes = match std::fs::read(self.next()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ReplicateError::io(&self.next(), e)),
        };
        let landed = match decode(&bytes).and_then(|s| s.head) {
            Some(head) => {
                let name = ObjectName::from_hex(ObjectKind::Head, &head)
                    .map_err(|e| ReplicateError::State(e.to_string()))?;
                place.size(&name)?.is_some()
            }
            None => false,
        };
        if landed {
            self.commit()
        } else {
            std::fs::remove_file(self.next()).map_err(|e| ReplicateError::io(&self.next(), e))
        }
    }

    pub fn status(&self) -> Status {
        std::fs::read(self.status_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_status(&self, s: &Status) -> Result<(), ReplicateError> {
        let bytes = serde_json::to_vec_pretty(s).expect("status serializes");
        write_atomic(&self.status_path(), &bytes).map_err(ReplicateError::Store)
    }

    /// Removes the request `token` once served (a newer one stays).
    pub fn clear_request(&self, token: &str) {
        if self.request().as_deref() == Some(token) {
            let _ = std::fs::remove_file(self.request_path());
        }
    }

    /// A pending request from the CLI, if any.
    pub fn request(&self) -> Option<String> {
        std::fs::read_to_string(self.request_path())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

fn encode(s: &Shipped) -> Vec<u8> {
    let json = serde_json::to_vec(s).expect("state serializes");
    let mut out = Vec::with_capacity(16 + json.len() + s.page_hashes.len() * PAGE_HASH_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&s.page_size.to_le_bytes());
    for h in &s.page_hashes {
        out.extend_from_slice(h);
    }
    out
}

fn decode(b: &[u8]) -> Option<Shipped> {
    let rest = b.strip_prefix(&MAGIC[..])?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let json = rest.get(4..4 + len)?;
    let mut s: Shipped = serde_json::from_slice(json).ok()?;
    let rest = &rest[4 + len..];
    s.page_size = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let hashes = &rest[4..];
    if hashes.len() % PAGE_HASH_LEN != 0 {
        return None;
    }
    s.page_hashes = hashes
        .chunks(PAGE_HASH_LEN)
        .map(|c| c.try_into().unwrap())
        .collect();
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::place::{MemPlace, NamedBytes, PutOptions};

    #[test]
    fn a_prepared_state_counts_only_once_its_head_is_on_the_remote() {
        let d = tempfile::tempdir().unwrap();
        let dir = StateDir::new(d.path().to_path_buf());
        assert_eq!(dir.load().unwrap(), Shipped::default());
        let head_bytes = b"a head".to_vec();
        let head = ObjectName::of(ObjectKind::Head, &head_bytes);
        let next = Shipped {
            seq: 1,
            head: Some(head.hex()),
            packs: [(3, "a".into()), (4, "b".into())].into(),
            page_size: 1024,
            page_hashes: vec![[1; 16], [2; 16]],
            ..Default::default()
        };
        let place = MemPlace::new();
        dir.prepare(&next).unwrap();
        dir.settle(&place).unwrap();
        assert_eq!(
            dir.load().unwrap(),
            Shipped::default(),
            "head not there: dropped"
        );
        dir.prepare(&next).unwrap();
        place
            .put_new(
                NamedBytes::new(head.kind, &head_bytes),
                &PutOptions::default(),
            )
            .unwrap();
        dir.settle(&place).unwrap();
        assert_eq!(dir.load().unwrap(), next, "head there: kept");
    }
}
