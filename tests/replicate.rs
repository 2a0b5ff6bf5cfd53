//! Replication to a directory remote and recovery from it alone (issue 26),
//! end to end through the real binary, real FUSE mounts and real programs:
//! the disaster drill, background shipping while mounted, no plaintext on
//! the remote, kills at random points, the bytes a one-file change ships,
//! and bad input.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::replica::{
    assert_same_tree, remote_status, stderr, stdout, syncfs, tree, wait_status, without_mtimes,
    Tree,
};
use common::{bin, ok_output, require_programs, Rng, Vault};

const MARKER: &str = "PHI-MARKER-7f3a9c-Smith-John";

/// Runs a bash script in `dir`, which must succeed.
fn sh(dir: &Path, script: &str) {
    common::ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(dir),
    );
}

/// A fresh directory for a store `recover` makes (at `.path()/store`).
fn new_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("phivault-test-")
        .tempdir()
        .unwrap()
}

// ------------------------------------------------------------ the commands

/// `phivault remote STORE add NAME URL EXTRA... --passphrase-file PW`.
fn remote_add(v: &Vault, name: &str, url: &str, extra: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg("remote")
            .arg(&v.store)
            .args(["add", name, url])
            .args(extra)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .stdin(Stdio::null()),
    )
}

fn add_remote(v: &Vault, name: &str, url: &str, extra: &[&str]) {
    let out = remote_add(v, name, url, extra);
    ok_output(&out, &format!("phivault remote add {name} {url}"));
}

/// `phivault replicate STORE`, with the passphrase (the store is not
/// mounted) or without (the daemon does the pass).
fn replicate_cmd(v: &Vault, with_passphrase: bool) -> Command {
    let mut c = Command::new(bin());
    c.arg("replicate").arg(&v.store).stdin(Stdio::null());
    if with_passphrase {
        c.arg("--passphrase-file").arg(&v.pwfile);
    }
    c
}

fn replicate(v: &Vault, with_passphrase: bool) -> String {
    let out = common::run(&mut replicate_cmd(v, with_passphrase));
    ok_output(&out, "phivault replicate");
    stdout(&out)
}

/// `phivault recover URL NEWSTORE --passphrase-file PW`.
fn recover(url: &str, new_store: &Path, pwfile: &Path) -> Output {
    common::run(
        Command::new(bin())
            .arg("recover")
            .arg(url)
            .arg(new_store)
            .arg("--passphrase-file")
            .arg(pwfile)
            .stdin(Stdio::null()),
    )
}

/// Recovers `url` into a new store (opened with `PASSPHRASE`), not mounted.
fn recovered(url: &str) -> Vault {
    let home = new_home();
    let pw = home.path().join("recover-passphrase");
    std::fs::write(&pw, format!("{}\n", common::PASSPHRASE)).unwrap();
    let out = recover(url, &home.path().join("store"), &pw);
    ok_output(&out, &format!("phivault recover {url}"));
    println!("recover {url}: {}", stdout(&out).trim());
    Vault::existing_in(home)
}

/// `phivault WORDS STORE ARGS --passphrase-file PW`, which must succeed: its stdout.
fn query(store: &Path, pwfile: &Path, words: &[&str], args: &[&str]) -> String {
    let out = common::run(
        Command::new(bin())
            .args(words)
            .arg(store)
            .args(args)
            .arg("--passphrase-file")
            .arg(pwfile)
            .stdin(Stdio::null()),
    );
    ok_output(
        &out,
        &format!("phivault {words:?} {} {args:?}", store.display()),
    );
    stdout(&out)
}

fn query_json(store: &Path, pwfile: &Path, words: &[&str], args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = query(store, pwfile, words, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `phivault retention STORE --format json` (the policy, no passphrase).
fn retention_json(store: &Path) -> serde_json::Value {
    let out = common::ok(
        Command::new(bin())
            .arg("retention")
            .arg(store)
            .args(["--format", "json"]),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `phivault passwd STORE --list`: the key slots.
fn slot_list(store: &Path) -> String {
    stdout(&common::ok(
        Command::new(bin()).arg("passwd").arg(store).arg("--list"),
    ))
}

/// The remotes of `remote list --format json`, as (name, url).
fn remote_list(v: &Vault) -> Vec<(String, String)> {
    let out = common::ok(
        Command::new(bin())
            .arg("remote")
            .arg(&v.store)
            .args(["list", "--format", "json"])
            .stdin(Stdio::null()),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("remote list --format json: {e}: {}", stdout(&out)));
    let list = doc.get("remotes").unwrap_or(&doc);
    list.as_array()
        .unwrap_or_else(|| panic!("remote list: not a list: {doc:#}"))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The command failed, saying why on one line that mentions one of `any_of`.
fn assert_clear_failure(out: &Output, what: &str, any_of: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "{what}: succeeded but should fail\nstdout: {}\nstderr: {err}",
        stdout(out)
    );
    let text = err.trim();
    assert!(!text.is_empty(), "{what}: failed without saying why");
    assert_eq!(
        text.lines().count(),
        1,
        "{what}: expected one line of explanation, got:\n{text}"
    );
    let lower = text.to_lowercase();
    assert!(
        any_of.is_empty() || any_of.iter().any(|m| lower.contains(&m.to_lowercase())),
        "{what}: the message mentions none of {any_of:?}: {text}"
    );
}

// ------------------------------------------------------------ the remote

/// (inode, mtime ns, size) of every file under `root`, by path relative to it.
type Listing = BTreeMap<String, (u64, i128, u64)>;

fn listing(root: &Path) -> Listing {
    common::files_under(root)
        .into_iter()
        .filter_map(|p| {
            // A temporary file of a killed put may go while we list.
            let m = std::fs::symlink_metadata(&p).ok()?;
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            Some((rel, (m.ino(), mtime, m.size())))
        })
        .collect()
}

fn is_temporary(rel: &str) -> bool {
    rel.starts_with("tmp/")
}

fn bytes_of(l: &Listing) -> u64 {
    l.iter()
        .filter(|(k, _)| !is_temporary(k))
        .map(|(_, m)| m.2)
        .sum()
}

/// Checks the remote as the layout promises it: every file is an object
/// at `keys/<h>`, `heads/<h>` or `data/<h[..2]>/<h>` whose bytes hash
/// (BLAKE3, lowercase hex) to `h`, files 0600 and folders 0700; files
/// under `tmp/` only while a put may be in flight (`allow_tmp`). Returns
/// the number of objects per folder.
fn check_objects(root: &Path, allow_tmp: bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in common::walk_all(root) {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue; // a temporary file that went
        };
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if m.is_dir() {
            assert_eq!(
                m.mode() & 0o7777,
                0o700,
                "remote folder /{rel} is {:o}, not 0700",
                m.mode() & 0o7777
            );
            continue;
        }
        assert!(m.is_file(), "remote holds a non-file: {rel}");
        assert_eq!(
            m.mode() & 0o7777,
            0o600,
            "remote file {rel} is {:o}, not 0600",
            m.mode() & 0o7777
        );
        if is_temporary(&rel) {
            assert!(allow_tmp, "a completed pass left a temporary file: {rel}");
            continue;
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let (folder, hash) = match parts[..] {
            ["keys", h] => ("keys", h),
            ["heads", h] => ("heads", h),
            ["data", fan, h] => {
                assert_eq!(
                    Some(fan),
                    h.get(..2),
                    "data object {rel} in the wrong folder"
                );
                ("data", h)
            }
            _ => panic!("not an object of the remote layout: {rel}"),
        };
        let bytes = std::fs::read(&p).unwrap();
        let actual = blake3::hash(&bytes).to_hex().to_string();
        assert_eq!(
            hash,
            actual,
            "remote object {rel} ({} bytes) does not hash to its name",
            bytes.len()
        );
        *counts.entry(folder.to_string()).or_insert(0) += 1;
    }
    counts
}

// ------------------------------------------------------------ trees

// ------------------------------------------------------------ history

/// Writes a file whole and fsyncs it, so that its version is recorded
/// before this returns.
fn save(path: &Path, body: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(body, 0).unwrap();
    f.sync_all().unwrap();
}

/// Editor-style: a temporary file, fsync'd, renamed over `path`.
fn editor_save(path: &Path, body: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.swp",
        path.file_name().unwrap().to_string_lossy()
    ));
    save(&tmp, body);
    std::fs::rename(&tmp, path).unwrap();
}

/// What restoring one version gave: its bytes' length and BLAKE3, or the
/// error (the store's own path taken out).
#[derive(Debug, PartialEq, Eq)]
enum Restored {
    Bytes(usize, String),
    Refused(String),
}

/// Every file path the store ever had: the live files of `live`, what
/// `ls / --deleted` lists, and `extra` (names that only ever were renamed
/// away, such as an editor's temporary files).
fn all_file_paths(store: &Path, pwfile: &Path, live: &Tree, extra: &[String]) -> Vec<String> {
    let mut paths: BTreeSet<String> = live
        .iter()
        .filter(|(_, d)| d.starts_with("file "))
        .map(|(p, _)| format!("/{}", p.display()))
        .collect();
    let deleted = query_json(store, pwfile, &["ls"], &["/", "--deleted"]);
    for d in deleted["deleted"].as_array().unwrap() {
        if d["kind"] == "file" {
            paths.insert(d["path"].as_str().unwrap().to_string());
        }
    }
    paths.extend(extra.iter().cloned());
    paths.into_iter().collect()
}

/// For each path: its `log --format json`, and what restoring each of its
/// versions (`restore PATH --at vN --to DIR`) gave.
type History = BTreeMap<String, (serde_json::Value, BTreeMap<u64, Restored>)>;

fn history(store: &Path, pwfile: &Path, paths: &[String], scratch: &Path) -> History {
    let mut out = History::new();
    for (i, path) in paths.iter().enumerate() {
        let log = query_json(store, pwfile, &["log"], &[path]);
        let mut versions = BTreeMap::new();
        for row in log["versions"].as_array().unwrap() {
            let n = row["version"].as_u64().unwrap();
            let dest = scratch.join(format!("p{i}-v{n}"));
            std::fs::create_dir_all(&dest).unwrap();
            let out = common::run(
                Command::new(bin())
                    .arg("restore")
                    .arg(store)
                    .arg(path)
                    .args(["--at", &format!("v{n}"), "--to"])
                    .arg(&dest)
                    .arg("--passphrase-file")
                    .arg(pwfile)
                    .stdin(Stdio::null()),
            );
            let name = Path::new(path).file_name().unwrap();
            let got = if out.status.success() {
                let bytes = std::fs::read(dest.join(name)).unwrap_or_else(|e| {
                    panic!("restore {path} v{n} said ok but wrote nothing: {e}")
                });
                Restored::Bytes(bytes.len(), blake3::hash(&bytes).to_hex().to_string())
            } else {
                let store_text = store.display().to_string();
                Restored::Refused(stderr(&out).replace(&store_text, "STORE"))
            };
            versions.insert(n, got);
        }
        out.insert(path.clone(), (log, versions));
    }
    out
}

// ------------------------------------------------------------ the tests

#[test]
fn disaster_drill_recovers_every_version_and_the_audit_trail() {
    require_programs(&["tar", "cp", "sqlite3", "setfattr", "truncate", "diff"]);
    let mut v = Vault::mounted();
    let scratch = v.dir.path().to_path_buf();

    // A tree made outside and brought in by tar: a few folders, 18 files,
    // one of 3 MiB.
    let src = scratch.join("src");
    let dirs = ["ward/a", "ward/b", "lab/2026/nov", "admin"];
    let mut rng = Rng(0x26_d711);
    for d in dirs {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for i in 0..18u64 {
        let d = dirs[i as usize % dirs.len()];
        let len = 1 + rng.below(150_000) as usize;
        std::fs::write(
            src.join(d).join(format!("doc{i:02}.txt")),
            common::pattern(100 + i, len),
        )
        .unwrap();
    }
    std::fs::write(src.join("lab/scan.bin"), common::pattern(7, 3 << 20)).unwrap();
    sh(
        &scratch,
        "tar -C src -cf tree.tar . && tar -C mnt -xf tree.tar",
    );
    sh(
        &v.mnt,
        "ln -s ../lab/scan.bin ward/scan-link
         setfattr -n user.reviewed -v 'by dr. jones' ward/a/doc00.txt
         sqlite3 lab/results.db 'create table r(patient, k); insert into r values (4711, 4.1);'",
    );

    // History: editor saves, appends, sqlite transactions, truncates, a
    // rename and a deletion, with pauses between the rounds.
    let chart = v.path("ward/a/chart.txt");
    let mut extra_paths = vec!["/ward/a/.chart.txt.swp".to_string()];
    for round in 0..3 {
        editor_save(
            &chart,
            format!("chart of patient 4711, revision {round}\n")
                .repeat(1 + 40 * round)
                .as_bytes(),
        );
        sh(
            &v.mnt,
            &format!(
                "printf 'addendum {round}\\n' >> ward/b/doc01.txt
                 sqlite3 lab/results.db 'insert into r values ({round}, 5.{round});'"
            ),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let doc02 = v.path("lab/2026/nov/doc02.txt");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&doc02)
        .unwrap();
    let half = f.metadata().unwrap().len() / 2;
    f.set_len(half).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(300));
    sh(
        &v.mnt,
        "truncate -s 10 lab/2026/nov/doc02.txt
         echo 'rewritten after the truncate' >> lab/2026/nov/doc02.txt
         mv ward/b/doc05.txt ward/a/moved.txt
         rm admin/doc03.txt",
    );
    extra_paths.push("/ward/b/doc05.txt".to_string());
    // Reads, so that the trail holds opens as well as changes.
    sh(&v.mnt, "cat ward/a/*.txt lab/scan.bin > /dev/null");
    syncfs(&v.mnt);

    let copy = scratch.join("copy");
    std::fs::create_dir(&copy).unwrap();
    common::ok(Command::new("cp").arg("-a").arg(v.mnt.join(".")).arg(&copy));

    let remote = scratch.join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    v.unmount();
    // The live tree as the store keeps it: a mount that wrote may show
    // mtimes a clock tick away from what it stored.
    v.mount(&[]);
    let live = tree(&v.mnt);
    v.unmount();

    // A second passphrase and a policy of our own, before replicating.
    let pw2 = scratch.join("pw2");
    std::fs::write(&pw2, "second passphrase for the night shift\n").unwrap();
    common::ok(
        Command::new(bin())
            .arg("passwd")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .args(["--kdf-memory-mib", "8", "--kdf-iterations", "1", "--add"])
            .arg("--new-passphrase-file")
            .arg(&pw2)
            .stdin(Stdio::null()),
    );
    common::ok(
        Command::new(bin())
            .arg("retention")
            .arg(&v.store)
            .arg("set")
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .args(["--keep-daily", "45", "--lock-days", "10"])
            .stdin(Stdio::null()),
    );

    let said = replicate(&v, true);
    println!("replicate: {}", said.trim());
    assert!(
        said.contains("offsite"),
        "replicate names no remote: {said}"
    );
    check_objects(&remote, false);

    // What the store holds, noted before it is lost.
    let audit = query_json(&v.store, &v.pwfile, &["audit"], &[]);
    let records = audit.as_array().unwrap();
    assert!(
        records.len() > 20 && records.iter().any(|r| r.to_string().contains("scan.bin")),
        "the trail has too little in it to test anything: {audit:#}"
    );
    let policy = retention_json(&v.store);
    assert_eq!(policy["keep-daily"], 45, "{policy:#}");
    let slots = slot_list(&v.store);
    let paths = all_file_paths(&v.store, &v.pwfile, &live, &extra_paths);
    assert!(paths.len() >= 22, "{paths:?}");
    let versions_before = history(&v.store, &v.pwfile, &paths, &scratch.join("before"));
    let mut count = 0;
    for (path, (log, restored)) in &versions_before {
        for row in log["versions"].as_array().unwrap() {
            let n = row["version"].as_u64().unwrap();
            count += 1;
            if row["reason"] != "deleted" {
                assert!(
                    matches!(restored[&n], Restored::Bytes(..)),
                    "{path} v{n} does not restore from the original store: {:?}",
                    restored[&n]
                );
            }
        }
    }
    let histories = |p: &str| versions_before[p].1.len();
    assert!(histories("/ward/a/chart.txt") >= 3, "{versions_before:#?}");
    assert!(histories("/ward/b/doc01.txt") >= 4, "{versions_before:#?}");
    assert!(
        histories("/lab/2026/nov/doc02.txt") >= 4,
        "{versions_before:#?}"
    );
    assert!(histories("/admin/doc03.txt") >= 2, "{versions_before:#?}");
    println!("{} paths, {count} versions", paths.len());

    // The disaster.
    std::fs::remove_dir_all(&v.store).unwrap();

    let remote_url = remote.to_str().unwrap();
    let back = recovered(remote_url);
    // The trail first, before anything else could add to it.
    assert_eq!(
        query_json(&back.store, &back.pwfile, &["audit"], &[]),
        audit,
        "the recovered audit trail differs"
    );
    back.assert_audit_verifies("after recover");
    assert_eq!(retention_json(&back.store), policy, "retention policy");
    assert_eq!(slot_list(&back.store), slots, "key slots");
    let versions_after = history(&back.store, &back.pwfile, &paths, &scratch.join("after"));
    for path in &paths {
        let (want_log, want) = &versions_before[path];
        let (got_log, got) = &versions_after[path];
        assert_eq!(got_log, want_log, "log of {path}");
        assert_eq!(got, want, "restored versions of {path}");
    }
    // The passphrase added before replicating opens the recovered store,
    // and recovers from the remote as well.
    query(&back.store, &pw2, &["ls"], &["/ward", "--at", "now"]);
    let home2 = new_home();
    let out = recover(remote_url, &home2.path().join("store"), &pw2);
    ok_output(&out, "recover with the second passphrase");

    // The live tree, through a mount of the recovered store.
    let mut back = back;
    back.mount(&[]);
    assert_same_tree(&live, &tree(&back.mnt), "the recovered live tree");
    common::ok(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&copy)
            .arg(&back.mnt),
    );
    let rows = common::ok(
        Command::new("sqlite3")
            .arg(back.path("lab/results.db"))
            .arg("select count(*) from r"),
    );
    assert_eq!(stdout(&rows).trim(), "4");
    back.unmount();
}

#[test]
fn a_mounted_store_replicates_in_the_background() {
    require_programs(&["cp"]);
    let mut v = Vault::init();
    let scratch = v.dir.path().to_path_buf();
    let remote = scratch.join("nearline");
    let url = format!("dir:{}", remote.display());
    add_remote(&v, "nearline", &url, &["--delay", "1"]);
    v.mount(&[]);

    std::fs::write(scratch.join("scan.bin"), common::pattern(3, 700_000)).unwrap();
    sh(
        &v.mnt,
        &format!(
            "mkdir notes
             for i in $(seq 1 30); do printf 'visit %s of patient 4711\\n' $i > notes/visit-$i.txt; done
             cp '{}' notes/scan.bin",
            scratch.join("scan.bin").display()
        ),
    );
    syncfs(&v.mnt);
    let wrote = jiff::Timestamp::now();
    let want = without_mtimes(tree(&v.path("notes")));

    // No `replicate`: the daemon ships within its delay of 1 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let shipped = loop {
        let st = remote_status(&v, "nearline");
        let pending = st["pending"]["objects"].as_u64();
        let last = st["last_success"]
            .as_str()
            .map(|s| s.parse::<jiff::Timestamp>().unwrap());
        // A time given in whole seconds counts from the second of the write.
        let after_write = last.is_some_and(|t| {
            if t.subsec_nanosecond() == 0 {
                t.as_second() >= wrote.as_second()
            } else {
                t >= wrote
            }
        });
        if pending == Some(0) && after_write {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "60 s after the write the remote is not up to date: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("status once shipped: {shipped:#}");
    assert!(shipped["last_error"].is_null(), "{shipped:#}");
    assert!(
        shipped["shipped"]["objects"].as_u64() > Some(0),
        "{shipped:#}"
    );
    assert_eq!(shipped["url"], url.as_str(), "{shipped:#}");
    check_objects(&remote, true);

    // The remote alone gives the files back, before any pass on demand.
    let mut first = recovered(remote.to_str().unwrap());
    first.mount(&[]);
    assert_same_tree(
        &want,
        &without_mtimes(tree(&first.path("notes"))),
        "shipped in the background",
    );
    first.unmount();

    // A pass on demand while mounted: the daemon does it, no passphrase.
    sh(
        &v.mnt,
        "echo 'written just before the pass' > notes/late.txt",
    );
    let said = replicate(&v, false);
    println!("replicate while mounted: {}", said.trim());
    assert!(said.contains("nearline"), "{said}");
    let mut second = recovered(&url);
    second.mount(&[]);
    assert_eq!(
        std::fs::read(second.path("notes/late.txt")).unwrap(),
        b"written just before the pass\n"
    );
    assert_eq!(
        std::fs::read(second.path("notes/scan.bin")).unwrap(),
        common::pattern(3, 700_000)
    );
    second.unmount();
    check_objects(&remote, true);
    v.unmount();
}

#[test]
fn the_remote_holds_no_plaintext() {
    require_programs(&["cat"]);
    let mut v = Vault::mounted();
    let m = MARKER.as_bytes();

    // Contents: compressible text full of the marker, the marker between
    // random bytes, blocks of nothing but the marker, a file that is it.
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("patient {i}: {MARKER}\n").as_bytes());
    }
    std::fs::write(v.path("notes.txt"), &text).unwrap();
    let mut mixed = Vec::new();
    for chunk in common::pattern(77, 1 << 20).chunks(997) {
        mixed.extend_from_slice(chunk);
        mixed.extend_from_slice(m);
    }
    std::fs::write(v.path("mixed.bin"), &mixed).unwrap();
    let pure: Vec<u8> = m.iter().copied().cycle().take(256 * 1024).collect();
    std::fs::write(v.path("pure.bin"), &pure).unwrap();
    std::fs::write(v.path("exact.txt"), m).unwrap();
    // Names: a folder, a file in it, a file, a renamed file, a symlink's
    // target; an xattr's name and value.
    let dir = v.path(&format!("dir-{MARKER}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(format!("{MARKER}.txt")), b"x").unwrap();
    std::fs::write(v.path(MARKER), b"named after the marker").unwrap();
    std::fs::write(v.path("before-rename"), b"y").unwrap();
    std::fs::rename(
        v.path("before-rename"),
        v.path(&format!("renamed-{MARKER}")),
    )
    .unwrap();
    std::os::unix::fs::symlink(format!("/home/{MARKER}/chart.pdf"), v.path("link")).unwrap();
    common::ok(
        Command::new("setfattr")
            .args(["-n", &format!("user.{MARKER}"), "-v", MARKER])
            .arg(v.path("notes.txt")),
    );
    // Opens of the marked names, so the audit trail holds them too.
    common::ok(
        Command::new("cat")
            .arg(dir.join(format!("{MARKER}.txt")))
            .arg(v.path(MARKER)),
    );
    assert_eq!(std::fs::read(v.path("mixed.bin")).unwrap(), mixed);

    let remote = v.dir.path().join("offsite");
    assert!(!remote.exists());
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    assert_eq!(
        std::fs::metadata(&remote).unwrap().mode() & 0o7777,
        0o700,
        "remote add made the remote's folder readable by others"
    );
    v.unmount();
    println!("replicate: {}", replicate(&v, true).trim());

    let needles: Vec<&[u8]> = vec![
        m,
        b"PHI-MARKER-7f3a9c",
        b"MARKER-7f3a9c",
        b"7f3a9c-Smith",
        b"Smith-John",
        b"patient 1234: ",
        // The store's own formats, which would mean a file shipped as it is
        // locally rather than sealed in an envelope.
        b"SQLite format 3\0",
        b"PHIPACK1",
        b"PHIPEND1",
        b"PVAUDIT1",
        b"PVAUDANC",
        b"PVAUDHED",
    ];
    let (scanned, files) = common::assert_absent(&remote, &needles, "on the remote");
    assert!(
        scanned > 1 << 20,
        "only {scanned} bytes on the remote: was anything shipped? {files:?}"
    );
    let counts = check_objects(&remote, false);
    println!("objects on the remote: {counts:?}, {scanned} bytes");
    for folder in ["keys", "heads", "data"] {
        assert!(
            counts.get(folder) > Some(&0),
            "no {folder} objects: {counts:?}"
        );
    }
    // No object is a local store file copied as it is.
    let local: std::collections::HashSet<blake3::Hash> = common::files_under(&v.store)
        .iter()
        .map(|p| blake3::hash(&std::fs::read(p).unwrap()))
        .collect();
    for f in &files {
        let h = blake3::hash(&std::fs::read(f).unwrap());
        assert!(
            !local.contains(&h) || f.starts_with(remote.join("keys")),
            "{} is a copy of a local store file",
            f.display()
        );
    }
}

/// Writes `files` new files of up to `max_len` random bytes under `dir`
/// in the mount, rewrites part of two older ones and deletes one: a batch
/// of changes for a pass to ship. Returns the bytes written.
fn change_batch(v: &Vault, rng: &mut Rng, dir: &str, files: u64, max_len: u64) -> u64 {
    std::fs::create_dir(v.path(dir)).unwrap();
    let mut written = 0;
    for f in 0..files {
        let len = 1 + rng.below(max_len);
        written += len;
        let body = common::pattern(rng.next(), len as usize);
        std::fs::write(v.path(&format!("{dir}/f{f}.bin")), body).unwrap();
    }
    let old: Vec<PathBuf> = common::files_under(&v.mnt);
    for _ in 0..2 {
        let p = &old[rng.below(old.len() as u64) as usize];
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.write_all_at(&common::pattern(rng.next(), 5000), 100)
            .unwrap();
    }
    let gone = &old[rng.below(old.len() as u64) as usize];
    if !gone.starts_with(v.path(dir)) {
        let _ = std::fs::remove_file(gone);
    }
    written
}

#[test]
fn killed_replication_reruns_to_a_complete_remote() {
    let mut v = Vault::mounted();
    let mut rng = Rng(0x4b11_2026);
    // About 8 MiB in 400 files, and a few hundred KiB more before each
    // run, so that every run has something to do.
    let mut total = change_batch(&v, &mut rng, "base", 400, 40_000);
    v.unmount();
    let remote = v.dir.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);

    // Objects by name as first seen; none may change or go afterwards.
    let mut seen = Listing::new();
    let mut cut_short = 0;
    // The kill comes 5 ms to 200 ms after the start, or, once a run has
    // been seen to finish, within 1.2 times the last one that did: the
    // kills land all along a pass on any machine.
    let mut last_ms: Option<u64> = None;
    for round in 0..10 {
        if round > 0 {
            // New work for this run: what the last one was cut off from,
            // and a batch of changes.
            v.mount(&[]);
            total += change_batch(&v, &mut rng, &format!("round{round}"), 20, 20_000);
            v.unmount();
        }
        let span = last_ms.map_or(196, |l| (l * 6 / 5).clamp(1, 196));
        let delay = Duration::from_millis(5 + rng.below(span));
        let started = Instant::now();
        let mut child = replicate_cmd(&v, true)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut finished = None;
        while started.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                finished = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match finished {
            Some(took) => {
                last_ms = Some(took.as_millis() as u64);
            }
            None => {
                cut_short += 1;
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }
        }
        let now = listing(&remote);
        for (name, first) in &seen {
            assert_eq!(
                now.get(name),
                Some(first),
                "round {round}: object {name} changed or went (inode, mtime, size)"
            );
        }
        let counts = check_objects(&remote, true);
        match finished {
            Some(took) => println!("round {round}: finished in {took:?}, {counts:?}"),
            None => println!("round {round}: killed after {delay:?}, {counts:?}"),
        }
        for (name, meta) in now {
            if !is_temporary(&name) {
                seen.entry(name).or_insert(meta);
            }
        }
    }
    assert!(
        cut_short >= 3,
        "only {cut_short} of 10 runs were killed while running"
    );
    let said = replicate(&v, true);
    println!("the full run after the kills: {}", said.trim());
    let end = listing(&remote);
    for (name, first) in &seen {
        assert_eq!(end.get(name), Some(first), "object {name} changed or went");
    }
    let counts = check_objects(&remote, false);
    println!(
        "{total} bytes written; {cut_short} of 10 runs cut short; remote {counts:?}, {} bytes",
        bytes_of(&end)
    );

    // The store as it is (through a mount of it: the view of a mount that
    // wrote may differ in mtimes by a tick), and the store back from the
    // remote alone.
    v.mount(&[]);
    let want = tree(&v.mnt);
    v.unmount();
    let mut back = recovered(remote.to_str().unwrap());
    back.mount(&[]);
    assert_same_tree(&want, &tree(&back.mnt), "recovered after the kills");
    back.unmount();

    // Complete: once the mount's audit records are shipped, nothing is
    // pending, and a pass with nothing to ship ships nothing.
    replicate(&v, true);
    let st = remote_status(&v, "offsite");
    let before = listing(&remote);
    let said = replicate(&v, true);
    println!("a pass with nothing to ship: {}", said.trim());
    assert_eq!(
        st["pending"]["objects"], 0,
        "a complete remote still has something pending: {st:#}"
    );
    let after = listing(&remote);
    let added: Vec<(&String, u64)> = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(k, m)| (k, m.2))
        .collect();
    assert!(
        added.is_empty() && after.len() == before.len(),
        "a pass with nothing to ship changed the remote ({}): added {added:?}",
        said.trim()
    );
}

/// Bytes a remote may gain for a change to one small file of a
/// 100,000-file store, besides the file's new block: the catalog pages
/// that changed, the audit records of the change, and a head. Measured
/// (December, dev profile, 20,000 files): 4 objects, 17,812 bytes in all,
/// block included; the catalog shipped whole would be tens of megabytes.
const ONE_FILE_CHANGE_OVERHEAD: u64 = 64 * 1024;
/// A small file's new block on the remote: sealed and padded, at most
/// one block (64 KiB) plus its envelope.
const ONE_BLOCK_ON_REMOTE: u64 = 64 * 1024 + 1024;

#[test]
fn a_one_file_change_in_a_big_tree_ships_little() {
    let mut v = Vault::init();
    let remote = v.dir.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    v.mount(&[]);
    let started = Instant::now();
    for d in 0..500 {
        let dir = v.path(&format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..200 {
            std::fs::write(
                dir.join(format!("f{f:03}.txt")),
                format!("record {d}/{f}: potassium 4.{f}\n").repeat(1 + f % 7),
            )
            .unwrap();
        }
    }
    syncfs(&v.mnt);
    let created = started.elapsed();
    let said = replicate(&v, false);
    let first_pass = started.elapsed() - created;
    let before = listing(&remote);

    let changed = v.path("d042/f123.txt");
    sh(
        &v.mnt,
        "printf 'potassium 3.9, corrected\\n' > d042/f123.txt",
    );
    syncfs(&v.mnt);
    let t = Instant::now();
    let said2 = replicate(&v, false);
    let second_pass = t.elapsed();
    let after = listing(&remote);
    for (name, meta) in &before {
        assert_eq!(after.get(name), Some(meta), "object {name} changed or went");
    }
    let added: Vec<(&String, u64)> = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k) && !is_temporary(k))
        .map(|(k, m)| (k, m.2))
        .collect();
    let added_bytes: u64 = added.iter().map(|(_, s)| s).sum();
    println!(
        "100,000 files made in {created:?}; first pass {first_pass:?} ({} bytes, {said}); \
         one-file change: {second_pass:?}, {} objects, {added_bytes} bytes ({said2}): {added:?}",
        bytes_of(&before),
        added.len()
    );
    assert!(
        added_bytes <= ONE_FILE_CHANGE_OVERHEAD + ONE_BLOCK_ON_REMOTE,
        "a one-file change shipped {added_bytes} bytes in {} objects: {added:?}",
        added.len()
    );
    assert!(!added.is_empty(), "the change did not reach the remote");
    assert_eq!(
        std::fs::read(&changed).unwrap(),
        b"potassium 3.9, corrected\n"
    );
    check_objects(&remote, false);
    v.unmount();
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let v = Vault::init();
    let scratch = v.dir.path().to_path_buf();
    let store_files = || listing(&v.store);
    let before = store_files();

    // A relative path, bare or as a dir: URL; run where it would land.
    let cwd = scratch.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    for url in ["rel/offsite", "dir:rel/offsite"] {
        let out = common::run(
            Command::new(bin())
                .arg("remote")
                .arg(&v.store)
                .args(["add", "offsite", url])
                .arg("--passphrase-file")
                .arg(&v.pwfile)
                .current_dir(&cwd)
                .stdin(Stdio::null()),
        );
        assert_clear_failure(
            &out,
            &format!("remote add {url}"),
            &["absolute", "relative"],
        );
        assert_eq!(
            std::fs::read_dir(&cwd).unwrap().count(),
            0,
            "remote add {url} created something"
        );
        assert_eq!(store_files(), before, "remote add {url} changed the store");
    }

    // A name used twice.
    let first = scratch.join("first");
    let second = scratch.join("second");
    add_remote(&v, "offsite", first.to_str().unwrap(), &[]);
    let with_one = store_files();
    let out = remote_add(&v, "offsite", second.to_str().unwrap(), &[]);
    assert_clear_failure(&out, "remote add of a name used", &["offsite"]);
    assert!(!second.exists(), "a refused remote add created its folder");
    assert_eq!(
        store_files(),
        with_one,
        "a refused remote add changed the store"
    );
    let listed = remote_list(&v);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, "offsite");
    assert_eq!(
        listed[0].1.trim_start_matches("dir:"),
        first.to_str().unwrap()
    );

    // The remote of another store.
    replicate(&v, true);
    let replicated = store_files();
    let remote_before = listing(&first);
    let other = Vault::init();
    let other_before = listing(&other.store);
    let out = remote_add(&other, "offsite", first.to_str().unwrap(), &[]);
    assert_clear_failure(&out, "remote add of another store's remote", &["store"]);
    assert_eq!(listing(&other.store), other_before);
    assert_eq!(listing(&first), remote_before);

    let url = first.to_str().unwrap();
    // recover into a folder that is not empty.
    let full = scratch.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    let out = recover(url, &full, &v.pwfile);
    assert_clear_failure(&out, "recover into a non-empty folder", &["empty"]);
    assert_eq!(
        listing(&full).keys().collect::<Vec<_>>(),
        ["keep.txt"],
        "recover wrote into a non-empty folder"
    );
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"mine");
    // ... and into an existing store.
    let out = recover(url, &v.store, &v.pwfile);
    assert_clear_failure(&out, "recover over an existing store", &[]);

    // recover from a folder with nothing in it, or no folder at all.
    let empty = scratch.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (from, what) in [
        (empty.clone(), "an empty folder"),
        (scratch.join("absent"), "a folder that does not exist"),
    ] {
        let target = scratch.join("new-store");
        let out = recover(from.to_str().unwrap(), &target, &v.pwfile);
        assert_clear_failure(&out, &format!("recover from {what}"), &[]);
        assert!(
            !target.exists(),
            "recover from {what} created {}",
            target.display()
        );
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(!scratch.join("absent").exists());

    // recover with a wrong passphrase.
    let wrong = scratch.join("wrong");
    std::fs::write(&wrong, "an entirely different passphrase 99\n").unwrap();
    let target = scratch.join("new-store");
    let out = recover(url, &target, &wrong);
    assert_clear_failure(&out, "recover with a wrong passphrase", &["passphrase"]);
    assert!(
        !target.exists(),
        "a recover with a wrong passphrase created the store"
    );

    assert_eq!(
        listing(&first),
        remote_before,
        "a refused recover changed the remote"
    );
    assert_eq!(
        store_files(),
        replicated,
        "a refused recover changed the store"
    );
}

/// A read-only bind mount of a folder, unmounted on drop.
struct ReadOnlyView(PathBuf);

impl ReadOnlyView {
    /// `dir` seen read-only at `at` (which may be `dir` itself).
    fn of(dir: &Path, at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        common::ok(Command::new("mount").arg("--bind").arg(dir).arg(at));
        let view = ReadOnlyView(at.to_path_buf());
        common::ok(
            Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(at),
        );
        view
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn recover_reads_a_remote_it_cannot_write() {
    require_programs(&["mount", "umount"]);
    let mut v = Vault::mounted();
    sh(
        &v.mnt,
        "mkdir ward && echo 'chart of patient 4711' > ward/chart.txt && echo two > ward/b.txt",
    );
    let remote = v.dir.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    v.unmount();
    replicate(&v, true);
    v.mount(&[]);
    let want = tree(&v.mnt);
    v.unmount();

    // The offsite disk as one mounts it to recover: read-only, so that a
    // mistake cannot damage the only good copy.
    let view = ReadOnlyView::of(&remote, &v.dir.path().join("offsite-ro"));
    let before = listing(&remote);
    let mut back = recovered(view.0.to_str().unwrap());
    assert_eq!(listing(&remote), before, "recover changed the remote");
    back.mount(&[]);
    assert_same_tree(&want, &tree(&back.mnt), "recovered from a read-only remote");
    back.unmount();
}

#[test]
fn a_remote_that_refuses_writes_shows_in_status_and_the_mount_goes_on() {
    require_programs(&["mount", "umount"]);
    let mut v = Vault::init();
    let remote = v.dir.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &["--delay", "1"]);
    v.mount(&[]);
    sh(&v.mnt, "echo first > first.txt");
    wait_status(&v, "offsite", 60, "shipped", |st| {
        st["pending"]["objects"] == 0 && st["last_success"].is_string()
    });

    // The remote's disk goes read-only under the running mount.
    let ro = ReadOnlyView::of(&remote, &remote);
    let started = Instant::now();
    for i in 0..50 {
        std::fs::write(v.path(&format!("while-refused-{i}.txt")), format!("{i}\n")).unwrap();
    }
    syncfs(&v.mnt);
    let took = started.elapsed();
    let failing = wait_status(&v, "offsite", 60, "reporting the error", |st| {
        st["last_error"].is_object() && st["pending"]["objects"].as_u64() > Some(0)
    });
    println!("50 files written in {took:?} while the remote refused; status: {failing:#}");
    assert!(
        failing["last_error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{failing:#}"
    );
    assert!(failing["last_error"]["at"].is_string(), "{failing:#}");
    assert_eq!(
        std::fs::read(v.path("while-refused-49.txt")).unwrap(),
        b"49\n"
    );
    let out = common::run(&mut replicate_cmd(&v, false));
    assert!(
        !out.status.success(),
        "replicate said the remote is up to date while it refuses writes: {}",
        stdout(&out)
    );

    // Writable again: the lag goes back to zero on its own.
    drop(ro);
    let caught_up = wait_status(&v, "offsite", 60, "caught up", |st| {
        st["pending"]["objects"] == 0
            && st["last_success"].as_str() > st["last_error"]["at"].as_str()
    });
    println!("caught up: {caught_up:#}");
    v.unmount();
    let mut back = recovered(remote.to_str().unwrap());
    back.mount(&[]);
    assert_eq!(
        std::fs::read(back.path("while-refused-49.txt")).unwrap(),
        b"49\n"
    );
    back.unmount();
}

// ------------------------------------------------- verify and repair

fn store_cmd(v: &Vault, words: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg(words[0])
            .arg(&v.store)
            .args(&words[1..])
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .stdin(Stdio::null()),
    )
}

/// A byte flipped in a local pack: `verify` without --read-data sees every
/// pack there; `verify --read-data` names the file and its versions;
/// `repair --from` puts back the remote's copy, and the file reads right.
#[test]
fn a_damaged_pack_is_named_by_verify_and_repaired_from_the_remote() {
    let mut v = Vault::mounted();
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::create_dir(v.mnt.join("charts")).unwrap();
    save(&v.mnt.join("charts/scan.bin"), &body);
    save(&v.mnt.join("note.txt"), b"an undamaged file");
    v.unmount();
    let home = new_home();
    let remote = home.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    replicate(&v, true);

    let clean = store_cmd(&v, &["verify", "--read-data"]);
    ok_output(&clean, "verify --read-data of an intact store");
    // The largest pack holds the scan; flip a byte in its middle.
    let pack = walk_files(&v.store.join("packs"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pack)
        .unwrap();
    let mut b = [0u8; 1];
    let at = f.metadata().unwrap().len() / 2;
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    drop(f);

    ok_output(
        &store_cmd(&v, &["verify"]),
        "verify without --read-data: every pack is there",
    );
    let found = store_cmd(&v, &["verify", "--read-data", "--remote", "offsite"]);
    assert!(
        !found.status.success(),
        "verify --read-data must fail: {}",
        stdout(&found)
    );
    let text = stdout(&found);
    assert!(text.contains("/charts/scan.bin"), "names the file: {text}");
    assert!(
        !text.contains("note.txt"),
        "names only the damaged file: {text}"
    );
    assert!(
        text.contains("remote offsite"),
        "checks the remote too: {text}"
    );

    let repaired = store_cmd(&v, &["repair", "--from", "offsite"]);
    ok_output(&repaired, "repair --from offsite");
    ok_output(
        &store_cmd(&v, &["verify", "--read-data"]),
        "verify after the repair",
    );
    v.mount(&[]);
    assert!(
        std::fs::read(v.mnt.join("charts/scan.bin")).unwrap() == body,
        "the file reads right again"
    );
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Records cut off the local trail together with its head look intact
/// here; against the remote's copy of the head, `audit verify --remote`
/// finds them missing (exit 7), and replication refuses to go on.
#[test]
fn a_trail_cut_here_is_found_against_the_remote() {
    let mut v = Vault::mounted();
    for i in 0..20 {
        save(&v.mnt.join(format!("chart-{i}.txt")), b"opened and audited");
    }
    v.unmount();
    let home = new_home();
    add_remote(
        &v,
        "offsite",
        home.path().join("offsite").to_str().unwrap(),
        &[],
    );
    replicate(&v, true);
    let audit = v.store.join("audit");
    for e in std::fs::read_dir(&audit).unwrap() {
        let p = e.unwrap().path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("seg") => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(16)
                .unwrap(),
            _ if p.file_name().unwrap() == "head" || p.file_name().unwrap() == "index.db" => {
                std::fs::remove_file(&p).unwrap()
            }
            _ => {}
        }
    }
    let verify = |extra: &[&str]| {
        common::run(
            Command::new(bin())
                .args(["audit", "verify"])
                .arg(&v.store)
                .args(extra)
                .arg("--passphrase-file")
                .arg(&v.pwfile)
                .stdin(Stdio::null()),
        )
    };
    let local = verify(&[]);
    assert_eq!(
        local.status.code(),
        Some(0),
        "alone, the cut trail looks whole: {}",
        stdout(&local)
    );
    let against = verify(&["--remote", "offsite"]);
    assert_eq!(
        against.status.code(),
        Some(7),
        "{}{}",
        stdout(&against),
        stderr(&against)
    );
    assert!(
        stdout(&against).contains("cut short"),
        "{}",
        stdout(&against)
    );
    let refused = common::run(&mut replicate_cmd(&v, true));
    assert!(
        !refused.status.success(),
        "replication stops at a cut trail"
    );
    assert!(
        stderr(&refused).contains("audit trail was cut"),
        "{}",
        stderr(&refused)
    );
}

/// The store's recovery key alone (no passphrase) recovers it from the
/// remote, and opens the recovered store.
#[test]
fn the_recovery_key_recovers_a_store_from_its_remote() {
    let mut v = Vault::mounted();
    save(&v.mnt.join("chart.txt"), b"kept offsite");
    v.unmount();
    let out = common::run(
        Command::new(bin())
            .arg("passwd")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .args([
                "--kdf-memory-mib",
                "8",
                "--kdf-iterations",
                "1",
                "--add-recovery-key",
            ])
            .stdin(Stdio::null()),
    );
    ok_output(&out, "passwd --add-recovery-key");
    let key = stdout(&out)
        .split_whitespace()
        .find(|t| t.split('-').count() == 8 && t.split('-').all(|p| p.len() == 5))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no recovery key in {}", stdout(&out)));
    let home = new_home();
    let remote = home.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    replicate(&v, true);
    let keyfile = home.path().join("recovery-key");
    std::fs::write(&keyfile, format!("{key}\n")).unwrap();
    let new_store = home.path().join("recovered");
    ok_output(
        &recover(remote.to_str().unwrap(), &new_store, &keyfile),
        "recover with the recovery key",
    );
    let listed = query(&new_store, &keyfile, &["ls"], &["/", "--at", "now"]);
    assert!(listed.contains("chart.txt"), "{listed}");
}

/// A store made by an older release (tests/fixtures/store-f35037b: catalog
/// schema 1, vault.toml format 1) replicates, and recovers with its files.
#[test]
fn a_store_of_an_older_release_replicates_and_recovers() {
    let v = Vault::from_fixture("store-f35037b");
    let home = new_home();
    let remote = home.path().join("offsite");
    add_remote(&v, "offsite", remote.to_str().unwrap(), &[]);
    replicate(&v, true);
    let mut back = recovered(remote.to_str().unwrap());
    back.mount(&[]);
    let note = back.path("charts/4711/note.txt");
    assert_eq!(std::fs::read(&note).unwrap(), b"second note, longer\n");
    assert_eq!(
        std::fs::read_link(back.path("charts/4711/latest")).unwrap(),
        Path::new("note.txt")
    );
    assert_eq!(
        std::fs::read(back.path("charts/scan.bin")).unwrap().len(),
        70_000
    );
    back.unmount();
    let versions = query_json(
        &back.store,
        &back.pwfile,
        &["log"],
        &["/charts/4711/note.txt"],
    );
    assert!(
        versions["versions"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "its versions from before come back too: {versions}"
    );
}

/// A store and its directory remote made by the release before snapshots
/// and pack objects (tests/fixtures/replica-164f428, made with that
/// build's binary: `init` with `common::PASSPHRASE` and `--kdf-memory-mib 8
/// --kdf-iterations 1`; `charts/4711/note.txt` written twice,
/// `charts/scan.bin` 300,000 random bytes, `charts/4711/latest` a symlink;
/// `remote add offsite dir:/tmp/phivault-fixture-remote`; `replicate`;
/// note.txt written a third time and `charts/lab.txt`; `replicate`).
/// This build recovers that remote as it is, then carries on replicating
/// the old store into it (its state learns the remote's history, new packs
/// travel the new way), and the remote recovers and verifies whole.
#[test]
fn a_remote_of_the_release_before_recovers_and_takes_new_passes() {
    const FIXTURE: &str = "replica-164f428";
    const SCAN_SHA256: &str = "d4813b01e71347db185b9414ad60f9fbfeacdb9fbf52ce0775d79ac1df63359f";
    let mut v = Vault::from_fixture(&format!("{FIXTURE}/store"));
    let remote = v.dir.path().join("offsite");
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{FIXTURE}/remote"));
    common::ok(Command::new("cp").arg("-a").arg(&src).arg(&remote));
    let remotes = v.store.join("replica/remotes.toml");
    let text = std::fs::read_to_string(&remotes).unwrap();
    let moved = text.replace("/tmp/phivault-fixture-remote", remote.to_str().unwrap());
    assert_ne!(text, moved, "the fixture names its remote");
    std::fs::write(&remotes, moved).unwrap();
    let sha256 = |p: &Path| {
        let out = common::ok(Command::new("sha256sum").arg(p));
        stdout(&out).split(' ').next().unwrap().to_string()
    };

    // As the old release left it.
    let mut old = recovered(remote.to_str().unwrap());
    old.mount(&[]);
    assert_eq!(
        std::fs::read(old.path("charts/4711/note.txt")).unwrap(),
        b"third note, after the first pass\n"
    );
    assert_eq!(sha256(&old.path("charts/scan.bin")), SCAN_SHA256);
    assert_eq!(
        std::fs::read_link(old.path("charts/4711/latest")).unwrap(),
        Path::new("note.txt")
    );
    old.unmount();
    let versions = query_json(
        &old.store,
        &old.pwfile,
        &["log"],
        &["/charts/4711/note.txt"],
    );
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(3),
        "every version: {versions}"
    );

    // This build's passes on top.
    v.mount(&[]);
    std::fs::write(v.path("charts/new.bin"), common::pattern(164, 200_000)).unwrap();
    std::fs::write(v.path("charts/4711/note.txt"), b"fourth note, this build\n").unwrap();
    v.unmount();
    let said = replicate(&v, true);
    assert!(said.contains("offsite: shipped"), "{said}");
    let st = common::replica::remote_status(&v, "offsite");
    assert_eq!(st["remote_seq"], 3, "the old chain goes on: {st:#}");
    let out = common::run(
        Command::new(bin())
            .arg("verify")
            .arg(&v.store)
            .args(["--read-data", "--remote", "offsite", "--passphrase-file"])
            .arg(&v.pwfile),
    );
    ok_output(&out, "phivault verify --read-data --remote offsite");
    let mut new = recovered(remote.to_str().unwrap());
    new.mount(&[]);
    assert_eq!(
        std::fs::read(new.path("charts/4711/note.txt")).unwrap(),
        b"fourth note, this build\n"
    );
    assert_eq!(sha256(&new.path("charts/scan.bin")), SCAN_SHA256);
    assert_eq!(
        std::fs::read(new.path("charts/new.bin")).unwrap(),
        common::pattern(164, 200_000)
    );
    new.unmount();
    new.assert_audit_verifies("of the store recovered from the old and new passes");
}
