//! vault.toml under the master key: unlocking a store (the policy's MAC
//! checked, a format-1 file upgraded), and reading and changing the
//! retention policy. Every change goes through `VaultConfig::edit`.
//!
//! Never writes vault.toml without its lock, and never obeys a policy whose
//! MAC does not verify.

use std::path::PathBuf;

use super::audit_retention::AuditKeep;
use super::retention::{validate_policy_change, PolicyError};
use crate::crypto::{unlock, CryptoError, MasterKey, Passphrase};
use crate::store::{
    AuditSettings, RetentionPolicy, StoreDir, StoreError, VaultConfig, FORMAT_UNAUTHENTICATED,
    FORMAT_VERSION,
};

/// A store whose master key is in memory and whose vault.toml's MAC checked
/// out (or, unlocked for reading, that is still format 1 and has none).
pub struct Unlocked {
    pub config: VaultConfig,
    pub master: MasterKey,
    /// The key slot the passphrase opened.
    pub slot: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("wrong passphrase for store {store}; nothing was changed")]
    WrongPassphrase { store: PathBuf },
    #[error("cannot open store {store}: {source}")]
    Store { store: PathBuf, source: StoreError },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The MAC of `config`'s authenticated fields, in hex, as vault.toml keeps it.
pub(crate) fn policy_mac(master: &MasterKey, config: &VaultConfig) -> String {
    master
        .config_mac(&config.authenticated_bytes())
        .to_hex()
        .to_string()
}

/// Checks `config`'s MAC (format 2), or upgrades it in memory to format 2
/// with a MAC (format 1). Returns whether it changed `config`.
pub(crate) fn authenticate(
    config: &mut VaultConfig,
    master: &MasterKey,
) -> Result<bool, StoreError> {
    if config.format == FORMAT_UNAUTHENTICATED {
        config.format = FORMAT_VERSION;
        config.policy_mac = Some(policy_mac(master, config));
        return Ok(true);
    }
    let stored = config
        .policy_mac
        .as_deref()
        .ok_or(StoreError::PolicyMacMissing)?;
    let stored = blake3::Hash::from_hex(stored).map_err(|_| StoreError::PolicyMacMismatch)?;
    // blake3::Hash compares in constant time.
    if master.config_mac(&config.authenticated_bytes()) != stored {
        return Err(StoreError::PolicyMacMismatch);
    }
    Ok(false)
}

/// vault.toml, authenticated with `master`. A format-1 file is upgraded to
/// format 2 on disk (under the edit lock, atomically) when `upgrade` is
/// set; a read-only view leaves it as it is (it may sit on read-only media,
/// and it prunes nothing).
pub(crate) fn authenticated_config(
    dir: &StoreDir,
    master: &MasterKey,
    upgrade: bool,
) -> Result<VaultConfig, StoreError> {
    let mut config = VaultConfig::load(dir)?;
    if config.format == FORMAT_UNAUTHENTICATED {
        if !upgrade {
            return Ok(config);
        }
        return VaultConfig::edit(dir, |cfg| {
            authenticate(cfg, master)?;
            Ok(cfg.clone())
        });
    }
    authenticate(&mut config, master)?;
    Ok(config)
}

/// What an unlocked store is for: whether its vault.toml may be upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnlockFor {
    /// A writing mount or a change of the store: a format-1 vault.toml is
    /// upgraded to format 2 with a MAC.
    Writing,
    /// A read-only view (`mount -o ro`): nothing is written, so a store on
    /// read-only media opens; a format-1 file is taken as it is.
    Reading,
}

/// Opens a key slot with `pass` (the slow Argon2 part, with no lock held),
/// then checks vault.toml's MAC (see `UnlockFor` for format 1).
pub fn unlock_store(
    dir: &StoreDir,
    pass: &Passphrase,
    purpose: UnlockFor,
) -> Result<Unlocked, UnlockError> {
    let (master, slot) = open_slot(dir, pass)?;
    let upgrade = purpose == UnlockFor::Writing;
    let config =
        authenticated_config(dir, &master, upgrade).map_err(|source| UnlockError::Store {
            store: dir.root().to_path_buf(),
            source,
        })?;
    Ok(Unlocked {
        config,
        master,
        slot,
    })
}

/// The master key and the slot `pass` opens, without looking at the policy.
fn open_slot(dir: &StoreDir, pass: &Passphrase) -> Result<(MasterKey, u32), UnlockError> {
    let store = || dir.root().to_path_buf();
    let config = VaultConfig::load(dir).map_err(|source| UnlockError::Store {
        store: store(),
        source,
    })?;
    match unlock(&config.slots, pass) {
        Ok(opened) => Ok(opened),
        Err(CryptoError::WrongPassphrase) => Err(UnlockError::WrongPassphrase { store: store() }),
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------- retention

/// New values for some of the policy's numbers; `None` keeps the current one.
#[derive(Clone, Debug, Default)]
pub struct PolicyChange {
    pub keep_all_days: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub min_versions: Option<u32>,
    pub lock_days: Option<u32>,
    /// `[audit] keep`: how long the audit trail keeps its records.
    pub audit_keep: Option<AuditKeep>,
}

impl PolicyChange {
    pub fn is_empty(&self) -> bool {
        self.as_array().iter().all(Option::is_none) && self.audit_keep.is_none()
    }

    fn as_array(&self) -> [Option<u32>; 8] {
        [
            self.keep_all_days,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
            self.min_versions,
            self.lock_days,
        ]
    }

    fn applied_to(&self, current: &RetentionPolicy) -> RetentionPolicy {
        let mut next = current.clone();
        for (slot, new) in policy_fields(&mut next).into_iter().zip(self.as_array()) {
            if let Some(v) = new {
                *slot = v;
            }
        }
        next
    }
}

/// The policy's numbers, in the order of `PolicyChange::as_array`.
fn policy_fields(p: &mut RetentionPolicy) -> [&mut u32; 8] {
    [
        &mut p.keep_all_days,
        &mut p.keep_hourly,
        &mut p.keep_daily,
        &mut p.keep_weekly,
        &mut p.keep_monthly,
        &mut p.keep_yearly,
        &mut p.min_versions,
        &mut p.lock_days,
    ]
}

/// Why `set_retention` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SetPolicyError {
    #[error(transparent)]
    Unlock(#[from] UnlockError),
    /// The retention rules refuse the policy, or the change (a shorter lock).
    #[error("{0}; nothing was changed")]
    Refused(#[from] PolicyError),
    #[error("cannot change vault.toml: {0}")]
    Store(#[from] StoreError),
}

/// What `set_retention` did.
pub struct PolicySet {
    pub before: RetentionPolicy,
    pub after: RetentionPolicy,
    /// `[audit] keep` before and after, as stored.
    pub audit_before: String,
    pub audit_after: String,
    /// The policy on disk had no valid MAC (a hand edit, or a format-1 file)
    /// and is now authenticated again.
    pub was_unauthenticated: bool,
}

/// Changes the retention policy and authenticates it. Needs a passphrase
/// (or recovery key), but not a valid MAC: this is how a policy that was
/// edited by hand is replaced. The retention rules judge the change
/// (`validate_policy_change`: the lock can be lengthened, never shortened)
/// against the policy on disk, authenticated or not, as read under the lock.
pub fn set_retention(
    dir: &StoreDir,
    pass: &Passphrase,
    change: &PolicyChange,
) -> Result<PolicySet, SetPolicyError> {
    let (master, _slot) = open_slot(dir, pass)?;
    VaultConfig::edit(dir, |cfg| {
        let before = cfg.retention.clone();
        let after = change.applied_to(&before);
        validate_policy_change(&before, &after)?;
        let audit_before = cfg.audit_settings().keep;
        if let Some(keep) = &change.audit_keep {
            cfg.audit = Some(AuditSettings {
                keep: keep.to_string(),
            });
        }
        // A format-1 file is upgraded; one whose MAC fails is repaired.
        let was_unauthenticated = authenticate(cfg, &master).unwrap_or(true);
        cfg.format = FORMAT_VERSION;
        cfg.retention = after.clone();
        cfg.policy_mac = Some(policy_mac(&master, cfg));
        Ok(PolicySet {
            before,
            after,
            audit_before,
            audit_after: cfg.audit_settings().keep,
            was_unauthenticated,
        })
    })
}

/// The policy as vault.toml holds it, read without a passphrase, so not
/// authenticated here (every unlock checks it).
pub struct PolicyView {
    pub policy: RetentionPolicy,
    pub format: u32,
    /// Whether the file carries a MAC at all (format 2).
    pub has_mac: bool,
    /// `[audit] keep` as stored, or the default when the file has none.
    pub audit_keep: String,
    /// Whether the file has an `[audit]` section (else the default applies).
    pub audit_set: bool,
}

pub fn retention_policy(dir: &StoreDir) -> Result<PolicyView, StoreError> {
    let config = VaultConfig::load(dir)?;
    Ok(PolicyView {
        has_mac: config.format == FORMAT_VERSION && config.policy_mac.is_some(),
        format: config.format,
        audit_keep: config.audit_settings().keep,
        audit_set: config.audit.is_some(),
        policy: config.retention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(master: &MasterKey) -> VaultConfig {
        let mut c = VaultConfig {
            format: FORMAT_VERSION,
            vault_id: "ab".repeat(16),
            created: "2026-12-06T00:00:00Z".into(),
            block_size: 65536,
            policy_mac: None,
            retention: RetentionPolicy::default(),
            audit: None,
            slots: vec![],
        };
        c.policy_mac = Some(policy_mac(master, &c));
        c
    }

    #[test]
    fn the_mac_covers_every_policy_number_the_block_size_and_the_identity() {
        let master = MasterKey::generate();
        let good = config(&master);
        assert!(!authenticate(&mut good.clone(), &master).unwrap());
        let mut edits: Vec<VaultConfig> = Vec::new();
        for i in 0..8 {
            let mut c = good.clone();
            *policy_fields(&mut c.retention)[i] += 1;
            edits.push(c);
        }
        let mut c = good.clone();
        c.block_size = 4096;
        edits.push(c);
        let mut c = good.clone();
        c.vault_id = "cd".repeat(16);
        edits.push(c);
        let mut c = good.clone();
        c.policy_mac = Some("not hex".into());
        edits.push(c);
        let mut with_audit = good.clone();
        with_audit.audit = Some(AuditSettings::default());
        edits.push(with_audit.clone());
        with_audit.policy_mac = Some(policy_mac(&master, &with_audit));
        assert!(!authenticate(&mut with_audit.clone(), &master).unwrap());
        let mut c = with_audit.clone();
        c.audit = Some(AuditSettings {
            keep: "1 year".into(),
        });
        edits.push(c);
        let mut c = with_audit.clone();
        c.audit = None;
        edits.push(c);
        for mut c in edits {
            assert!(
                matches!(
                    authenticate(&mut c, &master),
                    Err(StoreError::PolicyMacMismatch)
                ),
                "an edit went unnoticed: {c:?}"
            );
        }
        let mut c = good.clone();
        c.policy_mac = None;
        assert!(matches!(
            authenticate(&mut c, &master),
            Err(StoreError::PolicyMacMissing)
        ));
        // Another master key (another store) does not verify it either.
        assert!(authenticate(&mut good.clone(), &MasterKey::generate()).is_err());
    }

    #[test]
    fn a_format_1_config_is_upgraded_with_a_mac() {
        let master = MasterKey::generate();
        let mut c = config(&master);
        c.format = FORMAT_UNAUTHENTICATED;
        c.policy_mac = None;
        assert!(authenticate(&mut c, &master).unwrap());
        assert_eq!(c.format, FORMAT_VERSION);
        assert!(!authenticate(&mut c, &master).unwrap());
    }
}
