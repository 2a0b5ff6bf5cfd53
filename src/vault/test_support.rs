//! Vaults for the unit tests of the vault's modules: a fresh store in a
//! temporary directory, with a KDF cheap enough to unlock in milliseconds.

use std::path::Path;
use std::sync::Arc;

use super::{
    create_store, read_config, unlock_master, Caller, InitOptions, NodeSpec, OpenOptions, Vault,
    ROOT_INO,
};
use crate::catalog::Ino;
use crate::crypto::{KdfParams, Passphrase};
use crate::store::StoreDir;

pub(crate) fn open_vault(dir: &Path) -> Arc<Vault> {
    open_vault_with(dir, &OpenOptions::default())
}

/// `open_vault` with these options (a test's clock, say).
pub(crate) fn open_vault_with(dir: &Path, opts: &OpenOptions) -> Arc<Vault> {
    let store = StoreDir::new(dir.join("store"));
    let pass = Passphrase::new(b"a vault for unit tests".to_vec());
    let init = InitOptions {
        kdf: KdfParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    create_store(&store, &pass, &init).unwrap();
    let (master, _) = unlock_master(&read_config(&store).unwrap(), &pass).unwrap();
    Vault::open(&store, &master, opts).unwrap()
}

pub(crate) fn new_file(v: &Vault, name: &str) -> Ino {
    let spec = NodeSpec::file(0o644);
    let ino = v
        .create_node(&Caller::default(), ROOT_INO, name.as_bytes(), spec)
        .unwrap()
        .ino;
    v.open_file(ino, false).unwrap();
    ino
}
