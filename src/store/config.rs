use serde::{Deserialize, Serialize};

use super::layout::write_atomic;
use super::{IoContext, Result, StoreDir, StoreError};
use crate::crypto::KeySlot;

pub const FORMAT_VERSION: u32 = 1;

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

/// vault.toml: everything needed to open the store except a passphrase.
/// Holds no secret: key slots contain only wrapped keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VaultConfig {
    pub format: u32,
    pub vault_id: String,
    pub created: String,
    pub block_size: u32,
    pub retention: RetentionPolicy,
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
        if cfg.format != FORMAT_VERSION {
            return Err(StoreError::Format {
                found: cfg.format,
                supported: FORMAT_VERSION,
            });
        }
        Ok(cfg)
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
