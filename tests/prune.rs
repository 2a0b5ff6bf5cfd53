//! `prune`: it removes what the retention policy lets go and gives the
//! space back, keeps every version it must byte-exact (also when killed at
//! any instant), never touches a locked version, changes nothing when dry,
//! and lets readers and writers work while it runs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use phivault::crypto::Passphrase;
use phivault::store::{RetentionPolicy, StoreDir};
use phivault::vault::{
    read_config, set_retention, unlock_master, Caller, OpenOptions, PolicyChange, PruneClock,
    PruneOptions, PruneReport, Vault, ROOT_INO,
};

use common::{engine_file, open_engine, Rng};

const MIB: usize = 1 << 20;
/// Far enough ahead that everything written now is past any lock.
const LATER_DAYS: i64 = 400;

fn later(hours: i64) -> PruneClock {
    PruneClock::Shifted(SignedDuration::from_hours(LATER_DAYS * 24 + hours))
}

fn store_of(dir: &Path) -> StoreDir {
    StoreDir::new(dir.join("store"))
}

/// The passphrase of stores made by `common::open_engine`.
const ENGINE_PASS: &[u8] = b"test passphrase, not secret";

/// Keeps only the newest `min_versions` of each file that exists (and
/// whatever the 7-day lock holds), set as `retention set` does.
fn set_thin_policy(dir: &Path, min_versions: u32, pass: &[u8]) {
    set_policy(
        dir,
        pass,
        RetentionPolicy {
            keep_all_days: 0,
            keep_hourly: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            min_versions,
            lock_days: 7,
        },
    );
}

fn set_policy(dir: &Path, pass: &[u8], p: RetentionPolicy) {
    let change = PolicyChange {
        keep_all_days: Some(p.keep_all_days),
        keep_hourly: Some(p.keep_hourly),
        keep_daily: Some(p.keep_daily),
        keep_weekly: Some(p.keep_weekly),
        keep_monthly: Some(p.keep_monthly),
        keep_yearly: Some(p.keep_yearly),
        min_versions: Some(p.min_versions),
        lock_days: Some(p.lock_days),
        audit_keep: None,
    };
    set_retention(&store_of(dir), &Passphrase::new(pass.to_vec()), &change).unwrap();
}

fn open_read_only(dir: &Path) -> Arc<Vault> {
    let store = store_of(dir);
    let pass = Passphrase::new(ENGINE_PASS.to_vec());
    let (master, _) = unlock_master(&read_config(&store).unwrap(), &pass).unwrap();
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    Vault::open(&store, &master, &opts).unwrap()
}

/// Incompressible bytes, fast.
fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` over `ino` (opened; as long as before or longer) and
/// closes the version; returns its number.
fn write_version(v: &Vault, ino: u64, data: &[u8]) -> u64 {
    for (i, chunk) in data.chunks(MIB).enumerate() {
        v.write(ino, (i * MIB) as u64, chunk).unwrap();
    }
    v.flush(ino).unwrap();
    newest_version(v, ino)
}

fn newest_version(v: &Vault, ino: u64) -> u64 {
    v.versions(ino).unwrap().last().unwrap().version
}

fn prune(v: &Vault, clock: PruneClock, grace: Duration) -> PruneReport {
    let opts = PruneOptions {
        clock,
        grace,
        ..PruneOptions::default()
    };
    v.prune(&opts, &|_, _, _| {}).unwrap()
}

/// Bytes the store takes on disk.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Every file of the store and its bytes, but SQLite's shared-memory index.
fn store_bytes(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with("-shm") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn catalog(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(store_of(dir).catalog_path()).unwrap()
}

/// `PRAGMA integrity_check`, and every pack a block lives in is on disk.
fn assert_store_sound(dir: &Path) {
    let db = catalog(dir);
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut st = db.prepare("SELECT DISTINCT pack FROM blocks").unwrap();
    let packs: Vec<i64> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for pack in packs {
        let name = format!("{:016x}", pack as u64);
        let path = store_of(dir).packs_dir().join(&name[..2]).join(&name);
        assert!(path.exists(), "pack {name} holds blocks but is gone");
    }
}

#[test]
fn prune_gives_back_the_space_of_a_deleted_gibibyte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let st = phivault::store::statvfs(dir).unwrap();
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    assert!(
        free > (3 << 30) / 2,
        "this test stores 1 GiB and needs 1.5 GiB free where it runs ({} has {free} bytes free; set TMPDIR elsewhere)",
        dir.display()
    );
    let mut rng = Rng(7);
    let keep = random_bytes(&mut rng, 8 * MIB);
    {
        let v = open_engine(dir, true, 0);
        let ino = engine_file(&v, "keep");
        write_version(&v, ino, &keep);
        v.release_file(ino).unwrap();
        v.shutdown().unwrap();
    }
    set_thin_policy(dir, 1, ENGINE_PASS);
    let before = disk_usage(dir);
    {
        let v = open_engine(dir, false, 0);
        let ino = engine_file(&v, "big");
        for i in 0..1024 {
            v.write(ino, (i * MIB) as u64, &random_bytes(&mut rng, MIB))
                .unwrap();
        }
        v.release_file(ino).unwrap();
        v.sync_all().unwrap();
        let full = disk_usage(dir);
        assert!(full > before + (1 << 30), "1 GiB stored: {full} bytes");
        v.unlink(&Caller::default(), ROOT_INO, b"big").unwrap();

        let first = prune(&v, later(0), Duration::from_secs(3600));
        assert_eq!(first.versions_removed, 2, "the content and its tombstone");
        assert_eq!(first.files_forgotten, 1);
        assert!(first.blocks_removed >= 1024, "{first:?}");
        assert_eq!(first.packs_deleted, 0, "doomed packs wait for the grace");
        assert!(first.packs_waiting > 30, "{first:?}");
        let second = prune(&v, later(2), Duration::from_secs(3600));
        assert_eq!(second.versions_removed, 0);
        assert_eq!(second.packs_deleted, first.packs_waiting);
        assert!(second.pack_bytes_deleted > 1 << 30, "{second:?}");

        let keep_ino = v.resolve(b"/keep").unwrap();
        assert_eq!(v.read(keep_ino, 0, keep.len() as u32).unwrap(), keep);
        v.shutdown().unwrap();
    }
    let after = disk_usage(dir);
    eprintln!("store before the write {before} bytes, after prune {after} bytes");
    assert!(
        after <= before + (1 << 30) / 50,
        "the store kept {} bytes of the deleted gibibyte",
        after.saturating_sub(before)
    );
    assert_store_sound(dir);
    let v = open_engine(dir, false, 0);
    let keep_ino = v.resolve(b"/keep").unwrap();
    assert_eq!(v.read(keep_ino, 0, keep.len() as u32).unwrap(), keep);
}

/// A store with history to prune: files with several versions (whole
/// rewrites and small edits), some deleted. Returns the content of every
/// version the thin policy (newest 2 of each existing file) keeps, and the
/// count of versions it drops.
fn store_with_history(
    dir: &Path,
    files: usize,
    size: usize,
) -> (HashMap<(u64, u64), Vec<u8>>, u64) {
    store_with_small_files(dir, files, size, 0)
}

/// `store_with_history`, plus `small` files of a few KiB with 6 versions
/// each (many catalog rows, little data).
fn store_with_small_files(
    dir: &Path,
    files: usize,
    size: usize,
    small: usize,
) -> (HashMap<(u64, u64), Vec<u8>>, u64) {
    let v = open_engine(dir, true, 0);
    let mut rng = Rng(42);
    let mut kept = HashMap::new();
    let mut dropped = 0;
    for f in 0..files {
        let name = format!("f{f}");
        let ino = engine_file(&v, &name);
        let mut data = random_bytes(&mut rng, size + f * 4096);
        let mut versions = Vec::new();
        for round in 0..4 {
            if round % 2 == 1 {
                // A small edit: one block changes, the rest is shared.
                let at = rng.below(data.len() as u64 - 16) as usize;
                data[at..at + 16].copy_from_slice(&random_bytes(&mut rng, 16));
            } else {
                data = random_bytes(&mut rng, size + f * 4096);
            }
            versions.push((write_version(&v, ino, &data), data.clone()));
        }
        v.release_file(ino).unwrap();
        if f % 3 == 0 {
            v.unlink(&Caller::default(), ROOT_INO, name.as_bytes())
                .unwrap();
            dropped += versions.len() as u64 + 1;
        } else {
            dropped += versions.len() as u64 - 2;
            for (version, data) in versions.into_iter().skip(2) {
                kept.insert((ino, version), data);
            }
        }
    }
    for f in 0..small {
        let ino = engine_file(&v, &format!("s{f}"));
        let versions: Vec<_> = (0..6)
            .map(|_| {
                let data = random_bytes(&mut rng, 5000);
                (write_version(&v, ino, &data), data)
            })
            .collect();
        v.release_file(ino).unwrap();
        dropped += 4;
        for (version, data) in versions.into_iter().skip(4) {
            kept.insert((ino, version), data);
        }
    }
    v.shutdown().unwrap();
    drop(v);
    set_thin_policy(dir, 2, ENGINE_PASS);
    (kept, dropped)
}

fn assert_kept(v: &Vault, kept: &HashMap<(u64, u64), Vec<u8>>) {
    for (&(ino, version), data) in kept {
        let got = v.version_content(ino, version).unwrap();
        assert!(
            got == *data,
            "inode {ino} version {version} differs from what was written (first at {:?})",
            common::first_diff(&got, data)
        );
    }
}

#[test]
fn prune_dry_run_changes_nothing_and_counts_what_prune_then_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (kept, dropped) = store_with_history(dir, 12, 3 * MIB);
    let before = store_bytes(dir);
    let dry = {
        let v = open_read_only(dir);
        let opts = PruneOptions {
            dry_run: true,
            details: true,
            clock: later(0),
            grace: Duration::ZERO,
            ..PruneOptions::default()
        };
        v.prune(&opts, &|_, _, _| {}).unwrap()
    };
    let mut after = store_bytes(dir);
    // A reader of a WAL-mode database may leave an empty WAL behind (as
    // `info` and `log` do): no byte of the store changes.
    after.retain(|p, bytes| {
        before.contains_key(p) || !(p.ends_with("catalog.db-wal") && bytes.is_empty())
    });
    let names = |m: &HashMap<PathBuf, Vec<u8>>| {
        let mut v: Vec<_> = m.keys().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(names(&before), names(&after), "no file came or went");
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
    assert_eq!(dry.versions_removed, dropped);
    assert_eq!(dry.details.len(), 12, "every file loses a version");
    assert!(dry.blocks_removed > 0 && dry.packs_doomed > 0, "{dry:?}");

    let v = open_engine(dir, false, 0);
    let real = prune(&v, later(0), Duration::ZERO);
    assert_eq!(real.versions_removed, dry.versions_removed);
    assert_eq!(real.extents_removed, dry.extents_removed);
    assert_eq!(real.blocks_removed, dry.blocks_removed);
    assert_eq!(real.block_bytes_removed, dry.block_bytes_removed);
    assert_eq!(real.files_forgotten, dry.files_forgotten);
    assert_kept(&v, &kept);
}

#[test]
fn prune_keeps_what_the_lock_holds_whatever_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng(3);
    let (ino, contents) = {
        let v = open_engine(dir, true, 0);
        let ino = engine_file(&v, "chart");
        let contents: Vec<(u64, Vec<u8>)> = (0..5)
            .map(|_| {
                let data = random_bytes(&mut rng, 200_000);
                (write_version(&v, ino, &data), data)
            })
            .collect();
        v.release_file(ino).unwrap();
        v.shutdown().unwrap();
        (ino, contents)
    };
    set_thin_policy(dir, 1, ENGINE_PASS);
    // Ages, oldest first: only the first three are past the 7-day lock.
    let ages_days = [30, 10, 8, 6, 1];
    let now = phivault::vault::now_ns();
    let db = catalog(dir);
    for ((version, _), days) in contents.iter().zip(ages_days) {
        let t = now - days * 86_400 * 1_000_000_000;
        db.execute(
            "UPDATE versions SET time=?3 WHERE ino=?1 AND version=?2",
            rusqlite::params![ino as i64, *version as i64, t],
        )
        .unwrap();
    }
    drop(db);
    let pwfile = dir.join("passphrase");
    std::fs::write(&pwfile, "test passphrase, not secret\n").unwrap();
    let out = common::ok(
        Command::new(common::bin())
            .arg("prune")
            .arg(store_of(dir).root())
            .arg("--passphrase-file")
            .arg(&pwfile)
            .arg("-v"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 removed, 2 kept"), "{text}");
    assert!(text.contains("keep: lock"), "{text}");
    let v = open_engine(dir, false, 0);
    let left: Vec<u64> = v.versions(ino).unwrap().iter().map(|r| r.version).collect();
    assert_eq!(left, [contents[3].0, contents[4].0]);
    for (version, data) in &contents[3..] {
        assert!(v.version_content(ino, *version).unwrap() == *data);
    }
}

/// Runs a prune in a child process of this test binary: the kill test's
/// victim. Not a test of its own.
#[test]
#[ignore]
fn prune_child() {
    let Some(dir) = std::env::var_os("PHIVAULT_PRUNE_CHILD") else {
        return;
    };
    let v = open_engine(Path::new(&dir), false, 0);
    prune(&v, later(0), Duration::ZERO);
    v.shutdown().unwrap();
}

/// (versions, blocks, packs, doomed packs, removals): how far pruning got.
fn progress_state(dir: &Path) -> [i64; 5] {
    let db = catalog(dir);
    let n = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    [
        n("SELECT count(*) FROM versions"),
        n("SELECT count(*) FROM blocks"),
        n("SELECT count(*) FROM packs"),
        n("SELECT count(*) FROM doomed_packs"),
        n("SELECT count(*) FROM removals"),
    ]
}

#[test]
fn prune_killed_at_any_instant_keeps_every_version_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    std::fs::create_dir(&original).unwrap();
    let (kept, _) = store_with_small_files(&original, 45, MIB, 3000);
    let child = |dir: &Path| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "prune_child", "--ignored", "--nocapture"])
            .env("PHIVAULT_PRUNE_CHILD", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let fresh_copy = |name: &str| {
        let dir = tmp.path().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        common::ok(
            Command::new("cp")
                .arg("-a")
                .arg(store_of(&original).root())
                .arg(&dir),
        );
        dir
    };
    // How long a whole prune takes, with its process, to aim the kills.
    let dir = fresh_copy("work");
    let started = std::time::Instant::now();
    assert!(child(&dir).wait().unwrap().success());
    let whole = started.elapsed().as_millis() as u64;
    let done = progress_state(&dir);
    eprintln!("a whole prune (with its process) takes {whole} ms and ends at {done:?}");
    let mut rng = Rng(99);
    for round in 0..10 {
        // Each round starts over from the unpruned store, is killed at two
        // random instants, and then runs to its end.
        let dir = fresh_copy("work");
        for kill in 0..2 {
            let mut c = child(&dir);
            let delay = rng.below(whole);
            std::thread::sleep(Duration::from_millis(delay));
            common::sigkill(c.id() as i32);
            let _ = c.wait();
            assert_store_sound(&dir);
            let v = open_engine(&dir, false, 0);
            assert_kept(&v, &kept);
            v.shutdown().unwrap();
            drop(v);
            let state = progress_state(&dir);
            eprintln!("round {round}, kill {kill}: after {delay} ms, at {state:?}; every kept version intact");
        }
        assert!(
            child(&dir).wait().unwrap().success(),
            "a prune runs to its end"
        );
        assert_store_sound(&dir);
        assert_eq!(
            progress_state(&dir)[..2],
            done[..2],
            "the same end, however often killed"
        );
        let v = open_engine(&dir, false, 0);
        assert_kept(&v, &kept);
        let again = prune(&v, later(0), Duration::ZERO);
        assert_eq!(
            again.versions_removed, 0,
            "the prunes removed all they should"
        );
        assert_eq!(again.blocks_removed, 0);
        assert_eq!(again.packs_waiting, 0);
        v.shutdown().unwrap();
        drop(v);
        let db = catalog(&dir);
        let versions: i64 = db
            .query_row("SELECT count(*) FROM versions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions as usize, kept.len());
        let removals: i64 = db
            .query_row("SELECT count(*) FROM removals WHERE kind=2", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(removals > 0, "pack removals are journaled");
    }
}

#[test]
fn prune_runs_beside_readers_and_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (kept, _) = store_with_history(dir, 9, MIB);
    let v = open_engine(dir, false, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(5);
    let stable = random_bytes(&mut rng, 3 * MIB);
    let stable_ino = engine_file(&v, "stable");
    write_version(&v, stable_ino, &stable);
    v.release_file(stable_ino).unwrap();

    let reader = {
        let (v, stop, stable) = (v.clone(), stop.clone(), stable.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                assert!(v.read(stable_ino, 0, stable.len() as u32).unwrap() == stable);
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (v, stop) = (v.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(100 + w);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-{}", n % 4);
                    let ino = match v.resolve(format!("/{name}").as_bytes()) {
                        Ok(ino) => {
                            v.open_file(ino, false).unwrap();
                            ino
                        }
                        Err(_) => engine_file(&v, &name),
                    };
                    // Shares blocks with earlier versions of itself, so
                    // dedup meets blocks the prune is freeing.
                    let mut data = random_bytes(&mut Rng(n % 3 + 1), 600_000);
                    data.extend(random_bytes(&mut rng, 70_000));
                    write_version(&v, ino, &data);
                    v.release_file(ino).unwrap();
                    assert!(v.read(ino, 0, data.len() as u32).unwrap() == data);
                    if n % 5 == 4 {
                        v.unlink(&Caller::default(), ROOT_INO, name.as_bytes())
                            .unwrap();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut removed = 0;
    let mut deleted = 0;
    for _ in 0..12 {
        // A grace of a second, in real time: packs doomed by one round
        // are deleted by a later one, while the readers and writers that
        // looked them up just before are long done with them.
        let r = prune(&v, later(0), Duration::from_secs(1));
        removed += r.versions_removed;
        deleted += r.packs_deleted;
        std::thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    eprintln!("{reads} reads and {writes} versions written beside 12 prunes removing {removed} versions and {deleted} packs");
    assert!(removed > 0 && deleted > 0 && writes > 0 && reads > 0);
    assert_kept(&v, &kept);
    v.shutdown().unwrap();
    drop(v);
    assert_store_sound(dir);
}

/// Benchmark, not a test: `cargo test --release --test prune
/// bench_prune_a_million_versions -- --ignored --nocapture`. 10,000 files
/// of 100 versions each (one a month back from today, each its own block),
/// built with the engine and then, for speed, direct catalog inserts; then
/// one prune with a thinning policy and the machine's clock.
#[test]
#[ignore]
fn bench_prune_a_million_versions() {
    const FILES: usize = 10_000;
    const VERSIONS: i64 = 100;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t0 = std::time::Instant::now();
    let mut inos = Vec::with_capacity(FILES);
    {
        let v = open_engine(dir, true, 0);
        for f in 0..FILES {
            let ino = engine_file(&v, &format!("f{f}"));
            v.write(ino, 0, format!("file {f}, its newest version").as_bytes())
                .unwrap();
            v.release_file(ino).unwrap();
            inos.push(ino);
        }
        v.shutdown().unwrap();
    }
    let mut db = catalog(dir);
    let now = phivault::vault::now_ns();
    let month = 30 * 86_400 * 1_000_000_000i64;
    let mut rng = Rng(11);
    let tx = db.transaction().unwrap();
    for &ino in &inos {
        let ino = ino as i64;
        let (block, pack, offset, len, plain): (i64, i64, i64, i64, i64) = tx
            .query_row(
                "SELECT b.id, b.pack, b.offset, b.len, b.plain_len FROM extents e JOIN blocks b ON b.id=e.block WHERE e.ino=?1",
                [ino],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        tx.execute("DELETE FROM versions WHERE ino=?1", [ino])
            .unwrap();
        tx.execute("DELETE FROM extents WHERE ino=?1", [ino])
            .unwrap();
        for version in 1..=VERSIONS {
            let time = now - (VERSIONS - version) * month - 3_600_000_000_000;
            tx.execute(
                "INSERT INTO versions(ino, version, time, size, reason) VALUES (?1,?2,?3,?4,1)",
                rusqlite::params![ino, version, time, plain],
            )
            .unwrap();
            // Older versions each hold a block of their own (index rows
            // only: they share the newest one's record).
            let (b, until) = if version < VERSIONS {
                let hash: Vec<u8> = (0..4).flat_map(|_| rng.next().to_le_bytes()).collect();
                tx.execute(
                    "INSERT INTO blocks(hash, pack, offset, len, plain_len) VALUES (?1,?2,?3,?4,?5)",
                    rusqlite::params![hash, pack, offset, len, plain],
                )
                .unwrap();
                (tx.last_insert_rowid(), Some(version + 1))
            } else {
                (block, None)
            };
            tx.execute(
                "INSERT INTO extents(ino, idx, block, v_from, v_until) VALUES (?1,0,?2,?3,?4)",
                rusqlite::params![ino, b, version, until],
            )
            .unwrap();
        }
        tx.execute(
            "UPDATE inodes SET version=?2, version_open=0 WHERE ino=?1",
            rusqlite::params![ino, VERSIONS],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    set_policy(
        dir,
        ENGINE_PASS,
        RetentionPolicy {
            keep_all_days: 30,
            keep_hourly: 0,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_yearly: 3,
            min_versions: 3,
            lock_days: 7,
        },
    );
    eprintln!(
        "built {} versions in {:.1} s",
        FILES as i64 * VERSIONS,
        t0.elapsed().as_secs_f64()
    );
    let v = open_engine(dir, false, 0);
    let started = std::time::Instant::now();
    let r = v.prune(&PruneOptions::default(), &|_, _, _| {}).unwrap();
    let took = started.elapsed();
    eprintln!(
        "prune of {} versions in {} files: {:.2} s; {} removed, {} kept, {} extents and {} blocks freed",
        r.versions_removed + r.versions_kept,
        r.files,
        took.as_secs_f64(),
        r.versions_removed,
        r.versions_kept,
        r.extents_removed,
        r.blocks_removed
    );
    assert_eq!(r.versions_removed + r.versions_kept, FILES as u64 * 100);
    let dry = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let again = v.prune(&dry, &|_, _, _| {}).unwrap();
    assert_eq!(again.versions_removed, 0);
}

#[test]
fn a_mount_prunes_itself_in_the_background_while_programs_use_it() {
    let mut m = common::Vault::init();
    let size = 400_000;
    m.mount(&[]);
    // History through the mount: f0..f5 rewritten four times, d0..d3
    // written and deleted.
    for round in 0..4u64 {
        for f in 0..6u64 {
            std::fs::write(
                m.path(&format!("f{f}")),
                common::pattern(f * 10 + round, size),
            )
            .unwrap();
        }
    }
    for d in 0..4u64 {
        std::fs::write(m.path(&format!("d{d}")), common::pattern(100 + d, size)).unwrap();
        std::fs::remove_file(m.path(&format!("d{d}"))).unwrap();
    }
    m.unmount();
    // ... all of it long ago, under a policy that keeps only the newest.
    let dir = m.store.parent().unwrap().to_path_buf();
    set_thin_policy(&dir, 1, common::PASSPHRASE.as_bytes());
    let db = catalog(&dir);
    db.execute(
        "UPDATE versions SET time = time - ?1",
        [LATER_DAYS * 86_400 * 1_000_000_000],
    )
    .unwrap();
    let before: i64 = db
        .query_row("SELECT count(*) FROM versions", [], |r| r.get(0))
        .unwrap();
    drop(db);

    m.mount(&["--prune-interval", "1s"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut n = 0u64;
    while std::time::Instant::now() < deadline {
        // Readers of the old files and a writer of new ones, while the
        // background prunes remove the old history and compact its packs.
        for f in 0..6u64 {
            let got = std::fs::read(m.path(&format!("f{f}"))).unwrap();
            assert!(got == common::pattern(f * 10 + 3, size), "f{f} changed");
        }
        let data = common::pattern(1000 + n, size);
        std::fs::write(m.path(&format!("new{}", n % 3)), &data).unwrap();
        assert!(std::fs::read(m.path(&format!("new{}", n % 3))).unwrap() == data);
        n += 1;
    }
    m.unmount();
    let log = std::fs::read_to_string(&m.log).unwrap();
    assert!(log.contains("prune: "), "no background prune ran:\n{log}");
    assert!(!log.contains("prune failed"), "{log}");
    let after: i64 = catalog(&dir)
        .query_row("SELECT count(*) FROM versions WHERE ino IN (SELECT ino FROM versions GROUP BY ino HAVING min(time) < ?1)", [phivault::vault::now_ns() - 86_400_000_000_000], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (before, after),
        (before, 6),
        "only the newest of each old file stays"
    );
    assert_store_sound(&dir);
    m.mount(&["--prune-interval", "0"]);
    for f in 0..6u64 {
        let got = std::fs::read(m.path(&format!("f{f}"))).unwrap();
        assert!(got == common::pattern(f * 10 + 3, size));
    }
    for i in n.saturating_sub(3)..n {
        let data = common::pattern(1000 + i, size);
        assert!(std::fs::read(m.path(&format!("new{}", i % 3))).unwrap() == data);
    }
}

#[test]
fn prune_keeps_a_deleted_file_while_it_is_open_and_forgets_it_once_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = open_engine(dir, true, 0);
    drop(v);
    set_thin_policy(dir, 1, ENGINE_PASS);
    let v = open_engine(dir, false, 0);
    let data = random_bytes(&mut Rng(8), 500_000);
    let ino = engine_file(&v, "scratch");
    write_version(&v, ino, &data);
    v.unlink(&Caller::default(), ROOT_INO, b"scratch").unwrap();
    let r = prune(&v, later(0), Duration::ZERO);
    assert_eq!((r.versions_removed, r.files_forgotten), (0, 0), "{r:?}");
    assert!(v.read(ino, 0, data.len() as u32).unwrap() == data);
    v.release_file(ino).unwrap();
    let r = prune(&v, later(0), Duration::ZERO);
    assert_eq!((r.versions_removed, r.files_forgotten), (2, 1), "{r:?}");
    assert!(r.blocks_removed >= 7 && r.packs_deleted >= 1, "{r:?}");
}

#[test]
fn prune_dry_run_reads_a_catalog_older_than_pruning_without_upgrading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, dropped) = store_with_history(dir, 3, MIB);
    catalog(dir)
        .execute_batch(
            "DROP TABLE doomed_packs; DROP TABLE removals; DROP INDEX extents_by_block;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    let v = open_read_only(dir);
    let opts = PruneOptions {
        dry_run: true,
        clock: later(0),
        ..PruneOptions::default()
    };
    let r = v.prune(&opts, &|_, _, _| {}).unwrap();
    assert_eq!(r.versions_removed, dropped);
    assert!(r.blocks_removed > 0);
    let version: i64 = catalog(dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    drop(v);
    // Opened to write, it is upgraded, and prunes.
    let v = open_engine(dir, false, 0);
    assert_eq!(
        prune(&v, later(0), Duration::ZERO).versions_removed,
        dropped
    );
}
