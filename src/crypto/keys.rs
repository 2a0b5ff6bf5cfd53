use aes_gcm_siv::aead::{Aead, AeadInOut, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{BlockSealer, CryptoError, NameCipher};

pub const KEY_LEN: usize = 32;

/// The 32 random bytes everything else is derived from. Never stored in clear.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The keyed BLAKE3 hash that authenticates vault.toml's policy
    /// (`VaultConfig::authenticated_bytes`). Compare the result as a
    /// `blake3::Hash`, whose equality takes constant time.
    pub fn config_mac(&self, message: &[u8]) -> blake3::Hash {
        let key = self.derive(CTX_CONFIG_MAC);
        blake3::keyed_hash(&key, message)
    }

    /// The keys of the audit trail (see `AuditKeys`).
    pub fn audit_keys(&self) -> AuditKeys {
        let content = self.derive(CTX_AUDIT_CONTENT);
        AuditKeys {
            content: Aes256GcmSiv::new_from_slice(&content[..]).expect("32-byte key"),
            record_mac: self.derive(CTX_AUDIT_RECORD_MAC),
            chain: self.derive(CTX_AUDIT_CHAIN),
            state: self.derive(CTX_AUDIT_STATE),
        }
    }

    /// The key of this store's replica objects (see `envelope`), bound to
    /// the store's id.
    pub fn envelope_key(&self, vault_id: &str) -> super::EnvelopeKey {
        super::EnvelopeKey::new(
            self.derive(CTX_REPLICA_CONTENT),
            self.derive(CTX_REPLICA_NONCE),
            vault_id,
        )
    }

    /// One key, one purpose: each sub-key is bound to an explicit context string.
    fn derive(&self, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(blake3::derive_key(purpose, &self.0))
    }
}

const CTX_CONTENT: &str = "phivault 2026-11 block content AES-256-GCM-SIV";
const CTX_BLOCK_ID: &str = "phivault 2026-11 block id BLAKE3 keyed";
const CTX_NAMES: &str = "phivault 2026-11 names AES-256-GCM-SIV";
const CTX_NAME_LOOKUP: &str = "phivault 2026-11 name lookup BLAKE3 keyed";
const CTX_PACK_INDEX: &str = "phivault 2026-11 pack index AES-256-GCM-SIV";
const CTX_CONFIG_MAC: &str = "phivault 2026-12 config MAC BLAKE3 keyed";
const CTX_AUDIT_CONTENT: &str = "phivault 2026-12 audit record AES-256-GCM-SIV";
const CTX_AUDIT_RECORD_MAC: &str = "phivault 2026-12 audit record MAC BLAKE3 keyed";
const CTX_AUDIT_CHAIN: &str = "phivault 2026-12 audit chain MAC BLAKE3 keyed";
const CTX_AUDIT_STATE: &str = "phivault 2026-12 audit anchor and head MAC BLAKE3 keyed";
const CTX_REPLICA_CONTENT: &str = "phivault 2026-12 replica object AES-256-GCM-SIV";
const CTX_REPLICA_NONCE: &str = "phivault 2026-12 replica nonce BLAKE3 keyed";

/// All sub-keys of an unlocked vault, ready to use.
pub struct Keys {
    pub blocks: BlockSealer,
    pub names: NameCipher,
    pub pack_index: Aes256GcmSiv,
}

impl Keys {
    pub fn derive(master: &MasterKey) -> Self {
        let content = master.derive(CTX_CONTENT);
        let block_id = master.derive(CTX_BLOCK_ID);
        let names = master.derive(CTX_NAMES);
        let lookup = master.derive(CTX_NAME_LOOKUP);
        let index = master.derive(CTX_PACK_INDEX);
        Keys {
            blocks: BlockSealer::new(&content, &block_id),
            names: NameCipher::new(&names, &lookup),
            pack_index: Aes256GcmSiv::new_from_slice(&index[..]).expect("32-byte key"),
        }
    }
}

/// The audit trail's keys: records are encrypted under one, MACed under
/// another, chained under a third; the trail's anchor and head under a fourth.
#[derive(Clone)]
pub struct AuditKeys {
    content: Aes256GcmSiv,
    record_mac: Zeroizing<[u8; KEY_LEN]>,
    chain: Zeroizing<[u8; KEY_LEN]>,
    state: Zeroizing<[u8; KEY_LEN]>,
}

impl AuditKeys {
    /// Encrypts `buf` in place (it grows by the 16-byte tag).
    pub fn seal_record(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
        self.content
            .encrypt_in_place(&Nonce::from(*nonce), aad, buf)
            .expect("record encryption");
    }

    pub fn open_record(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.content
            .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Tampered)
    }

    /// The MAC of one record's stored bytes.
    pub fn record_mac(&self, frame: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.record_mac, frame).as_bytes()
    }

    /// The chain MAC after a record: binds it to every record before it.
    pub fn chain_mac(&self, previous: &[u8; 32], record_mac: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.chain);
        h.update(previous);
        h.update(record_mac);
        *h.finalize().as_bytes()
    }

    /// The MAC of the trail's anchor or head. Compare as `blake3::Hash`
    /// (constant time).
    pub fn state_mac(&self, message: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.state, message)
    }
}
