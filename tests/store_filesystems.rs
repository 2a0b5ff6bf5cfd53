//! Which filesystems under a store let one device flush per fsync cover both
//! the packs and the catalog (`store::wal_flush_covers_packs`), checked on
//! real filesystems. Needs root, loop devices and xfsprogs (`.ci/run`
//! installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use phivault::store::{wal_flush_covers_packs, StoreDir};

mod common;
use common::ok;

/// An XFS filesystem on a loop device, unmounted on drop.
struct XfsMount {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl XfsMount {
    fn new() -> Self {
        // SAFETY: no arguments, no memory.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(root, "this test mounts a loop device and must run as root");
        assert!(
            Command::new("mkfs.xfs").arg("-V").output().is_ok(),
            "this test needs mkfs.xfs and xfs_io: apt-get install xfsprogs"
        );
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("xfs.img");
        // Sparse: XFS wants 300 MiB, the test writes a few KiB.
        std::fs::File::create(&image)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        ok(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&image));
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&dir));
        Self { dir, _tmp: tmp }
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn store_in(parent: &Path) -> StoreDir {
    let store = StoreDir::new(parent.join("store"));
    store.create_root().unwrap();
    store
}

#[test]
fn one_flush_covers_packs_on_xfs_but_not_on_its_realtime_device() {
    let xfs = XfsMount::new();
    let plain = xfs.dir.join("plain");
    std::fs::create_dir(&plain).unwrap();
    assert!(
        wal_flush_covers_packs(&store_in(&plain)),
        "XFS overwrites in place: the WAL's flush covers the packs"
    );

    // Files created under an rtinherit directory keep their data on the
    // realtime device, which a flush of the data device does not reach.
    let realtime = xfs.dir.join("realtime");
    std::fs::create_dir(&realtime).unwrap();
    ok(Command::new("xfs_io")
        .args(["-c", "chattr +t"])
        .arg(&realtime));
    assert!(
        !wal_flush_covers_packs(&store_in(&realtime)),
        "packs inheriting the realtime flag need their own flush"
    );
}

#[test]
fn one_flush_needs_packs_and_catalog_on_one_filesystem() {
    let xfs = XfsMount::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let store = StoreDir::new(elsewhere.path().join("store"));
    store.create_root().unwrap();
    // The packs on XFS, the catalog elsewhere: two devices, two flushes.
    std::fs::remove_dir(store.packs_dir()).unwrap();
    std::os::unix::fs::symlink(&xfs.dir, store.packs_dir()).unwrap();
    assert!(!wal_flush_covers_packs(&store));
}
