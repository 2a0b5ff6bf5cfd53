//! The kernel's cached entries and permissions the engine decides: the
//! kernel does not check search permission on a path it walks through
//! cached entries, so taking search permission away must make it forget
//! them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{require_programs, user_ids, Vault};

const OTHER: &str = "phi-carol";

/// `stat` of `path` as `user`: Ok, or what stat printed.
fn stat_as(user: &str, path: &Path) -> Result<(), String> {
    let (uid, gid) = user_ids(user);
    let out = common::run(
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .args(["stat", "-c", "%s"])
            .arg(path),
    );
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn chmod_700_of_a_directory_shuts_out_a_path_walked_before() {
    require_programs(&["setpriv", "stat"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    chmod(v.dir.path(), 0o755);
    let dir = v.path("records");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let file = dir.join("4711.txt");
    fs::write(&file, "chart\n").unwrap();
    chmod(&file, 0o644);

    stat_as(OTHER, &file).expect("an open directory lets others stat");
    chmod(&dir, 0o700);
    // The kernel is told to drop its entries once chmod's reply is out (it
    // holds the directory meanwhile): allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let refused = loop {
        match stat_as(OTHER, &file) {
            Err(refused) => break refused,
            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(()) => panic!("the cached entry still lets a stat through 2 s after chmod 700"),
        }
    };
    assert!(refused.contains("Permission denied"), "{refused}");
    // The owner still gets there.
    assert!(file.exists());
    chmod(&dir, 0o755);
    stat_as(OTHER, &file).expect("chmod 755 lets others in again");
}

#[test]
fn a_directory_only_some_may_search_is_asked_at_every_walk() {
    require_programs(&["setpriv", "stat", "setfacl"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    chmod(v.dir.path(), 0o755);
    let dir = v.path("ward");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o750);
    let file = dir.join("bed-3.txt");
    fs::write(&file, "x\n").unwrap();
    chmod(&file, 0o644);
    let (alice, _) = user_ids("phi-alice");
    common::ok(
        Command::new("setfacl")
            .arg("-m")
            .arg(format!("u:{alice}:rx"))
            .arg(&dir),
    );
    // phi-alice, whom the ACL lets in, walks it; phi-carol, right after,
    // may not use what the kernel cached of that walk.
    stat_as("phi-alice", &file).expect("the ACL lets phi-alice search");
    let refused = stat_as(OTHER, &file).expect_err("phi-carol used phi-alice's walk");
    assert!(refused.contains("Permission denied"), "{refused}");
    // Taking the ACL entry away shuts phi-alice out too.
    common::ok(Command::new("setfacl").arg("-b").arg(&dir));
    let refused = stat_as("phi-alice", &file).expect_err("the ACL entry is gone");
    assert!(refused.contains("Permission denied"), "{refused}");
}
