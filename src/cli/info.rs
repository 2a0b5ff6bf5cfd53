use std::path::PathBuf;

use anyhow::Context;

use super::util::{self, human_bytes, ratio};
use crate::catalog::Catalog;
use crate::crypto::SlotKind;
use crate::store::{StoreDir, VaultConfig};

/// Show a store's format, sizes, counts, dedup and compression.
#[derive(clap::Args)]
#[command(
    long_about = "Show facts about STORE. Needs no passphrase: it reads only what the \
store keeps unencrypted (sizes, counts, times), never names or content. Works while mounted."
)]
pub struct Args {
    pub store: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let config = VaultConfig::load(&dir)
        .with_context(|| format!("cannot open store {}", store.display()))?;
    let cat = Catalog::open_readonly(&dir.catalog_path()).context("cannot read the catalog")?;
    let s = cat.stats()?;
    let pack_bytes = dir_size(&dir.packs_dir());
    let catalog_bytes = ["", "-wal"]
        .iter()
        .map(|x| file_size(&format!("{}{x}", dir.catalog_path().display())))
        .sum::<u64>();
    let recovery = config
        .slots
        .iter()
        .filter(|s| s.kind == SlotKind::RecoveryKey)
        .count();
    println!("store:          {}", store.display());
    println!(
        "format:         {} (vault {})",
        config.format, config.vault_id
    );
    println!("created:        {}", config.created);
    println!("encryption:     AES-256-GCM-SIV, names encrypted, Argon2id key slots");
    println!("block size:     {}", human_bytes(config.block_size as u64));
    println!(
        "key slots:      {} ({} passphrase, {} recovery key)",
        config.slots.len(),
        config.slots.len() - recovery,
        recovery
    );
    for at in util::mounts_of_store(&store) {
        if util::is_dead_mount(std::path::Path::new(&at)) {
            println!("mounted at:     {at} (dead: its daemon is gone; `phivault mount` clears it)");
        } else {
            println!("mounted at:     {at}");
        }
    }
    println!("files:          {}", s.files);
    println!("directories:    {}", s.directories);
    println!("other entries:  {}", s.other_inodes);
    println!("versions:       {}", s.versions);
    println!(
        "logical size:   {} (current files)",
        human_bytes(s.logical_bytes)
    );
    println!(
        "unique blocks:  {} ({} before compression)",
        s.unique_blocks,
        human_bytes(s.unique_plain_bytes)
    );
    println!(
        "stored:         {} in {} packs, catalog {}",
        human_bytes(pack_bytes),
        s.packs,
        human_bytes(catalog_bytes)
    );
    println!(
        "dedup ratio:    {} (live data / unique data)",
        ratio(s.referenced_bytes, s.unique_plain_bytes)
    );
    println!(
        "compression:    {} (unique data / stored blocks)",
        ratio(s.unique_plain_bytes, s.stored_block_bytes)
    );
    Ok(())
}

fn file_size(p: &str) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
