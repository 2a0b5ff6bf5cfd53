use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use super::{IoContext, Result, StoreDir, StoreError};

/// An exclusive advisory lock on STORE/lock, held for as long as a daemon
/// (or a command that rewrites the store) runs. Released by the kernel on exit,
/// so a killed daemon never leaves a stale lock behind.
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(dir: &StoreDir) -> Result<Self> {
        let path = dir.lock_path();
        let mut file = open_lock_file(&path)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_string();
            return Err(StoreError::Locked {
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid
                },
            });
        }
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        write!(file, "{}", std::process::id()).at(&path)?;
        Ok(Self { _file: file })
    }
}

/// The lock that serializes changes of vault.toml (see `VaultConfig::edit`):
/// an exclusive flock on STORE/vault.toml.lock, waited for, never held for
/// longer than a read, a check and an atomic rewrite. Separate from
/// `StoreLock`, which a mounted store's daemon holds for as long as it runs.
pub(crate) struct ConfigLock {
    _file: File,
}

impl ConfigLock {
    pub(crate) fn acquire(dir: &StoreDir) -> Result<Self> {
        let path = dir.root().join(CONFIG_LOCK_FILE);
        let file = open_lock_file(&path)?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).at(&path);
            }
        }
    }
}

/// Held (flock) while vault.toml is being changed; empty.
pub const CONFIG_LOCK_FILE: &str = "vault.toml.lock";

/// A lock file, created 0600 if missing, its content kept.
fn open_lock_file(path: &std::path::Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path)
}
