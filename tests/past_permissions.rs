//! The past (`.snapshots`) is checked as the live tree is, on the modes it
//! had then: without default_permissions nothing else would check it.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{require_programs, user_ids, Vault};

const OTHER: &str = "phi-carol";

/// Runs `prog args..` as `user`: Ok, or what it printed on stderr.
fn as_user(user: &str, prog: &str, args: &[&Path]) -> Result<(), String> {
    let (uid, gid) = user_ids(user);
    let out = common::run(
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .arg(prog)
            .args(args),
    );
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_synced(path: &Path, content: &[u8], mode: u32) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    chmod(path, mode);
}

/// The `.snapshots` name of the current second, once it has passed.
fn snapshot_now() -> String {
    let sec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_millis(1100));
    let out = common::ok(
        Command::new("date")
            .args(["-u", "-d"])
            .arg(format!("@{sec}"))
            .arg("+@GMT-%Y.%m.%d-%H.%M.%S"),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_past_refuses_what_its_modes_refused_then() {
    require_programs(&["setpriv", "stat", "cat", "date"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    chmod(v.dir.path(), 0o755);
    fs::create_dir(v.path("private")).unwrap();
    fs::create_dir(v.path("open")).unwrap();
    write_synced(&v.path("private/chart"), b"chart\n", 0o644);
    write_synced(&v.path("open/notes"), b"notes\n", 0o600);
    write_synced(&v.path("open/public"), b"public\n", 0o644);
    chmod(&v.path("private"), 0o700);
    chmod(&v.path("open"), 0o755);
    common::ok(Command::new("sync").arg("-f").arg(&v.mnt));
    let then = v.path(".snapshots").join(snapshot_now());
    // Opened up since: the past keeps the modes it had.
    chmod(&v.path("private"), 0o755);
    chmod(&v.path("open/notes"), 0o644);

    as_user(OTHER, "cat", &[&then.join("open/public")]).expect("a 0644 file of the past");
    for (what, prog, path) in [
        (
            "stat below a 0700 directory",
            "stat",
            then.join("private/chart"),
        ),
        ("cat of a 0600 file", "cat", then.join("open/notes")),
        ("ls of a 0700 directory", "ls", then.join("private")),
    ] {
        let refused = as_user(OTHER, prog, &[&path]).expect_err(what);
        assert!(refused.contains("Permission denied"), "{what}: {refused}");
    }
    // Root reads everything.
    assert_eq!(fs::read(then.join("private/chart")).unwrap(), b"chart\n");
    assert_eq!(fs::read(then.join("open/notes")).unwrap(), b"notes\n");
}
