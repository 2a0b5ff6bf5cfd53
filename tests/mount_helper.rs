//! mount-helper/mount.phivault: the fstab / `mount -t phivault` entry point.

mod common;

use std::path::Path;
use std::process::Command;

use common::Vault;

fn helper() -> Command {
    let mut c =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helper/mount.phivault"));
    c.env("PHIVAULT", common::bin());
    c
}

#[test]
fn helper_mounts_with_options_from_fstab_syntax() {
    let mut v = Vault::init();
    let opts = format!(
        "defaults,_netdev,passphrase_file={},log_file={},cache_size=32M,space_reserve=8M,io_uring=off",
        v.pwfile.display(),
        v.log.display()
    );
    common::ok(helper().arg(&v.store).arg(&v.mnt).arg("-o").arg(&opts));
    let log = std::fs::read_to_string(&v.log).unwrap();
    assert!(
        log.contains("kernel requests arrive through /dev/fuse"),
        "io_uring=off was not passed on:\n{log}"
    );
    assert!(
        log.contains("8192 KiB of its disk kept free for the catalog"),
        "space_reserve=8M was not passed on:\n{log}"
    );
    std::fs::write(v.path("via-helper.txt"), b"mounted by mount.phivault").unwrap();
    v.unmount();
    v.mount(&[]);
    assert_eq!(
        std::fs::read(v.path("via-helper.txt")).unwrap(),
        b"mounted by mount.phivault"
    );
}

#[test]
fn helper_passes_ro_through() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("kept.txt"), b"data").unwrap();
    v.unmount();
    let opts = format!(
        "ro,passphrase_file={},log_file={}",
        v.pwfile.display(),
        v.log.display()
    );
    common::ok(
        helper()
            .arg(&v.store)
            .arg(&v.mnt)
            .args(["-s", "-o"])
            .arg(&opts),
    );
    let err = std::fs::write(v.path("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::read(v.path("kept.txt")).unwrap(), b"data");
    common::ok(Command::new(common::bin()).arg("umount").arg(&v.mnt));
}

#[test]
fn helper_refuses_to_mount_without_a_passphrase_file() {
    let v = Vault::init();
    let out = common::run(
        helper()
            .arg(&v.store)
            .arg(&v.mnt)
            .args(["-o", "allow_other"]),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("passphrase_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
