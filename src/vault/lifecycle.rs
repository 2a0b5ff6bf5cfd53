//! Creating a store, unlocking it, opening the engine, crash recovery,
//! the background durability timer and a clean shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::Nonce;
use parking_lot::Mutex;
use rand::RngCore;

use super::cache::BlockCache;
use super::{now_ns, Result, Vault, VaultError, DEFAULT_BLOCK_SIZE};
use crate::catalog::{
    Catalog, Checkpointer, FileFlush, Kind, NewInode, VersionReason, GROUP_MAX_AGE, ROOT_INO,
};
use crate::crypto::{unlock, KdfParams, KeySlot, Keys, MasterKey, Passphrase, SlotKind};
use crate::store::{
    PackId, PackStore, Pushed, Recovered, RetentionPolicy, SpaceGuard, StoreDir, StoreLock,
    VaultConfig, FORMAT_VERSION,
};

pub struct InitOptions {
    pub block_size: u32,
    pub kdf: KdfParams,
    pub owner_uid: u32,
    pub owner_gid: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            block_size: DEFAULT_BLOCK_SIZE,
            kdf: KdfParams::default(),
            owner_uid: unsafe { libc::geteuid() },
            owner_gid: unsafe { libc::getegid() },
        }
    }
}

#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub read_only: bool,
    /// A read-only open that serves requests (a `-o ro` mount, a `--at`
    /// view) records them in the audit trail, beside any other writer of
    /// it; one that only reads for the CLI leaves the trail alone. A
    /// read-write open always holds the trail.
    pub record_requests: bool,
    /// Bytes of decrypted blocks kept in memory.
    pub cache_bytes: usize,
    /// Written-but-unflushed bytes allowed before writers flush.
    pub dirty_limit: usize,
    /// Bytes kept free on the store's filesystem for the catalog; data and
    /// new names get ENOSPC once less is free (see `store::SpaceGuard`).
    pub space_reserve: u64,
    /// Where the time comes from: the system's clocks, or a test's.
    pub clock: Arc<dyn super::Clock>,
    /// False for an open that only maintains the store (replication,
    /// verification, repair): it creates no file, and so starts no inode
    /// generation (see `catalog::generations`), leaving the catalog as it was.
    pub creates_files: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            record_requests: false,
            cache_bytes: 64 << 20,
            dirty_limit: 64 << 20,
            space_reserve: crate::store::DEFAULT_RESERVE,
            clock: Arc::new(super::SystemClock),
            creates_files: true,
        }
    }
}

pub fn rfc3339_now() -> String {
    format_utc(now_ns() / 1_000_000_000)
}

/// Seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ".
pub fn format_utc(secs: i64) -> String {
    // Civil-from-days (Howard Hinnant), to avoid a time crate for one stamp.
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Creates a new store in an empty or missing directory.
pub fn create_store(dir: &StoreDir, pass: &Passphrase, opts: &InitOptions) -> Result<()> {
    if !opts.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&opts.block_size) {
        return Err(super::VaultError::Invalid);
    }
    dir.create_root()?;
    let master = MasterKey::generate();
    let created = rfc3339_now();
    let slot = KeySlot::wrap(
        1,
        SlotKind::Passphrase,
        created.clone(),
        opts.kdf,
        pass,
        &master,
    )?;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let mut config = VaultConfig {
        format: FORMAT_VERSION,
        vault_id: hex::encode(id),
        created,
        block_size: opts.block_size,
        policy_mac: None,
        retention: RetentionPolicy::default(),
        audit: Some(crate::store::AuditSettings::default()),
        slots: vec![slot],
    };
    config.policy_mac = Some(super::settings::policy_mac(&master, &config));
    let catalog = Catalog::open(&dir.catalog_path(), true)?;
    let t = now_ns();
    catalog.tx(|c| -> Result<()> {
        let root = c.insert_inode(&NewInode {
            kind: Kind::Dir,
            mode: 0o755,
            uid: opts.owner_uid,
            gid: opts.owner_gid,
            nlink: 2,
            size: 0,
            rdev: 0,
            time: t,
            at: t,
            target: None,
        })?;
        debug_assert_eq!(root, ROOT_INO);
        c.meta_set("vault_id", &config.vault_id)?;
        Ok(())
    })?;
    catalog.sync_wal()?;
    // vault.toml last: its presence is what makes the directory a store.
    config.save(dir)?;
    Ok(())
}

pub fn read_config(dir: &StoreDir) -> Result<VaultConfig> {
    Ok(VaultConfig::load(dir)?)
}

/// Returns the master key and the id of the slot that opened it. Does not
/// look at the policy's MAC: `Vault::open` and `unlock_store` check it.
pub fn unlock_master(config: &VaultConfig, pass: &Passphrase) -> Result<(MasterKey, u32)> {
    Ok(unlock(&config.slots, pass)?)
}

impl Vault {
    /// Opens the engine on an unlocked store: takes the store lock, recovers
    /// from an unclean stop, and is ready for calls.
    pub fn open(dir: &StoreDir, master: &MasterKey, opts: &OpenOptions) -> Result<Arc<Vault>> {
        // Never obey a policy the master key did not authenticate.
        let config = super::settings::authenticated_config(dir, master, !opts.read_only)?;
        // A read-only view (log, `-o ro`) may run beside the writing daemon.
        let lock = if opts.read_only {
            None
        } else {
            Some(StoreLock::acquire(dir)?)
        };
        let keys = Keys::derive(master);
        let audit_keys = master.audit_keys();
        let audit = if opts.read_only && !opts.record_requests {
            None
        } else {
            super::audit::open_log(dir, &audit_keys, opts.read_only)?
        };
        let index_cipher = Keys::derive(master).pack_index;
        let seal_index = Arc::new(move |pack: PackId, index: &[u8]| -> Vec<u8> {
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            let aad = pack.0.to_le_bytes();
            let mut out = nonce.to_vec();
            out.extend(
                index_cipher
                    .encrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: index,
                            aad: &aad,
                        },
                    )
                    .expect("index encryption"),
            );
            out
        });
        let catalog = if opts.read_only {
            Catalog::open_readonly(&dir.catalog_path())?
        } else if opts.creates_files {
            Catalog::open(&dir.catalog_path(), false)?
        } else {
            Catalog::open_to_maintain(&dir.catalog_path())?
        };
        let space = Arc::new(SpaceGuard::new(dir.root(), opts.space_reserve));
        let mut packs = PackStore::new(dir.packs_dir(), seal_index);
        if crate::store::wal_flush_covers_packs(dir) {
            packs = packs.with_flush_follows_push(space.clone());
        }
        let vault = Arc::new_cyclic(|me| Vault {
            me: me.clone(),
            dir: dir.clone(),
            block_size: config.block_size as u64,
            config,
            keys,
            generations: catalog.generations(),
            catalog: Mutex::new(catalog),
            packs,
            space,
            allocated: Default::default(),
            files: Mutex::new(HashMap::new()),
            cache: BlockCache::new(opts.cache_bytes),
            loading: Default::default(),
            dirty_bytes: AtomicUsize::new(0),
            decrypt_ahead: AtomicBool::new(true),
            acls: AtomicBool::new(false),
            losses_reported: AtomicU64::new(0),
            dirty_limit: opts.dirty_limit,
            clock: AtomicI64::new(opts.clock.now_ns()),
            time: opts.clock.clone(),
            read_only: opts.read_only,
            closed: AtomicBool::new(false),
            paths: Default::default(),
            checkpointer: Mutex::new(None),
            audit,
            audit_keys,
            _lock: lock,
        });
        if !opts.read_only {
            vault.recover()?;
            vault.load_allocations()?;
        }
        Ok(vault)
    }

    /// Repairs what an unclean stop left: unsealed packs are cut back to what
    /// the catalog committed and sealed; changes that never became a version
    /// (no close before the crash) become one now.
    fn recover(&self) -> Result<()> {
        let mut fell_back = Vec::new();
        {
            let cat = self.catalog.lock();
            for (pack, end) in cat.unsealed_packs()? {
                let intact_end = match self.packs.recover_unsealed(PackId::from_i64(pack), end)? {
                    Recovered::Sealed {
                        pack: sealed,
                        intact_end,
                    } => {
                        cat.mark_pack_sealed(pack, sealed.size)?;
                        intact_end
                    }
                    Recovered::Empty => {
                        cat.forget_pack(pack)?;
                        continue;
                    }
                    Recovered::Missing => 0,
                };
                if intact_end < end {
                    // A power loss kept catalog rows whose blocks never
                    // reached the disk: those files fall back a version.
                    fell_back.extend(cat.tx(|c| c.fall_back_from_lost_blocks(pack, intact_end))?);
                }
            }
        }
        for (ino, version) in fell_back {
            let path = self
                .path_for_message(ino)
                .unwrap_or_else(|| format!("inode {ino}"));
            tracing::warn!("{path}: version {version} was not on disk after a crash; the file fell back to the version before it");
        }
        let cat = self.catalog.lock();
        let t = self.tick();
        cat.tx(|c| -> Result<()> {
            for ino in c.open_versions()? {
                if let Some(mut inode) = c.inode(ino)? {
                    Self::close_version(c, &mut inode, t.at, VersionReason::Write, None)?;
                    c.update_inode(&inode, t.at)?;
                }
            }
            Ok(())
        })?;
        cat.sync_wal()?;
        Ok(())
    }

    /// Commits the open group and makes everything committed durable.
    ///
    /// Records in the active pack's zeroed tail are pushed first and share
    /// the WAL's flush (see `store::flush`). Otherwise the pack flush does
    /// not wait for the catalog: it runs while the catalog commits and its
    /// WAL is flushed, on the other core. Both are done before this returns,
    /// which is all fsync promises; a power loss in between leaves catalog
    /// rows whose blocks are missing, and recovery falls back to the previous
    /// version for those.
    pub fn sync_all(&self) -> Result<()> {
        match self.packs.push()? {
            Pushed::Nothing => self.sync_catalog().map(|_| ()),
            // One device flush for both (see `store::flush`): the WAL's, or
            // the pack's own if the catalog had nothing to write. The
            // records travel to the device while the catalog commits and
            // its WAL is written; the flush comes after both are there.
            Pushed::AwaitingFlush(records) => {
                let wal = self.start_catalog_flush()?;
                self.packs.wait_pushed(&records)?;
                match wal {
                    Some(wal) => {
                        self.finish_catalog_flush(wal)?;
                        self.packs.flushed(records);
                        Ok(())
                    }
                    None => Ok(self.packs.sync()?),
                }
            }
            Pushed::NeedsSync => {
                let (packs, catalog) = rayon::join(|| self.packs.sync(), || self.sync_catalog());
                packs?;
                catalog.map(|_| ())
            }
        }
    }

    /// fsync of a directory: `sync_all`, and then fails if catalog changes
    /// were rolled back since the last such report (creates, renames,
    /// attribute changes: see `catalog::lost`), as a file's fsync does for
    /// its own content.
    pub fn sync_dir(&self) -> Result<()> {
        self.sync_all()?;
        let (lost, cause) = self.catalog.lock().losses();
        let reported = self.losses_reported.swap(lost, Ordering::AcqRel);
        match cause {
            Some(cause) if lost > reported => Err(VaultError::ChangesLost(cause)),
            _ => Ok(()),
        }
    }

    /// Commits the catalog and makes it durable; false if there was nothing
    /// to make durable (no fdatasync was issued).
    fn sync_catalog(&self) -> Result<bool> {
        let Some(wal) = self.start_catalog_flush()? else {
            return Ok(false);
        };
        self.finish_catalog_flush(wal)?;
        Ok(true)
    }

    /// Commits the open group and starts writing the WAL out; returns the
    /// flush to finish and the change count it covers, None if everything
    /// is durable already (or there is no WAL).
    fn start_catalog_flush(&self) -> Result<Option<(FileFlush, u64)>> {
        let wal = {
            let cat = self.catalog.lock();
            cat.commit()?;
            cat.wal_to_sync()
        };
        let Some((path, changes)) = wal else {
            return Ok(None);
        };
        Ok(FileFlush::start(&path)?.map(|flush| (flush, changes)))
    }

    fn finish_catalog_flush(&self, (flush, changes): (FileFlush, u64)) -> Result<()> {
        flush.finish()?;
        self.catalog.lock().mark_wal_synced(changes);
        Ok(())
    }

    /// Background work: commit grouped catalog changes within
    /// `GROUP_MAX_AGE`, make commits durable about once a second, seal a pack
    /// that has gone idle. Stops when `stop` is set.
    pub fn spawn_flusher(self: &Arc<Self>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        let vault = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("phivault-flush".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                // A failure that repeats (a full disk) is logged every 10 s,
                // not at every tick.
                let mut last_error: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(GROUP_MAX_AGE / 2);
                    let Some(v) = vault.upgrade() else { break };
                    let due = last_sync.elapsed() >= Duration::from_millis(900);
                    if due {
                        last_sync = Instant::now();
                    }
                    match v.periodic(due) {
                        Ok(()) => last_error = None,
                        Err(e) => {
                            if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                tracing::error!("background flush failed: {e}");
                                last_error = Some(Instant::now());
                            }
                        }
                    }
                }
            })
            .expect("spawn flusher")
    }

    fn periodic(&self, sync_due: bool) -> Result<()> {
        if self.read_only || self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.catalog.lock().commit_if_old()?;
        if !sync_due {
            return Ok(());
        }
        let idle = self.packs.seal_if_idle(Duration::from_secs(5));
        self.record_sealed_packs()?;
        idle?;
        self.sync_all()?;
        self.record_sealed_packs()?;
        let mut checkpointer = self.checkpointer.lock();
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let checkpointer = match &mut *checkpointer {
            Some(c) => c,
            None => checkpointer.insert(Checkpointer::open(&self.dir.catalog_path())?),
        };
        checkpointer.copy_back()?;
        Ok(())
    }

    /// Marks sealed in the catalog the packs sealed since the last call
    /// (full ones seal in the background). Until then the catalog lists them
    /// as unsealed, which recovery also handles.
    fn record_sealed_packs(&self) -> Result<()> {
        let sealed = self.packs.take_sealed();
        if sealed.is_empty() {
            return Ok(());
        }
        let cat = self.catalog.lock();
        for pack in sealed {
            cat.mark_pack_sealed(pack.id.as_i64(), pack.size)?;
        }
        Ok(())
    }

    /// Flushes every open file, records their versions, seals the active pack
    /// and makes it all durable. Called on unmount and SIGTERM.
    pub fn shutdown(&self) -> Result<()> {
        if self.read_only {
            return Ok(self.audit.as_ref().map_or(Ok(()), |audit| audit.sync())?);
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let open: Vec<_> = self
            .files
            .lock()
            .iter()
            .map(|(i, f)| (*i, f.clone()))
            .collect();
        // A file that cannot be stored (a full disk) does not keep the others,
        // the seal and the sync from being done; the first error is reported.
        let mut first_error = None;
        for (ino, file) in open {
            let mut f = file.lock();
            if let Err(e) = self.flush_file(ino, &mut f, Some(VersionReason::Write)) {
                tracing::error!("inode {ino}: not stored at shutdown: {e}");
                first_error.get_or_insert(e);
            }
        }
        let active = self.packs.seal_active();
        self.record_sealed_packs()?;
        active?;
        self.sync_all()?;
        if let Some(audit) = &self.audit {
            audit.sync()?;
        }
        // Waits for a background copy in progress, and closes its connection
        // so that the final checkpoint can truncate the WAL.
        self.checkpointer.lock().take();
        self.catalog.lock().checkpoint()?;
        first_error.map_or(Ok(()), Err)
    }

    pub fn integrity_check(&self) -> Result<()> {
        Ok(self.catalog.lock().integrity_check()?)
    }
}
