//! The trail's directory: segment files named by their first seq, the
//! anchor (where the kept trail starts) and the head (the last synced
//! record), both authenticated, and the derived index.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::frame::{Mac, MAC_LEN};
use super::{AuditError, ChainHead, IoAt};
use crate::crypto::AuditKeys;
use crate::store::{write_atomic, StoreError};

const ANCHOR_MAGIC: &[u8; 8] = b"PVAUDANC";
const HEAD_MAGIC: &[u8; 8] = b"PVAUDHED";
const STATE_LEN: usize = 8 + 8 + MAC_LEN + 32;
const SEGMENT_SUFFIX: &str = ".seg";

#[derive(Clone, Debug)]
pub struct Trail {
    dir: PathBuf,
}

/// Where the kept trail starts: its first seq and the chain MAC of the
/// record before it (zeros at the very start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub first_seq: u64,
    pub chain: Mac,
}

impl Default for Anchor {
    fn default() -> Self {
        Anchor {
            first_seq: 1,
            chain: [0; MAC_LEN],
        }
    }
}

impl Trail {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Trail { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create_dir(&self) -> Result<(), AuditError> {
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(AuditError::Io {
                path: self.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.db")
    }

    fn anchor_path(&self) -> PathBuf {
        self.dir.join("anchor")
    }

    pub fn head_path(&self) -> PathBuf {
        self.dir.join("head")
    }

    pub fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
    }

    /// The segments' first seqs, ascending. None of them if the directory
    /// does not exist (a store made before the trail, opened read-only).
    pub fn segments(&self) -> Result<Vec<u64>, AuditError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&self.dir),
        };
        let mut firsts = Vec::new();
        for entry in entries {
            let name = entry.at(&self.dir)?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        Ok(firsts)
    }

    pub fn fsync_dir(&self) -> Result<(), AuditError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .at(&self.dir)
    }

    /// The anchor; the start of the trail if none was written. A present
    /// anchor that does not authenticate is an error.
    pub fn anchor(&self, keys: &AuditKeys) -> Result<Anchor, AuditError> {
        let path = self.anchor_path();
        match read_state(&path, ANCHOR_MAGIC, keys)? {
            None => Ok(Anchor::default()),
            Some((first_seq, chain)) => Ok(Anchor { first_seq, chain }),
        }
    }

    /// Replaces the anchor atomically and durably.
    pub fn write_anchor(&self, keys: &AuditKeys, a: &Anchor) -> Result<(), AuditError> {
        let bytes = state_bytes(ANCHOR_MAGIC, keys, a.first_seq, &a.chain);
        write_atomic(&self.anchor_path(), &bytes).map_err(|e| match e {
            StoreError::Io { path, source } => AuditError::Io { path, source },
            other => AuditError::Damaged(other.to_string()),
        })
    }

    /// The head file: the last record known durable. None if never written.
    pub fn head(&self, keys: &AuditKeys) -> Result<Option<ChainHead>, AuditError> {
        Ok(read_state(&self.head_path(), HEAD_MAGIC, keys)?
            .map(|(seq, mac)| ChainHead { seq, mac }))
    }

    /// Overwrites the head in place (80 bytes, inside one sector) and
    /// makes it durable.
    pub fn write_head(
        &self,
        file: &File,
        keys: &AuditKeys,
        h: &ChainHead,
    ) -> Result<(), AuditError> {
        let path = self.head_path();
        file.write_all_at(&head_bytes(keys, h), 0).at(&path)?;
        file.sync_data().at(&path)
    }

    pub fn open_head_file(&self) -> Result<File, AuditError> {
        let path = self.head_path();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .at(&path)
    }
}

pub fn head_bytes(keys: &AuditKeys, h: &ChainHead) -> Vec<u8> {
    state_bytes(HEAD_MAGIC, keys, h.seq, &h.mac)
}

/// A head as kept elsewhere (the index), checked like the head file.
pub fn parse_head(keys: &AuditKeys, b: &[u8]) -> Option<ChainHead> {
    parse_state(b, HEAD_MAGIC, keys).map(|(seq, mac)| ChainHead { seq, mac })
}

fn state_bytes(magic: &[u8; 8], keys: &AuditKeys, seq: u64, chain: &Mac) -> Vec<u8> {
    let mut b = Vec::with_capacity(STATE_LEN);
    b.extend_from_slice(magic);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(chain);
    let mac = keys.state_mac(&b);
    b.extend_from_slice(mac.as_bytes());
    b
}

fn parse_state(b: &[u8], magic: &[u8; 8], keys: &AuditKeys) -> Option<(u64, Mac)> {
    if b.len() != STATE_LEN || &b[..8] != magic {
        return None;
    }
    let mac: [u8; 32] = b[STATE_LEN - 32..].try_into().unwrap();
    if keys.state_mac(&b[..STATE_LEN - 32]) != blake3::Hash::from(mac) {
        return None;
    }
    let seq = u64::from_le_bytes(b[8..16].try_into().unwrap());
    Some((seq, b[16..16 + MAC_LEN].try_into().unwrap()))
}

fn read_state(
    path: &Path,
    magic: &[u8; 8],
    keys: &AuditKeys,
) -> Result<Option<(u64, Mac)>, AuditError> {
    let mut b = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut b).at(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    if b.is_empty() {
        return Ok(None);
    }
    parse_state(&b, magic, keys)
        .map(Some)
        .ok_or_else(|| AuditError::Forged(path.to_path_buf()))
}
