use std::path::PathBuf;

use anyhow::Context;

use super::retention::OutputFormat;
use super::util::{self, human_bytes, ratio};
use crate::store::StoreDir;
use crate::vault::store_info;

/// Show a store's format, sizes, counts, dedup and compression.
#[derive(clap::Args)]
#[command(
    long_about = "Show facts about STORE. Needs no passphrase: it reads only what the \
store keeps unencrypted (sizes, counts, times), never names or content. Works while mounted."
)]
pub struct Args {
    pub store: PathBuf,
    /// Output format: `text` for people, `json` for scripts (sizes in bytes).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let s = store_info(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    let mounts: Vec<(String, bool)> = util::mounts_of_store(&store)
        .into_iter()
        .map(|at| {
            let dead = util::is_dead_mount(std::path::Path::new(&at));
            (at, dead)
        })
        .collect();
    if a.format == OutputFormat::Json {
        let mut v = serde_json::to_value(&s)?;
        v["store"] = store.display().to_string().into();
        v["mounted_at"] = mounts
            .iter()
            .map(|(at, dead)| serde_json::json!({ "path": at, "dead": dead }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("store:          {}", store.display());
    println!("format:         {} (vault {})", s.format, s.vault_id);
    println!("created:        {}", s.created);
    println!("encryption:     AES-256-GCM-SIV, names encrypted, Argon2id key slots");
    println!("block size:     {}", human_bytes(s.block_size as u64));
    println!(
        "key slots:      {} ({} passphrase, {} recovery key)",
        s.passphrase_slots + s.recovery_key_slots,
        s.passphrase_slots,
        s.recovery_key_slots
    );
    for (at, dead) in &mounts {
        if *dead {
            println!("mounted at:     {at} (dead: its daemon is gone; `phivault mount` clears it)");
        } else {
            println!("mounted at:     {at}");
        }
    }
    println!("files:          {}", s.files);
    println!("directories:    {}", s.directories);
    println!("other entries:  {}", s.other_entries);
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
        human_bytes(s.pack_bytes),
        s.packs,
        human_bytes(s.catalog_bytes)
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
