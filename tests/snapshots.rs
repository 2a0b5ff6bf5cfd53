//! The past through a real mount: the hidden `.snapshots` directory at the
//! root, whose `@GMT-YYYY.MM.DD-HH.MM.SS` entries are the whole tree as it
//! was at the end of that UTC second, read-only; and `mount --at TIME`.
//! Which instants `.snapshots` lists over days and years is tested on the
//! engine with synthetic instants (`vault::snapshots`).

mod common;

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Vault;

fn now_sec() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The snapshot name of UTC second `sec`.
fn gmt(sec: i64) -> String {
    let out = common::ok(
        Command::new("date")
            .args(["-u", "-d"])
            .arg(format!("@{sec}"))
            .arg("+@GMT-%Y.%m.%d-%H.%M.%S"),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn snapshot(v: &Vault, sec: i64) -> PathBuf {
    v.path(".snapshots").join(gmt(sec))
}

/// Writes `content` into `path` and fsyncs it (a version), then returns a
/// second by whose end it was recorded and after which nothing changes for
/// more than a second.
fn version(path: &Path, content: &[u8]) -> i64 {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let sec = now_sec();
    std::thread::sleep(Duration::from_millis(1100));
    sec
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

fn assert_erofs<T: std::fmt::Debug>(what: &str, res: std::io::Result<T>) {
    match res {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
        other => panic!("{what}: expected EROFS, got {other:?}"),
    }
}

/// A store with one file rewritten twice and then made private, each change
/// in a second of its own: the seconds after each state.
struct History {
    v: Vault,
    states: [i64; 3],
}

const V1: &[u8] = b"chart, first version\n";
const V2: &[u8] = b"chart, second version, longer than the first\n";
const V3: &[u8] = b"3\n";

fn history() -> History {
    let v = Vault::mounted();
    fs::create_dir(v.path("records")).unwrap();
    let f = v.path("records/chart.txt");
    let s1 = version(&f, V1);
    let s2 = version(&f, V2);
    let mut file = fs::File::create(&f).unwrap();
    file.write_all(V3).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let s3 = now_sec();
    std::thread::sleep(Duration::from_millis(1100));
    History {
        v,
        states: [s1, s2, s3],
    }
}

#[test]
fn snapshots_is_reachable_by_name_but_not_listed() {
    let v = Vault::mounted();
    version(&v.path("a.txt"), b"a");
    assert_eq!(names(&v.mnt), ["a.txt"]);
    assert!(!fs::read_dir(v.path(".snapshots")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
    let out = common::ok(Command::new("ls").arg("-a").arg(&v.mnt));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(".snapshots"),
        "ls -a shows .snapshots"
    );
    let dir = fs::metadata(v.path(".snapshots")).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.mode() & 0o7777, 0o555);
    common::ok(Command::new("ls").arg(v.path(".snapshots")));
    // It cannot be removed, replaced or written into.
    assert_erofs("rmdir", fs::remove_dir(v.path(".snapshots")));
    fs::create_dir(v.path("d")).unwrap();
    assert_erofs("rename", fs::rename(v.path("d"), v.path(".snapshots")));
    assert_erofs(
        "create",
        fs::write(v.path(".snapshots/@GMT-2026.01.01-00.00.00"), b"x"),
    );
}

#[test]
fn each_version_reads_back_under_its_second_with_its_mode() {
    let h = history();
    let v = &h.v;
    let read = |sec| fs::read(snapshot(v, sec).join("records/chart.txt")).unwrap();
    assert_eq!(read(h.states[0]), V1);
    assert_eq!(read(h.states[1]), V2);
    assert_eq!(read(h.states[2]), V3);
    let mode = |sec| {
        fs::metadata(snapshot(v, sec).join("records/chart.txt"))
            .unwrap()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(h.states[1]), 0o644, "the mode it had then");
    assert_eq!(mode(h.states[2]), 0o600);
    let size = fs::metadata(snapshot(v, h.states[0]).join("records/chart.txt"))
        .unwrap()
        .len();
    assert_eq!(size, V1.len() as u64);
    // The live file is untouched by all this.
    assert_eq!(fs::read(v.path("records/chart.txt")).unwrap(), V3);
    // A whole tree: diff -r of the newest instant and the live tree.
    common::ok(
        Command::new("diff")
            .arg("-r")
            .arg(snapshot(v, h.states[2]))
            .arg(&v.mnt),
    );
}

#[test]
fn snapshot_files_have_inode_numbers_of_their_own() {
    let h = history();
    let v = &h.v;
    let ino = |p: PathBuf| fs::metadata(p).unwrap().ino();
    let live = ino(v.path("records/chart.txt"));
    let old = ino(snapshot(v, h.states[0]).join("records/chart.txt"));
    let newer = ino(snapshot(v, h.states[1]).join("records/chart.txt"));
    assert_ne!(old, live);
    assert_ne!(newer, live);
    assert_ne!(old, newer);
    // Stable: the same file of the same instant keeps its number.
    assert_eq!(ino(snapshot(v, h.states[0]).join("records/chart.txt")), old);
    let root = ino(snapshot(v, h.states[0]));
    assert_ne!(root, ino(v.mnt.clone()));
}

#[test]
fn any_well_formed_name_resolves_and_malformed_ones_do_not() {
    let h = history();
    let v = &h.v;
    let snaps = v.path(".snapshots");
    // Listed or not: any second between the changes.
    for sec in h.states[0]..=h.states[2] {
        let f = snapshot(v, sec).join("records/chart.txt");
        let content = fs::read(&f).unwrap();
        assert!(
            [V1, V2, V3].contains(&&content[..]),
            "{} holds {content:?}",
            f.display()
        );
    }
    for bad in [
        "@GMT-2026.12.6-10.00.00",
        "@GMT-2026.13.01-10.00.00",
        "@GMT-2026.02.30-10.00.00",
        "@GMT-2026.12.06-10.00.00x",
        "GMT-2026.12.06-10.00.00",
        "2026-12-06",
        "latest",
    ] {
        let err = fs::metadata(snaps.join(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{bad}");
    }
    // Before the store existed, and a second that has not come yet.
    for sec in [h.states[0] - 3600, now_sec() + 3600] {
        let err = fs::metadata(snapshot(v, sec)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{}", gmt(sec));
    }
}

#[test]
fn nothing_under_snapshots_can_be_changed() {
    let h = history();
    let v = &h.v;
    let snap = snapshot(v, h.states[1]);
    let f = snap.join("records/chart.txt");
    assert_erofs(
        "open for writing",
        fs::OpenOptions::new().write(true).open(&f),
    );
    assert_erofs("truncate", fs::File::create(&f));
    assert_erofs("create", fs::write(snap.join("records/new.txt"), b"x"));
    assert_erofs("mkdir", fs::create_dir(snap.join("dir")));
    assert_erofs("unlink", fs::remove_file(&f));
    assert_erofs("rename", fs::rename(&f, snap.join("records/moved.txt")));
    assert_erofs("rename out", fs::rename(&f, v.path("records/restored.txt")));
    assert_erofs(
        "chmod",
        fs::set_permissions(&f, fs::Permissions::from_mode(0o777)),
    );
    assert_erofs("link", fs::hard_link(&f, v.path("records/linked.txt")));
    let out = common::run(
        Command::new("setfattr")
            .args(["-n", "user.x", "-v", "1"])
            .arg(&f),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "setfattr: {out:?}"
    );
    assert_eq!(fs::read(&f).unwrap(), V2);
    // A copy out is how a version comes back.
    fs::copy(&f, v.path("records/restored.txt")).unwrap();
    assert_eq!(fs::read(v.path("records/restored.txt")).unwrap(), V2);
}

#[test]
fn the_listing_shows_each_second_of_the_last_hour_that_changed_something() {
    let h = history();
    let v = &h.v;
    let listed = names(&v.path(".snapshots"));
    // Older changes are thinned to one per calendar hour and beyond
    // (tested on the engine with synthetic instants); the last hour's
    // seconds are all there, newest last change included.
    assert!(!listed.is_empty() && listed.len() <= 500, "{listed:?}");
    let mut seen = Vec::new();
    for name in &listed {
        match fs::read(v.path(".snapshots").join(name).join("records/chart.txt")) {
            Ok(content) => seen.push(content),
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{name}"),
        }
    }
    for want in [V1, V2, V3] {
        assert!(
            seen.iter().any(|c| c == want),
            "no listed instant holds {want:?}: {listed:?}"
        );
    }
    assert_eq!(seen.last().map(|c| &c[..]), Some(V3), "sorted oldest first");
    // ls -l (READDIRPLUS) of the whole directory works too.
    common::ok(Command::new("ls").arg("-laR").arg(v.path(".snapshots")));
}

#[test]
fn mount_at_shows_the_old_tree_read_only_beside_the_live_mount() {
    let h = history();
    let v = &h.v;
    let past = v.dir.path().join("past");
    fs::create_dir(&past).unwrap();
    let mount_at = |at: &str| {
        common::run(
            Command::new(common::bin())
                .arg("mount")
                .arg(&v.store)
                .arg(&past)
                .arg("--passphrase-file")
                .arg(&v.pwfile)
                .arg("--log-file")
                .arg(v.dir.path().join("past.log"))
                .args(["--at", at]),
        )
    };
    for (at, why) in [
        ("v2", "version number"),
        ("2099-01-01 00:00", "has not come yet"),
        ("2001-01-01 00:00", "did not exist yet"),
    ] {
        let refused = mount_at(at);
        assert!(!refused.status.success(), "--at {at} mounted");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(why), "--at {at}: {said}");
        assert_eq!(fs::read_dir(&past).unwrap().count(), 0, "--at {at}");
    }

    let at = format!("@{}", h.states[0]);
    let rfc = String::from_utf8(
        common::ok(Command::new("date").args(["-u", "-d", &at, "+%Y-%m-%dT%H:%M:%SZ"])).stdout,
    )
    .unwrap();
    // The whole second: a time given to the second means its end.
    let rfc = rfc.trim().replace('Z', ".999999999Z");
    common::ok_output(&mount_at(&rfc), "mount --at");
    let f = past.join("records/chart.txt");
    let seen = fs::read(&f);
    let mode = fs::metadata(&f).map(|m| m.mode() & 0o7777);
    assert_erofs("write", fs::write(past.join("records/new.txt"), b"x"));
    assert_eq!(names(&past), ["records"], "no .snapshots in a past mount");
    assert!(fs::metadata(past.join(".snapshots")).is_err());
    common::unmount(&past);
    assert_eq!(seen.unwrap(), V1);
    assert_eq!(mode.unwrap(), 0o644);
    // The live mount went on meanwhile.
    assert_eq!(fs::read(v.path("records/chart.txt")).unwrap(), V3);
}
