use aes_gcm_siv::{Aes256GcmSiv, KeyInit};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{BlockSealer, NameCipher};

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
