use std::path::PathBuf;

use anyhow::Context;

use super::{init, passphrase, util};
use crate::crypto::SlotKind;
use crate::store::StoreDir;
use crate::vault::{add_passphrase, add_recovery_key, change_passphrase, list_slots, remove_slot};

/// Add, change or remove passphrases (key slots) without re-encrypting data.
#[derive(clap::Args)]
#[command(
    long_about = "Manage the key slots of STORE. Each slot wraps the store's master key \
with one passphrase, so passphrases can be added, changed and revoked without re-encrypting \
any data. With no action flag, changes the passphrase you enter. Every action first asks for \
an existing passphrase (or recovery key). Safe while the store is mounted and beside other \
changes of its configuration."
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
    let slots =
        list_slots(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    if a.list {
        println!("{:<6} {:<13} {:<22} kdf", "slot", "kind", "created");
        for s in &slots {
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
    if let Some(victim) = a.remove {
        remove_slot(&dir, &current, victim)?;
        println!("Removed key slot {victim}.");
    } else if a.add_recovery_key {
        let r = add_recovery_key(&dir, &current, kdf)?;
        println!(
            "Recovery key (slot {}), shown only now. Store it offline, away from the data:\n\n    {}\n",
            r.slot,
            r.key.as_str()
        );
        println!(
            "It unlocks the store like a passphrase (type it, or put it in a --passphrase-file)."
        );
    } else {
        let new = passphrase::new(a.new_passphrase_file.as_deref(), "passphrase")?;
        if a.add {
            let id = add_passphrase(&dir, &current, &new, kdf)?;
            println!("Added key slot {id}.");
        } else {
            let (old, id) = change_passphrase(&dir, &current, &new, kdf)?;
            println!("Changed the passphrase (slot {old} replaced by slot {id}).");
        }
    }
    Ok(())
}
