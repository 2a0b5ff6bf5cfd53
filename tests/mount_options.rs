//! Generic mount options (noexec, noatime, suid, ...) and remount, driven
//! through mount(8) and the installed helper, as an administrator would.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use common::Vault;

/// Installs this tree's helper as mount(8) finds it: mount.phivault for
/// `-t phivault`, and mount.fuse.phivault for the type a mounted share has
/// in mountinfo (which `mount -o remount MNT` goes by). The helper runs
/// the `phivault` named by $PHIVAULT, which `mount` below sets.
fn install_helper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helper/mount.phivault");
        let dst = Path::new("/sbin/mount.phivault");
        let tmp = Path::new("/sbin/.mount.phivault.new");
        std::fs::copy(&src, tmp).unwrap_or_else(|e| {
            panic!("this test installs the helper as /sbin/mount.phivault and needs root: {e}")
        });
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(tmp, dst).unwrap();
        let link = Path::new("/sbin/mount.fuse.phivault");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink("mount.phivault", link).unwrap();
    });
}

/// mount(8) with the helper installed, under a time limit.
fn mount(args: &[&str]) -> Output {
    common::require_programs(&["mount", "timeout"]);
    install_helper();
    common::run(
        Command::new("timeout")
            .args(["--kill-after=5", "120", "mount"])
            .args(args)
            .env("PHIVAULT", common::bin()),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if mount_line(&self.0).is_some() {
            let _ = Command::new(common::bin())
                .arg("umount")
                .arg(&self.0)
                .output();
        }
        if mount_line(&self.0).is_some() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `mount -t phivault STORE MNT -o OPTS,passphrase_file=...,log_file=...`.
fn mount_t_phivault(v: &Vault, opts: &str) -> Mounted {
    let all = format!(
        "{opts},passphrase_file={},log_file={}",
        v.pwfile.display(),
        v.log.display()
    );
    let out = mount(&[
        "-t",
        "phivault",
        "-o",
        &all,
        v.store.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
    ]);
    common::ok_output(&out, &format!("mount -t phivault -o {all}"));
    Mounted(v.mnt.clone())
}

fn remount(mnt: &Path, opts: &str) -> Output {
    mount(&["-o", &format!("remount,{opts}"), mnt.to_str().unwrap()])
}

/// The mount's own options and its superblock's, from mountinfo.
fn mount_line(mnt: &Path) -> Option<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mnt = mnt.to_str().unwrap();
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let words = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        (f[4] == mnt).then(|| (words(f[5]), words(r[2])))
    })
}

fn options(mnt: &Path) -> Vec<String> {
    mount_line(mnt).expect("mounted").0
}

fn has(opts: &[String], word: &str) -> bool {
    opts.iter().any(|o| o == word)
}

/// A shell script on the mount, written by another process: a file this
/// multi-threaded test process wrote could still be open in a child that
/// another test forked, and exec would fail with ETXTBSY.
fn script(v: &Vault) -> PathBuf {
    let path = v.path("hello.sh");
    common::sh(&format!(
        "printf '#!/bin/sh\\necho hello\\n' > '{p}'; chmod 755 '{p}'",
        p = path.display()
    ));
    path
}

fn exec(path: &Path) -> std::io::Result<Output> {
    Command::new(path).output()
}

#[test]
fn generic_options_become_mount_flags() {
    let v = Vault::init();
    let _m = mount_t_phivault(&v, "noatime,noexec,nodiratime");
    let opts = options(&v.mnt);
    for word in ["rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime"] {
        assert!(has(&opts, word), "{word} missing from {opts:?}");
    }
    let s = script(&v);
    let err = exec(&s).expect_err("a script ran on a noexec mount");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert_eq!(
        std::fs::read(&s).unwrap(),
        b"#!/bin/sh\necho hello\n",
        "noexec must not stop reads"
    );
}

#[test]
fn superblock_flags_and_strictatime_reach_the_mount() {
    let v = Vault::init();
    let _m = mount_t_phivault(&v, "strictatime,sync,dirsync,lazytime,nosymfollow");
    let (opts, sb) = mount_line(&v.mnt).unwrap();
    assert!(has(&opts, "nosymfollow"), "{opts:?}");
    assert!(
        !has(&opts, "relatime") && !has(&opts, "noatime"),
        "strictatime shows as no atime word: {opts:?}"
    );
    for word in ["sync", "dirsync", "lazytime"] {
        assert!(has(&sb, word), "{word} missing from {sb:?}");
    }
    std::fs::write(v.path("target.txt"), b"data").unwrap();
    std::os::unix::fs::symlink("target.txt", v.path("link")).unwrap();
    let err = std::fs::read(v.path("link")).expect_err("followed a symlink under nosymfollow");
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    assert_eq!(std::fs::read(v.path("target.txt")).unwrap(), b"data");

    // mountinfo shows strictatime as no atime word, so mount(8) names none.
    common::ok_output(&remount(&v.mnt, "ro"), "remount,ro");
    let (opts, sb) = mount_line(&v.mnt).unwrap();
    assert!(has(&opts, "ro") && has(&opts, "nosymfollow"), "{opts:?}");
    assert!(
        !has(&opts, "relatime") && !has(&opts, "noatime"),
        "{opts:?}"
    );
    assert!(has(&sb, "sync") && has(&sb, "lazytime"), "{sb:?}");
}

/// A character device like /dev/null, made on the mount.
fn device_node(v: &Vault) -> PathBuf {
    let path = v.path("null");
    common::sh(&format!("mknod '{}' c 1 3", path.display()));
    path
}

#[test]
fn a_share_is_nosuid_nodev_unless_root_asks_for_suid_dev() {
    let mut v = Vault::init();
    let m = mount_t_phivault(&v, "defaults");
    let opts = options(&v.mnt);
    assert!(has(&opts, "nosuid") && has(&opts, "nodev"), "{opts:?}");
    let dev = device_node(&v);
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&dev)
        .expect_err("opened a device node on a nodev mount");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    v.unmount();
    drop(m);

    let _m = mount_t_phivault(&v, "suid,dev");
    let opts = options(&v.mnt);
    assert!(!has(&opts, "nosuid") && !has(&opts, "nodev"), "{opts:?}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&dev)
        .expect("a device node opens on a mount with dev");
}

#[test]
fn suid_and_dev_are_refused_for_other_users() {
    let _ = common::user_ids("tests");
    let v = Vault::init();
    for opt in ["suid", "dev", "strictatime"] {
        let out = common::run(
            Command::new("runuser")
                .args(["-u", "tests", "--"])
                .arg(common::bin())
                .arg("mount")
                .arg(&v.store)
                .arg(&v.mnt)
                .args(["-o", opt]),
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(&format!("mount option {opt} needs root")),
            "{err}"
        );
    }
    assert!(mount_line(&v.mnt).is_none());
}

#[test]
fn an_unknown_option_is_named_and_nothing_is_mounted() {
    let v = Vault::init();
    let all = format!(
        "noatime,noexc,passphrase_file={},log_file={}",
        v.pwfile.display(),
        v.log.display()
    );
    let out = mount(&[
        "-t",
        "phivault",
        "-o",
        &all,
        v.store.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "mounted with a bogus option");
    let err = stderr(&out);
    assert!(err.contains("unknown mount option 'noexc'"), "{err}");
    assert!(mount_line(&v.mnt).is_none(), "something was mounted");
    assert!(!v.log.exists(), "a daemon was started for a bad option");
}

#[test]
fn remount_ro_and_back_to_rw_keeps_the_mount_and_its_data() {
    let mut v = Vault::init();
    let m = mount_t_phivault(&v, "defaults");
    std::fs::write(v.path("kept.txt"), b"before").unwrap();

    common::ok_output(&remount(&v.mnt, "ro"), "mount -o remount,ro");
    let opts = options(&v.mnt);
    assert!(
        has(&opts, "ro") && has(&opts, "nosuid") && has(&opts, "nodev"),
        "{opts:?}"
    );
    let err = std::fs::write(v.path("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::write(v.path("kept.txt"), b"changed").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert_eq!(std::fs::read(v.path("kept.txt")).unwrap(), b"before");

    common::ok_output(&remount(&v.mnt, "rw"), "mount -o remount,rw");
    assert!(has(&options(&v.mnt), "rw"));
    std::fs::write(v.path("new.txt"), b"after").unwrap();

    v.unmount();
    drop(m);
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("kept.txt")).unwrap(), b"before");
    assert_eq!(std::fs::read(v.path("new.txt")).unwrap(), b"after");
}

#[test]
fn remount_changes_generic_flags() {
    let v = Vault::init();
    let _m = mount_t_phivault(&v, "defaults");
    let s = script(&v);
    assert_eq!(exec(&s).unwrap().stdout, b"hello\n");

    common::ok_output(&remount(&v.mnt, "noexec,noatime"), "remount,noexec,noatime");
    let opts = options(&v.mnt);
    assert!(has(&opts, "noexec") && has(&opts, "noatime"), "{opts:?}");
    assert!(has(&opts, "nosuid") && has(&opts, "nodev"), "{opts:?}");
    let err = exec(&s).expect_err("a script ran after remount,noexec");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");

    // mount(8) passes the mount's options with noexec and noatime taken out.
    common::ok_output(&remount(&v.mnt, "exec,atime"), "remount,exec,atime");
    let opts = options(&v.mnt);
    assert!(!has(&opts, "noexec") && has(&opts, "relatime"), "{opts:?}");
    assert_eq!(exec(&s).unwrap().stdout, b"hello\n");

    // suid is mount(8)'s default: it passes nosuid taken out, nothing added.
    common::ok_output(&remount(&v.mnt, "suid"), "remount,suid");
    let opts = options(&v.mnt);
    assert!(!has(&opts, "nosuid") && has(&opts, "nodev"), "{opts:?}");
    common::ok_output(&remount(&v.mnt, "ro"), "remount,ro");
    let opts = options(&v.mnt);
    assert!(has(&opts, "ro") && !has(&opts, "nosuid"), "{opts:?}");
    common::ok_output(&remount(&v.mnt, "rw,nosuid"), "remount,rw,nosuid");
    let opts = options(&v.mnt);
    assert!(has(&opts, "rw") && has(&opts, "nosuid"), "{opts:?}");
}

#[test]
fn remount_rw_of_a_read_only_mount_is_refused() {
    let v = Vault::init();
    let _m = mount_t_phivault(&v, "ro");
    let out = remount(&v.mnt, "rw");
    assert!(!out.status.success(), "remount,rw of an ro mount succeeded");
    let err = stderr(&out);
    assert!(err.contains("phivault opened its store read-only"), "{err}");
    assert!(has(&options(&v.mnt), "ro"));
    let err = std::fs::write(v.path("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

#[test]
fn remount_cannot_change_sync() {
    let v = Vault::init();
    let _m = mount_t_phivault(&v, "defaults");
    let out = remount(&v.mnt, "sync");
    assert!(!out.status.success(), "remount,sync claimed success");
    assert!(
        stderr(&out).contains("fixed when mounting"),
        "{}",
        stderr(&out)
    );
    let (_, sb) = mount_line(&v.mnt).unwrap();
    assert!(!has(&sb, "sync"), "{sb:?}");
}

/// mount(8) hands helpers nosuid and nodev but never suid or dev (its own
/// defaults); the helper reads them from the fstab line. LIBMOUNT_FSTAB
/// points mount(8) and findmnt at a test fstab.
#[test]
fn an_fstab_line_with_suid_dev_noexec_mounts_so_and_survives_remount() {
    let v = Vault::init();
    let fstab = v.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{}  {}  phivault  suid,dev,noexec,passphrase_file={},log_file={},_netdev  0 0\n",
            v.store.display(),
            v.mnt.display(),
            v.pwfile.display(),
            v.log.display()
        ),
    )
    .unwrap();
    let with_fstab = |args: &[&str]| {
        common::require_programs(&["mount", "findmnt"]);
        install_helper();
        common::run(
            Command::new("mount")
                .args(args)
                .env("PHIVAULT", common::bin())
                .env("LIBMOUNT_FSTAB", &fstab),
        )
    };
    let mnt = v.mnt.to_str().unwrap();
    common::ok_output(&with_fstab(&[mnt]), "mount MNT (from fstab)");
    let _m = Mounted(v.mnt.clone());
    let opts = options(&v.mnt);
    assert!(has(&opts, "noexec"), "{opts:?}");
    assert!(!has(&opts, "nosuid") && !has(&opts, "nodev"), "{opts:?}");

    common::ok_output(&with_fstab(&["-o", "remount,ro", mnt]), "remount,ro");
    let opts = options(&v.mnt);
    assert!(has(&opts, "ro") && has(&opts, "noexec"), "{opts:?}");
    assert!(!has(&opts, "nosuid") && !has(&opts, "nodev"), "{opts:?}");
}
