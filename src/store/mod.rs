//! The store directory: `vault.toml`, the lock that keeps one daemon per
//! store, and the append-only packs of encrypted blocks.
//!
//! Sees only ciphertext: it never receives a key, a plaintext block or a name.

mod compact;
mod config;
mod flush;
mod layout;
mod lock;
mod pack;
mod space;

pub use config::{
    AuditSettings, RetentionPolicy, VaultConfig, DEFAULT_AUDIT_KEEP, FORMAT_UNAUTHENTICATED,
    FORMAT_VERSION,
};
pub use flush::{overwrites_skip_journal, wal_flush_covers_packs};
pub use layout::StoreDir;
pub(crate) use layout::{make_private_dir, sync_dir, write_atomic};
pub use lock::{StoreLock, CONFIG_LOCK_FILE};
pub use pack::{
    pack_path_in, record_len, sealed_layout, sealed_records, AppendOutcome, BlockLocation, PackId,
    PackStore, Pushed, PushedRecords, RawRecord, Recovered, SealedLayout, SealedPack,
    PACK_TARGET_SIZE, RECORD_HEADER_LEN,
};
pub use space::{room_per_block, statvfs, SpaceGuard, DEFAULT_RESERVE};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a phivault store (no vault.toml)")]
    NotAStore(std::path::PathBuf),
    #[error("{0} already holds a phivault store; refusing to overwrite it")]
    AlreadyExists(std::path::PathBuf),
    #[error("{0} is not empty; a new store needs an empty or missing directory")]
    NotEmpty(std::path::PathBuf),
    #[error("vault.toml: {0}")]
    Config(String),
    #[error("store format {found} is not supported by this phivault (supports {supported})")]
    Format { found: u32, supported: u32 },
    #[error(
        "vault.toml's retention policy does not match its authentication code: it was \
         edited by hand. Restore the file from a backup or set the policy with \
         `phivault retention STORE set ...`"
    )]
    PolicyMacMismatch,
    #[error(
        "vault.toml is format 2 but has no policy-mac: the file was edited by hand. \
         Restore it from a backup (or set the policy with `phivault retention STORE set ...`)"
    )]
    PolicyMacMissing,
    #[error("the store is in use by another phivault process (pid {pid}); unmount it first")]
    Locked { pid: String },
    #[error(
        "the store's filesystem has {available} bytes free and phivault keeps \
         {reserve} of them for its catalog and {held} for space files allocated \
         (fallocate) but have not written yet"
    )]
    OutOfSpace {
        available: u64,
        reserve: u64,
        held: u64,
    },
    #[error("pack {pack}: record at offset {offset} is damaged ({what})")]
    DamagedRecord {
        pack: PackId,
        offset: u64,
        what: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
