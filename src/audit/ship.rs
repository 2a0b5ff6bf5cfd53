//! The trail's files as a replica ships and restores them: whole frames
//! only (a frame being appended is left for the next pass), and the anchor
//! and head as they are.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::frame::{self, SEGMENT_HEADER};
use super::trail::Trail;
use super::{AuditError, ChainHead};
use crate::crypto::AuditKeys;

/// The trail in directory `dir` (`STORE/audit`).
pub struct TrailFiles(Trail);

impl TrailFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(Trail::new(dir))
    }

    /// The segments' first seqs, ascending.
    pub fn segments(&self) -> Result<Vec<u64>, AuditError> {
        self.0.segments()
    }

    pub fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.0.segment_path(first_seq)
    }

    pub fn anchor_path(&self) -> PathBuf {
        self.0.dir().join("anchor")
    }

    pub fn head_path(&self) -> PathBuf {
        self.0.head_path()
    }

    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Bytes of segment `first_seq` from `from` (0, or the end of a frame)
    /// to the end of its last whole frame; the segment header included when
    /// `from` is 0.
    pub fn whole_frames_from(&self, first_seq: u64, from: u64) -> Result<Vec<u8>, AuditError> {
        let path = self.segment_path(first_seq);
        let io = |e| AuditError::Io {
            path: path.clone(),
            source: e,
        };
        let mut f = std::fs::File::open(&path).map_err(io)?;
        f.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io)?;
        let skip = SEGMENT_HEADER.saturating_sub(from) as usize;
        if buf.len() < skip {
            return Ok(Vec::new());
        }
        let mut frames = frame::frames(&buf[skip..]);
        for _ in frames.by_ref() {}
        let end = skip + frames.pos;
        buf.truncate(end);
        Ok(buf)
    }
}

/// The trail's head as a head file holds it (shipped to a replica), if it
/// authenticates with `keys`.
pub fn parse_head_file(keys: &AuditKeys, bytes: &[u8]) -> Option<ChainHead> {
    super::trail::parse_head(keys, bytes)
}
