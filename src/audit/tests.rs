//! The trail's guarantees: every kind of tampering is named at the right
//! seq, a crash's torn tail is repaired, prune keeps the rest verifiable,
//! queries filter as documented, a reader works beside a writer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame::{self, SEGMENT_HEADER};
use super::*;
use crate::crypto::{AuditKeys, MasterKey};

fn keys() -> AuditKeys {
    MasterKey::from_bytes([7; 32]).audit_keys()
}

fn quiet() -> WriterOptions {
    WriterOptions {
        index_interval: None,
        ..WriterOptions::default()
    }
}

fn rec(i: u64) -> Record {
    Record {
        seq: 0,
        time_ns: 1_000_000 + i as i64 * 1000,
        who: Who {
            uid: 1000 + (i % 3) as u32,
            gid: 100,
            pid: 4000 + i as u32,
            comm: "cat".into(),
            exe: "/usr/bin/cat".into(),
            login_uid: Some(500 + (i % 2) as u32),
            session_id: Some(3),
        },
        op: if i.is_multiple_of(4) {
            Op::Unlink
        } else {
            Op::Open
        },
        path: format!("/patients/{}/note{i}", i % 5).into_bytes(),
        target: None,
        ino: 100 + i,
        parent: 10 + i % 5,
        detail: Detail {
            flags: Some(libc::O_RDONLY),
            ..Detail::default()
        },
        result: if i.is_multiple_of(7) { libc::EACCES } else { 0 },
    }
}

/// A trail of records 1..=n, synced (so the head says n) and closed.
fn trail(dir: &Path, n: u64, opts: WriterOptions) {
    let log = AuditLog::open(dir, keys(), opts).unwrap();
    for i in 1..=n {
        assert_eq!(log.append(rec(i)).unwrap(), i);
    }
    log.sync().unwrap();
}

fn reader(dir: &Path) -> AuditReader {
    AuditReader::open(dir, keys())
}

fn problem(dir: &Path) -> Option<Tamper> {
    reader(dir).verify(&|_, _| {}).unwrap().problem
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    s.sort();
    s
}

/// The one segment's bytes and its frames' (offset, size), by position.
fn frames_of(seg: &Path) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(seg).unwrap();
    let h = SEGMENT_HEADER as usize;
    let f = frame::frames(&bytes[h..])
        .map(|(at, f)| (h + at, f.size))
        .collect();
    (bytes, f)
}

/// Rewrites the single segment of `dir` with `edit` applied to its frames.
fn edit_frames(dir: &Path, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let seg = &segments(dir)[0];
    let (bytes, at) = frames_of(seg);
    let mut frames: Vec<Vec<u8>> = at.iter().map(|&(o, n)| bytes[o..o + n].to_vec()).collect();
    edit(&mut frames);
    let mut out = bytes[..SEGMENT_HEADER as usize].to_vec();
    for f in frames {
        out.extend(f);
    }
    std::fs::write(seg, out).unwrap();
}

#[test]
fn records_come_back_as_appended() {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 50, quiet());
    let all = reader(d.path()).query(&Query::default()).unwrap();
    assert_eq!(all.len(), 50);
    for (i, r) in all.iter().enumerate() {
        let mut want = rec(i as u64 + 1);
        want.seq = i as u64 + 1;
        assert_eq!(r, &want);
    }
    assert_eq!(problem(d.path()), None);
}

#[test]
fn nothing_of_a_record_is_stored_in_clear() {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 20, quiet());
    reader(d.path()).query(&Query::default()).unwrap();
    for entry in std::fs::read_dir(d.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for needle in [&b"patients"[..], b"/usr/bin/cat", b"note1"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
}

#[test]
fn an_intact_trail_verifies_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        segment_bytes: 2000,
        ..quiet()
    };
    trail(d.path(), 100, opts.clone());
    assert!(segments(d.path()).len() > 5);
    let report = reader(d.path()).verify(&|_, _| {}).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            records: 100,
            first_seq: 1,
            last_seq: 100,
            problem: None,
            when: None,
        }
    );
    // And the chain goes on after a reopen.
    let log = AuditLog::open(d.path(), keys(), opts).unwrap();
    assert_eq!(log.head().seq, 100);
    assert_eq!(log.append(rec(101)).unwrap(), 101);
    log.sync().unwrap();
    assert_eq!(problem(d.path()), None);
}

fn tampered(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Option<Tamper> {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 20, quiet());
    assert_eq!(problem(d.path()), None);
    edit_frames(d.path(), edit);
    problem(d.path())
}

#[test]
fn an_altered_byte_is_named() {
    // Index 6 holds seq 7: a byte of its ciphertext, then of its clear time.
    assert_eq!(
        tampered(|f| f[6][40] ^= 1),
        Some(Tamper::Altered { seq: 7 })
    );
    assert_eq!(
        tampered(|f| f[6][13] ^= 1),
        Some(Tamper::Altered { seq: 7 })
    );
    let chain_byte = |f: &mut Vec<Vec<u8>>| {
        let n = f[6].len();
        f[6][n - 1] ^= 1
    };
    assert_eq!(tampered(chain_byte), Some(Tamper::Altered { seq: 7 }));
}

#[test]
fn a_removed_record_is_named() {
    assert_eq!(
        tampered(|f| {
            f.remove(6);
        }),
        Some(Tamper::Removed {
            after_seq: 6,
            missing: 1
        })
    );
    assert_eq!(
        tampered(|f| {
            f.drain(0..3);
        }),
        Some(Tamper::Removed {
            after_seq: 0,
            missing: 3
        })
    );
}

#[test]
fn swapped_records_are_named() {
    assert_eq!(
        tampered(|f| f.swap(6, 7)),
        Some(Tamper::Reordered { seq: 8 })
    );
    // Record 5 moved after record 12.
    assert_eq!(
        tampered(|f| {
            let r = f.remove(4);
            f.insert(11, r);
        }),
        Some(Tamper::Reordered { seq: 5 })
    );
}

#[test]
fn inserted_records_are_named() {
    // A copy of record 3 after record 7, and of record 15 after record 7.
    assert_eq!(
        tampered(|f| {
            let c = f[2].clone();
            f.insert(7, c);
        }),
        Some(Tamper::Inserted { after_seq: 7 })
    );
    assert_eq!(
        tampered(|f| {
            let c = f[14].clone();
            f.insert(7, c);
        }),
        Some(Tamper::Inserted { after_seq: 7 })
    );
    // A forgery: a well-formed frame claiming seq 8, MACs made up.
    assert_eq!(
        tampered(|f| {
            let mut forged = f[7].clone();
            let n = forged.len();
            for b in &mut forged[28..n] {
                *b = b.wrapping_mul(31).wrapping_add(7);
            }
            f.insert(7, forged);
        }),
        Some(Tamper::Inserted { after_seq: 7 })
    );
}

#[test]
fn a_cut_tail_is_seen_against_the_head() {
    assert_eq!(
        tampered(|f| f.truncate(17)),
        Some(Tamper::Truncated {
            last_seq: 17,
            head_seq: 20
        })
    );
    // Cut inside a frame: the same (a writer would trim the rest).
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 20, quiet());
    let seg = &segments(d.path())[0];
    let (_, at) = frames_of(seg);
    let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    f.set_len((at[15].0 + 30) as u64).unwrap();
    assert_eq!(
        problem(d.path()),
        Some(Tamper::Truncated {
            last_seq: 15,
            head_seq: 20
        })
    );
    // The head is also kept in the index: deleting the head file is no way out.
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        d.path(),
        keys(),
        WriterOptions {
            index_interval: Some(Duration::from_millis(20)),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for i in 1..=20 {
        log.append(rec(i)).unwrap();
    }
    log.sync().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while super::index::Index::open(&super::trail::Trail::new(d.path()), false)
        .and_then(|ix| ix.head(&keys()))
        .ok()
        .flatten()
        .is_none_or(|h| h.seq < 20)
    {
        assert!(Instant::now() < deadline, "the indexer never kept the head");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(log);
    std::fs::remove_file(d.path().join("head")).unwrap();
    edit_frames(d.path(), |f| f.truncate(17));
    assert_eq!(
        problem(d.path()),
        Some(Tamper::Truncated {
            last_seq: 17,
            head_seq: 20
        })
    );
}

#[test]
fn a_forged_head_or_anchor_is_unreadable() {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 5, quiet());
    let mut head = std::fs::read(d.path().join("head")).unwrap();
    head[8] = 99;
    std::fs::write(d.path().join("head"), head).unwrap();
    assert!(matches!(problem(d.path()), Some(Tamper::Unreadable { .. })));
}

#[test]
fn a_torn_tail_is_repaired_on_open_not_reported() {
    for zeros in [0, 300] {
        let d = tempfile::tempdir().unwrap();
        trail(d.path(), 10, quiet());
        let seg = segments(d.path())[0].clone();
        let (bytes, at) = frames_of(&seg);
        let good_len = bytes.len();
        // The crash: the start of an eleventh frame, or zeros the disk gave
        // back for it after a power loss.
        let mut torn = bytes.clone();
        if zeros == 0 {
            torn.extend(&bytes[at[0].0..at[0].0 + 60]);
        } else {
            torn.extend(vec![0u8; zeros]);
        }
        std::fs::write(&seg, &torn).unwrap();
        let log = AuditLog::open(d.path(), keys(), quiet()).unwrap();
        assert_eq!(log.head().seq, 10);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len as u64);
        assert_eq!(log.append(rec(11)).unwrap(), 11);
        log.sync().unwrap();
        let report = reader(d.path()).verify(&|_, _| {}).unwrap();
        assert_eq!((report.records, report.problem), (11, None));
        assert_eq!(reader(d.path()).query(&Query::default()).unwrap().len(), 11);
    }
}

#[test]
fn prune_drops_old_segments_and_the_rest_verifies() {
    let d = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        segment_bytes: 2000,
        ..quiet()
    };
    trail(d.path(), 100, opts.clone());
    let r = reader(d.path());
    r.query(&Query::default()).unwrap();
    let before = segments(d.path()).len();
    let cutoff = rec(50).time_ns;
    let report = r.prune(cutoff).unwrap();
    assert!(report.segments > 0 && report.records > 0);
    assert_eq!(
        segments(d.path()).len() as u64,
        before as u64 - report.segments
    );
    assert!(report.first_seq <= 50 && report.first_seq == report.records + 1);
    let v = r.verify(&|_, _| {}).unwrap();
    assert_eq!(v.problem, None);
    assert_eq!((v.first_seq, v.last_seq), (report.first_seq, 100));
    let kept = r.query(&Query::default()).unwrap();
    assert_eq!(kept.first().unwrap().seq, report.first_seq);
    assert_eq!(kept.len() as u64, 101 - report.first_seq);
    // Everything is older now, but the active segment stays.
    let all = r.prune(i64::MAX).unwrap();
    assert_eq!(segments(d.path()).len(), 1);
    assert!(all.first_seq > report.first_seq);
    assert_eq!(r.verify(&|_, _| {}).unwrap().problem, None);
    // The writer goes on after the anchor.
    let log = AuditLog::open(d.path(), keys(), opts).unwrap();
    assert_eq!(log.append(rec(101)).unwrap(), 101);
    log.sync().unwrap();
    assert_eq!(r.verify(&|_, _| {}).unwrap().problem, None);
    // Removing a kept segment by hand is still seen.
    drop(log);
    let d2 = tempfile::tempdir().unwrap();
    trail(
        d2.path(),
        100,
        WriterOptions {
            segment_bytes: 2000,
            ..quiet()
        },
    );
    reader(d2.path()).prune(cutoff).unwrap();
    let segs = segments(d2.path());
    std::fs::remove_file(&segs[0]).unwrap();
    assert!(matches!(problem(d2.path()), Some(Tamper::Removed { .. })));
}

#[test]
fn queries_filter_as_documented() {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 200, quiet());
    let r = reader(d.path());
    let q = |q: Query| -> Vec<u64> { r.query(&q).unwrap().iter().map(|r| r.seq).collect() };
    let want = |f: &dyn Fn(&Record) -> bool| -> Vec<u64> {
        (1..=200u64)
            .filter(|&i| {
                let mut x = rec(i);
                x.seq = i;
                f(&x)
            })
            .collect()
    };
    assert_eq!(q(Query::default()).len(), 200);
    assert_eq!(
        q(Query {
            uids: vec![1001],
            ..Default::default()
        }),
        want(&|x| x.who.uid == 1001)
    );
    // The login uid counts too.
    assert_eq!(
        q(Query {
            uids: vec![501, 1002],
            ..Default::default()
        }),
        want(&|x| x.who.login_uid == Some(501) || x.who.uid == 1002)
    );
    assert_eq!(
        q(Query {
            ops: vec![Op::Unlink],
            denied_only: true,
            ..Default::default()
        }),
        want(&|x| x.op == Op::Unlink && x.result == libc::EACCES)
    );
    let (since, until) = (rec(20).time_ns, rec(30).time_ns);
    assert_eq!(
        q(Query {
            since: Some(since),
            until: Some(until),
            ..Default::default()
        }),
        (20..=30).collect::<Vec<_>>()
    );
    // A node span: record 40's inode at any time, directory 12 for a while.
    let spans = vec![
        NodeSpan {
            ino: 140,
            from_ns: i64::MIN,
            until_ns: i64::MAX,
        },
        NodeSpan {
            ino: 12,
            from_ns: rec(100).time_ns,
            until_ns: rec(130).time_ns,
        },
    ];
    assert_eq!(
        q(Query {
            nodes: Some(spans),
            ..Default::default()
        }),
        want(&|x| x.ino == 140 || (x.parent == 12 && (100..=130).contains(&x.seq)))
    );
    assert_eq!(
        q(Query {
            path_prefix: Some(b"/patients/3".to_vec()),
            limit: Some(4),
            ..Default::default()
        }),
        vec![3, 8, 13, 18]
    );
    assert_eq!(
        q(Query {
            path_prefix: Some(b"/patients/3/".to_vec()),
            ..Default::default()
        })
        .len(),
        40
    );
    assert!(q(Query {
        path_prefix: Some(b"/patients/33".to_vec()),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(
        q(Query {
            uids: vec![1000],
            newest_first: true,
            limit: Some(3),
            ..Default::default()
        }),
        vec![198, 195, 192]
    );
}

#[test]
fn the_index_is_rebuilt_when_deleted_and_catches_up() {
    let d = tempfile::tempdir().unwrap();
    trail(d.path(), 30, quiet());
    let r = reader(d.path());
    assert_eq!(r.query(&Query::default()).unwrap().len(), 30);
    drop(r);
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(d.path().join(f));
    }
    let log = AuditLog::open(d.path(), keys(), quiet()).unwrap();
    log.append(rec(31)).unwrap();
    let r = reader(d.path());
    let all = r.query(&Query::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=31).collect::<Vec<_>>()
    );
    // Records the index does not have are read from the segment's tail.
    log.append(rec(32)).unwrap();
    let mut ix = super::index::Index::open(&super::trail::Trail::new(d.path()), false).unwrap();
    let tail = ix
        .catch_up(&super::trail::Trail::new(d.path()), &keys(), false, &|| {
            false
        })
        .unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![32]);
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    trail(&dir, 3, quiet());
    reader(&dir).query(&Query::default()).unwrap();
    reader(&dir).prune(0).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn a_reader_works_beside_a_writer() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    const N: u64 = 5000;
    let opts = WriterOptions {
        segment_bytes: 64 << 10,
        sync_interval: Duration::from_millis(20),
        index_interval: Some(Duration::from_millis(10)),
        ..WriterOptions::default()
    };
    let log = std::sync::Arc::new(AuditLog::open(&dir, keys(), opts).unwrap());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 1..=N {
                log.append(rec(i)).unwrap();
                if i.is_multiple_of(500) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let follower = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            reader(&dir)
                .follow(0, &mut |r| {
                    seen.push(r.seq);
                    r.seq < N
                })
                .unwrap();
            seen
        })
    };
    let r = reader(&dir);
    let mut last = 0;
    while last < N {
        let got: Vec<u64> = r
            .query(&Query::default())
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(
            got,
            (1..=got.len() as u64).collect::<Vec<_>>(),
            "a gap or a reorder"
        );
        assert!(got.len() as u64 >= last);
        last = got.len() as u64;
        let v = r.verify(&|_, _| {}).unwrap();
        assert_eq!(v.problem, None);
    }
    writer.join().unwrap();
    assert_eq!(follower.join().unwrap(), (1..=N).collect::<Vec<_>>());
}

/// The figure the issue asks for: a query over a trail of 10 million
/// records in under a second. Builds ~2.5 GB; run with
/// `cargo test --lib audit::tests::ten_million -- --ignored --nocapture`.
#[test]
#[ignore]
fn ten_million_records_queried_in_under_a_second() {
    // AUDIT_BENCH_DIR keeps the trail, and a second run reuses it.
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("AUDIT_BENCH_DIR").map_or(temp.path().to_path_buf(), PathBuf::from);
    let n: u64 = std::env::var("AUDIT_RECORDS").map_or(10_000_000, |v| v.parse().unwrap());
    let opts = WriterOptions {
        index_interval: Some(Duration::from_millis(200)),
        ..WriterOptions::default()
    };
    let log = AuditLog::open(&dir, keys(), opts).unwrap();
    let year_ns: i64 = 365 * 86_400 * 1_000_000_000;
    let start = 1_750_000_000_000_000_000i64;
    let t = Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in log.head().seq..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut r = rec(i);
        r.time_ns = start + (i as i128 * year_ns as i128 / n as i128) as i64;
        // 200 users; uid 9999 is rare (one record in 10,000).
        r.who.uid = if x.is_multiple_of(10_000) {
            9999
        } else {
            1000 + (x % 200) as u32
        };
        r.who.login_uid = Some(r.who.uid);
        r.ino = 1_000 + (x >> 20) % 1_000_000;
        // Opens name no parent; namespace changes do.
        r.parent = if r.op == Op::Open {
            0
        } else {
            1_000_000_000 + (x >> 40) % 10_000
        };
        r.path = format!("/patients/{}/visit-{}.pdf", r.parent, r.ino).into_bytes();
        log.append(r).unwrap();
    }
    log.sync().unwrap();
    let appended = t.elapsed();
    let reader = log.reader();
    let t = Instant::now();
    reader
        .query(&Query {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    let indexed = t.elapsed();
    let month = year_ns / 12;
    let dir = 1_000_000_000 + 4711;
    let queries = [
        (
            "--user (rare uid)",
            Query {
                uids: vec![9999],
                ..Default::default()
            },
        ),
        (
            "--path a folder, last month",
            Query {
                nodes: Some(vec![NodeSpan {
                    ino: dir,
                    from_ns: start + 11 * month,
                    until_ns: start + year_ns,
                }]),
                ..Default::default()
            },
        ),
        (
            "--path a folder and 50 files, all year",
            Query {
                nodes: Some(
                    std::iter::once(dir)
                        .chain(5_000..5_050)
                        .map(|ino| NodeSpan {
                            ino,
                            from_ns: i64::MIN,
                            until_ns: i64::MAX,
                        })
                        .collect(),
                ),
                ..Default::default()
            },
        ),
        (
            "--user (common uid) --denied --op unlink, last month",
            Query {
                uids: vec![1042],
                ops: vec![Op::Unlink],
                denied_only: true,
                since: Some(start + 11 * month),
                ..Default::default()
            },
        ),
        (
            "--user (common uid), newest 1000",
            Query {
                uids: vec![1042],
                limit: Some(1000),
                newest_first: true,
                ..Default::default()
            },
        ),
    ];
    println!(
        "{n} records: appended in {appended:?} ({:.0}/s); index caught up {indexed:?} after",
        n as f64 / appended.as_secs_f64()
    );
    for (name, q) in &queries {
        let t = Instant::now();
        let got = reader.query(q).unwrap();
        let took = t.elapsed();
        println!("{name}: {} records in {took:?}", got.len());
        assert!(!got.is_empty(), "{name}: nothing found");
        assert!(took < Duration::from_secs(1), "{name}: {took:?}");
    }
}

/// The child of `appended_records_survive_kill_9`: appends until killed,
/// saying which records `append` returned for. Never synced: what survives
/// does so because it was in the OS.
#[test]
#[ignore]
fn kill_9_child() {
    use std::io::Write;
    let Some(dir) = std::env::var_os("AUDIT_KILL_DIR") else {
        return;
    };
    let opts = WriterOptions {
        sync_interval: Duration::from_secs(3600),
        ..quiet()
    };
    let log = AuditLog::open(Path::new(&dir), keys(), opts).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 1.. {
        let seq = log.append(rec(i)).unwrap();
        writeln!(out, "acked {seq}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn appended_records_survive_kill_9() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "audit::tests::kill_9_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("AUDIT_KILL_DIR", d.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        if let Some(seq) = line.unwrap().strip_prefix("acked ") {
            acked = seq.parse().unwrap();
            if acked >= 3000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked >= 3000, "the child stopped at {acked}");
    let got = reader(d.path()).query(&Query::default()).unwrap();
    assert!(got.len() as u64 >= acked);
    assert_eq!(
        got.iter()
            .map(|r| r.seq)
            .take(acked as usize)
            .collect::<Vec<_>>(),
        (1..=acked).collect::<Vec<_>>()
    );
    // Reopened, the trail goes on and verifies.
    let log = AuditLog::open(d.path(), keys(), quiet()).unwrap();
    let next = log.append(rec(0)).unwrap();
    assert!(next > acked);
    log.sync().unwrap();
    let v = reader(d.path()).verify(&|_, _| {}).unwrap();
    assert_eq!((v.records, v.problem), (next, None));
}
