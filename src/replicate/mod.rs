//! Replication: shipping a store's encrypted blocks, catalog and audit trail
//! to a second place, so that the place alone, with a passphrase, gives the
//! store back (issue 26).
//!
//! - `place`: where objects live (a directory today); opaque, hash-named,
//!   create-only. Never sees a key.
//! - `objects`: what each object holds before its envelope.
//! - `remotes`, `state`: the store's remotes and what each one holds.
//! - `pass`: one replication pass; `worker`: passes in the background of a
//!   mount; `recover`: a store rebuilt from a remote alone.

mod history;
pub mod lag;
pub mod objects;
pub mod pack_object;
pub mod pass;
pub mod place;
pub mod recover;
pub mod remotes;
pub mod state;
pub mod worker;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use pass::{Pass, PassReport, Progress};
pub use place::PlaceError;
pub use remotes::{Remote, RemoteUrl, DEFAULT_DELAY};

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error(transparent)]
    Store(crate::store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadUrl(String),
    #[error("no remote named {0} (`phivault remote STORE list`)")]
    NoSuchRemote(String),
    #[error("replication state: {0}")]
    State(String),
    #[error("stopped early: the store is being unmounted")]
    Stopped,
    /// An object about to be shipped, or fetched, is not what it must be.
    #[error("{0}")]
    Damaged(String),
}

impl ReplicateError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReplicateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether a later pass may succeed without anyone acting.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicateError::Place(e) if e.is_transient())
    }
}

/// Runs `f` where rayon runs `n` tasks at once: in a pool of its own when
/// that is more than the current one has (a network place; threads made
/// here inherit the caller's lowered priority).
pub(crate) fn with_concurrency<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    if n <= rayon::current_num_threads() {
        return f();
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("phivault-io-{i}"))
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(e) => {
            tracing::warn!("{n} transfers at once are not possible here: {e}");
            f()
        }
    }
}
