use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use super::time_spec::format_rfc3339;
use super::util;
use super::util::timestamp;
use crate::audit::AuditPruneReport;
use crate::store::StoreError;
use crate::vault::{
    format_utc, OpenOptions, PruneOptions, PruneReport, PruneStage, Vault, VaultError,
};

/// Remove the versions the retention policy lets go and reclaim their space.
#[derive(clap::Args)]
#[command(
    long_about = "Apply STORE's retention policy (see `phivault retention`): remove \
the versions it lets go, free the blocks no kept version uses, and compact packs that became \
mostly garbage so the disk space comes back, and remove the audit trail's segments whose \
records are all older than `[audit] keep` (listed with their times, records and size). No version younger than the policy's lock-days is \
ever removed. A pack no longer used is deleted at the first prune an hour or more later, so \
that a reader that looked it up just before never loses a block. Safe to interrupt at any \
moment; run it again to carry on. A mounted store prunes itself in the background (see \
`mount --prune-interval`); while it is mounted, only --dry-run works here."
)]
pub struct Args {
    pub store: PathBuf,
    /// Show what would be removed and reclaimed (versions, packs, audit
    /// segments); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Per file, which versions go and why the others stay.
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let util::Unlocked {
        store, dir, master, ..
    } = util::unlock(&a.store, a.passphrase_file.as_deref())?;
    let open = OpenOptions {
        read_only: a.dry_run,
        ..OpenOptions::default()
    };
    let vault = match Vault::open(&dir, &master, &open) {
        Err(VaultError::Store(StoreError::Locked { pid })) => anyhow::bail!(
            "{} is mounted (daemon pid {pid}); the mount prunes it in the background \
             (`mount --prune-interval`). Use --dry-run to see what a prune would do, or \
             unmount it to prune now",
            store.display()
        ),
        r => r.with_context(|| format!("cannot open store {}", store.display()))?,
    };
    let opts = PruneOptions {
        dry_run: a.dry_run,
        details: a.verbose,
        ..PruneOptions::default()
    };
    let bar = progress_bar();
    let report = vault.prune(&opts, &|stage, done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(match stage {
                PruneStage::Versions => "versions",
                PruneStage::Compaction => "packs compacted",
            });
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report.context("prune failed")?;
    if !a.dry_run {
        vault.shutdown().context("flushing the store")?;
    }
    print_report(&report, a.dry_run, a.verbose);
    Ok(())
}

/// A bar on stderr when it is a terminal; nothing otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn print_report(r: &PruneReport, dry: bool, verbose: bool) {
    let would = if dry { "would be " } else { "" };
    if verbose {
        for f in &r.details {
            let name = f
                .path
                .clone()
                .unwrap_or_else(|| format!("(deleted file, inode {})", f.ino));
            println!("{name}");
            for (v, verdict) in &f.versions {
                println!(
                    "  version {:>6}  {}  {:<9}  {}",
                    v.version,
                    format_utc(v.time.div_euclid(1_000_000_000)),
                    v.reason.label(),
                    verdict
                );
            }
            if f.forgotten {
                println!("  (no version left: its names in the history {would}removed too)");
            }
        }
    }
    let h = util::human_bytes;
    println!(
        "policy applied at {}",
        format_utc(r.now.div_euclid(1_000_000_000))
    );
    println!(
        "versions: {} {would}removed, {} kept, in {} files ({} deleted files {would}forgotten whole)",
        r.versions_removed, r.versions_kept, r.files, r.files_forgotten
    );
    println!(
        "blocks:   {} {would}freed ({} stored)",
        r.blocks_removed,
        h(r.block_bytes_removed)
    );
    println!(
        "packs:    {} {would}compacted ({} copied), {} {would}marked for deletion",
        r.packs_compacted,
        h(r.bytes_copied),
        r.packs_doomed
    );
    println!(
        "          {} {would}deleted ({}), {} waiting for their grace period (deleted by a later prune)",
        r.packs_deleted,
        h(r.pack_bytes_deleted),
        r.packs_waiting
    );
    let back = r.bytes_reclaimed();
    if back >= 0 {
        println!("reclaimed: {}", h(back as u64));
    } else {
        println!(
            "reclaimed: none yet ({} copied out of packs deleted by a later prune)",
            h(back.unsigned_abs())
        );
    }
    if let Some(a) = &r.audit {
        print_audit(a, dry);
    }
    if r.stopped {
        println!("stopped before the end; run prune again to carry on");
    }
}

/// What audit retention removed (or would): the counts, then each segment.
fn print_audit(a: &AuditPruneReport, dry: bool) {
    let (would, starts) = if dry {
        ("would be ", "would start")
    } else {
        ("", "starts")
    };
    let bytes: u64 = a.removed.iter().map(|s| s.bytes).sum();
    println!(
        "audit:    {} records {would}removed in {} segments, {} (older than [audit] keep); \
         the trail {starts} at seq {}",
        a.records,
        a.segments,
        util::human_bytes(bytes),
        a.first_seq
    );
    let utc = |ns: Option<i64>| ns.map_or_else(|| "-".into(), |t| format_rfc3339(timestamp(t)));
    for s in &a.removed {
        let name = s.path.file_name().unwrap_or(s.path.as_os_str());
        println!(
            "          {}  records {} to {}  {} records  {}",
            name.to_string_lossy(),
            utc(s.first_time_ns),
            utc(s.last_time_ns),
            s.records,
            util::human_bytes(s.bytes)
        );
    }
}
