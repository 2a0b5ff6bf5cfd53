//! Pruning: removes the versions the retention policy lets go, frees the
//! extents and blocks no kept version uses, compacts packs whose live share
//! fell low, and deletes packs nothing uses any more, so the space comes back.
//!
//! Owns the order of those steps and their safety; the rules are
//! `retention`'s, the SQL is `catalog::gc`'s, the copying `store::compact`'s.
//! Never holds the catalog lock for long (writers share it) and never
//! deletes a pack file a reader may still be about to read.
//!
//! Safe to kill at any instant: every step is one catalog transaction that
//! leaves a consistent catalog, copies are durable before the catalog
//! points at them, and a pack file is deleted only after the commit that
//! forgot it is durable and a grace period after the catalog stopped using
//! it (a kill in between leaves a file the next prune deletes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::{
    retention_verdicts, validate_policy, AuditKeep, AuditKeepError, PointKind, PolicyError, Vault,
    VaultError, Verdict, VersionPoint,
};
use crate::audit::{AuditError, AuditPruneReport};
use crate::catalog::gc::ExtentSpan;
use crate::catalog::{Catalog, CatalogError, Ino, Kind, VersionReason, VersionRow};
use crate::store::{PackId, RetentionPolicy, StoreError, VaultConfig};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// What a prune can fail with. Whatever it removed before the failure
/// stays removed, consistently; running it again carries on.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("the store is open read-only; prune needs it read-write (a mounted store prunes itself in the background, see `mount --prune-interval`)")]
    ReadOnly,
    #[error("refusing to remove version {version} of inode {ino}: it is younger than the lock of {lock_days} days by the machine's clock (was the clock set back during the prune?); nothing younger was removed")]
    Locked {
        ino: Ino,
        version: u64,
        lock_days: u32,
    },
    #[error("the retention policy in vault.toml is not valid: {0}")]
    Policy(#[from] PolicyError),
    #[error("vault.toml's [audit] keep is not valid: {0}")]
    AuditKeep(#[from] AuditKeepError),
    #[error("pruning the audit trail: {0}")]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The clock a prune reads: the engine's (the machine's in production);
/// tests move it ahead to age what they just wrote (the CLI never does).
#[derive(Clone, Copy, Debug, Default)]
pub enum PruneClock {
    #[default]
    Engine,
    /// The engine's clock, moved by this much.
    Shifted(SignedDuration),
}

/// How a prune runs.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Decide and count, change nothing.
    pub dry_run: bool,
    /// Report each file that loses a version, with every verdict.
    pub details: bool,
    pub clock: PruneClock,
    /// How long a pack stays on disk after the catalog stopped using it,
    /// for readers that looked up a block in it just before.
    pub grace: Duration,
    /// A sealed pack whose blocks still in use take less than this share
    /// of it is compacted.
    pub compact_below: f64,
    /// The longest the catalog lock is held at a time.
    pub slice: Duration,
    /// Set to stop between two slices (unmount).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            details: false,
            clock: PruneClock::Engine,
            grace: Duration::from_secs(3600),
            compact_below: 0.5,
            slice: Duration::from_millis(20),
            stop: None,
        }
    }
}

/// What one prune did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// The instant the rules were applied (ns since the epoch).
    pub now: i64,
    pub files: u64,
    pub versions_kept: u64,
    pub versions_removed: u64,
    /// Deleted files whose whole history went (their entry history too).
    pub files_forgotten: u64,
    pub extents_removed: u64,
    pub blocks_removed: u64,
    /// Stored (compressed, encrypted) bytes of those blocks.
    pub block_bytes_removed: u64,
    pub packs_compacted: u64,
    pub bytes_copied: u64,
    /// Packs no block uses any more, marked for deletion.
    pub packs_doomed: u64,
    pub packs_deleted: u64,
    pub pack_bytes_deleted: u64,
    /// Doomed packs still inside their grace period.
    pub packs_waiting: u64,
    /// Stopped before the end (unmount); what is done is consistent.
    pub stopped: bool,
    /// With `details`: each file that loses a version.
    pub details: Vec<FileVerdicts>,
    /// What the audit trail's own retention (`[audit] keep`) removed (or,
    /// dry, would remove); None if it keeps everything (`forever`).
    pub audit: Option<AuditPruneReport>,
}

impl PruneReport {
    /// Bytes the store's disk got back: packs deleted less what
    /// compaction copied out of them.
    pub fn bytes_reclaimed(&self) -> i64 {
        self.pack_bytes_deleted as i64 - self.bytes_copied as i64
    }
}

/// One file's versions and what the policy says of each.
#[derive(Clone, Debug)]
pub struct FileVerdicts {
    pub ino: Ino,
    /// Its path if it still has a name.
    pub path: Option<String>,
    pub versions: Vec<(VersionRow, Verdict)>,
    pub forgotten: bool,
}

/// Where a prune is, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneStage {
    /// Versions examined, of all recorded.
    Versions,
    /// Packs compacted, of those to compact.
    Compaction,
}

/// What pruning one file removes.
struct InodePlan {
    versions: Vec<(VersionRow, Verdict)>,
    drop_versions: Vec<VersionRow>,
    drop_extents: Vec<ExtentSpan>,
    forget: bool,
}

/// The policy and the instant a prune applies.
struct Rules {
    policy: RetentionPolicy,
    /// The lock to re-check at each removal: the longest of the policies
    /// seen (the file's and the one the engine opened with).
    lock_days: u32,
    now: Timestamp,
    tz: TimeZone,
}

impl Vault {
    /// Prunes the store: see the module head and `docs/retention.md`.
    /// `progress` is told (stage, done, total) as work advances.
    pub fn prune(
        &self,
        opts: &PruneOptions,
        progress: &(dyn Fn(PruneStage, u64, u64) + Sync),
    ) -> Result<PruneReport, PruneError> {
        if self.read_only && !opts.dry_run {
            return Err(PruneError::ReadOnly);
        }
        let rules = self.prune_rules(opts)?;
        let mut report = PruneReport {
            now: self.prune_now(opts.clock),
            ..PruneReport::default()
        };
        if !opts.dry_run {
            self.finish_pack_removals()?;
        }
        let freed = self.prune_versions(opts, &rules, &mut report, progress)?;
        if !stopped(opts) {
            self.compact(opts, &mut report, &freed, progress)?;
        }
        if !stopped(opts) {
            self.delete_doomed_packs(opts, &mut report)?;
        }
        if !stopped(opts) {
            report.audit = self.prune_audit(report.now, opts.dry_run)?;
        }
        report.stopped = stopped(opts);
        if !opts.dry_run {
            self.sync_all()?;
        }
        Ok(report)
    }

    /// Removes the audit records older than `[audit] keep` (whole segments;
    /// the trail leaves an anchor). Version retention never reaches them:
    /// this is the only way they go. The longer of the setting the store
    /// was opened with (its MAC checked then) and the one vault.toml holds
    /// now applies, as for the lock: an unauthenticated file can only make
    /// it keep more. A dry run reads the trail (the store may be mounted).
    fn prune_audit(&self, now: i64, dry_run: bool) -> Result<Option<AuditPruneReport>, PruneError> {
        let opened = AuditKeep::parse(&self.config.audit_settings().keep)?;
        let on_disk = VaultConfig::load(&self.dir)
            .ok()
            .and_then(|c| AuditKeep::parse(&c.audit_settings().keep).ok());
        let now = Timestamp::from_nanosecond(now as i128).map_err(|_| VaultError::Invalid)?;
        let cutoffs = std::iter::once(opened)
            .chain(on_disk)
            .map(|k| k.cutoff_ns(now));
        // None (forever) anywhere keeps everything.
        let Some(cutoff) = cutoffs
            .collect::<Option<Vec<i64>>>()
            .and_then(|c| c.into_iter().min())
        else {
            return Ok(None);
        };
        let reader = self.audit_reader()?;
        Ok(Some(if dry_run {
            reader.prune_plan(cutoff)?
        } else {
            reader.prune(cutoff)?
        }))
    }

    /// What `clock` reads now, in ns since the epoch.
    fn prune_now(&self, clock: PruneClock) -> i64 {
        let now = self.time.now_ns();
        match clock {
            PruneClock::Engine => now,
            PruneClock::Shifted(d) => {
                (now as i128 + d.as_nanos()).clamp(0, i64::MAX as i128) as i64
            }
        }
    }

    /// The policy the store was opened with (its MAC checked then), under
    /// the lock vault.toml holds now if that is longer: `retention set` may
    /// have lengthened it since, and a lock applies at once. The file is
    /// not authenticated here, so it can only make prune keep more.
    fn prune_rules(&self, opts: &PruneOptions) -> Result<Rules, PruneError> {
        let mut policy = self.config.retention.clone();
        validate_policy(&policy)?;
        if let Ok(now) = VaultConfig::load(&self.dir) {
            policy.lock_days = policy.lock_days.max(now.retention.lock_days);
        }
        let lock_days = policy.lock_days;
        let now = Timestamp::from_nanosecond(self.prune_now(opts.clock) as i128)
            .map_err(|_| VaultError::Invalid)?;
        Ok(Rules {
            policy,
            lock_days,
            now,
            tz: TimeZone::system(),
        })
    }

    /// Removes the versions the rules let go, the extents only they used
    /// and the blocks only those used, file by file in short slices under
    /// the catalog lock. Returns, per pack, the stored bytes freed (what a
    /// dry run needs to judge compaction).
    fn prune_versions(
        &self,
        opts: &PruneOptions,
        rules: &Rules,
        report: &mut PruneReport,
        progress: &(dyn Fn(PruneStage, u64, u64) + Sync),
    ) -> Result<HashMap<i64, u64>, PruneError> {
        let total = self.catalog.lock().count_versions()?;
        let mut done = 0u64;
        progress(PruneStage::Versions, 0, total);
        let mut after: Ino = 0;
        // Dry: extent rows each block would lose.
        let mut lost_users: HashMap<i64, u64> = HashMap::new();
        let mut freed_by_pack: HashMap<i64, u64> = HashMap::new();
        let mut details = Vec::new();
        loop {
            if stopped(opts) {
                break;
            }
            let cat = self.catalog.lock();
            let started = Instant::now();
            let inodes = cat.inodes_with_versions(after, 256)?;
            if inodes.is_empty() {
                break;
            }
            let mut work = |c: &Catalog| -> Result<(), PruneError> {
                // Just before anything is removed: the lock, by the clock.
                let clock_now = self.prune_now(opts.clock);
                for &ino in &inodes {
                    after = ino;
                    let plan = self.plan_inode(c, ino, rules)?;
                    done += plan.versions.len() as u64;
                    report.files += 1;
                    report.versions_kept += (plan.versions.len() - plan.drop_versions.len()) as u64;
                    report.versions_removed += plan.drop_versions.len() as u64;
                    report.extents_removed += plan.drop_extents.len() as u64;
                    report.files_forgotten += u64::from(plan.forget);
                    if opts.dry_run {
                        for e in &plan.drop_extents {
                            *lost_users.entry(e.block).or_default() += 1;
                        }
                    } else {
                        for (pack, len) in
                            self.apply_plan(c, ino, &plan, rules, clock_now, report.now)?
                        {
                            report.blocks_removed += 1;
                            report.block_bytes_removed += len;
                            *freed_by_pack.entry(pack).or_default() += len;
                        }
                    }
                    if opts.details && !plan.drop_versions.is_empty() {
                        details.push(FileVerdicts {
                            ino,
                            path: None,
                            versions: plan.versions,
                            forgotten: plan.forget,
                        });
                    }
                    if started.elapsed() >= opts.slice {
                        break;
                    }
                }
                Ok(())
            };
            if opts.dry_run {
                work(&cat)?;
            } else {
                cat.tx(work)?;
                cat.commit()?;
            }
            // Straight to a writer waiting for it, if any.
            parking_lot::MutexGuard::unlock_fair(cat);
            progress(PruneStage::Versions, done.min(total), total);
        }
        if opts.dry_run {
            self.count_freed_blocks(opts, &lost_users, report, &mut freed_by_pack)?;
        }
        for mut d in details {
            d.path = self.path_for_message(d.ino);
            report.details.push(d);
        }
        Ok(freed_by_pack)
    }

    /// Dry run: the blocks whose every user would go.
    fn count_freed_blocks(
        &self,
        opts: &PruneOptions,
        lost_users: &HashMap<i64, u64>,
        report: &mut PruneReport,
        freed_by_pack: &mut HashMap<i64, u64>,
    ) -> Result<(), PruneError> {
        let blocks: Vec<(&i64, &u64)> = lost_users.iter().collect();
        for chunk in blocks.chunks(1024) {
            if stopped(opts) {
                break;
            }
            let cat = self.catalog.lock();
            for (&block, &lost) in chunk {
                if cat.block_users_any(block)? > lost {
                    continue;
                }
                if let Some(row) = cat.block_row(block)? {
                    report.blocks_removed += 1;
                    report.block_bytes_removed += row.location.len as u64;
                    *freed_by_pack.entry(row.location.pack.as_i64()).or_default() +=
                        row.location.len as u64;
                }
            }
        }
        Ok(())
    }

    /// What the rules remove of file `ino`, from the catalog as it is now
    /// (under the lock: a version recorded meanwhile is judged too).
    fn plan_inode(&self, c: &Catalog, ino: Ino, rules: &Rules) -> Result<InodePlan, PruneError> {
        let rows = c.versions(ino)?;
        let points: Vec<VersionPoint> = rows
            .iter()
            .map(|v| VersionPoint {
                time_ns: v.time,
                kind: if v.reason == VersionReason::Deleted {
                    PointKind::Tombstone
                } else {
                    PointKind::Content
                },
            })
            .collect();
        let verdicts = retention_verdicts(&rules.policy, rules.now, &rules.tz, &points);
        let versions: Vec<(VersionRow, Verdict)> = rows.into_iter().zip(verdicts).collect();
        let drop_versions: Vec<VersionRow> = versions
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Drop))
            .map(|(r, _)| r.clone())
            .collect();
        if drop_versions.is_empty() {
            return Ok(InodePlan {
                versions,
                drop_versions,
                drop_extents: Vec::new(),
                forget: false,
            });
        }
        // Sorted: `versions` comes in version order.
        let kept: Vec<u64> = versions
            .iter()
            .filter(|(_, v)| !matches!(v, Verdict::Drop))
            .map(|(r, _)| r.version)
            .collect();
        let forget = kept.is_empty() && self.is_gone(c, ino)?;
        if kept.is_empty() && !forget {
            // A deleted file still open (or being opened): its live blocks
            // stay while it is, and its rows too, so that a later prune,
            // which looks only at files with versions, forgets it whole.
            return Ok(InodePlan {
                versions,
                drop_versions: Vec::new(),
                drop_extents: Vec::new(),
                forget: false,
            });
        }
        let spans = c.extent_spans(ino)?;
        let drop_extents = spans
            .into_iter()
            .filter(|e| forget || !needed(e, &kept))
            .collect();
        Ok(InodePlan {
            versions,
            drop_versions,
            drop_extents,
            forget,
        })
    }

    /// Whether file `ino` has no name and no open handle: once its whole
    /// history goes, nothing can reach its content.
    fn is_gone(&self, c: &Catalog, ino: Ino) -> Result<bool, PruneError> {
        let Some(inode) = c.inode(ino)? else {
            return Ok(true);
        };
        if inode.kind != Kind::File || inode.nlink > 0 || c.has_live_entry(ino)? {
            return Ok(false);
        }
        // Lock order is files, then catalog: only try. Busy means someone
        // is opening a file right now; this one waits for the next prune.
        let Some(files) = self.files.try_lock() else {
            return Ok(false);
        };
        Ok(!files.contains_key(&ino))
    }

    /// Removes what `plan` says of `ino`, in the caller's transaction, and
    /// frees the blocks that lost their last user. Returns each as (pack,
    /// stored bytes).
    fn apply_plan(
        &self,
        c: &Catalog,
        ino: Ino,
        plan: &InodePlan,
        rules: &Rules,
        clock_now: i64,
        now: i64,
    ) -> Result<Vec<(i64, u64)>, PruneError> {
        let lock_ns = rules.lock_days as i64 * NANOS_PER_DAY;
        for v in &plan.drop_versions {
            // Belt and braces: the rules never drop a locked version; this
            // also holds if the clock went back since they were applied.
            if clock_now.saturating_sub(v.time) < lock_ns {
                return Err(PruneError::Locked {
                    ino,
                    version: v.version,
                    lock_days: rules.lock_days,
                });
            }
            c.delete_version(ino, v.version)?;
        }
        let mut candidates = HashSet::new();
        for e in &plan.drop_extents {
            c.delete_extent(ino, e.rowid, e.v_until.is_none())?;
            candidates.insert(e.block);
        }
        if plan.forget {
            c.forget_history(ino)?;
        }
        let mut freed = Vec::new();
        for block in candidates {
            if let Some(row) = c.free_block_if_unused(block, now)? {
                freed.push((row.location.pack.as_i64(), row.location.len as u64));
            }
        }
        Ok(freed)
    }

    /// Compacts sealed packs whose live share fell below the threshold and
    /// dooms those nothing uses. `freed` (dry run) is what the version step
    /// would have freed in each pack.
    fn compact(
        &self,
        opts: &PruneOptions,
        report: &mut PruneReport,
        freed: &HashMap<i64, u64>,
        progress: &(dyn Fn(PruneStage, u64, u64) + Sync),
    ) -> Result<(), PruneError> {
        if !opts.dry_run {
            // The active pack may hold garbage too (the tail of a file just
            // deleted): sealed, it can be judged like the others.
            self.packs.seal_active()?;
            let sealed = self.packs.take_sealed();
            let cat = self.catalog.lock();
            for pack in sealed {
                cat.mark_pack_sealed(pack.id.as_i64(), pack.size)?;
            }
        }
        let packs = self.catalog.lock().sealed_packs()?;
        let mut usage = Vec::with_capacity(packs.len());
        for chunk in packs.chunks(64) {
            let cat = self.catalog.lock();
            for &(pack, size) in chunk {
                usage.push(cat.pack_usage(pack, size)?);
            }
        }
        let mut to_compact = Vec::new();
        let mut empty = Vec::new();
        for p in usage {
            let live = if opts.dry_run {
                p.live_bytes
                    .saturating_sub(freed.get(&p.pack).copied().unwrap_or(0))
            } else {
                p.live_bytes
            };
            if live == 0 {
                empty.push(p.pack);
            } else if (live as f64) < opts.compact_below * p.size as f64 {
                to_compact.push((p.pack, live));
            }
        }
        if opts.dry_run {
            report.packs_doomed += empty.len() as u64;
            report.packs_compacted += to_compact.len() as u64;
            report.bytes_copied += to_compact.iter().map(|(_, l)| l).sum::<u64>();
            report.packs_doomed += to_compact.len() as u64;
            return Ok(());
        }
        {
            let cat = self.catalog.lock();
            cat.tx(|c| -> Result<(), PruneError> {
                for &pack in &empty {
                    if c.doom_pack_if_unused(pack, report.now)? {
                        report.packs_doomed += 1;
                    }
                }
                Ok(())
            })?;
            cat.commit()?;
        }
        let total = to_compact.len() as u64;
        for (i, &(pack, _)) in to_compact.iter().enumerate() {
            if stopped(opts) {
                break;
            }
            progress(PruneStage::Compaction, i as u64, total);
            match self.compact_pack(pack, report) {
                // A damaged or missing pack stays as it is (reads of its
                // blocks report it); the others are still compacted.
                Err(PruneError::Store(e)) => {
                    tracing::error!("prune: pack {} not compacted: {e}", PackId::from_i64(pack))
                }
                other => other?,
            }
        }
        progress(PruneStage::Compaction, total, total);
        Ok(())
    }

    /// Copies the blocks still stored in `pack` into the active pack, points
    /// the catalog at the copies (durable first), then dooms `pack`.
    fn compact_pack(&self, pack: i64, report: &mut PruneReport) -> Result<(), PruneError> {
        let blocks = self.catalog.lock().blocks_in_pack(pack)?;
        for chunk in blocks.chunks(256) {
            let from: Vec<_> = chunk
                .iter()
                .map(|b| (b.location, b.hash.as_slice()))
                .collect();
            let to = self.packs.copy_records(&from)?;
            let cat = self.catalog.lock();
            cat.tx(|c| -> Result<(), PruneError> {
                let mut recorded = None;
                for (b, new) in chunk.iter().zip(&to) {
                    if recorded != Some(new.pack) {
                        c.insert_pack(new.pack.as_i64())?;
                        recorded = Some(new.pack);
                    }
                    if c.move_block(b.id, &b.location, new)? {
                        report.bytes_copied += new.len as u64;
                    }
                }
                Ok(())
            })?;
            cat.commit()?;
        }
        let cat = self.catalog.lock();
        let doomed = cat.tx(|c| c.doom_pack_if_unused(pack, report.now))?;
        cat.commit()?;
        if doomed {
            report.packs_compacted += 1;
            report.packs_doomed += 1;
        }
        Ok(())
    }

    /// Deletes the packs doomed at least a grace period ago: forgotten in
    /// the catalog (and journaled) first, durably, then their files.
    fn delete_doomed_packs(
        &self,
        opts: &PruneOptions,
        report: &mut PruneReport,
    ) -> Result<(), PruneError> {
        let doomed = self.catalog.lock().doomed_packs()?;
        let grace = opts.grace.as_nanos().min(i64::MAX as u128) as i64;
        let now = self.prune_now(opts.clock);
        let (due, waiting): (Vec<_>, Vec<_>) = doomed
            .into_iter()
            .partition(|&(_, since)| now.saturating_sub(since) >= grace);
        report.packs_waiting = waiting.len() as u64;
        if opts.dry_run || due.is_empty() {
            if opts.dry_run {
                report.packs_deleted += due.len() as u64;
            }
            return Ok(());
        }
        let gone = {
            let cat = self.catalog.lock();
            let gone = cat.tx(|c| -> Result<Vec<i64>, PruneError> {
                let mut gone = Vec::new();
                for &(pack, _) in &due {
                    if c.forget_doomed_pack(pack, now)?.is_some() {
                        gone.push(pack);
                    }
                }
                Ok(gone)
            })?;
            cat.commit()?;
            gone
        };
        // The forgetting is durable before a file goes: a crash can leave a
        // file the catalog forgot (the next prune deletes it), never a
        // catalog row without its file.
        self.sync_all()?;
        for pack in gone {
            let id = PackId::from_i64(pack);
            let bytes = std::fs::metadata(self.packs.pack_path(id)).map_or(0, |m| m.len());
            if self.packs.remove_pack(id)? {
                report.packs_deleted += 1;
                report.pack_bytes_deleted += bytes;
            }
        }
        Ok(())
    }

    /// Deletes the files of packs an earlier prune forgot but was killed
    /// before it deleted them.
    fn finish_pack_removals(&self) -> Result<(), PruneError> {
        let checked = self.catalog.lock().removals_checked()?;
        let removed = self.catalog.lock().removed_packs_after(checked)?;
        let Some(&(last, _)) = removed.last() else {
            return Ok(());
        };
        for (_, pack) in removed {
            let id = PackId::from_i64(pack);
            if self.packs.pack_path(id).exists() {
                self.packs.remove_pack(id)?;
            }
        }
        let cat = self.catalog.lock();
        cat.tx(|c| c.set_removals_checked(last))?;
        cat.commit()?;
        Ok(())
    }

    /// The content of version `version` of file `ino`, read from the
    /// packs: what a restore of it gives back. For checks that pruning
    /// kept what it must (`tests/prune.rs`), by version number where
    /// `Past` goes by instant.
    #[doc(hidden)]
    pub fn version_content(&self, ino: Ino, version: u64) -> Result<Vec<u8>, PruneError> {
        let (row, extents) = {
            let cat = self.catalog.lock();
            let row = cat
                .versions(ino)?
                .into_iter()
                .find(|v| v.version == version)
                .ok_or(VaultError::NotFound)?;
            (row, cat.version_extents(ino, version, 0, u64::MAX)?)
        };
        let bs = self.block_size;
        let mut out = vec![0u8; row.size as usize];
        for (idx, b) in extents {
            let start = idx * bs;
            if start >= row.size {
                continue;
            }
            let plain = self.read_block(ino, idx, &b)?;
            let end = (start + bs).min(row.size);
            let n = ((end - start) as usize).min(plain.len());
            out[start as usize..start as usize + n].copy_from_slice(&plain[..n]);
        }
        Ok(out)
    }

    /// Prunes in the background of a mount: first `first_after` after the
    /// start, then every `interval`, until `stop` is set. Each run holds
    /// the catalog lock only in short slices, so the mount never stalls.
    pub fn spawn_pruner(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
        first_after: Duration,
        interval: Duration,
    ) -> JoinHandle<()> {
        let vault = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("phivault-prune".into())
            .spawn(move || {
                let mut due = Instant::now() + first_after;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    if Instant::now() < due {
                        continue;
                    }
                    due = Instant::now() + interval;
                    let Some(v) = vault.upgrade() else { break };
                    let opts = PruneOptions {
                        stop: Some(stop.clone()),
                        ..PruneOptions::default()
                    };
                    let started = Instant::now();
                    match v.prune(&opts, &|_, _, _| {}) {
                        Ok(r) => tracing::info!(
                            "prune: {} versions removed, {} kept; {} blocks ({} bytes) freed; {} packs compacted, {} deleted ({} bytes), {} waiting; {:.1} s",
                            r.versions_removed,
                            r.versions_kept,
                            r.blocks_removed,
                            r.block_bytes_removed,
                            r.packs_compacted,
                            r.packs_deleted,
                            r.pack_bytes_deleted,
                            r.packs_waiting,
                            started.elapsed().as_secs_f64()
                        ),
                        Err(e) => tracing::error!("background prune failed: {e}"),
                    }
                }
            })
            .expect("spawn pruner")
    }
}

/// Whether an extent row is still needed: it is live, or a kept version
/// (sorted in `kept`) lies in its range [v_from, v_until).
fn needed(e: &ExtentSpan, kept: &[u64]) -> bool {
    let Some(until) = e.v_until else {
        return true;
    };
    let first = kept.partition_point(|&k| k < e.v_from);
    kept.get(first).is_some_and(|&k| k < until)
}

fn stopped(opts: &PruneOptions) -> bool {
    opts.stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_support::{new_file, open_vault};

    #[test]
    fn prune_refuses_to_remove_a_locked_version_whatever_the_plan_says() {
        let tmp = tempfile::tempdir().unwrap();
        let v = open_vault(tmp.path());
        let ino = new_file(&v, "chart");
        v.write(ino, 0, b"results").unwrap();
        v.flush(ino).unwrap();
        let row = v.versions(ino).unwrap().pop().unwrap();
        // A plan that drops it, as rules applied at a wrong `now` would.
        let plan = InodePlan {
            versions: vec![(row.clone(), Verdict::Drop)],
            drop_versions: vec![row.clone()],
            drop_extents: Vec::new(),
            forget: false,
        };
        let rules = v
            .prune_rules(&PruneOptions {
                clock: PruneClock::Shifted(SignedDuration::from_hours(24 * 365)),
                ..PruneOptions::default()
            })
            .unwrap();
        let cat = v.catalog.lock();
        let six_days = row.time + 6 * NANOS_PER_DAY;
        let res = cat.tx(|c| v.apply_plan(c, ino, &plan, &rules, six_days, six_days));
        assert!(
            matches!(res, Err(PruneError::Locked { lock_days: 7, .. })),
            "{res:?}"
        );
        assert_eq!(cat.versions(ino).unwrap().len(), 1, "nothing removed");
        let eight_days = row.time + 8 * NANOS_PER_DAY;
        cat.tx(|c| v.apply_plan(c, ino, &plan, &rules, eight_days, eight_days))
            .unwrap();
        assert!(cat.versions(ino).unwrap().is_empty());
    }

    fn span(v_from: u64, v_until: Option<u64>) -> ExtentSpan {
        ExtentSpan {
            rowid: 0,
            block: 0,
            v_from,
            v_until,
        }
    }

    #[test]
    fn prune_an_extent_is_needed_exactly_when_a_kept_version_lies_in_its_range() {
        let kept = [2, 5, 9];
        assert!(needed(&span(1, None), &[]), "the live file is always kept");
        assert!(needed(&span(2, Some(3)), &kept), "v_from itself");
        assert!(!needed(&span(3, Some(5)), &kept), "v_until is exclusive");
        assert!(needed(&span(3, Some(6)), &kept));
        assert!(!needed(&span(6, Some(9)), &kept));
        assert!(needed(&span(1, Some(100)), &kept));
        assert!(!needed(&span(10, Some(100)), &kept));
        assert!(!needed(&span(1, Some(2)), &kept));
    }
}
