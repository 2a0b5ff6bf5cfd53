//! The kernel's read-ahead window for the mount.

use crate::vault::Vault;

/// The kernel's read-ahead for this mount, in KiB (its default is 128).
/// Over io_uring, a READ is served on the reader's CPU; with 8 MiB ahead,
/// enough READs are in flight to keep both cores decrypting, and 8 MiB read
/// 1 GiB 20-25% faster than 1 MiB in interleaved runs.
const READ_AHEAD_KIB: u32 = 8192;

/// Raises the read-ahead window of the mount whose device is `device`
/// ("major:minor", from mountinfo). Call it once the FUSE handshake is done
/// (`fuser::Session::new` returns after it), which would otherwise cap it
/// again. Needs root to write to sysfs; anyone else keeps the kernel
/// default, and the engine decrypts ahead itself. It never touches the
/// mount: a daemon thread waiting on its own mount when the daemon is
/// killed keeps the process, and so the mount, from ever dying.
pub fn raise_read_ahead(device: &str, vault: &Vault) {
    let knob = format!("/sys/class/bdi/{device}/read_ahead_kb");
    match std::fs::write(&knob, READ_AHEAD_KIB.to_string()) {
        // The kernel's READs now cover 8 MiB ahead: reads decrypt
        // straight into its buffers instead (see `vault::read`).
        Ok(()) => vault.set_decrypt_ahead(false),
        Err(e) => tracing::debug!("read-ahead left at the kernel default ({knob}: {e})"),
    }
}
