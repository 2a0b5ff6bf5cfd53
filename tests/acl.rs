//! POSIX ACLs on a real mount, driven by setfacl and getfacl: the same
//! session on the mount and on the native disk must print the same, access
//! by another user must be granted and refused alike, and the ACLs must
//! survive an unmount.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{require_programs, Vault};

/// The other user whose access the ACLs grant or refuse: pjdfstest's dummy
/// user, which `.ci/run` creates.
const OTHER_USER: &str = "tests";

/// A session of ACL work in the current directory, each step's result
/// printed: named users and masks, access as another user, `setfacl -b`,
/// default ACLs inherited by every kind of inode (umask ignored), chmod of
/// a file with an ACL, an ACL that says no more than the mode, set-group-ID
/// cleared by an ACL change, copies by `cp -a` and `tar --acls`, and the
/// raw xattr.
const SESSION: &str = r#"
set -u
u=$OTHER_USER
umask 022
touch f && setfacl -m u:$u:rw f && getfacl -n f && stat -c '%A' f
echo secret > g; chmod 640 g; setfacl -m u:$u:r g
runuser -u $u -- cat g; echo "read rc=$?"
setfacl -m m::- g; runuser -u $u -- cat g 2>&1 | sed 's#.*: ##'; echo "masked rc=${PIPESTATUS[0]}"
setfacl -b g; stat -c '%A' g; getfacl -n g; runuser -u $u -- cat g 2>&1 | sed 's#.*: ##'
mkdir d && setfacl -d -m u:$u:rwx,g::r-x d
touch d/new && mkdir d/sub && mknod d/fifo p && ln -s x d/ln
mkdir d/sub/deeper && echo x > d/sub/deeper/file
getfacl -n d d/new d/sub d/fifo d/sub/deeper d/sub/deeper/file
stat -c '%n %A' d/new d/sub d/fifo d/ln d/sub/deeper d/sub/deeper/file
runuser -u $u -- sh -c 'echo by-other > d/sub/deeper/mine'; echo "write in inherited dir rc=$?"
stat -c '%n %A %u' d/sub/deeper/mine; getfacl -n d/sub/deeper/mine
chmod 600 f; getfacl -n f; stat -c '%A' f
setfacl -m u::rwx,g::rwx,o::rwx f; getfacl -n f; stat -c '%A' f
setfacl -b f; setfacl -m u::rw,g::r,o::- f; stat -c '%A' f; getfattr -m - f
setfacl -k d; getfacl -n d
setfacl -d -m u:$u:r f 2>&1 | sed 's#.*: ##'
touch h; chgrp $u h; chmod 2755 h; stat -c '%A' h
runuser -u $u -- setfacl -m u:$u:r h 2>&1 | sed 's#.*: ##'
setfacl -m u:$u:r h; stat -c '%A' h
touch k; chown $u:root k; chmod 2755 k; runuser -u $u -- setfacl -m u:$u:rwx k; stat -c 'k %A' k
mkdir e; setfacl -m d:o::- e; touch e/x; stat -c '%A' e/x; getfacl -n e/x
cp -a d copied; getfacl -n copied copied/new copied/sub copied/sub/deeper/file
tar --acls -cf - d | (mkdir untarred && cd untarred && tar --acls -xf -)
getfacl -n untarred/d untarred/d/new untarred/d/sub/deeper untarred/d/sub/deeper/mine
getfattr -n system.posix_acl_access --only-values g 2>&1 | sed 's#.*: ##'
getfattr -n system.posix_acl_access --only-values f 2>&1 | od -An -tx1
getfattr -n system.posix_acl_access --only-values d/new | od -An -tx1
"#;

/// What the ACLs allow and say, read again after the remount.
const AFTER: &str = r#"
set -u
u=$OTHER_USER
getfacl -n f d d/new d/sub d/fifo d/sub/deeper d/sub/deeper/file h e/x
stat -c '%n %A' f g d d/new d/sub d/fifo d/ln h e/x
runuser -u $u -- cat d/sub/deeper/file; echo "read rc=$?"
runuser -u $u -- sh -c 'echo again > d/sub/deeper/mine'; echo "write rc=$?"
touch d/sub/after; getfacl -n d/sub/after
"#;

fn run_in(dir: &Path, script: &str) -> String {
    let out = common::run(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("OTHER_USER", OTHER_USER)
            .current_dir(dir),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Prints the first line where two outputs part, with the rest of both.
fn assert_same_output(native: &str, mounted: &str, what: &str) {
    if native == mounted {
        return;
    }
    let at = native
        .lines()
        .zip(mounted.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(native.lines().count().min(mounted.lines().count()));
    panic!(
        "{what}: the mount printed something else than the native disk from line {}\n--- native\n{native}\n--- mount\n{mounted}",
        at + 1
    );
}

fn open_to_all(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn acls_behave_as_on_the_native_disk_and_survive_a_remount() {
    require_programs(&["setfacl", "getfacl", "getfattr", "runuser", "od"]);
    // Fails saying so if the other user does not exist.
    common::user_ids(OTHER_USER);
    let native_root = tempfile::Builder::new()
        .prefix("phivault-acl-native-")
        .tempdir()
        .unwrap();
    open_to_all(native_root.path());
    let mut v = Vault::mounted_with(&["-o", "allow_other"]);
    open_to_all(v.dir.path());
    open_to_all(&v.mnt);

    let native = run_in(native_root.path(), SESSION);
    assert!(
        native.contains("mask::rw-") && native.contains("read rc=0"),
        "the native disk at {} does not do ACLs, so there is nothing to compare with:\n{native}",
        native_root.path().display()
    );
    let mounted = run_in(&v.mnt, SESSION);
    assert_same_output(&native, &mounted, "the ACL session");
    // The two could agree on a wrong answer: check what they must say.
    for expected in [
        "-rw-rw-r--",
        "read rc=0",
        "Permission denied",
        "masked rc=1",
        "write in inherited dir rc=0",
        "default:user:",
        "-rwxr-sr-x",
        "k -rwxrwxr-x",
        "# file: untarred/d/sub/deeper/mine",
    ] {
        assert!(
            mounted.contains(expected),
            "the session on the mount did not print `{expected}`:\n{mounted}"
        );
    }

    let native_after = run_in(native_root.path(), AFTER);
    v.unmount();
    v.mount(&["-o", "allow_other"]);
    let mounted_after = run_in(&v.mnt, AFTER);
    assert_same_output(&native_after, &mounted_after, "after the remount");
    assert!(
        mounted_after.contains("write rc=0") && mounted_after.contains("user:"),
        "after the remount:\n{mounted_after}"
    );
}

/// Without FUSE_POSIX_ACL nothing would check an ACL, so none is kept
/// unless the kernel agreed to enforce them; every other `system.` name is
/// refused, as ext4 refuses it.
#[test]
fn system_attributes_other_than_acls_are_refused() {
    require_programs(&["setfattr"]);
    let v = Vault::mounted();
    let f = v.path("f");
    fs::write(&f, b"x").unwrap();
    let out = common::run(
        Command::new("setfattr")
            .args(["-n", "system.phivault_test", "-v", "1"])
            .arg(&f),
    );
    assert!(!out.status.success(), "a system.* attribute was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `-o noacl` mounts without ACLs, as ext4 mounted `noacl`: setfacl fails
/// with "Operation not supported" and the umask applies everywhere.
#[test]
fn with_noacl_acls_are_refused() {
    require_programs(&["setfacl"]);
    let v = Vault::mounted_with(&["-o", "noacl"]);
    let script = "umask 027; mkdir d; setfacl -d -m u:root:rwx d; echo \"rc=$?\"; \
                  touch d/f; stat -c '%A' d/f";
    let out = run_in(&v.mnt, script);
    assert!(
        out.contains("Operation not supported") && out.contains("rc=1"),
        "setfacl on a noacl mount: {out}"
    );
    assert!(out.contains("-rw-r-----"), "the umask applies: {out}");
}

/// A store whose files carry ACLs cannot be mounted `-o noacl`: the kernel
/// would then read each file's group bits, which hold its ACL's mask, as
/// the owning group's permissions. The refusal changes nothing, and the
/// store mounts with its ACLs as before. A store that never held one
/// mounts `noacl` (the test above).
#[test]
fn a_store_holding_acls_refuses_noacl() {
    require_programs(&["setfacl", "getfacl"]);
    let mut v = Vault::mounted_with(&[]);
    let set = run_in(
        &v.mnt,
        "touch f; chmod 0640 f; setfacl -m g::r--,u:$OTHER_USER:rw- f; echo \"rc=$?\"; ls -l f",
    );
    assert!(set.contains("rc=0") && set.contains("-rw-rw----+"), "{set}");
    v.unmount();

    let out = common::run(v.mount_cmd(&["-o", "noacl"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted -o noacl: {err}");
    assert!(
        err.contains("holds POSIX ACLs") && err.contains("without noacl"),
        "one clear sentence: {err}"
    );
    assert!(
        !fs::read_to_string("/proc/self/mounts")
            .expect("mounts")
            .contains(&*v.mnt.to_string_lossy()),
        "nothing was mounted"
    );

    v.mount(&[]);
    let acl = run_in(&v.mnt, "getfacl -c f");
    assert!(
        acl.contains("group::r--")
            && acl.contains(&format!("user:{OTHER_USER}:rw-"))
            && acl.contains("mask::rw-"),
        "the ACL is intact: {acl}"
    );
}
