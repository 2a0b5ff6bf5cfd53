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
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
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
