use std::path::PathBuf;

use anyhow::{bail, Context};
use rand::RngCore;

use super::{init, passphrase, util};
use crate::crypto::{KeySlot, Passphrase, SlotKind};
use crate::store::{StoreDir, StoreLock, VaultConfig};
use crate::vault::{rfc3339_now, unlock_master};

/// Add, change or remove passphrases (key slots) without re-encrypting data.
#[derive(clap::Args)]
#[command(
    long_about = "Manage the key slots of STORE. Each slot wraps the store's master key \
with one passphrase, so passphrases can be added, changed and revoked without re-encrypting \
any data. With no action flag, changes the passphrase you enter. Every action first asks for \
an existing passphrase (or recovery key)."
)]
pub struct Args {
    pub store: PathBuf,
    /// Read the current passphrase from this file.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the new passphrase from this file (for --add or a change).
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Add a slot for another passphrase.
    #[arg(long, conflicts_with_all = ["remove", "add_recovery_key", "list"])]
    pub add: bool,
    /// Remove the key slot with this id (see --list). The last slot cannot be removed.
    #[arg(long, value_name = "SLOT")]
    pub remove: Option<u32>,
    /// Generate a recovery key, print it once, and add it as a slot.
    #[arg(long, conflicts_with_all = ["remove", "list"])]
    pub add_recovery_key: bool,
    /// List the key slots (needs no passphrase).
    #[arg(long)]
    pub list: bool,
    /// Argon2id memory in MiB for the new slot.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id iterations for the new slot.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let mut config = VaultConfig::load(&dir)
        .with_context(|| format!("cannot open store {}", store.display()))?;
    if a.list {
        println!("{:<6} {:<13} {:<22} kdf", "slot", "kind", "created");
        for s in &config.slots {
            let kind = match s.kind {
                SlotKind::Passphrase => "passphrase",
                SlotKind::RecoveryKey => "recovery-key",
            };
            println!(
                "{:<6} {:<13} {:<22} argon2id m={}MiB t={} p={}",
                s.id,
                kind,
                s.created,
                s.kdf.memory_kib / 1024,
                s.kdf.iterations,
                s.kdf.parallelism
            );
        }
        return Ok(());
    }
    let kdf = init::kdf(a.kdf_memory_mib, a.kdf_iterations)?;
    let current = passphrase::existing(a.passphrase_file.as_deref())?;
    let (master, opened) = unlock_master(&config, &current).map_err(|_| {
        anyhow::anyhow!(
            "wrong passphrase for store {}; nothing was changed",
            store.display()
        )
    })?;
    let now = rfc3339_now();
    let id = config.next_slot_id();
    if let Some(victim) = a.remove {
        if !config.slots.iter().any(|s| s.id == victim) {
            bail!("store has no key slot {victim} (see `phivault passwd --list`)");
        }
        if config.slots.len() == 1 {
            bail!(
                "slot {victim} is the last key slot; removing it would lock the data away for good"
            );
        }
        config.slots.retain(|s| s.id != victim);
        save(&dir, &config)?;
        println!("Removed key slot {victim}.");
    } else if a.add_recovery_key {
        let key = recovery_key();
        let slot = KeySlot::wrap(
            id,
            SlotKind::RecoveryKey,
            now,
            kdf,
            &Passphrase::new(key.clone().into_bytes()),
            &master,
        )?;
        config.slots.push(slot);
        save(&dir, &config)?;
        println!("Recovery key (slot {id}), shown only now. Store it offline, away from the data:\n\n    {key}\n");
        println!(
            "It unlocks the store like a passphrase (type it, or put it in a --passphrase-file)."
        );
    } else {
        let new = passphrase::new(a.new_passphrase_file.as_deref(), "passphrase")?;
        let slot = KeySlot::wrap(id, SlotKind::Passphrase, now, kdf, &new, &master)?;
        if !a.add {
            config.slots.retain(|s| s.id != opened);
        }
        config.slots.push(slot);
        save(&dir, &config)?;
        if a.add {
            println!("Added key slot {id}.");
        } else {
            println!("Changed the passphrase (slot {opened} replaced by slot {id}).");
        }
    }
    Ok(())
}

fn save(dir: &StoreDir, config: &VaultConfig) -> anyhow::Result<()> {
    // Hold the store lock only if it is free: a mounted store rereads nothing
    // from vault.toml, and the file is replaced atomically.
    let _lock = StoreLock::acquire(dir).ok();
    config.save(dir).context("cannot write vault.toml")
}

/// 160 random bits as 8 groups of 5 base32 characters.
fn recovery_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789"; // no 0/O/1/I/L
    let mut bytes = [0u8; 40];
    rand::rng().fill_bytes(&mut bytes);
    let chars: Vec<u8> = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
        .collect();
    chars
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}
