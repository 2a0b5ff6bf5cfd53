//! `--allow-group` on a real mount with `allow_other`: members of the group
//! get in, everyone else is refused EACCES on every request, also for paths
//! a member walked just before (the kernel's cached entries), each of
//! their attempts is recorded in the audit trail, root still gets in, and
//! a remount cannot change the groups.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{bin, require_programs, user_ids, Vault};

const MEMBER: &str = "phi-alice";
const OUTSIDER: &str = "phi-carol";
const GROUP: &str = "phi-staff";

/// Runs `script` in bash as `user`, with the user's supplementary groups.
fn as_user(user: &str, script: &str) -> Output {
    let (uid, gid) = user_ids(user);
    common::run(
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .args(["bash", "-c", script]),
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn open_to_all(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// What a user sees of the share: each step's exit status, and the
/// "Permission denied" it printed if any.
const WALK: &str = r#"
cd "$MNT"
stat -c '%s' shared/notes >/dev/null 2>&1; echo "stat rc=$?"
ls shared >/dev/null 2>&1; echo "ls rc=$?"
cat shared/notes >/dev/null 2>&1; echo "cat rc=$?"
echo x 2>/dev/null > "shared/by-$USER_NAME"; echo "create rc=$?"
stat -c '%s' shared/notes 2>&1 | grep -o 'Permission denied' | head -1
ls / "$MNT" 2>&1 >/dev/null | grep -o 'Permission denied' | head -1
"#;

fn walk(user: &str, mnt: &Path) -> String {
    text(&as_user(
        user,
        &format!("export MNT='{}' USER_NAME={user}; {WALK}", mnt.display()),
    ))
}

/// A mount that lets in only `GROUP`, with a directory and a file in it
/// that everyone may read and write.
fn share() -> Vault {
    let v = Vault::mounted_with(&["-o", "allow_other", "--allow-group", GROUP]);
    open_to_all(v.dir.path());
    fs::create_dir(v.path("shared")).unwrap();
    fs::set_permissions(v.path("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(v.path("shared/notes"), "visit notes\n").unwrap();
    fs::set_permissions(v.path("shared/notes"), fs::Permissions::from_mode(0o666)).unwrap();
    v
}

#[test]
fn only_members_of_the_allowed_group_get_in() {
    require_programs(&["setpriv", "stat", "ls", "cat"]);
    user_ids(MEMBER);
    user_ids(OUTSIDER);
    let v = share();

    let member = walk(MEMBER, &v.mnt);
    for ok in ["stat rc=0", "ls rc=0", "cat rc=0", "create rc=0"] {
        assert!(member.contains(ok), "{MEMBER} (in {GROUP}):\n{member}");
    }
    assert!(v.path("shared/by-phi-alice").exists());

    // Right after the member's walk, with whatever the kernel cached of it.
    let outsider = walk(OUTSIDER, &v.mnt);
    for refused in ["stat rc=1", "ls rc=2", "cat rc=1", "create rc=1"] {
        assert!(
            outsider.contains(refused),
            "{OUTSIDER} (not in {GROUP}) got in:\n{outsider}"
        );
    }
    assert!(
        outsider.contains("Permission denied"),
        "{OUTSIDER} was refused, but not with EACCES:\n{outsider}"
    );
    assert!(!v.path("shared/by-phi-carol").exists());

    // Root is always let in.
    assert_eq!(
        fs::read_to_string(v.path("shared/notes")).unwrap(),
        "visit notes\n"
    );
    assert!(fs::read_dir(&v.mnt).unwrap().count() >= 1);
}

#[test]
fn allow_group_without_allow_other_or_with_an_unknown_group_mounts_nothing() {
    let v = Vault::init();
    let out = common::run(v.mount_cmd(&["--allow-group", GROUP]));
    assert!(!out.status.success(), "mounted without allow_other");
    assert!(text(&out).contains("allow_other"), "{}", text(&out));
    let out = common::run(v.mount_cmd(&["-o", "allow_other", "--allow-group", "phi-nobody-such"]));
    assert!(!out.status.success(), "mounted with an unknown group");
    assert!(
        text(&out).contains("no group \"phi-nobody-such\""),
        "{}",
        text(&out)
    );
}

/// The refused records of `user` in `v`'s trail, as `phivault audit --format
/// json` lists them while the store is mounted.
fn refused_records(v: &Vault, user: &str) -> Vec<serde_json::Value> {
    let out = common::run(
        Command::new(bin())
            .arg("audit")
            .arg(&v.store)
            .args(["--format", "json", "--user", user, "--denied"])
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    common::ok_output(&out, "phivault audit --denied");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_array().expect("a JSON array of records").clone()
}

/// The program a record names, its operation and path.
fn what(r: &serde_json::Value) -> (&str, &str, &str) {
    fn s(v: &serde_json::Value) -> &str {
        v.as_str().unwrap_or_default()
    }
    (s(&r["who"]["comm"]), s(&r["op"]), s(&r["path"]))
}

#[test]
fn every_refused_request_of_an_outsider_is_recorded() {
    require_programs(&["setpriv", "stat", "ls", "cat"]);
    let (carol, _) = user_ids(OUTSIDER);
    user_ids(MEMBER);
    let v = share();
    // A member first, so that the kernel holds what it may keep of the
    // root and its entries.
    let script = r#"
stat -c %s "$MNT" >/dev/null && stat -f "$MNT" >/dev/null && ls "$MNT" >/dev/null \
  && cat "$MNT/shared/notes" >/dev/null && echo member ok
"#;
    let env = format!("export MNT='{}';", v.mnt.display());
    let member = text(&as_user(MEMBER, &format!("{env}{script}")));
    assert!(member.contains("member ok"), "{MEMBER}:\n{member}");

    let script = r#"
stat -c %s "$MNT"; echo "stat rc=$?"
stat -f "$MNT"; echo "statfs rc=$?"
ls "$MNT"; echo "ls rc=$?"
cat "$MNT/shared/notes"; echo "cat rc=$?"
"#;
    let outsider = text(&as_user(OUTSIDER, &format!("{env}{script}")));
    for refused in ["stat rc=1", "statfs rc=1", "ls rc=2", "cat rc=1"] {
        assert!(outsider.contains(refused), "{OUTSIDER} got in:\n{outsider}");
    }

    let recs = refused_records(&v, OUTSIDER);
    let listing: Vec<_> = recs.iter().map(what).collect();
    for r in &recs {
        assert_eq!(r["who"]["uid"], carol, "{r}");
        assert_eq!(r["errno"], libc::EACCES, "{r}");
        assert_eq!(r["result"], "EACCES", "{r}");
    }
    // stat(1) of the mountpoint and of its filesystem, whatever the kernel
    // cached for the member; ls and cat, whichever request of theirs came
    // first.
    for want in [("stat", "stat", "/"), ("stat", "statfs", "/")] {
        assert!(listing.contains(&want), "no {want:?} in {listing:?}");
    }
    for program in ["ls", "cat"] {
        assert!(
            listing.iter().any(|&(comm, _, _)| comm == program),
            "no refusal of {program} in {listing:?}"
        );
    }
    // A member's stat, statfs and readdir are not recorded at all.
    let member_recs = refused_records(&v, MEMBER);
    assert!(member_recs.is_empty(), "{member_recs:?}");
}

#[test]
fn a_remount_cannot_change_the_allowed_groups() {
    let mut v = Vault::mounted_with(&["-o", "allow_other", "--allow-group", GROUP]);
    for other in [
        "allow_group=phi-lab".to_string(),
        format!("allow_group={GROUP},allow_group=phi-lab"),
    ] {
        let out = remount(&v, &other);
        assert!(!out.status.success(), "remount,{other} succeeded");
        assert!(
            text(&out).contains("allow_group is fixed when mounting"),
            "{}",
            text(&out)
        );
    }
    // As mount(8) does from an fstab line: the same groups again.
    let out = remount(&v, &format!("ro,allow_other,allow_group={GROUP}"));
    common::ok_output(&out, "remount,ro repeating the mount's allow_group");
    let out = remount(&v, "rw");
    common::ok_output(&out, "remount,rw without allow_group");

    // A mount without groups gains none.
    v.unmount();
    v.mount(&["-o", "allow_other"]);
    let out = remount(&v, &format!("allow_group={GROUP}"));
    assert!(!out.status.success(), "remount added allow_group");
    assert!(text(&out).contains("lets in everyone"), "{}", text(&out));
}

/// `phivault mount -o remount,OPTS` of `v`'s mount, as mount.phivault runs it.
fn remount(v: &Vault, opts: &str) -> Output {
    common::run(
        Command::new(bin())
            .arg("mount")
            .arg(&v.store)
            .arg(&v.mnt)
            .args(["-o", &format!("remount,{opts}")]),
    )
}
