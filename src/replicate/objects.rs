//! What replica objects hold, before their envelope (`crypto::envelope`).
//!
//! ```text
//! pack   (kind 1) := "PVPACK01" id:i64le bytes      a sealed pack, byte for byte
//!                    (the first release's; now only read: `pack_object`)
//! pages  (kind 2) := "PVPAGES1" page_size:u32le page_count:u32le n:u32le (pgno:u32le page)*n
//! audit  (kind 3) := "PVAPART1" segment:u64le offset:u64le bytes
//! head   (kind 4) := JSON of `Head`
//! ```
//! A `keys/` object is vault.toml as it is (wrapped key slots only): it is
//! what unlocks everything else, so it cannot be sealed by it.

use serde::{Deserialize, Serialize};

use super::ReplicateError;

pub const KIND_PACK: u8 = 1;
pub const KIND_PAGES: u8 = 2;
pub const KIND_AUDIT: u8 = 3;
pub const KIND_HEAD: u8 = 4;
/// The envelope of a pack object's index (`pack_object`).
pub const KIND_PACK_INDEX: u8 = 5;

const PACK_MAGIC: &[u8; 8] = b"PVPACK01";
const PAGES_MAGIC: &[u8; 8] = b"PVPAGES1";
const AUDIT_MAGIC: &[u8; 8] = b"PVAPART1";

/// The head format this release writes and reads.
pub const HEAD_FORMAT: u32 = 1;

/// The commit record of one pass: what it shipped, and the state of the
/// store's small files. Heads chain by `prev` and `seq`, from 1.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    pub format: u32,
    pub seq: u64,
    /// Hex name of the previous head; none for the first.
    pub prev: Option<String>,
    /// A snapshot: `catalog` holds every page, `packs` every pack the
    /// remote keeps and `audit.parts` every part of the live segments, so
    /// a recovery starts here and needs no earlier head (which compaction
    /// may then delete). The first head is one too. Absent from heads
    /// written before snapshots, which older releases read as usual.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base: bool,
    pub time_ns: i64,
    /// vault.toml as of the pass: slots, retention policy and its MAC.
    pub vault_toml: String,
    /// Hex name of the keys object of this vault.toml.
    pub keys: String,
    /// Catalog pages changed since the previous head, if any.
    pub catalog: Option<CatalogRef>,
    pub packs: Vec<PackRef>,
    pub audit: AuditRef,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogRef {
    pub page_size: u32,
    pub page_count: u32,
    pub object: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackRef {
    pub id: i64,
    pub object: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRef {
    /// The trail's anchor and head files, hex, as of the pass.
    pub anchor: Option<String>,
    pub head: Option<String>,
    /// The segments the trail had (first seqs): older ones were pruned.
    pub segments: Vec<u64>,
    pub parts: Vec<AuditPartRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditPartRef {
    pub segment: u64,
    pub offset: u64,
    pub object: String,
}

/// Only tests write kind 1 now, as the first release did.
#[cfg(test)]
pub fn encode_pack(id: i64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + bytes.len());
    out.extend_from_slice(PACK_MAGIC);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

pub fn decode_pack(payload: &[u8]) -> Result<(i64, &[u8]), ReplicateError> {
    let rest = strip(payload, PACK_MAGIC, "pack")?;
    let (id, bytes) = take_u64(rest, "pack")?;
    Ok((id as i64, bytes))
}

/// Changed pages of a catalog of `page_count` pages of `page_size` bytes.
pub struct Pages {
    pub page_size: u32,
    pub page_count: u32,
    pub pages: Vec<(u32, Vec<u8>)>,
}

pub fn encode_pages(p: &Pages) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + p.pages.len() * (4 + p.page_size as usize));
    out.extend_from_slice(PAGES_MAGIC);
    out.extend_from_slice(&p.page_size.to_le_bytes());
    out.extend_from_slice(&p.page_count.to_le_bytes());
    out.extend_from_slice(&(p.pages.len() as u32).to_le_bytes());
    for (pgno, page) in &p.pages {
        out.extend_from_slice(&pgno.to_le_bytes());
        out.extend_from_slice(page);
    }
    out
}

pub fn decode_pages(payload: &[u8]) -> Result<Pages, ReplicateError> {
    let bad = || ReplicateError::Damaged("a catalog pages object is malformed".into());
    let rest = strip(payload, PAGES_MAGIC, "catalog pages")?;
    if rest.len() < 12 {
        return Err(bad());
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let page_size = u32_at(rest, 0);
    let page_count = u32_at(rest, 4);
    let n = u32_at(rest, 8) as usize;
    let ps = page_size as usize;
    if !(512..=65536).contains(&ps) || rest.len() != 12 + n * (4 + ps) {
        return Err(bad());
    }
    let mut pages = Vec::with_capacity(n);
    for chunk in rest[12..].chunks(4 + ps) {
        let pgno = u32_at(chunk, 0);
        if pgno == 0 || pgno > page_count {
            return Err(bad());
        }
        pages.push((pgno, chunk[4..].to_vec()));
    }
    Ok(Pages {
        page_size,
        page_count,
        pages,
    })
}

pub fn encode_audit_part(segment: u64, offset: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + bytes.len());
    out.extend_from_slice(AUDIT_MAGIC);
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// (segment, offset, bytes)
pub fn decode_audit_part(payload: &[u8]) -> Result<(u64, u64, &[u8]), ReplicateError> {
    let rest = strip(payload, AUDIT_MAGIC, "audit part")?;
    let (segment, rest) = take_u64(rest, "audit part")?;
    let (offset, bytes) = take_u64(rest, "audit part")?;
    Ok((segment, offset, bytes))
}

pub fn encode_head(h: &Head) -> Vec<u8> {
    serde_json::to_vec(h).expect("a head serializes")
}

pub fn decode_head(payload: &[u8]) -> Result<Head, ReplicateError> {
    let head: Head = serde_json::from_slice(payload)
        .map_err(|e| ReplicateError::Damaged(format!("a head is malformed: {e}")))?;
    if head.format != HEAD_FORMAT {
        return Err(ReplicateError::Damaged(format!(
            "a head of format {} (this release reads {HEAD_FORMAT}): use a newer phivault",
            head.format
        )));
    }
    Ok(head)
}

fn strip<'a>(b: &'a [u8], magic: &[u8; 8], what: &str) -> Result<&'a [u8], ReplicateError> {
    b.strip_prefix(&magic[..])
        .ok_or_else(|| ReplicateError::Damaged(format!("not a {what} object")))
}

fn take_u64<'a>(b: &'a [u8], what: &str) -> Result<(u64, &'a [u8]), ReplicateError> {
    if b.len() < 8 {
        return Err(ReplicateError::Damaged(format!(
            "a {what} object is cut short"
        )));
    }
    Ok((u64::from_le_bytes(b[..8].try_into().unwrap()), &b[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_malformed_ones_are_refused() {
        let pack = encode_pack(-5, b"PHIPACK1...");
        let (id, bytes) = decode_pack(&pack).unwrap();
        assert_eq!((id, bytes), (-5, &b"PHIPACK1..."[..]));
        let p = Pages {
            page_size: 1024,
            page_count: 9,
            pages: vec![(1, vec![1; 1024]), (9, vec![9; 1024])],
        };
        let q = decode_pages(&encode_pages(&p)).unwrap();
        assert_eq!((q.page_size, q.page_count), (1024, 9));
        assert_eq!(q.pages, p.pages);
        let mut cut = encode_pages(&p);
        cut.pop();
        assert!(decode_pages(&cut).is_err());
        let beyond = Pages { page_count: 8, ..p };
        assert!(decode_pages(&encode_pages(&beyond)).is_err(), "page 9 of 8");
        let part = encode_audit_part(7, 16, b"frames");
        let (s, o, b) = decode_audit_part(&part).unwrap();
        assert_eq!((s, o, b), (7, 16, &b"frames"[..]));
        assert!(decode_pack(b"PVPAGES1").is_err(), "another kind");
    }
}
