use std::path::PathBuf;

use anyhow::Context;

use super::{passphrase, util};
use crate::crypto::{KdfParams, Passphrase};
use crate::store::StoreDir;
use crate::vault::{create_store, InitOptions, DEFAULT_BLOCK_SIZE};

/// Create a new, empty store.
#[derive(clap::Args)]
#[command(
    long_about = "Create a new store in STORE, which must be missing or an empty directory. \
Asks for a new passphrase twice on the terminal, or reads it from --passphrase-file. \
Refuses to overwrite an existing store and refuses empty or weak passphrases."
)]
pub struct Args {
    /// Directory for the new store (missing or empty).
    pub store: PathBuf,
    /// Read the new passphrase from this file (first line) instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Block size for file content, fixed for the store's life (4K..1M, power of two).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = util::parse_size)]
    pub block_size: u64,
    /// Argon2id memory in MiB for the passphrase key slot.
    #[arg(long, value_name = "MIB", default_value_t = KdfParams::default().memory_kib / 1024)]
    pub kdf_memory_mib: u32,
    /// Argon2id iterations for the passphrase key slot.
    #[arg(long, value_name = "N", default_value_t = KdfParams::default().iterations)]
    pub kdf_iterations: u32,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    drop(create(
        &store,
        a.passphrase_file.as_deref(),
        a.block_size,
        kdf(a.kdf_memory_mib, a.kdf_iterations)?,
    )?);
    println!("Created store {}", store.display());
    println!("Keep the passphrase safe: without it the data cannot be read. `phivault passwd --add-recovery-key` prints a recovery key.");
    Ok(())
}

pub fn kdf(memory_mib: u32, iterations: u32) -> anyhow::Result<KdfParams> {
    anyhow::ensure!(memory_mib >= 8, "--kdf-memory-mib must be at least 8");
    anyhow::ensure!(iterations >= 1, "--kdf-iterations must be at least 1");
    Ok(KdfParams {
        memory_kib: memory_mib * 1024,
        iterations,
        parallelism: 1,
    })
}

/// Creates a store and returns the passphrase it was given (for an unlock
/// right after, without asking again).
pub fn create(
    store: &std::path::Path,
    pass_file: Option<&std::path::Path>,
    block_size: u64,
    kdf: KdfParams,
) -> anyhow::Result<Passphrase> {
    let dir = StoreDir::new(store);
    if dir.exists() {
        anyhow::bail!(
            "{} already holds a phivault store; refusing to overwrite it",
            store.display()
        );
    }
    anyhow::ensure!(
        block_size.is_power_of_two() && (4096..=1 << 20).contains(&block_size),
        "--block-size must be a power of two from 4K to 1M (default {}K)",
        DEFAULT_BLOCK_SIZE / 1024
    );
    let pass = passphrase::new(pass_file, "passphrase")?;
    let opts = InitOptions {
        block_size: block_size as u32,
        kdf,
        ..InitOptions::default()
    };
    create_store(&dir, &pass, &opts)
        .with_context(|| format!("cannot create a store in {}", store.display()))?;
    Ok(pass)
}
