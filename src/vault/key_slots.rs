//! Key slots: adding, changing and revoking the passphrases (and recovery
//! keys) that open a store, without re-encrypting any data.
//!
//! The slow part (Argon2: opening the current slot, wrapping a new one)
//! runs before vault.toml's edit lock is taken; the change itself is checked
//! again against the file as it is under the lock, so concurrent changes,
//! mounted or not, never lose one another. Never writes a secret anywhere.

use rand::RngCore;
use zeroize::Zeroizing;

use super::lifecycle::rfc3339_now;
use super::settings::{authenticate, unlock_store, UnlockError, UnlockFor, Unlocked};
use crate::crypto::{CryptoError, KdfParams, KeySlot, Passphrase, SlotKind};
use crate::store::{StoreDir, StoreError, VaultConfig};

#[derive(Debug, thiserror::Error)]
pub enum KeySlotError {
    #[error(transparent)]
    Unlock(#[from] UnlockError),
    #[error("store has no key slot {0} (see `phivault passwd --list`); nothing was changed")]
    NoSuchSlot(u32),
    #[error(
        "slot {0} is the last key slot; removing it would lock the data away for good. \
         Add another passphrase or a recovery key first (`phivault passwd --add`)"
    )]
    LastSlot(u32),
    #[error(
        "key slot {0}, which the passphrase opened, was removed by another change while this \
         one ran; nothing was changed. Run the command again with a passphrase that still \
         opens the store"
    )]
    OpenedSlotGone(u32),
    #[error("cannot wrap the master key for a new slot: {0}")]
    Crypto(#[from] CryptoError),
    #[error("cannot change vault.toml: {0}")]
    Store(#[from] StoreError),
}

/// The key slots of a store, as vault.toml lists them (needs no passphrase).
pub fn list_slots(dir: &StoreDir) -> Result<Vec<KeySlot>, StoreError> {
    Ok(VaultConfig::load(dir)?.slots)
}

/// Adds a slot for `new`; returns its id.
pub fn add_passphrase(
    dir: &StoreDir,
    current: &Passphrase,
    new: &Passphrase,
    kdf: KdfParams,
) -> Result<u32, KeySlotError> {
    let u = unlock_store(dir, current, UnlockFor::Writing)?;
    let slot = wrap(&u, SlotKind::Passphrase, new, kdf)?;
    edit_slots(dir, &u, |cfg| Ok(push(cfg, slot)))
}

/// Replaces the slot `current` opens with one for `new`; returns the ids
/// of the old slot and the new one.
pub fn change_passphrase(
    dir: &StoreDir,
    current: &Passphrase,
    new: &Passphrase,
    kdf: KdfParams,
) -> Result<(u32, u32), KeySlotError> {
    let u = unlock_store(dir, current, UnlockFor::Writing)?;
    let slot = wrap(&u, SlotKind::Passphrase, new, kdf)?;
    let opened = u.slot;
    edit_slots(dir, &u, |cfg| {
        if !cfg.slots.iter().any(|s| s.id == opened) {
            return Err(KeySlotError::OpenedSlotGone(opened));
        }
        let id = push(cfg, slot);
        cfg.slots.retain(|s| s.id != opened);
        Ok((opened, id))
    })
}

/// Removes slot `victim`, unless it is the last one.
pub fn remove_slot(dir: &StoreDir, current: &Passphrase, victim: u32) -> Result<(), KeySlotError> {
    let u = unlock_store(dir, current, UnlockFor::Writing)?;
    edit_slots(dir, &u, |cfg| {
        if !cfg.slots.iter().any(|s| s.id == victim) {
            return Err(KeySlotError::NoSuchSlot(victim));
        }
        if cfg.slots.len() == 1 {
            return Err(KeySlotError::LastSlot(victim));
        }
        cfg.slots.retain(|s| s.id != victim);
        Ok(())
    })
}

/// A recovery key: shown to the user once, never stored in clear.
pub struct RecoveryKey {
    pub slot: u32,
    pub key: Zeroizing<String>,
}

/// Generates a recovery key and adds it as a slot.
pub fn add_recovery_key(
    dir: &StoreDir,
    current: &Passphrase,
    kdf: KdfParams,
) -> Result<RecoveryKey, KeySlotError> {
    let u = unlock_store(dir, current, UnlockFor::Writing)?;
    let key = generate_recovery_key();
    let slot = wrap(
        &u,
        SlotKind::RecoveryKey,
        &Passphrase::new(key.as_bytes().to_vec()),
        kdf,
    )?;
    let slot = edit_slots(dir, &u, |cfg| Ok(push(cfg, slot)))?;
    Ok(RecoveryKey { slot, key })
}

/// Wraps the master key for a new slot. Its id is given under the lock.
fn wrap(
    u: &Unlocked,
    kind: SlotKind,
    pass: &Passphrase,
    kdf: KdfParams,
) -> Result<KeySlot, CryptoError> {
    KeySlot::wrap(0, kind, rfc3339_now(), kdf, pass, &u.master)
}

/// Adds `slot` with the next free id; returns the id.
fn push(cfg: &mut VaultConfig, mut slot: KeySlot) -> u32 {
    slot.id = cfg.next_slot_id();
    let id = slot.id;
    cfg.slots.push(slot);
    id
}

/// A locked read-modify-write of the slots. The fresh file's policy is
/// authenticated again first, so a hand edit made meanwhile is refused
/// rather than signed.
fn edit_slots<T>(
    dir: &StoreDir,
    u: &Unlocked,
    change: impl FnOnce(&mut VaultConfig) -> Result<T, KeySlotError>,
) -> Result<T, KeySlotError> {
    VaultConfig::edit(dir, |cfg| {
        authenticate(cfg, &u.master).map_err(|source| UnlockError::Store {
            store: dir.root().to_path_buf(),
            source,
        })?;
        change(cfg)
    })
}

/// 40 random characters of a 31-letter alphabet (over 190 bits), in 8
/// groups of 5.
fn generate_recovery_key() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789"; // no 0/O/1/I/L
    let mut bytes = Zeroizing::new([0u8; 40]);
    rand::rng().fill_bytes(&mut bytes[..]);
    let mut key = Zeroizing::new(String::with_capacity(47));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            key.push('-');
        }
        key.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    key
}
