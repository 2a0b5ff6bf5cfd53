//! `phivault restore STORE PATH --at TIME [--to DEST]`: a file or a subtree
//! as it was, in place (as new versions) or into a new destination.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::time_spec::{self, format_local_and_utc, format_rfc3339, PointInTime};
use super::util::{self, timestamp};
use crate::vault::{
    EngineTarget, FsTarget, OpenOptions, Placement, RestoreSummary, RestoreTarget, Vault,
    VaultError,
};

/// Give back a file or a directory as it was.
#[derive(clap::Args)]
#[command(
    long_about = "Restore PATH (a path inside the store, a file or a whole directory) as \
it was at TIME: content byte for byte, mode, owner, group, access and modification times, \
extended attributes and POSIX ACLs, symlinks, hard links, FIFOs and device nodes.

Without --to, PATH is restored in place: each file that differs is rewritten as a new version (the \
version it replaces stays in the history), and what the directory did not hold then is deleted (it stays \
restorable too: `phivault ls STORE DIR --deleted`). Nothing is lost. While the store is mounted \
this writes through the mount, which shows the result at once; otherwise it writes to the store \
directly.

With --to DEST (an existing directory on any filesystem), writes DEST/NAME (NAME being PATH's \
last component; for / the contents of DEST, which must be empty). An existing DEST/NAME is \
refused, never overwritten.

TIME: RFC 3339 (2026-11-20T14:03:00Z), a local date-time (2026-11-20 14:03), relative (2h ago, \
yesterday 17:00, last monday), @UNIXSECONDS, or vN: version N of PATH as `phivault log STORE PATH` \
numbers them (a file only)."
)]
pub struct Args {
    pub store: PathBuf,
    /// Path inside the store, from its root.
    pub path: String,
    /// The instant (or vN, a version of PATH) to restore.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub at: PointInTime,
    /// Write into this existing directory instead of in place.
    #[arg(long, value_name = "DEST")]
    pub to: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let mountpoint = util::mount_of_store(&store);
    let to = a.to.as_deref().map(util::absolute).transpose()?;
    let vault = if to.is_some() || mountpoint.is_some() {
        util::open_read_only(&store, a.passphrase_file.as_deref())?
    } else {
        open_read_write(&store, a.passphrase_file.as_deref())?
    };
    let result = restore(&a, &vault, mountpoint.as_deref(), to.as_deref());
    let closed = vault.shutdown().context("cannot close the store");
    let sum = result?;
    closed?;
    for w in &sum.warnings {
        eprintln!("phivault: warning: {w}");
    }
    Ok(())
}

fn restore(
    a: &Args,
    vault: &Vault,
    mountpoint: Option<&str>,
    to: Option<&Path>,
) -> anyhow::Result<RestoreSummary> {
    let path = a.path.as_bytes();
    let at = instant_of(vault, &a.path, a.at)?;
    let past = vault.past(at);
    let (dest, placement, mut target): (PathBuf, Placement, Box<dyn RestoreTarget + '_>) =
        match (to, mountpoint) {
            (Some(to), _) => {
                anyhow::ensure!(
                    to.is_dir(),
                    "{} is not a directory: --to takes an existing directory",
                    to.display()
                );
                let dest = match Path::new(&a.path).file_name() {
                    Some(name) => to.join(name),
                    None => to.to_path_buf(),
                };
                (dest, Placement::New, Box::new(FsTarget::default()))
            }
            (None, Some(mnt)) => (
                Path::new(mnt).join(a.path.trim_start_matches('/')),
                Placement::InPlace,
                Box::new(FsTarget {
                    remove_extra_xattrs: true,
                    fsync_files: true,
                }),
            ),
            (None, None) => {
                // SAFETY: getuid cannot fail.
                let me = unsafe { libc::getuid() };
                (
                    PathBuf::from(format!("/{}", a.path.trim_start_matches('/'))),
                    Placement::InPlace,
                    Box::new(EngineTarget::new(vault, me)),
                )
            }
        };
    let total = vault
        .restore_size(&past, path)
        .map_err(|e| anyhow::anyhow!(e))?;
    let bar = util::progress_bar(total);
    let mut progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    };
    let sum = vault
        .restore(
            &past,
            path,
            &dest,
            placement,
            target.as_mut(),
            &mut progress,
        )
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot restore {}", a.path))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let tz = jiff::tz::TimeZone::system();
    println!(
        "restored {} as it was at {} ({}) to {}: {} files ({}), {} directories, {} hard links, {} other{}",
        a.path,
        format_local_and_utc(timestamp(at), &tz),
        format_rfc3339(timestamp(at)),
        String::from_utf8_lossy(dest.as_os_str().as_bytes()),
        sum.files,
        util::human_bytes(sum.bytes),
        sum.dirs,
        sum.links,
        sum.others,
        [
            (sum.unchanged, "already as they were"),
            (sum.removed, "removed (still in the history)")
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!(", {n} {what}"))
        .collect::<String>()
    );
    Ok(sum)
}

/// The instant TIME names for PATH.
fn instant_of(vault: &Vault, path: &str, at: PointInTime) -> anyhow::Result<i64> {
    match at {
        PointInTime::Instant(t) => Ok(t.as_nanosecond() as i64),
        PointInTime::Version(n) => {
            let found = match vault.path_version(path.as_bytes(), n) {
                Err(VaultError::NotFound) => anyhow::bail!("{path} was never in the store"),
                r => r?,
            };
            match found {
                Some(v) => Ok(v.instant()),
                None if vault.was_dir(path.as_bytes())? => anyhow::bail!(
                    "{path} is a directory: vN names a version of one file; give an instant \
                     (e.g. 2h ago, 2026-11-20 14:03)"
                ),
                None => {
                    let count = vault.path_history(path.as_bytes())?.len();
                    anyhow::bail!(
                        "{path} has no version v{n}: it has {count} (`phivault log` lists them)"
                    )
                }
            }
        }
    }
}

fn open_read_write(
    store: &Path,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<std::sync::Arc<Vault>> {
    let unlocked = super::util::unlock(store, passphrase_file)?;
    Ok(Vault::open(
        &unlocked.dir,
        &unlocked.master,
        &OpenOptions::default(),
    )?)
}
