//! Versions: what they cost in store space, and that the common ways of
//! changing a file (rename-over, truncate, fsync, close, unlink) each leave
//! the history `phivault log` and `phivault info` report.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{bin, Vault};

/// The tests of this file run one at a time. Each asserts the exact reason
/// of each version, and a close(2) is a version: when another test's
/// thread forks to run a program, the child inherits this test's open
/// descriptors for a moment, and their close-on-exec reaches the mount as
/// a FLUSH of the file, that is as a close. CI caught it: a save was
/// recorded as closed (`write`) before its own fsync came.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const MIB: usize = 1 << 20;

/// Bytes of every file under `root` (catalog, WAL, packs, everything).
fn store_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// (version, size, reason) rows of `phivault log --follow` (the file now
/// at `path`, or last there), oldest first, or the error text.
fn log(v: &Vault, path: &str) -> Result<Vec<(u64, u64, String)>, String> {
    let out = common::run(
        Command::new(bin())
            .arg("log")
            .arg(&v.store)
            .arg(path)
            .args(["--follow", "--format", "json"])
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "log --format json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut rows: Vec<(u64, u64, String)> = doc["versions"]
        .as_array()
        .expect("a versions array")
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["size"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Newest first as printed; oldest first here.
    rows.reverse();
    Ok(rows)
}

fn info_versions(v: &Vault) -> u64 {
    let out = common::ok(Command::new(bin()).arg("info").arg(&v.store));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("versions:"))
        .unwrap_or_else(|| panic!("no versions line in info:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn chunk(i: usize) -> Vec<u8> {
    common::pattern(0xB16_0000 + i as u64, MIB)
}

fn appended(i: usize) -> Vec<u8> {
    common::pattern(0xA99_0000 + i as u64, 4096)
}

#[test]
fn thousand_small_appends_to_a_gigabyte_cost_little() {
    let _serial = one_at_a_time();
    let mut v = Vault::mounted();
    let chunks = 1024;
    {
        let mut f = File::create(v.path("big.bin")).unwrap();
        for i in 0..chunks {
            f.write_all(&chunk(i)).unwrap();
        }
        f.sync_all().unwrap();
    }
    v.unmount();
    let before = store_bytes(&v.store);
    assert!(
        before >= (chunks * MIB) as u64,
        "1 GiB of unique data takes only {before} bytes in the store"
    );
    v.mount(&[]);

    let appends = 1000;
    for i in 0..appends {
        let mut f = OpenOptions::new()
            .append(true)
            .open(v.path("big.bin"))
            .unwrap();
        f.write_all(&appended(i)).unwrap();
    }
    v.unmount();
    let after = store_bytes(&v.store);
    let growth = after.saturating_sub(before);
    let limit = (appends * (64 + 16) * 1024) as u64;
    eprintln!("store: {before} bytes before, {after} after, growth {growth} (limit {limit})");
    assert!(
        growth >= (appends * 4096) as u64,
        "growth {growth} is less than the appended data itself"
    );
    assert!(
        growth < limit,
        "1000 appends of 4 KiB grew the store by {growth} bytes (limit {limit})"
    );

    let rows = log(&v, "/big.bin").unwrap_or_else(|e| panic!("phivault log /big.bin failed: {e}"));
    eprintln!("log lists {} versions", rows.len());
    assert!(
        rows.len() > appends,
        "log lists {} versions, want at least {}",
        rows.len(),
        appends + 1
    );
    let total = (chunks * MIB + appends * 4096) as u64;
    assert_eq!(rows.last().unwrap().1, total, "size of the latest version");

    v.mount(&[]);
    let f = File::open(v.path("big.bin")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), total);
    let read_at = |off: usize, len: usize| {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        buf
    };
    for i in [0, 1, 517, 1000, chunks - 1] {
        assert!(
            read_at(i * MIB, MIB) == chunk(i),
            "chunk {i} of the original gigabyte differs"
        );
    }
    // The tail: every appended piece, in order.
    let tail = read_at(chunks * MIB, appends * 4096);
    for i in 0..appends {
        assert!(
            tail[i * 4096..(i + 1) * 4096] == appended(i)[..],
            "append {i} differs"
        );
    }
}

/// Saves like an editor: write a temp file, fsync, close, rename over.
fn save_via_rename(dir: &Path, name: &str, content: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn rename_over_truncate_fsync_and_unlink_leave_history() {
    let _serial = one_at_a_time();
    // Debug records of the vault: which request recorded each version, to
    // tell a kernel that reorders fsync and writes from a bug of ours.
    let mut v = Vault::init();
    v.mount_logging("info,phivault::vault::data=debug");
    let daemon_log = || std::fs::read_to_string(&v.log).unwrap_or_default();
    let a = common::pattern(1, 100_000);
    let b = common::pattern(2, 150_000);
    let c = common::pattern(3, 70_000);

    save_via_rename(&v.mnt, "doc.txt", &a);
    let first = log(&v, "/doc.txt").unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, a.len() as u64);
    assert_eq!(first[0].2, "fsync", "daemon log:\n{}", daemon_log());

    // Rename-over: the path shows the new inode's version; the replaced one
    // gets a tombstone (a version), so its history is kept.
    let n0 = info_versions(&v);
    save_via_rename(&v.mnt, "doc.txt", &b);
    let n1 = info_versions(&v);
    assert_eq!(
        n1,
        n0 + 2,
        "temp file fsync (+1) and the replaced file's tombstone (+1)"
    );
    let second = log(&v, "/doc.txt").unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].1, b.len() as u64, "log shows the new version");
    save_via_rename(&v.mnt, "doc.txt", &c);
    assert_eq!(info_versions(&v), n1 + 2);
    assert_eq!(log(&v, "/doc.txt").unwrap()[0].1, c.len() as u64);
    assert_eq!(std::fs::read(v.path("doc.txt")).unwrap(), c);

    // truncate and fsync each add a version with their reason.
    let f = OpenOptions::new()
        .write(true)
        .open(v.path("doc.txt"))
        .unwrap();
    f.set_len(1000).unwrap();
    let rows = log(&v, "/doc.txt").unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[1].1, rows[1].2.as_str()),
        (1000, "truncate"),
        "{rows:?}"
    );
    assert!(rows[1].0 > rows[0].0, "version numbers increase: {rows:?}");
    f.write_all_at(b"appended after truncate", 1000).unwrap();
    f.sync_all().unwrap();
    let rows = log(&v, "/doc.txt").unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[2].1, rows[2].2.as_str()), (1023, "fsync"), "{rows:?}");
    // A write followed by close is a version too (seen after the daemon has
    // processed the release: remount to be sure).
    f.write_all_at(b"!", 1023).unwrap();
    drop(f);
    v.remount();
    let rows = log(&v, "/doc.txt").unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!((rows[3].1, rows[3].2.as_str()), (1024, "write"), "{rows:?}");
    let mut want = c[..1000].to_vec();
    want.extend_from_slice(b"appended after truncate!");
    assert_eq!(std::fs::read(v.path("doc.txt")).unwrap(), want);

    // unlink leaves a "deleted" tombstone; the path no longer resolves.
    let before = info_versions(&v);
    std::fs::remove_file(v.path("doc.txt")).unwrap();
    assert_eq!(
        info_versions(&v),
        before + 1,
        "unlink must record a tombstone version"
    );
    // A deleted path keeps its history, ending in the deletion.
    let rows = log(&v, "/doc.txt").unwrap();
    assert_eq!(rows.last().unwrap().2, "deleted", "{rows:?}");
    v.unmount();
    assert_eq!(info_versions(&v), before + 1);
}

/// `echo v2 > f`, an O_TRUNC open followed by writes and a close, is one
/// version, not an empty "truncate" and then the write; and each version
/// records the uid that made it, the writer's even though the kernel's
/// writeback WRITEs carry no caller.
#[test]
fn an_o_trunc_rewrite_is_one_version_recorded_with_its_writer() {
    let _serial = one_at_a_time();
    common::require_programs(&["setpriv"]);
    let mut v = Vault::mounted_with(&["-o", "allow_other"]);
    let f = v.path("note.txt");
    std::fs::write(&f, b"first\n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    common::ok(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        &format!("echo second, by nobody > '{}'", f.display()),
    ]));
    // An O_TRUNC open closed without a write is a truncate.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f)
        .unwrap();
    v.unmount();
    let rows = log(&v, "/note.txt").unwrap();
    let reasons: Vec<(u64, &str)> = rows.iter().map(|r| (r.1, r.2.as_str())).collect();
    assert_eq!(
        reasons,
        [(6, "write"), (18, "write"), (0, "truncate")],
        "{rows:?}"
    );
    let db = rusqlite::Connection::open(v.store.join("catalog.db")).unwrap();
    let uids: Vec<Option<u32>> = db
        .prepare("SELECT uid FROM versions ORDER BY ino, version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(uids, [Some(0), Some(65534), Some(0)]);
}
