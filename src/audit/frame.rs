//! One record as stored: a length-prefixed frame in a segment file.
//!
//! Segment: "PVAUDIT1", the first seq (u64), then frames. Frame, little-endian:
//! len u32 (of what follows), seq u64, time i64, nonce [12], the encrypted
//! record (AES-256-GCM-SIV, aad = seq ‖ time), the record MAC (keyed BLAKE3
//! of seq..ciphertext) and the chain MAC (keyed BLAKE3 of the previous
//! chain MAC ‖ this record MAC). seq and time are clear so that the trail
//! can be walked, pruned and verified without decrypting.

use rand::RngCore;

use super::encode;
use super::record::Record;
use crate::crypto::AuditKeys;

pub const SEGMENT_MAGIC: &[u8; 8] = b"PVAUDIT1";
pub const SEGMENT_HEADER: u64 = 16;
pub const MAC_LEN: usize = 32;
const NONCE: usize = 12;
const TAG: usize = 16;
/// seq, time and nonce: what the record MAC covers besides the ciphertext.
const CLEAR: usize = 8 + 8 + NONCE;
const MIN_LEN: usize = CLEAR + TAG + 2 * MAC_LEN;
/// No record comes near this (two paths of PATH_MAX and some names).
pub const MAX_LEN: usize = 1 << 20;

pub type Mac = [u8; MAC_LEN];

pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// The first seq a segment header names, None if it is not one.
pub fn parse_segment_header(b: &[u8]) -> Option<u64> {
    if b.len() < SEGMENT_HEADER as usize || &b[..8] != SEGMENT_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(b[8..16].try_into().unwrap()))
}

/// Builds the frame of `rec` (whose seq and time it takes) into `out`;
/// returns its chain MAC. `scratch` is reused between calls.
pub fn seal(
    keys: &AuditKeys,
    rec: &Record,
    previous: &Mac,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Mac {
    scratch.clear();
    encode::encode(rec, scratch);
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let aad = aad(rec.seq, rec.time_ns);
    keys.seal_record(&nonce, &aad, scratch);
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&aad);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(scratch);
    let mac = keys.record_mac(&out[4..]);
    out.extend_from_slice(&mac);
    let chain = keys.chain_mac(previous, &mac);
    out.extend_from_slice(&chain);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    chain
}

fn aad(seq: u64, time: i64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&seq.to_le_bytes());
    a[8..].copy_from_slice(&time.to_le_bytes());
    a
}

/// A frame as read, not yet authenticated.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub seq: u64,
    pub time: i64,
    /// Bytes the frame takes, length prefix included.
    pub size: usize,
    /// What the record MAC covers.
    covered: &'a [u8],
    pub mac: Mac,
    pub chain: Mac,
}

pub enum Parsed<'a> {
    Frame(Frame<'a>),
    /// The bytes end inside a frame (a write in progress, or torn).
    Incomplete,
    /// Not a frame: a length no frame has.
    Bad,
}

pub fn parse(b: &[u8]) -> Parsed<'_> {
    if b.len() < 4 {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Parsed::Bad;
    }
    if b.len() < 4 + len {
        return Parsed::Incomplete;
    }
    let body = &b[4..4 + len];
    let macs = len - 2 * MAC_LEN;
    Parsed::Frame(Frame {
        seq: u64::from_le_bytes(body[..8].try_into().unwrap()),
        time: i64::from_le_bytes(body[8..16].try_into().unwrap()),
        size: 4 + len,
        covered: &body[..macs],
        mac: body[macs..macs + MAC_LEN].try_into().unwrap(),
        chain: body[macs + MAC_LEN..].try_into().unwrap(),
    })
}

impl Frame<'_> {
    /// Whether the record MAC holds: the clear fields and ciphertext are
    /// as written.
    pub fn authentic(&self, keys: &AuditKeys) -> bool {
        // Compared as blake3::Hash: constant time.
        blake3::Hash::from(keys.record_mac(self.covered)) == blake3::Hash::from(self.mac)
    }

    /// Whether the chain MAC follows from `previous`.
    pub fn chains_from(&self, keys: &AuditKeys, previous: &Mac) -> bool {
        blake3::Hash::from(keys.chain_mac(previous, &self.mac)) == blake3::Hash::from(self.chain)
    }

    /// The record, decrypted; None if it does not authenticate.
    pub fn open(&self, keys: &AuditKeys) -> Option<Record> {
        let nonce: &[u8; NONCE] = self.covered[16..CLEAR].try_into().unwrap();
        let plain = keys
            .open_record(nonce, &self.covered[..16], &self.covered[CLEAR..])
            .ok()?;
        encode::decode(self.seq, self.time, &plain)
    }
}

/// The complete frames at the start of `b`, and where they end: at the
/// first incomplete or bad one, with what stopped them.
pub struct Frames<'a> {
    buf: &'a [u8],
    pub pos: usize,
    pub stopped: Option<Stop>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Incomplete,
    Bad,
}

pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames {
        buf,
        pos: 0,
        stopped: None,
    }
}

impl<'a> Iterator for Frames<'a> {
    /// A frame and its offset in the buffer.
    type Item = (usize, Frame<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped.is_some() || self.pos == self.buf.len() {
            return None;
        }
        match parse(&self.buf[self.pos..]) {
            Parsed::Frame(f) => {
                let at = self.pos;
                self.pos += f.size;
                Some((at, f))
            }
            Parsed::Incomplete => {
                self.stopped = Some(Stop::Incomplete);
                None
            }
            Parsed::Bad => {
                self.stopped = Some(Stop::Bad);
                None
            }
        }
    }
}
