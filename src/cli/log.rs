use std::path::PathBuf;

use anyhow::Context;

use super::{passphrase, util};
use crate::store::StoreDir;
use crate::vault::{read_config, unlock_master, OpenOptions, Vault};

/// List the recorded versions of a file.
#[derive(clap::Args)]
#[command(
    long_about = "List every recorded version of PATH (a path inside the store, such as \
/reports/lab.pdf): version number, time, size and what made it a version. Works while mounted."
)]
pub struct Args {
    pub store: PathBuf,
    /// Path inside the store, from its root.
    pub path: String,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let config =
        read_config(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    let pass = passphrase::existing(a.passphrase_file.as_deref())?;
    let (master, _) = unlock_master(&config, &pass)
        .map_err(|_| anyhow::anyhow!("wrong passphrase for store {}", store.display()))?;
    let vault = Vault::open(
        &dir,
        &master,
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )?;
    let ino = vault
        .resolve(a.path.as_bytes())
        .with_context(|| format!("{} not found in the store", a.path))?;
    println!(
        "{:>8}  {:<24}  {:>14}  reason",
        "version", "time (UTC)", "size"
    );
    for v in vault.versions(ino)? {
        println!(
            "{:>8}  {:<24}  {:>14}  {}",
            v.version,
            format_time(v.time),
            v.size,
            v.reason.label()
        );
    }
    Ok(())
}

fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let stamp = crate::vault::format_utc(secs);
    format!("{}.{ms:03}Z", stamp.trim_end_matches('Z'))
}
