//! The kernel's cached entries and permissions the engine decides: the
//! kernel does not check search permission on a path it walks through
//! cached entries, so taking search permission away must make it forget
//! them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// A mount others may use, with a directory `records` everyone may search.
fn open_records() -> (Vault, PathBuf) {
    require_programs(&["setpriv", "stat"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    chmod(v.dir.path(), 0o755);
    let dir = v.path("records");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    (v, dir)
}

/// Waits (2 s at most) until `stat` no longer answers `before`, what it
/// answered before search permission was taken away, and checks that it
/// is refused now: the kernel is told to drop its entries once the
/// change's reply is out (it holds the directory meanwhile).
fn refused_soon(before: Result<(), String>, stat: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match stat() {
            now if now == before && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            now if now == before => {
                panic!("2 s after the change the cached entries still answer: {now:?}")
            }
            Ok(()) => panic!("a stat got through that was refused before"),
            Err(refused) => return assert!(refused.contains("Permission denied"), "{refused}"),
        }
    }
}

#[test]
fn chmod_700_of_a_directory_shuts_out_a_path_walked_before() {
    let (_v, dir) = open_records();
    let file = dir.join("4711.txt");
    fs::write(&file, "chart\n").unwrap();
    chmod(&file, 0o644);

    stat_as(OTHER, &file).expect("an open directory lets others stat");
    chmod(&dir, 0o700);
    refused_soon(Ok(()), || stat_as(OTHER, &file));
    // The owner still gets there.
    assert!(file.exists());
    chmod(&dir, 0o755);
    stat_as(OTHER, &file).expect("chmod 755 lets others in again");
}

/// A name that was not there is cached too ("no such name"), and nobody
/// keeps such names: after chmod 700 a walk through it must be refused,
/// not answered ENOENT from the cache.
#[test]
fn chmod_700_also_drops_what_was_cached_as_missing() {
    let (_v, dir) = open_records();
    let missing = dir.join("gone").join("x");

    let before = stat_as(OTHER, &missing).expect_err("no such file");
    assert!(before.contains("No such file"), "{before}");
    chmod(&dir, 0o700);
    refused_soon(Err(before), || stat_as(OTHER, &missing));
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

/// `stat` of `path` as root without any capability.
fn stat_as_powerless_root(path: &Path) -> Result<(), String> {
    let out = common::run(
        Command::new("setpriv")
            .args(["--inh-caps=-all", "--bounding-set=-all", "stat", "-c", "%s"])
            .arg(path),
    );
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Without allow_other only the mounting user (root here) gets in, so the
/// entries of a directory root owns and may search stay cached: every
/// caller is root, and the owner's bits decide. Those of a directory
/// someone else owns do not, since a root without capabilities may not
/// walk where a root with them just did.
#[test]
fn without_allow_other_the_owner_bits_decide_for_the_mounting_user() {
    require_programs(&["setpriv", "stat"]);
    let v = Vault::mounted();
    let own = v.path("extracting");
    fs::create_dir(&own).unwrap();
    chmod(&own, 0o700);
    fs::write(own.join("a.c"), "int a;\n").unwrap();
    let theirs = v.path("alice-home");
    fs::create_dir(&theirs).unwrap();
    fs::write(theirs.join("notes.txt"), "x\n").unwrap();
    let (alice, alice_gid) = user_ids("phi-alice");
    std::os::unix::fs::chown(&theirs, Some(alice), Some(alice_gid)).unwrap();
    chmod(&theirs, 0o700);

    stat_as_powerless_root(&own.join("a.c")).expect("root owns and may search it");
    // Root with CAP_DAC_READ_SEARCH walks alice's directory first...
    assert!(theirs.join("notes.txt").exists());
    // ...and a root without it may not use that walk.
    let refused = stat_as_powerless_root(&theirs.join("notes.txt"))
        .expect_err("a powerless root used a capable root's walk");
    assert!(refused.contains("Permission denied"), "{refused}");
    // Taking the owner's x bit away shuts root's powerless processes out.
    chmod(&own, 0o600);
    refused_soon(Ok(()), || stat_as_powerless_root(&own.join("a.c")));
}
