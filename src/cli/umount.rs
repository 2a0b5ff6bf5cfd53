use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::util;
use crate::store::{StoreDir, StoreLock};

/// Flush and unmount a phivault mount.
#[derive(clap::Args)]
#[command(
    long_about = "Unmount MOUNTPOINT and wait until the daemon has flushed everything \
to the store and exited. Equivalent to `fusermount3 -u` plus waiting."
)]
pub struct Args {
    pub mountpoint: PathBuf,
    /// Seconds to wait for the daemon to finish flushing.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mp = util::absolute(&a.mountpoint)?;
    let Some(store) = util::mounted_store(&mp) else {
        bail!("{} is not a mount point", mp.display());
    };
    let tool = if unsafe { libc::geteuid() } == 0 {
        ("umount", vec![])
    } else {
        ("fusermount3", vec!["-u"])
    };
    let out = Command::new(tool.0)
        .args(&tool.1)
        .arg(&mp)
        .output()
        .with_context(|| format!("cannot run {}", tool.0))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        if msg.contains("busy") {
            bail!(
                "{} is busy: a program still has files open there (see `fuser -vm {}`)",
                mp.display(),
                mp.display()
            );
        }
        bail!("unmounting {} failed: {}", mp.display(), msg.trim());
    }
    // The daemon flushes after the kernel lets go; its lock shows when it is done.
    let dir = StoreDir::new(&store);
    if !dir.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        match StoreLock::acquire(&dir) {
            Ok(_) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => bail!(
                "unmounted, but the daemon for {store} is still flushing after {}s",
                a.timeout
            ),
        }
    }
}
