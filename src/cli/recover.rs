//! `phivault recover URL NEWSTORE`: a whole store from a remote alone.

use std::path::PathBuf;

use anyhow::Context;

use super::remote::S3Flags;
use super::time_spec::{self, PointInTime};
use super::{passphrase, util};
use crate::replicate::recover::recover;
use crate::replicate::RemoteUrl;
use crate::store::StoreDir;
use crate::vault::{read_config, unlock_master, OpenOptions, Vault};

/// Rebuild a store from a remote, with a passphrase or the recovery key.
#[derive(clap::Args)]
#[command(
    long_about = "Rebuild a complete, working store in NEWSTORE (missing or empty) \
from the remote at URL alone (`dir:/path`, `/path` or `s3://bucket/prefix` with the \
options it was added with): every version of every file, the \
audit trail, the retention policy and the key slots, as of the remote's last pass (or, \
with --at, of the last pass at or before TIME: the store before a ransomware attack or a \
mistaken change that was replicated). A remote keeps every pass of the last retention \
lock and a day, and older ones back to a snapshot (`phivault status` shows how far back); \
an earlier TIME is refused with the oldest time kept. Any \
passphrase of the store opens it, and so does its recovery key.

S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
AWS_SESSION_TOKEN) in the environment. NEWSTORE does not replicate anywhere until a remote \
is added to it."
)]
pub struct Args {
    pub url: String,
    pub new_store: PathBuf,
    /// The store as of the last pass at or before TIME (as for `restore
    /// --at`), instead of the last pass.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub at: Option<PointInTime>,
    #[command(flatten)]
    pub s3: S3Flags,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    util::keep_large_buffers();
    let url = RemoteUrl::parse_with(&a.url, &a.s3.options())?;
    let at = match a.at {
        None => None,
        Some(PointInTime::Instant(t)) => Some(t.as_nanosecond() as i64),
        Some(PointInTime::Version(_)) => {
            anyhow::bail!("--at takes a time here, not a version number")
        }
    };
    let store = util::absolute(&a.new_store)?;
    let dir = StoreDir::new(&store);
    if dir.exists() {
        anyhow::bail!(
            "{} is a store already; recover into a new, empty directory",
            store.display()
        );
    }
    if std::fs::read_dir(&store).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} is not empty; recover into a new, empty directory",
            store.display()
        );
    }
    let place = url
        .open_for_reading()
        .with_context(|| format!("cannot read the remote {url}"))?;
    let pass = passphrase::existing(a.passphrase_file.as_deref())?;
    let bar = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    let progress = |p: crate::replicate::Progress| {
        let mut bar = bar.lock().expect("progress bar");
        if bar.is_none() {
            *bar = util::progress_bar(p.total);
        }
        if let Some(b) = bar.as_ref() {
            b.set_position(p.done);
        }
    };
    let done = match recover(&*place, &pass, &dir, at, &progress) {
        Ok(done) => done,
        Err(e) => {
            // Leave nothing half-made behind: a later attempt starts clean.
            if dir.root().exists() && !dir.exists() {
                let _ = std::fs::remove_dir_all(dir.root());
            }
            return Err(e).with_context(|| format!("cannot recover from {url}"));
        }
    };
    if let Some(b) = bar.lock().expect("progress bar").take() {
        b.finish_and_clear();
    }
    // The first open checks and finishes it as any store after a stop.
    let config = read_config(&dir)?;
    let (master, _) = unlock_master(&config, &pass)?;
    let vault = Vault::open(&dir, &master, &OpenOptions::default())
        .with_context(|| format!("the recovered store {} does not open", store.display()))?;
    vault
        .integrity_check()
        .context("the recovered catalog fails its integrity check")?;
    vault.shutdown().context("closing the recovered store")?;
    println!(
        "recovered {} from {url}: {} passes, {} packs ({}), {} audit segments",
        store.display(),
        done.heads,
        done.packs,
        util::human_bytes(done.bytes),
        done.audit_segments
    );
    Ok(())
}
