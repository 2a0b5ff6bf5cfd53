//! Key slots: the master key wrapped by a key derived from a passphrase with
//! Argon2id, like LUKS slots. Adding or revoking a passphrase never touches data.

use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::keys::{MasterKey, KEY_LEN};
use super::CryptoError;

/// A passphrase in memory; wiped when dropped, never printed by Debug.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id setting, about half a second here.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SlotKind {
    Passphrase,
    RecoveryKey,
}

/// One wrapped copy of the master key. Serialized into vault.toml: holds no secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySlot {
    pub id: u32,
    pub kind: SlotKind,
    pub created: String,
    pub kdf: KdfParams,
    salt: String,
    nonce: String,
    wrapped: String,
}

const WRAP_AAD: &[u8] = b"phivault key slot v1";

impl KeySlot {
    pub fn wrap(
        id: u32,
        kind: SlotKind,
        created: String,
        kdf: KdfParams,
        pass: &Passphrase,
        master: &MasterKey,
    ) -> Result<Self, CryptoError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut salt);
        rand::rng().fill_bytes(&mut nonce);
        let kek = derive_kek(&kdf, pass, &salt)?;
        let cipher = Aes256GcmSiv::new_from_slice(&kek[..]).expect("32-byte key");
        let wrapped = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: master.as_bytes(),
                    aad: WRAP_AAD,
                },
            )
            .map_err(|_| CryptoError::Malformed("wrap"))?;
        Ok(Self {
            id,
            kind,
            created,
            kdf,
            salt: B64.encode(salt),
            nonce: B64.encode(nonce),
            wrapped: B64.encode(wrapped),
        })
    }

    /// Returns the master key if `pass` is this slot's passphrase.
    pub fn unwrap_key(&self, pass: &Passphrase) -> Result<MasterKey, CryptoError> {
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| CryptoError::Malformed("slot salt"))?;
        let nonce = B64
            .decode(&self.nonce)
            .map_err(|_| CryptoError::Malformed("slot nonce"))?;
        let wrapped = B64
            .decode(&self.wrapped)
            .map_err(|_| CryptoError::Malformed("slot wrapped key"))?;
        let nonce =
            Nonce::try_from(nonce.as_slice()).map_err(|_| CryptoError::Malformed("slot nonce"))?;
        let kek = derive_kek(&self.kdf, pass, &salt)?;
        let cipher = Aes256GcmSiv::new_from_slice(&kek[..]).expect("32-byte key");
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &wrapped,
                        aad: WRAP_AAD,
                    },
                )
                .map_err(|_| CryptoError::WrongPassphrase)?,
        );
        let bytes: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("slot key length"))?;
        Ok(MasterKey::from_bytes(bytes))
    }
}

fn derive_kek(
    kdf: &KdfParams,
    pass: &Passphrase,
    salt: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let params = Params::new(
        kdf.memory_kib,
        kdf.iterations,
        kdf.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(pass.as_bytes(), salt, &mut out[..])
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Tries each slot in turn; the first that opens gives the master key.
pub fn unlock(slots: &[KeySlot], pass: &Passphrase) -> Result<(MasterKey, u32), CryptoError> {
    for slot in slots {
        match slot.unwrap_key(pass) {
            Ok(k) => return Ok((k, slot.id)),
            Err(CryptoError::WrongPassphrase) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CryptoError::WrongPassphrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn slot_opens_only_with_its_passphrase() {
        let mk = MasterKey::generate();
        let p = Passphrase::new(b"correct horse battery staple".to_vec());
        let slot = KeySlot::wrap(1, SlotKind::Passphrase, "now".into(), FAST, &p, &mk).unwrap();
        assert_eq!(slot.unwrap_key(&p).unwrap().as_bytes(), mk.as_bytes());
        let wrong = Passphrase::new(b"incorrect horse".to_vec());
        assert!(matches!(
            slot.unwrap_key(&wrong),
            Err(CryptoError::WrongPassphrase)
        ));
        let s = toml::to_string(&slot).unwrap();
        assert!(!s.contains("correct horse"));
    }
}
