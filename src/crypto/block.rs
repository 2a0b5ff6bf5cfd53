//! Block sealing: plaintext -> keyed id, zstd, AES-256-GCM-SIV with the id as AAD.

use std::cell::RefCell;

use aes_gcm_siv::aead::AeadInOut;
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag};
use rand::RngCore;
use zeroize::Zeroizing;

use super::CryptoError;

pub const BLOCK_ID_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;

/// Keyed hash of a block's plaintext: equal content, equal id (dedup), and
/// nothing about the content is learnable without the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BlockId(pub [u8; BLOCK_ID_LEN]);

impl BlockId {
    pub fn from_slice(s: &[u8]) -> Option<Self> {
        Some(Self(s.try_into().ok()?))
    }
    pub fn short_hex(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

/// A block ready for a pack: its id, nonce and ciphertext (tag included).
pub struct SealedBlock {
    pub id: BlockId,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
    pub plain_len: u32,
}

/// Ciphertext (tag included) at `start` of a larger buffer, such as a pack
/// record read whole: it is decrypted where it lies, not moved out first.
pub struct CiphertextBuf {
    buf: Vec<u8>,
    start: usize,
}

impl CiphertextBuf {
    pub fn new(buf: Vec<u8>, start: usize) -> Self {
        Self { buf, start }
    }
}

impl From<Vec<u8>> for CiphertextBuf {
    fn from(buf: Vec<u8>) -> Self {
        Self { buf, start: 0 }
    }
}

const TAG_LEN: usize = 16;
const RAW: u8 = 0;
const ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    // A zstd context costs more to set up than compressing a small file:
    // each thread keeps one of each.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `plain` into `out` (appended); None when zstd fails or the
/// result would not be at least `min_saving` bytes smaller.
fn compress_into(plain: &[u8], out: &mut Vec<u8>, min_saving: usize) -> Option<usize> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ctx = match &mut *slot {
            Some(ctx) => ctx,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
        };
        let start = out.len();
        let limit = plain.len().checked_sub(min_saving)?;
        out.reserve(zstd::zstd_safe::compress_bound(plain.len()));
        // The cursor makes zstd write after what `out` already holds.
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        let written = ctx.compress_to_buffer(plain, &mut cursor).ok()?;
        if written >= limit {
            out.truncate(start);
            return None;
        }
        Some(written)
    })
}

/// Runs `f` with this thread's zstd decompression context.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> Result<T, CryptoError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ctx = match &mut *slot {
            Some(ctx) => ctx,
            None => slot.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| CryptoError::Decompress(e.to_string()))?,
            ),
        };
        f(ctx).map_err(|e| CryptoError::Decompress(e.to_string()))
    })
}

fn decompress(compressed: &[u8], plain_len: usize) -> Result<Vec<u8>, CryptoError> {
    with_decompressor(|ctx| {
        let mut plain = Vec::with_capacity(plain_len);
        ctx.decompress_to_buffer(compressed, &mut plain)?;
        Ok(plain)
    })
}

/// Decompresses into exactly `out`: a block of another length is damaged.
fn decompress_into(compressed: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    let n = with_decompressor(|ctx| ctx.decompress_to_buffer(compressed, out))?;
    if n != out.len() {
        return Err(CryptoError::IdMismatch);
    }
    Ok(())
}

/// Already-compressed or random data (media, archives, encrypted files)
/// gains nothing from zstd: a 4 KiB sample tells, at a fraction of the cost.
fn looks_incompressible(plain: &[u8]) -> bool {
    const SAMPLE: usize = 4096;
    if plain.len() < 4 * SAMPLE {
        return false;
    }
    let mid = plain.len() / 2;
    let sample = &plain[mid..mid + SAMPLE];
    let mut scratch = Vec::new();
    compress_into(sample, &mut scratch, SAMPLE / 32).is_none()
}

pub struct BlockSealer {
    cipher: Aes256GcmSiv,
    id_key: Zeroizing<[u8; 32]>,
}

impl BlockSealer {
    pub(super) fn new(content_key: &[u8; 32], id_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256GcmSiv::new_from_slice(content_key).expect("32-byte key"),
            id_key: Zeroizing::new(*id_key),
        }
    }

    pub fn id_of(&self, plain: &[u8]) -> BlockId {
        BlockId(*blake3::keyed_hash(&self.id_key, plain).as_bytes())
    }

    /// Compresses (when that saves space) and encrypts one block.
    pub fn seal(&self, plain: &[u8]) -> SealedBlock {
        let id = self.id_of(plain);
        self.seal_with_id(id, plain)
    }

    pub fn seal_with_id(&self, id: BlockId, plain: &[u8]) -> SealedBlock {
        // File content is not key material: it is not zeroized (it lives in
        // the page cache anyway), which keeps this path at memory speed.
        let mut buf = Vec::with_capacity(plain.len() + 1 + 16);
        buf.push(ZSTD);
        if looks_incompressible(plain) || compress_into(plain, &mut buf, 17).is_none() {
            buf.clear();
            buf.push(RAW);
            buf.extend_from_slice(plain);
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        self.cipher
            .encrypt_in_place(&Nonce::from(nonce), &id.0, &mut buf)
            .expect("AES-GCM-SIV encryption cannot fail for in-range lengths");
        SealedBlock {
            id,
            nonce,
            ciphertext: buf,
            plain_len: plain.len() as u32,
        }
    }

    /// Decrypts (in place) and decompresses; the result is checked against
    /// `id`, so a block swapped, altered or misplaced is an error, never wrong data.
    pub fn open(
        &self,
        id: &BlockId,
        nonce: &[u8],
        ciphertext: impl Into<CiphertextBuf>,
        plain_len: usize,
    ) -> Result<Vec<u8>, CryptoError> {
        let (mut buf, body) = self.decrypt(id, nonce, ciphertext.into())?;
        let plain = match buf[body.start] {
            RAW => {
                buf.copy_within(body.start + 1..body.end, 0);
                buf.truncate(body.len() - 1);
                buf
            }
            ZSTD => decompress(&buf[body.start + 1..body.end], plain_len)?,
            _ => return Err(CryptoError::Malformed("unknown block encoding")),
        };
        self.verify(id, &plain, plain_len)?;
        Ok(plain)
    }

    /// `open`, writing the plaintext into `out` (exactly the block's length)
    /// instead of returning it: a read decrypts straight into its reply. On
    /// an error `out` holds garbage.
    pub fn open_into(
        &self,
        id: &BlockId,
        nonce: &[u8],
        ciphertext: impl Into<CiphertextBuf>,
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let (buf, body) = self.decrypt(id, nonce, ciphertext.into())?;
        let content = &buf[body.start + 1..body.end];
        match buf[body.start] {
            RAW => {
                // Checked while the bytes are still in the CPU's cache.
                self.verify(id, content, out.len())?;
                out.copy_from_slice(content);
                Ok(())
            }
            ZSTD => {
                decompress_into(content, out)?;
                self.verify(id, out, out.len())
            }
            _ => Err(CryptoError::Malformed("unknown block encoding")),
        }
    }

    /// Decrypts in place; returns the buffer and where in it the encoded
    /// body (an encoding byte, then the content) lies.
    fn decrypt(
        &self,
        id: &BlockId,
        nonce: &[u8],
        ciphertext: CiphertextBuf,
    ) -> Result<(Vec<u8>, std::ops::Range<usize>), CryptoError> {
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed("nonce length"))?;
        let CiphertextBuf { mut buf, start } = ciphertext;
        // An encoding byte, then the content, then the tag.
        if buf.len() < start + 1 + TAG_LEN {
            return Err(CryptoError::Malformed("ciphertext too short"));
        }
        let end = buf.len() - TAG_LEN;
        let (body, tag) = buf[start..].split_at_mut(end - start);
        let tag = Tag::try_from(&*tag).expect("16 bytes");
        self.cipher
            .decrypt_inout_detached(&nonce, &id.0, body.into(), &tag)
            .map_err(|_| CryptoError::Tampered)?;
        Ok((buf, start..end))
    }

    /// The plaintext is the block `id` names, and as long as the index says.
    fn verify(&self, id: &BlockId, plain: &[u8], plain_len: usize) -> Result<(), CryptoError> {
        if plain.len() != plain_len || self.id_of(plain) != *id {
            return Err(CryptoError::IdMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> BlockSealer {
        BlockSealer::new(&[7u8; 32], &[9u8; 32])
    }

    #[test]
    fn seal_open_roundtrip_compressible_and_random() {
        let s = sealer();
        let text = b"patient record ".repeat(4000);
        let sealed = s.seal(&text);
        assert!(
            sealed.ciphertext.len() < text.len() / 4,
            "zstd should shrink repetitive text"
        );
        let back = s
            .open(
                &sealed.id,
                &sealed.nonce,
                sealed.ciphertext.clone(),
                text.len(),
            )
            .unwrap();
        assert_eq!(back, text);

        let mut random = vec![0u8; 65536];
        rand::rng().fill_bytes(&mut random);
        let sealed = s.seal(&random);
        assert_eq!(
            s.open(
                &sealed.id,
                &sealed.nonce,
                sealed.ciphertext.clone(),
                random.len()
            )
            .unwrap(),
            random
        );
    }

    #[test]
    fn ciphertext_inside_a_larger_buffer_opens_in_place() {
        let s = sealer();
        for plain in [b"patient record ".repeat(4000), vec![0x5a; 1], {
            let mut r = vec![0u8; 65536];
            rand::rng().fill_bytes(&mut r);
            r
        }] {
            let sealed = s.seal(&plain);
            let mut record = b"48-byte header stand-in..........................".to_vec();
            let start = record.len();
            record.extend_from_slice(&sealed.ciphertext);
            let back = s
                .open(
                    &sealed.id,
                    &sealed.nonce,
                    CiphertextBuf::new(record, start),
                    plain.len(),
                )
                .unwrap();
            assert_eq!(back, plain);
        }
    }

    #[test]
    fn open_into_writes_what_open_returns_and_checks_the_same() {
        let s = sealer();
        let mut random = vec![0u8; 65536];
        rand::rng().fill_bytes(&mut random);
        for plain in [b"patient record ".repeat(4000), random, vec![0x5a; 1]] {
            let sealed = s.seal(&plain);
            let mut out = vec![0u8; plain.len()];
            s.open_into(
                &sealed.id,
                &sealed.nonce,
                sealed.ciphertext.clone(),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, plain);
            // A buffer of another length is an error (the index disagrees).
            let mut longer = vec![0u8; plain.len() + 1];
            assert!(s
                .open_into(
                    &sealed.id,
                    &sealed.nonce,
                    sealed.ciphertext.clone(),
                    &mut longer
                )
                .is_err());
            let mut ct = sealed.ciphertext.clone();
            ct[1] ^= 1;
            assert!(matches!(
                s.open_into(&sealed.id, &sealed.nonce, ct, &mut out),
                Err(CryptoError::Tampered)
            ));
        }
    }

    #[test]
    fn truncated_ciphertext_is_an_error_not_a_panic() {
        let s = sealer();
        let a = s.seal(b"alpha block");
        for cut in [0, 1, 16, a.ciphertext.len() - 1] {
            let short = a.ciphertext[..cut].to_vec();
            assert!(s.open(&a.id, &a.nonce, short, 11).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn flipped_byte_or_swapped_id_is_detected() {
        let s = sealer();
        let a = s.seal(b"alpha block");
        let b = s.seal(b"bravo block");
        let mut ct = a.ciphertext.clone();
        ct[3] ^= 1;
        assert!(matches!(
            s.open(&a.id, &a.nonce, ct.clone(), 11),
            Err(CryptoError::Tampered)
        ));
        assert!(s.open(&b.id, &a.nonce, a.ciphertext.clone(), 11).is_err());
    }

    #[test]
    fn identical_plaintext_has_identical_id_different_key_differs() {
        let s = sealer();
        assert_eq!(s.id_of(b"same"), s.id_of(b"same"));
        let other = BlockSealer::new(&[7u8; 32], &[8u8; 32]);
        assert_ne!(s.id_of(b"same"), other.id_of(b"same"));
    }
}
