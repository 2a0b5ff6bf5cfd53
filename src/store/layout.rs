use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{IoContext, Result, StoreError};

/// Paths inside a store directory. Everything created here is 0600/0700.
#[derive(Clone, Debug)]
pub struct StoreDir {
    root: PathBuf,
}

impl StoreDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("vault.toml")
    }
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.db")
    }
    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn exists(&self) -> bool {
        self.config_path().exists()
    }

    /// Prepares a missing or empty directory for a new store.
    pub fn create_root(&self) -> Result<()> {
        if self.exists() {
            return Err(StoreError::AlreadyExists(self.root.clone()));
        }
        match fs::read_dir(&self.root) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(StoreError::NotEmpty(self.root.clone()));
                }
                fs::set_permissions(
                    &self.root,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                )
                .at(&self.root)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.root)
                    .at(&self.root)?;
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: self.root.clone(),
                    source: e,
                })
            }
        }
        make_private_dir(&self.packs_dir())
    }
}

pub(crate) fn make_private_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
