//! Envelopes: what a replica stores, sealed so that the place holding it
//! learns nothing but a padded length.
//!
//! ```text
//! envelope := "PVOBJ001" kind:u8 nonce:[12] AES-256-GCM-SIV(plain)   aad = magic kind vault-id
//! plain    := flags:u8 len:u64le payload:[len] zeros        (flags bit 0: payload is zstd)
//! ```
//!
//! The nonce is derived from the content (a keyed hash), not drawn: GCM-SIV
//! stays safe when a nonce repeats for the same plaintext, and the same
//! content then seals to the same bytes, so an object rebuilt after a crash
//! has the same hash name and a create-only put finds it already there.
//! Plaintexts are padded to Padmé lengths (at most 12% more), so a sealed
//! size says little about what it holds.

use aes_gcm_siv::aead::{Aead, AeadInOut, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use zeroize::Zeroizing;

use super::keys::KEY_LEN;
use super::CryptoError;

const MAGIC: &[u8; 8] = b"PVOBJ001";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;
const PLAIN_HEADER_LEN: usize = 1 + 8;
const FLAG_ZSTD: u8 = 1;
/// No envelope is smaller: tiny objects (a head, a one-page delta) all
/// look alike.
const MIN_PADDED: usize = 4096;

/// The keys of a store's replicas, derived from its master key.
pub struct EnvelopeKey {
    aead: Aes256GcmSiv,
    nonce_key: Zeroizing<[u8; KEY_LEN]>,
    vault_id: Vec<u8>,
}

/// Whether a payload is worth compressing: packs hold compressed,
/// encrypted blocks already; catalog pages and heads compress well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    Yes,
    No,
}

impl EnvelopeKey {
    pub(super) fn new(
        content: Zeroizing<[u8; KEY_LEN]>,
        nonce_key: Zeroizing<[u8; KEY_LEN]>,
        vault_id: &str,
    ) -> Self {
        Self {
            aead: Aes256GcmSiv::new_from_slice(&content[..]).expect("32-byte key"),
            nonce_key,
            vault_id: vault_id.as_bytes().to_vec(),
        }
    }

    /// Seals `payload` as an object of `kind` (a tag the reader must name
    /// again: an object cannot be passed off as another kind).
    pub fn seal(&self, kind: u8, payload: &[u8], compress: Compress) -> Vec<u8> {
        let packed;
        let (flags, body) = match compress {
            Compress::Yes => {
                packed = zstd::bulk::compress(payload, 3).expect("zstd into memory");
                (FLAG_ZSTD, &packed[..])
            }
            Compress::No => (0, payload),
        };
        // Sealed where it lies: header, then the plaintext, encrypted in
        // place, then the tag (a pack is tens of MiB: no copy to spare).
        let padded = padme(PLAIN_HEADER_LEN + body.len());
        let mut out = Vec::with_capacity(HEADER_LEN + padded + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(kind);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.push(flags);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        out.resize(HEADER_LEN + padded, 0);
        let nonce = self.nonce_for(kind, &out[HEADER_LEN..]);
        out[MAGIC.len() + 1..HEADER_LEN].copy_from_slice(&nonce);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &self.aad(kind),
                (&mut out[HEADER_LEN..]).into(),
            )
            .expect("envelope encryption");
        out.extend_from_slice(&tag);
        out
    }

    /// The payload of an object sealed as `kind` by this store's key.
    pub fn open(&self, kind: u8, object: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if object.len() < HEADER_LEN || &object[..MAGIC.len()] != MAGIC {
            return Err(CryptoError::Malformed("not a phivault replica object"));
        }
        if object[MAGIC.len()] != kind {
            return Err(CryptoError::Malformed("an object of another kind"));
        }
        let nonce: [u8; NONCE_LEN] = object[MAGIC.len() + 1..HEADER_LEN].try_into().unwrap();
        let aad = self.aad(kind);
        let plain = self
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &object[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)?;
        if plain.len() < PLAIN_HEADER_LEN {
            return Err(CryptoError::Malformed("envelope too short"));
        }
        let flags = plain[0];
        let len = u64::from_le_bytes(plain[1..PLAIN_HEADER_LEN].try_into().unwrap());
        let body = usize::try_from(len)
            .ok()
            .and_then(|len| plain.get(PLAIN_HEADER_LEN..PLAIN_HEADER_LEN + len))
            .ok_or(CryptoError::Malformed("envelope length beyond its end"))?;
        match flags {
            0 => Ok(body.to_vec()),
            FLAG_ZSTD => {
                zstd::stream::decode_all(body).map_err(|e| CryptoError::Decompress(e.to_string()))
            }
            _ => Err(CryptoError::Malformed("unknown envelope flags")),
        }
    }

    /// Fills `out` with bytes that nobody without the key can tell from
    /// random, derived from `seed`: padding that hides where the data
    /// before it ends, and comes out the same for the same seed.
    pub fn fill_padding(&self, seed: &[u8], out: &mut [u8]) {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(b"padding");
        h.update(seed);
        h.finalize_xof().fill(out);
    }

    fn aad(&self, kind: u8) -> Vec<u8> {
        let mut aad = MAGIC.to_vec();
        aad.push(kind);
        aad.extend_from_slice(&self.vault_id);
        aad
    }

    fn nonce_for(&self, kind: u8, plain: &[u8]) -> [u8; NONCE_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&[kind]);
        h.update(plain);
        h.finalize().as_bytes()[..NONCE_LEN].try_into().unwrap()
    }
}

/// Padmé (Nikitin et al., 2019): rounds `len` up so that only its
/// O(log log len) leading bits remain, at most 12% more.
pub fn padme(len: usize) -> usize {
    let len = len.max(MIN_PADDED);
    let e = usize::BITS - 1 - len.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let last_bits = e.saturating_sub(s);
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> EnvelopeKey {
        EnvelopeKey::new(Zeroizing::new([7; 32]), Zeroizing::new([9; 32]), id)
    }

    #[test]
    fn sealed_objects_open_and_the_same_content_seals_alike() {
        let k = key("vault-a");
        for compress in [Compress::Yes, Compress::No] {
            let payload = b"catalog pages and audit bytes".repeat(500);
            let a = k.seal(3, &payload, compress);
            assert_eq!(a, k.seal(3, &payload, compress), "deterministic");
            assert_eq!(k.open(3, &a).unwrap(), payload);
            assert_ne!(a, k.seal(3, b"other", compress));
        }
        assert!(k.open(3, &k.seal(3, b"", Compress::No)).unwrap().is_empty());
    }

    #[test]
    fn a_flipped_byte_another_kind_or_another_store_is_refused() {
        let k = key("vault-a");
        let sealed = k.seal(2, b"pack bytes", Compress::No);
        for i in [0, 8, 9, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(k.open(2, &bad).is_err(), "byte {i}");
        }
        assert!(k.open(4, &sealed).is_err(), "kind");
        assert!(key("vault-b").open(2, &sealed).is_err(), "vault id");
    }

    #[test]
    fn sizes_are_padded_and_the_payload_is_not_in_clear() {
        let k = key("v");
        let marker = b"PHI-MARKER-Jane-Doe-1970".repeat(100);
        let sealed = k.seal(1, &marker, Compress::No);
        assert!(!sealed.windows(10).any(|w| w == &marker[..10]));
        assert!(k.seal(1, b"x", Compress::No).len() >= MIN_PADDED);
        for len in [1usize, 4095, 4096, 5000, 100_000, 33 << 20] {
            let p = padme(len);
            assert!(p >= len && p >= MIN_PADDED, "{len} -> {p}");
            assert!(
                p as f64 <= (len.max(MIN_PADDED) as f64) * 1.12 + 1.0,
                "{len} -> {p}"
            );
        }
        // Nearby lengths share a padded size.
        assert_eq!(padme(1_000_000), padme(1_000_100));
    }
}
