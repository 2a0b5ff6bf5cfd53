//! `phivault replicate STORE [--remote NAME]`: a replication pass now.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::util;
use crate::replicate::remotes::{self, Remote};
use crate::replicate::state::{ErrorNote, StateDir};
use crate::replicate::{Pass, Progress};
use crate::store::{StoreDir, StoreError};
use crate::vault::{read_config, OpenOptions, Vault, VaultError};

/// Ship what a remote does not hold yet, now.
#[derive(clap::Args)]
#[command(
    long_about = "Ship to each remote of STORE (or to --remote NAME) what it does not \
hold yet: sealed packs, the catalog pages changed since the last pass, new audit records. \
Every object is opened and checked again before it leaves, and uploaded create-only.

If STORE is not mounted, this needs a passphrase and does the pass itself. If it is \
mounted, the mount does the pass (no passphrase needed) and this waits for it. Killed at \
any point, a rerun neither loses nor duplicates anything."
)]
pub struct Args {
    pub store: PathBuf,
    /// Only this remote.
    #[arg(long)]
    pub remote: Option<String>,
    /// How long to wait for a mount's pass.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub timeout: u64,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    util::keep_large_buffers();
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let config =
        read_config(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    let targets = match &a.remote {
        Some(name) => vec![remotes::find(&dir, name)?],
        None => remotes::list(&dir)?,
    };
    if targets.is_empty() {
        anyhow::bail!(
            "{} has no remote; add one with `phivault remote {} add NAME dir:/path` (or s3://bucket/prefix)",
            store.display(),
            store.display()
        );
    }
    if let Some(pid) = mounted_by(&dir) {
        return ask_the_mount(&dir, &targets, pid, Duration::from_secs(a.timeout));
    }
    let master = util::master_key(&store, &config, a.passphrase_file.as_deref())?;
    let open = OpenOptions {
        creates_files: false,
        ..OpenOptions::default()
    };
    let vault = match Vault::open(&dir, &master, &open) {
        Err(VaultError::Store(StoreError::Locked { pid })) => {
            return ask_the_mount(&dir, &targets, pid, Duration::from_secs(a.timeout))
        }
        r => r.with_context(|| format!("cannot open store {}", store.display()))?,
    };
    let key = master.envelope_key(&config.vault_id);
    let mut failed = 0;
    for remote in &targets {
        let state = StateDir::new(remotes::remote_dir(&dir, &remote.name));
        let outcome = pass_to(&vault, &key, remote, &state);
        let mut status = state.status();
        match &outcome {
            Ok(report) => {
                status.last_success_ns = Some(crate::replicate::pass::now_ns());
                status.last_error = None;
                match report.head {
                    Some(seq) => println!(
                        "{}: shipped {} objects, {} (pass {seq})",
                        remote.name,
                        report.objects,
                        util::human_bytes(report.bytes)
                    ),
                    None => println!("{}: up to date, nothing to ship", remote.name),
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("phivault: replication to {} failed: {e:#}", remote.name);
                status.last_error = Some(ErrorNote {
                    at_ns: crate::replicate::pass::now_ns(),
                    message: format!("{e:#}"),
                });
            }
        }
        state.save_status(&status)?;
    }
    vault.shutdown().context("closing the store")?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} remotes were not brought up to date",
            targets.len()
        );
    }
    Ok(())
}

fn pass_to(
    vault: &Vault,
    key: &crate::crypto::EnvelopeKey,
    remote: &Remote,
    state: &StateDir,
) -> anyhow::Result<crate::replicate::PassReport> {
    let place = remote.url()?.open(false)?;
    let bar = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    let progress = |p: Progress| {
        let mut bar = bar.lock().expect("progress bar");
        if bar.is_none() {
            *bar = util::progress_bar(p.total);
        }
        if let Some(b) = bar.as_ref() {
            b.set_position(p.done);
        }
    };
    let report = Pass {
        vault,
        key,
        place: &*place,
        state,
        progress: &progress,
        stop: None,
    }
    .run()?;
    if let Some(b) = bar.lock().expect("progress bar").take() {
        b.finish_and_clear();
    }
    Ok(report)
}

/// The pid of the daemon holding the store, if one does.
fn mounted_by(dir: &StoreDir) -> Option<String> {
    match crate::store::StoreLock::acquire(dir) {
        Err(StoreError::Locked { pid }) => Some(pid),
        _ => None,
    }
}

/// Leaves a request for the mount's replication thread, and waits until it
/// has served it.
fn ask_the_mount(
    dir: &StoreDir,
    targets: &[Remote],
    pid: String,
    timeout: Duration,
) -> anyhow::Result<()> {
    let token = format!("{:016x}", rand::random::<u64>());
    let started = Instant::now();
    let mut failed = 0;
    for remote in targets {
        let state = StateDir::new(remotes::remote_dir(dir, &remote.name));
        crate::store::write_atomic(&state.request_path(), token.as_bytes())
            .with_context(|| format!("cannot ask the mount (pid {pid}) for a pass"))?;
        let status = loop {
            let status = state.status();
            if status.served.as_deref() == Some(&token) {
                break status;
            }
            if started.elapsed() > timeout {
                anyhow::bail!(
                    "the mount (pid {pid}) has not done the pass to {} after {} s; see `phivault status`",
                    remote.name,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match status.last_error {
            Some(e) => {
                failed += 1;
                eprintln!(
                    "phivault: replication to {} failed: {}",
                    remote.name, e.message
                );
            }
            None => println!("{}: up to date (pass by the mount, pid {pid})", remote.name),
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} remotes were not brought up to date",
            targets.len()
        );
    }
    Ok(())
}
