//! Keys and cryptography: the master key, its passphrase-wrapped key slots,
//! purpose-bound sub-keys, block sealing and name encryption.
//!
//! Owns every use of key material. Never writes anything to disk itself and
//! never logs a key or a passphrase.

mod block;
pub mod envelope;
mod keys;
pub mod names;
mod slots;

pub use block::{BlockId, BlockSealer, CiphertextBuf, SealedBlock, BLOCK_ID_LEN, NONCE_LEN};
pub use envelope::{padme, Compress, EnvelopeKey};
pub use keys::{AuditKeys, Keys, MasterKey};
pub use names::NameCipher;
pub use slots::{unlock, KdfParams, KeySlot, Passphrase, SlotKind};

/// Errors from the cryptographic layer. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the passphrase does not open any key slot of this store")]
    WrongPassphrase,
    #[error("authentication failed: the data was altered or belongs elsewhere")]
    Tampered,
    #[error("block content does not match its id")]
    IdMismatch,
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    #[error("decompression failed: {0}")]
    Decompress(String),
}
