//! `phivault repair STORE --from NAME`: damaged or missing packs replaced
//! by a remote's copies.

use std::path::PathBuf;

use anyhow::Context;

use super::util;
use crate::replicate::recover::{fetch_pack, head_chain, shipped_packs};
use crate::replicate::remotes;
use crate::store::{PackId, StoreError};
use crate::vault::{OpenOptions, Vault, VaultError};

/// Replace damaged or missing packs with a remote's copies.
#[derive(clap::Args)]
#[command(
    long_about = "Read back every block of STORE (as `verify --read-data`), and \
replace each pack that is missing or holds a damaged block with the copy remote NAME holds: \
fetched, opened and checked block by block, written beside the damaged one and renamed over \
it. The copy is the same sealed pack, so nothing else changes. STORE must not be mounted."
)]
pub struct Args {
    pub store: PathBuf,
    /// The remote whose copies to use.
    #[arg(long = "from", value_name = "NAME")]
    pub from: String,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    util::keep_large_buffers();
    let util::Unlocked {
        store,
        dir,
        config,
        master,
    } = util::unlock(&a.store, a.passphrase_file.as_deref())?;
    let remote = remotes::find(&dir, &a.from)?;
    let open = OpenOptions {
        creates_files: false,
        ..OpenOptions::default()
    };
    let vault = match Vault::open(&dir, &master, &open) {
        Err(VaultError::Store(StoreError::Locked { pid })) => anyhow::bail!(
            "{} is mounted (daemon pid {pid}); unmount it to repair it",
            store.display()
        ),
        r => r.with_context(|| format!("cannot open store {}", store.display()))?,
    };
    let found = vault.verify_packs(&|_, _| true, &|_, _| {})?;
    let bad = found.bad_packs();
    if bad.is_empty() {
        println!(
            "{}: every block reads back intact; nothing to repair",
            store.display()
        );
        return Ok(vault.shutdown()?);
    }
    let place = remote
        .url()?
        .open_for_reading()
        .with_context(|| format!("cannot read remote {}", remote.name))?;
    let key = master.envelope_key(&config.vault_id);
    let shipped = shipped_packs(&head_chain(&*place, &key)?)?;
    let mut unrepaired = Vec::new();
    for id in &bad {
        let pack = PackId::from_i64(*id);
        let Some(object) = shipped.get(id) else {
            println!(
                "pack {pack}: {} never received it; cannot repair it from there",
                remote.name
            );
            unrepaired.push(*id);
            continue;
        };
        let fixed = fetch_pack(&*place, &key, *id, object)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(vault.replace_pack(*id, &bytes)?));
        match fixed {
            Ok(()) => println!("pack {pack}: replaced with the copy from {}", remote.name),
            Err(e) => {
                println!("pack {pack}: not repaired: {e:#}");
                unrepaired.push(*id);
            }
        }
    }
    let again = vault.verify_packs(&|_, id| bad.contains(&id), &|_, _| {})?;
    vault.shutdown().context("closing the store")?;
    if !again.is_clean() || !unrepaired.is_empty() {
        anyhow::bail!(
            "{} packs could not be repaired from {}; `phivault verify --read-data` names the files",
            again.bad_packs().len().max(unrepaired.len()),
            remote.name
        );
    }
    println!(
        "repaired {} packs; every block reads back intact",
        bad.len()
    );
    Ok(())
}
