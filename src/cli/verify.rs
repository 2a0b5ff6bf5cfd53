//! `phivault verify STORE`: every block a kept version needs is there, and
//! with --read-data reads back as written; locally and on a remote.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::util;
use crate::replicate::place::ObjectKind;
use crate::replicate::recover::{fetch_pack, head_chain, shipped_packs};
use crate::replicate::remotes;
use crate::store::{PackId, StoreDir};
use crate::vault::{DamagedBlock, OpenOptions, Vault};

/// Check that the blocks of every kept version are there and intact.
#[derive(clap::Args)]
#[command(
    long_about = "Check that every pack the kept versions need exists; with \
--read-data, also read every block back, decrypt and authenticate it, and check it against \
its id. A damaged or missing block is named by the files and versions that use it. \
--read-data=PERCENT reads that share of the packs, a different share each run, so that \
repeated runs cover everything. --remote NAME checks the remote too: it holds every pack \
shipped to it (and, with --read-data, they open and check). Works while STORE is mounted. \
Exit status 0: intact; 1: damage found (see `phivault repair`)."
)]
pub struct Args {
    pub store: PathBuf,
    /// Read back and check blocks: all of them, or PERCENT of the packs.
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "100",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub read_data: Option<u8>,
    /// Check this remote as well.
    #[arg(long)]
    pub remote: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    util::keep_large_buffers();
    let util::Unlocked {
        store, dir, master, ..
    } = util::unlock(&a.store, a.passphrase_file.as_deref())?;
    let vault = Vault::open(
        &dir,
        &master,
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .with_context(|| format!("cannot open store {}", store.display()))?;
    let picks = Picks::load(&dir, a.read_data);
    let local = vault.verify_packs(&|i, _| picks.reads(i), &|_, _| {})?;
    let mut bad = 0;
    println!(
        "local: {} packs, {} read ({} blocks checked)",
        local.packs, local.packs_read, local.blocks_read
    );
    for pack in &local.missing {
        println!("  pack {} is missing", PackId::from_i64(*pack));
    }
    bad += report(&local.damaged);
    if let Some(name) = &a.remote {
        bad += verify_remote(&vault, &dir, &master, name, &picks)?;
    }
    picks.advance(local.packs as usize);
    if bad > 0 {
        anyhow::bail!("{bad} damaged or missing blocks or packs; `phivault repair {} --from REMOTE` puts back the remote's copies", store.display());
    }
    println!("intact");
    Ok(())
}

/// Prints damage per file; returns how many blocks.
fn report(damaged: &[DamagedBlock]) -> usize {
    let mut by_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in damaged {
        for (path, u) in &d.uses {
            let versions = match u.until {
                Some(until) if until == u.from + 1 => format!("version {}", u.from),
                Some(until) => format!("versions {}-{}", u.from, until - 1),
                None => format!("versions {} to the current one", u.from),
            };
            by_file.entry(path).or_default().push(format!(
                "{versions}: block at pack {} offset {}: {}",
                PackId::from_i64(d.pack),
                d.offset,
                d.what
            ));
        }
    }
    for (path, lines) in by_file {
        println!("  damaged: {path}");
        for l in lines {
            println!("    {l}");
        }
    }
    damaged.len()
}

fn verify_remote(
    vault: &Vault,
    dir: &StoreDir,
    master: &crate::crypto::MasterKey,
    name: &str,
    picks: &Picks,
) -> anyhow::Result<usize> {
    let remote = remotes::find(dir, name)?;
    let url = remote.url()?;
    let place = url
        .open_for_reading()
        .with_context(|| format!("cannot read remote {name}"))?;
    let key = master.envelope_key(&vault.config().vault_id);
    let chain = head_chain(&*place, &key)?;
    let shipped = shipped_packs(&chain)?;
    let present: HashSet<_> = place
        .list(ObjectKind::Data)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let needed = vault.replication_cut()?.sealed_packs;
    let (mut bad, mut read, mut unshipped) = (0, 0, 0);
    for (i, (id, _)) in needed.iter().enumerate() {
        let Some(object) = shipped.get(id) else {
            unshipped += 1;
            continue;
        };
        if !present.contains(object) {
            println!(
                "  {name}: pack {} is missing (object {})",
                PackId::from_i64(*id),
                object.hex()
            );
            bad += 1;
        } else if picks.reads(i) {
            read += 1;
            let checked = fetch_pack(&*place, &key, *id, object)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(vault.check_pack_copy(*id, &bytes)?));
            if let Err(e) = checked {
                println!("  {name}: pack {} is damaged: {e:#}", PackId::from_i64(*id));
                bad += 1;
            }
        }
    }
    println!(
        "remote {name} ({}): {} heads, {} packs, {read} read, {unshipped} not shipped yet",
        remote.url,
        chain.len(),
        needed.len() - unshipped
    );
    Ok(bad)
}

/// Which packs a run reads: all, none, or a rotating share.
struct Picks {
    percent: Option<u8>,
    start: usize,
    cursor: PathBuf,
}

impl Picks {
    fn load(dir: &StoreDir, percent: Option<u8>) -> Self {
        let cursor = dir.root().join("verify-cursor");
        let start = std::fs::read_to_string(&cursor)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Self {
            percent,
            start,
            cursor,
        }
    }

    /// Whether pack number `i` (in id order) is read this run.
    fn reads(&self, i: usize) -> bool {
        match self.percent {
            None => false,
            Some(100) => true,
            Some(p) => (i + 100 - self.start % 100) % 100 < p as usize,
        }
    }

    /// The next run reads the share after this one's.
    fn advance(&self, _packs: usize) {
        if let Some(p @ 1..=99) = self.percent {
            let next = (self.start + p as usize) % 100;
            let _ =
                crate::store::write_atomic(Path::new(&self.cursor), next.to_string().as_bytes());
        }
    }
}
