//! The engine: namespace, file content, versions and durability on top of the
//! catalog, the packs and the keys. Usable without a mount (CLI, tests, benches).
//!
//! Knows nothing of FUSE. Lock order: an open file's state, then the catalog.

mod acl;
mod attr;
mod audit;
mod audit_retention;
mod audit_scope;
mod cache;
mod caller;
mod clock;
mod data;
mod error;
mod handles;
mod history;
mod info;
mod key_slots;
mod lifecycle;
mod names;
mod past;
mod paths;
mod permission;
mod prune;
mod read;
mod readahead;
mod replication;
mod reserve;
mod restore;
mod retention;
mod settings;
mod snapshots;
#[cfg(test)]
pub(crate) mod test_support;
mod tree;
mod verify;
mod xattr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use acl::ACCESS as ACL_ACCESS_XATTR;
pub use attr::{Attr, DirEntry, FsStats, NodeSpec, RenameMode, SetAttr, TimeSet};
pub use audit_retention::{AuditKeep, AuditKeepError, MIN_AUDIT_KEEP};
pub use audit_scope::{AuditScope, AFTER_SLACK_NS};
pub use caller::{Caller, Capability};
pub use clock::{Clock, ManualClock, SystemClock};
pub use data::Released;
pub use error::{Result, VaultError};
pub use history::{Deletion, PastEntry, PathVersion};
pub use info::{store_info, InfoError, StoreInfo};
pub use key_slots::{
    add_passphrase, add_recovery_key, change_passphrase, list_slots, remove_slot, KeySlotError,
    RecoveryKey,
};
pub use lifecycle::{
    create_store, format_utc, read_config, rfc3339_now, unlock_master, InitOptions, OpenOptions,
};
pub use past::{Past, TreeView};
pub use permission::{Admitted, MAY_EXEC, MAY_READ, MAY_WRITE};
pub use prune::{FileVerdicts, PruneClock, PruneError, PruneOptions, PruneReport, PruneStage};
pub use restore::{
    EngineTarget, Found, FsTarget, Placement, RestoreError, RestoreSummary, RestoreTarget,
};
pub use retention::{
    describe_policy, kept_at_least_until, retention_verdicts, validate_policy,
    validate_policy_change, PointKind, PolicyError, Reason, Reasons, Verdict, VersionPoint,
};
pub use settings::{
    retention_policy, set_retention, unlock_store, PolicyChange, PolicySet, PolicyView,
    SetPolicyError, UnlockError, UnlockFor, Unlocked,
};
pub use snapshots::MAX_LISTED as MAX_SNAPSHOTS_LISTED;
pub use tree::ListingHorizon;
pub use verify::{DamagedBlock, Verified};

use crate::catalog::{Catalog, Ino};
use crate::crypto::Keys;
use crate::store::{PackStore, SpaceGuard, StoreDir, StoreLock, VaultConfig};
use cache::BlockCache;
use data::FileEntry;

pub use crate::catalog::{Kind, VersionReason, VersionRow, ROOT_INO};

pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
pub const NAME_MAX: usize = 255;
pub const PATH_MAX: usize = 4096;
/// Catalog bytes a new name may take: an inode, a dentry and their index
/// entries, in a WAL that is written in whole 1 KiB pages.
const NEW_NAME_BYTES: u64 = 4096;

/// One block's decryption in progress: filled once, None if it failed.
type LoadingBlock = std::sync::OnceLock<Option<Arc<Vec<u8>>>>;

pub struct Vault {
    /// This vault's own Arc, for background work (read-ahead) that outlives a request.
    me: std::sync::Weak<Vault>,
    dir: StoreDir,
    config: VaultConfig,
    block_size: u64,
    keys: Keys,
    catalog: Mutex<Catalog>,
    /// The catalog's inode generations, fixed while it is open: every
    /// entry reply carries one, without taking the catalog's lock.
    generations: crate::catalog::Generations,
    packs: PackStore,
    space: Arc<SpaceGuard>,
    /// Blocks allocated by fallocate and not written yet (see `reserve`).
    allocated: reserve::Allocations,
    files: Mutex<HashMap<Ino, Arc<FileEntry>>>,
    cache: BlockCache,
    /// Blocks being decrypted right now, so each is decrypted once.
    loading: Mutex<HashMap<crate::crypto::BlockId, Arc<LoadingBlock>>>,
    dirty_bytes: AtomicUsize,
    /// Whether sequential reads decrypt the next blocks ahead into the
    /// cache (see `readahead`): only while the kernel's own read-ahead is
    /// too small to keep both cores busy. Otherwise reads decrypt straight
    /// into the kernel's buffers (see `read`).
    decrypt_ahead: AtomicBool,
    /// Whether POSIX ACLs are stored and applied: only once the kernel has
    /// agreed to enforce them (`FUSE_POSIX_ACL`), so that an ACL is never
    /// kept where nothing checks it.
    acls: AtomicBool,
    /// Lost catalog groups already reported to a directory fsync.
    losses_reported: AtomicU64,
    dirty_limit: usize,
    /// Where the time comes from (the system's clocks but in tests).
    time: Arc<dyn Clock>,
    /// The last history instant handed out (see `tick`).
    clock: AtomicI64,
    read_only: bool,
    closed: AtomicBool,
    /// Paths of nodes for the audit trail (see `paths`).
    paths: paths::PathCache,
    /// Used by the flusher only; opened at its first copy, closed at shutdown.
    checkpointer: Mutex<Option<crate::catalog::Checkpointer>>,
    /// The audit trail's writer: only with a read-write open.
    audit: Option<crate::audit::AuditLog>,
    audit_keys: crate::crypto::AuditKeys,
    _lock: Option<StoreLock>,
}

impl Vault {
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.dir
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Tells the engine that the kernel reads far enough ahead by itself
    /// (or no longer does), see `decrypt_ahead`.
    pub fn set_decrypt_ahead(&self, on: bool) {
        self.decrypt_ahead.store(on, Ordering::Relaxed);
    }

    /// Stores and applies POSIX ACLs from now on: the kernel enforces them.
    pub fn enable_acls(&self) {
        self.acls.store(true, Ordering::Relaxed);
    }

    fn acls(&self) -> bool {
        self.acls.load(Ordering::Relaxed)
    }

    /// Whether a POSIX ACL was ever stored here. Such a store must not be
    /// mounted without ACLs: its files' group bits hold the ACL's mask, so
    /// the kernel would grant the owning group what the mask allows.
    pub fn holds_acls(&self) -> Result<bool> {
        Ok(self.catalog.lock().meta_get(xattr::ACLS_KEPT)?.is_some())
    }

    /// When an operation happens (see `Tick`).
    fn tick(&self) -> Tick {
        let wall = self.time.coarse_ns();
        let now = self.time.now_ns().max(wall);
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let at = now.max(last + 1);
            match self
                .clock
                .compare_exchange_weak(last, at, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Tick { at, wall },
                Err(seen) => last = seen,
            }
        }
    }

    /// The catalog, for a request that reads it (see `Catalog::begin_read`).
    /// A read-only vault has no flusher to end a group, so it reads without.
    fn catalog_to_read(&self) -> Result<parking_lot::MutexGuard<'_, Catalog>> {
        let cat = self.catalog.lock();
        if !self.read_only {
            cat.begin_read()?;
        }
        Ok(cat)
    }

    /// Refuses (ENOSPC) what would eat into the catalog's reserve; see
    /// `store::SpaceGuard`. Deleting and renaming claim nothing: they must
    /// work on a full disk, to free it.
    fn claim_space(&self, bytes: u64) -> Result<()> {
        Ok(self.space.claim(bytes)?)
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(VaultError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

/// The instant of an operation, on two scales.
#[derive(Clone, Copy, Debug)]
struct Tick {
    /// The fine wall clock made strictly increasing, so that history
    /// intervals never tie even for back-to-back operations: versions,
    /// directory entries, past attributes. An operation that starts after
    /// a reading of the wall clock is recorded after it.
    at: i64,
    /// The kernel's coarse wall clock, for inode times. Under the
    /// writeback cache the kernel stamps a write's mtime and a link's
    /// ctime itself from that clock; stamping ours from a finer one put
    /// them up to a tick before the changes that preceded them.
    wall: i64,
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
