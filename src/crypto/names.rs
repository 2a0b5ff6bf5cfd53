//! Name encryption: names, symlink targets and xattr names/values are stored
//! only as ciphertext. Lookup goes through a keyed hash of (parent, name).

use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use zeroize::Zeroizing;

use super::CryptoError;

pub const LOOKUP_LEN: usize = 16;

pub struct NameCipher {
    cipher: Aes256GcmSiv,
    lookup_key: Zeroizing<[u8; 32]>,
}

impl NameCipher {
    pub(super) fn new(name_key: &[u8; 32], lookup_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256GcmSiv::new_from_slice(name_key).expect("32-byte key"),
            lookup_key: Zeroizing::new(*lookup_key),
        }
    }

    /// Keyed hash that finds `name` under `scope` (a parent inode, or an
    /// inode for xattr names) without storing the name.
    pub fn lookup_hash(&self, scope: u64, name: &[u8]) -> [u8; LOOKUP_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.lookup_key);
        h.update(&scope.to_le_bytes());
        h.update(name);
        let mut out = [0u8; LOOKUP_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..LOOKUP_LEN]);
        out
    }

    /// Deterministic (SIV) encryption bound to `scope` and a domain tag; the
    /// nonce is derived from the lookup hash so it need not be stored.
    pub fn encrypt(&self, domain: u8, scope: u64, name: &[u8]) -> Vec<u8> {
        let nonce = self.nonce(domain, scope, name);
        let aad = Self::aad(domain, scope);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: name,
                        aad: &aad,
                    },
                )
                .expect("encryption of a short name cannot fail"),
        );
        out
    }

    pub fn decrypt(&self, domain: u8, scope: u64, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 12 + 16 {
            return Err(CryptoError::Malformed("sealed name too short"));
        }
        let (nonce, ct) = sealed.split_at(12);
        let aad = Self::aad(domain, scope);
        self.cipher
            .decrypt(
                &Nonce::try_from(nonce).expect("12 bytes"),
                Payload { msg: ct, aad: &aad },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    fn nonce(&self, domain: u8, scope: u64, name: &[u8]) -> [u8; 12] {
        let mut h = blake3::Hasher::new_keyed(&self.lookup_key);
        h.update(b"nonce");
        h.update(&[domain]);
        h.update(&scope.to_le_bytes());
        h.update(name);
        let mut n = [0u8; 12];
        n.copy_from_slice(&h.finalize().as_bytes()[..12]);
        n
    }

    fn aad(domain: u8, scope: u64) -> [u8; 9] {
        let mut a = [0u8; 9];
        a[0] = domain;
        a[1..].copy_from_slice(&scope.to_le_bytes());
        a
    }
}

/// What a sealed name is: binding the domain into the AAD keeps a directory
/// entry name from being replayed as a symlink target or an xattr.
pub mod domain {
    pub const ENTRY: u8 = 1;
    pub const SYMLINK: u8 = 2;
    pub const XATTR_NAME: u8 = 3;
    pub const XATTR_VALUE: u8 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_are_scope_bound() {
        let c = NameCipher::new(&[1; 32], &[2; 32]);
        let s = c.encrypt(domain::ENTRY, 5, b"lab-results.pdf");
        assert!(!s.windows(3).any(|w| w == b"lab"));
        assert_eq!(c.decrypt(domain::ENTRY, 5, &s).unwrap(), b"lab-results.pdf");
        assert!(c.decrypt(domain::ENTRY, 6, &s).is_err());
        assert!(c.decrypt(domain::SYMLINK, 5, &s).is_err());
        assert_eq!(c.lookup_hash(5, b"a"), c.lookup_hash(5, b"a"));
        assert_ne!(c.lookup_hash(5, b"a"), c.lookup_hash(6, b"a"));
    }
}
