//! Whether the kernel hands requests over io_uring (a queue per CPU: each
//! request is served on the CPU that made it) or through reads of /dev/fuse.

use fuser::{InitFlags, KernelConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoUringMode {
    /// io_uring when the kernel offers it, /dev/fuse otherwise.
    Auto,
    /// io_uring, or the mount fails.
    On,
    /// /dev/fuse only.
    Off,
}

/// The kernel offers FUSE over io_uring only when this switch (Linux 6.14+)
/// is on; it is off by default.
const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

pub fn io_uring_enabled() -> bool {
    std::fs::read_to_string(ENABLE_URING).is_ok_and(|v| v.trim() == "Y")
}

/// Asks INIT for io_uring as `mode` says; returns whether it was granted.
pub(super) fn request(mode: IoUringMode, config: &mut KernelConfig) -> std::io::Result<bool> {
    let granted = mode != IoUringMode::Off
        && io_uring_enabled()
        && can_build_rings(mode)?
        && config
            .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
            .is_ok();
    if mode == IoUringMode::On && !granted {
        return Err(std::io::Error::other(format!(
            "the kernel does not offer FUSE over io_uring (is {ENABLE_URING} Y?)"
        )));
    }
    Ok(granted)
}

/// Once io_uring is granted, the kernel holds every request until each
/// per-CPU queue is registered: ask for it only if this process can build
/// the rings (`kernel.io_uring_disabled` may forbid them).
fn can_build_rings(mode: IoUringMode) -> std::io::Result<bool> {
    match fuser::io_uring_supported() {
        Ok(()) => Ok(true),
        Err(e) if mode == IoUringMode::On => Err(std::io::Error::other(format!(
            "this process cannot use io_uring: {e}"
        ))),
        Err(e) => {
            tracing::warn!("io_uring is unusable ({e}); serving through /dev/fuse");
            Ok(false)
        }
    }
}
