//! vault.toml: read, written atomically, and changed only through `edit`,
//! a read-modify-write under its own lock, so that concurrent changes
//! (two `passwd` runs, `retention set` beside a mounted daemon) never lose
//! one another. Knows no key: the policy's MAC is computed by the engine
//! over `authenticated_bytes`.

use serde::{Deserialize, Serialize};

use super::layout::write_atomic;
use super::lock::ConfigLock;
use super::{IoContext, Result, StoreDir, StoreError};
use crate::crypto::KeySlot;

/// Format 2: the retention policy (with the store's identity and block size)
/// is authenticated by `policy-mac`, a keyed hash under the master key.
pub const FORMAT_VERSION: u32 = 2;
/// Format 1 (releases before the MAC): still opened, and upgraded to format 2
/// by the first unlock (see `vault::unlock_store`).
pub const FORMAT_UNAUTHENTICATED: u32 = 1;

/// When versions may be thinned. Recorded at `init`; applied by pruning.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct RetentionPolicy {
    pub keep_all_days: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    pub min_versions: u32,
    pub lock_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_all_days: 30,
            keep_hourly: 48,
            keep_daily: 90,
            keep_weekly: 52,
            keep_monthly: 72,
            keep_yearly: 10,
            min_versions: 3,
            lock_days: 7,
        }
    }
}

/// `[audit]`: the audit trail's own retention, apart from the versions'
/// (version retention never removes an audit record). Stores made before
/// it have no such section: `AuditSettings::default()` applies to them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct AuditSettings {
    /// How long records are kept: a duration in years, months, weeks or
    /// days ("6 years", "18 months"), or "forever". The engine checks it.
    pub keep: String,
}

/// HIPAA's documentation period (45 CFR 164.316(b)(2)).
pub const DEFAULT_AUDIT_KEEP: &str = "6 years";

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            keep: DEFAULT_AUDIT_KEEP.into(),
        }
    }
}

/// vault.toml: everything needed to open the store except a passphrase.
/// Holds no secret: key slots contain only wrapped keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VaultConfig {
    pub format: u32,
    pub vault_id: String,
    pub created: String,
    pub block_size: u32,
    /// Hex keyed BLAKE3 of `authenticated_bytes()`; absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_mac: Option<String>,
    pub retention: RetentionPolicy,
    /// Absent until set (`retention set --audit-keep`): the default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSettings>,
    #[serde(rename = "slot")]
    pub slots: Vec<KeySlot>,
}

impl VaultConfig {
    pub fn load(dir: &StoreDir) -> Result<Self> {
        let path = dir.config_path();
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore(dir.root().to_path_buf()))
            }
            other => other.at(&path)?,
        };
        let cfg: VaultConfig =
            toml::from_str(&text).map_err(|e| StoreError::Config(e.to_string()))?;
        // The policy's MAC needs the master key: the engine checks it at
        // unlock. Here only formats this release cannot read are refused.
        if !matches!(cfg.format, FORMAT_UNAUTHENTICATED | FORMAT_VERSION) {
            return Err(StoreError::Format {
                found: cfg.format,
                supported: FORMAT_VERSION,
            });
        }
        Ok(cfg)
    }

    /// Changes vault.toml safely against every other change: takes the
    /// exclusive lock on STORE/vault.toml.lock (not the daemon's store lock,
    /// which a mounted store holds), reads the file afresh, lets `change`
    /// check and modify it, and replaces the file atomically. If `change`
    /// fails, nothing is written. Keep `change` quick (no Argon2): every
    /// other change of the store's configuration waits for it.
    pub fn edit<T, E>(
        dir: &StoreDir,
        change: impl FnOnce(&mut VaultConfig) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let _lock = ConfigLock::acquire(dir)?;
        let mut cfg = Self::load(dir)?;
        let out = change(&mut cfg)?;
        cfg.save(dir)?;
        Ok(out)
    }

    /// What `policy-mac` authenticates, in a fixed binary encoding: a domain
    /// string, the format, the vault id (so a policy cannot be carried over
    /// from a store that shares the master key, such as a recovered copy), the
    /// block size (a hand edit of it would misread every file) and the eight
    /// policy numbers, then the `[audit]` section when there is one (a store
    /// made before it keeps its MAC; removing the section breaks it). Key
    /// slots are not covered: each authenticates itself
    /// (AES-GCM-SIV under its passphrase's key).
    pub fn authenticated_bytes(&self) -> Vec<u8> {
        let mut out = b"phivault vault.toml policy\0".to_vec();
        out.extend(self.format.to_le_bytes());
        out.extend((self.vault_id.len() as u32).to_le_bytes());
        out.extend(self.vault_id.as_bytes());
        out.extend(self.block_size.to_le_bytes());
        let r = &self.retention;
        for n in [
            r.keep_all_days,
            r.keep_hourly,
            r.keep_daily,
            r.keep_weekly,
            r.keep_monthly,
            r.keep_yearly,
            r.min_versions,
            r.lock_days,
        ] {
            out.extend(n.to_le_bytes());
        }
        if let Some(audit) = &self.audit {
            out.extend(b"audit\0");
            out.extend((audit.keep.len() as u32).to_le_bytes());
            out.extend(audit.keep.as_bytes());
        }
        out
    }

    /// The `[audit]` settings, or the defaults when the file has none.
    pub fn audit_settings(&self) -> AuditSettings {
        self.audit.clone().unwrap_or_default()
    }

    pub fn save(&self, dir: &StoreDir) -> Result<()> {
        let text = toml::to_string_pretty(self).map_err(|e| StoreError::Config(e.to_string()))?;
        let header =
            "# phivault store configuration. Holds no secret: key slots are wrapped keys.\n";
        write_atomic(&dir.config_path(), format!("{header}{text}").as_bytes())
    }

    pub fn next_slot_id(&self) -> u32 {
        self.slots.iter().map(|s| s.id).max().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_config() -> (tempfile::TempDir, StoreDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StoreDir::new(tmp.path());
        VaultConfig {
            format: FORMAT_VERSION,
            vault_id: "00".repeat(16),
            created: "2026-12-06T00:00:00Z".into(),
            block_size: 65536,
            policy_mac: Some("00".repeat(32)),
            retention: RetentionPolicy::default(),
            audit: None,
            slots: vec![],
        }
        .save(&dir)
        .unwrap();
        (tmp, dir)
    }

    #[test]
    fn concurrent_edits_lose_no_change() {
        let (_tmp, dir) = store_with_config();
        let before = VaultConfig::load(&dir).unwrap().retention.keep_yearly;
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        VaultConfig::edit(&dir, |c| -> Result<()> {
                            c.retention.keep_yearly += 1;
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let after = VaultConfig::load(&dir).unwrap().retention.keep_yearly;
        assert_eq!(after, before + 200, "an edit was lost");
    }

    #[test]
    fn a_failed_edit_writes_nothing_and_the_lock_file_is_private() {
        let (_tmp, dir) = store_with_config();
        let before = std::fs::read(dir.config_path()).unwrap();
        let r = VaultConfig::edit(&dir, |c| {
            c.retention.lock_days = 0;
            Err::<(), _>(StoreError::Config("refused".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(dir.config_path()).unwrap(), before);
        use std::os::unix::fs::PermissionsExt;
        let lock = std::fs::metadata(dir.root().join(super::super::CONFIG_LOCK_FILE)).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn formats_this_release_cannot_read_are_refused() {
        let (_tmp, dir) = store_with_config();
        let text = std::fs::read_to_string(dir.config_path()).unwrap();
        std::fs::write(dir.config_path(), text.replace("format = 2", "format = 3")).unwrap();
        assert!(matches!(
            VaultConfig::load(&dir),
            Err(StoreError::Format { found: 3, .. })
        ));
    }
}
