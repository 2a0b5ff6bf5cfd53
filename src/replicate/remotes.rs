//! The remotes a store replicates to: `STORE/replica/remotes.toml`.
//!
//! Kept out of vault.toml on purpose: releases before replication neither
//! read nor rewrite this file, so a store with remotes still opens with
//! them, and no format change was needed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::place::{DirPlace, ObjectPlace, PlaceError};
use super::ReplicateError;
use crate::store::{make_private_dir, write_atomic, StoreDir};

/// Default time from a commit to its shipping while mounted.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(60);

/// Where a remote is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// A directory: another disk, a NAS mount, a USB drive.
    Dir(PathBuf),
}

impl RemoteUrl {
    /// `dir:/abs/path` or `/abs/path`.
    pub fn parse(s: &str) -> Result<Self, ReplicateError> {
        let path = s.strip_prefix("dir:").unwrap_or(s);
        if s.starts_with("s3://") {
            return Err(ReplicateError::BadUrl(format!(
                "{s}: S3 remotes are not supported by this release yet; use a directory (dir:/path)"
            )));
        }
        if !path.starts_with('/') {
            return Err(ReplicateError::BadUrl(format!(
                "{s}: a remote directory must be an absolute path (dir:/mnt/offsite/clinic)"
            )));
        }
        Ok(RemoteUrl::Dir(PathBuf::from(path)))
    }

    /// Opens the place; `create` makes a missing directory.
    pub fn open(&self, create: bool) -> Result<Box<dyn ObjectPlace>, PlaceError> {
        match self {
            RemoteUrl::Dir(p) if create => Ok(Box::new(DirPlace::create(p)?)),
            RemoteUrl::Dir(p) => Ok(Box::new(DirPlace::open(p)?)),
        }
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::Dir(p) => write!(f, "dir:{}", p.display()),
        }
    }
}

/// One remote as configured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// Seconds from a commit to its shipping while mounted.
    pub delay_secs: u64,
}

impl Remote {
    pub fn url(&self) -> Result<RemoteUrl, ReplicateError> {
        RemoteUrl::parse(&self.url)
    }

    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.delay_secs)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RemotesFile {
    #[serde(default, rename = "remote")]
    remotes: Vec<Remote>,
}

/// `STORE/replica/`.
pub fn replica_dir(dir: &StoreDir) -> PathBuf {
    dir.root().join("replica")
}

fn remotes_path(dir: &StoreDir) -> PathBuf {
    replica_dir(dir).join("remotes.toml")
}

/// The per-remote state folder, `STORE/replica/NAME/`.
pub fn remote_dir(dir: &StoreDir, name: &str) -> PathBuf {
    replica_dir(dir).join(name)
}

/// The configured remotes, none if the store never had one.
pub fn list(dir: &StoreDir) -> Result<Vec<Remote>, ReplicateError> {
    let path = remotes_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReplicateError::io(&path, e)),
    };
    let file: RemotesFile = toml::from_str(&text)
        .map_err(|e| ReplicateError::State(format!("{}: {e}", path.display())))?;
    Ok(file.remotes)
}

/// The remote called `name`.
pub fn find(dir: &StoreDir, name: &str) -> Result<Remote, ReplicateError> {
    list(dir)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ReplicateError::NoSuchRemote(name.to_string()))
}

/// Records a new remote (its name must be new) and makes its state folder.
pub fn add(dir: &StoreDir, remote: Remote) -> Result<(), ReplicateError> {
    check_name(&remote.name)?;
    let mut remotes = list(dir)?;
    if remotes.iter().any(|r| r.name == remote.name) {
        return Err(ReplicateError::BadUrl(format!(
            "a remote named {} exists already (`remote list`)",
            remote.name
        )));
    }
    let replica = replica_dir(dir);
    make_private_dir(&replica).map_err(ReplicateError::Store)?;
    make_private_dir(&remote_dir(dir, &remote.name)).map_err(ReplicateError::Store)?;
    remotes.push(remote);
    save(dir, remotes)
}

/// Forgets a remote and its local state; its objects stay where they are.
pub fn remove(dir: &StoreDir, name: &str) -> Result<Remote, ReplicateError> {
    let mut remotes = list(dir)?;
    let Some(i) = remotes.iter().position(|r| r.name == name) else {
        return Err(ReplicateError::NoSuchRemote(name.to_string()));
    };
    let gone = remotes.remove(i);
    save(dir, remotes)?;
    let state = remote_dir(dir, name);
    match std::fs::remove_dir_all(&state) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ReplicateError::io(&state, e))
        }
        _ => {}
    }
    Ok(gone)
}

fn save(dir: &StoreDir, remotes: Vec<Remote>) -> Result<(), ReplicateError> {
    let text = toml::to_string(&RemotesFile { remotes })
        .map_err(|e| ReplicateError::State(e.to_string()))?;
    write_atomic(&remotes_path(dir), text.as_bytes()).map_err(ReplicateError::Store)
}

/// Names become folder names: letters, digits, `-`, `_`, `.` (not first).
fn check_name(name: &str) -> Result<(), ReplicateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ReplicateError::BadUrl(format!(
            "{name:?} is not a remote name: use letters, digits, '-', '_' and '.' (at most 64)"
        )))
    }
}

/// Whether `path` is a phivault store's own directory or inside it.
pub fn is_inside(path: &Path, store: &Path) -> bool {
    path.starts_with(store)
}
