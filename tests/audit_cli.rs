//! `phivault audit`, `audit verify`, `audit export` and the audit retention,
//! through the real binary, on stores whose trail is filled through the
//! engine (`Vault::audit().append`) over a tree built by the engine on a
//! clock the test sets, so that every record's place in the tree's history
//! is known exactly.

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::{bin, user_ids};
use phivault::audit::{Detail, Op, Record, Who};
use phivault::vault::{Caller, Kind, ManualClock, NodeSpec, OpenOptions, RenameMode, ROOT_INO};

/// `common::open_engine`'s passphrase.
const ENGINE_PASSPHRASE: &str = "test passphrase, not secret";
const S: i64 = 1_000_000_000;

struct Store {
    dir: tempfile::TempDir,
    pwfile: PathBuf,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phivault-audit-")
            .tempdir()
            .unwrap();
        let pwfile = dir.path().join("passphrase");
        std::fs::write(&pwfile, format!("{ENGINE_PASSPHRASE}\n")).unwrap();
        Store { dir, pwfile }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn engine(&self, create: bool, clock: Arc<ManualClock>) -> Arc<phivault::vault::Vault> {
        common::open_engine_with(
            self.dir.path(),
            create,
            OpenOptions {
                clock,
                ..OpenOptions::default()
            },
        )
    }

    /// `phivault ARGS...` with STORE after the subcommand words and the
    /// passphrase file at the end.
    fn run(&self, words: &[&str], args: &[&str]) -> Output {
        let mut c = Command::new(bin());
        c.args(words)
            .arg(self.path())
            .args(args)
            .arg("--passphrase-file")
            .arg(&self.pwfile);
        common::run(&mut c)
    }

    fn audit(&self, args: &[&str]) -> Output {
        let out = self.run(&["audit"], args);
        assert!(
            out.status.success(),
            "audit {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The records `audit ARGS --format json` lists, as (seq, path) pairs.
    fn seqs(&self, args: &[&str]) -> Vec<u64> {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.audit(&all);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    }

    fn audit_dir(&self) -> PathBuf {
        self.path().join("audit")
    }
}

fn who(uid: u32, login: Option<u32>) -> Who {
    Who {
        uid,
        gid: uid,
        pid: 4242,
        comm: "cat".into(),
        exe: "/usr/bin/cat".into(),
        login_uid: login,
        session_id: Some(7),
    }
}

fn rec(time_ns: i64, who: Who, op: Op, path: &str, ino: u64, parent: u64, result: i32) -> Record {
    Record {
        seq: 0,
        time_ns,
        who,
        op,
        path: path.as_bytes().to_vec(),
        target: None,
        ino,
        parent,
        detail: Detail {
            flags: matches!(op, Op::Open | Op::Create | Op::OpenDir).then_some(libc::O_RDONLY),
            ..Detail::default()
        },
        result,
    }
}

fn mkdir(v: &phivault::vault::Vault, parent: u64, name: &str) -> u64 {
    v.create_node(
        &Caller::root(),
        parent,
        name.as_bytes(),
        NodeSpec {
            kind: Kind::Dir,
            mode: 0o755,
            umask: 0,
            rdev: 0,
        },
    )
    .unwrap()
    .ino
}

fn touch(v: &phivault::vault::Vault, parent: u64, name: &str) -> u64 {
    v.create_node(
        &Caller::root(),
        parent,
        name.as_bytes(),
        NodeSpec::file(0o600),
    )
    .unwrap()
    .ino
}

fn mv(v: &phivault::vault::Vault, from: (u64, &str), to: (u64, &str)) {
    v.rename(
        &Caller::root(),
        from.0,
        from.1.as_bytes(),
        to.0,
        to.1.as_bytes(),
        RenameMode::NoReplace,
    )
    .unwrap();
}

/// The tree and trail every filter test reads; the seqs of its records
/// by name.
struct Scene {
    store: Store,
    base: i64,
    alice: u32,
    bob: u32,
    carol: u32,
    seq: std::collections::HashMap<&'static str, u64>,
    records: Vec<Record>,
}

/// Ten days ago, on a whole second: far from now, inside any retention.
fn base_time() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 10 * 86_400) * S
}

/// /patients/4711/chart.txt is made, /other/lab.txt renamed into
/// /patients/4711, chart.txt renamed out of it, then /patients/4711 renamed
/// to /patients/4712 and a new /patients/4711 made. Each step on its own
/// ten seconds of the test's clock; each record 1 ms after the change it
/// follows (or on the second, for one that changed nothing).
fn scene() -> Scene {
    let store = Store::new();
    let base = base_time();
    let clock = Arc::new(ManualClock::starting_at(base));
    let v = store.engine(true, clock.clone());
    let (alice, _) = user_ids("phi-alice");
    let (bob, _) = user_ids("phi-bob");
    let (carol, _) = user_ids("phi-carol");
    let at = |secs: i64| base + secs * S;
    let after = |secs: i64| base + secs * S + 1_000_000;
    let step = |secs: i64| clock.set(at(secs));

    let patients = mkdir(&v, ROOT_INO, "patients");
    let d = mkdir(&v, patients, "4711");
    let other = mkdir(&v, ROOT_INO, "other");
    step(10);
    let chart = touch(&v, d, "chart.txt");
    step(20);
    let lab = touch(&v, other, "lab.txt");
    step(30);
    mv(&v, (other, "lab.txt"), (d, "lab.txt"));
    step(50);
    mv(&v, (d, "chart.txt"), (other, "chart.txt"));
    step(70);
    mv(&v, (patients, "4711"), (patients, "4712"));
    step(90);
    let d2 = mkdir(&v, patients, "4711");
    step(100);
    let new = touch(&v, d2, "new.txt");

    use Op::{Create, Open, Rename};
    let (a, b, c, no) = (Some(alice), Some(bob), Some(carol), None);
    let e = libc::EACCES;
    // "reused" names chart's inode at 5 s, before chart was made (as after
    // a crash that lost the inode): never in its scope.
    #[rustfmt::skip]
    let table = [
        // name                              time        uid    login op      path                        target                          ino    parent    result
        ("reused",                           at(5),      carol, c,    Open,   "/lost",                    None,                           chart, 0,        0),
        ("alice opens chart",                after(10),  alice, a,    Open,   "/patients/4711/chart.txt", None,                           chart, d,        0),
        ("bob opens lab in other",           after(20),  bob,   b,    Open,   "/other/lab.txt",           None,                           lab,   other,    0),
        ("bob moves lab in",                 after(30),  bob,   b,    Rename, "/other/lab.txt",           Some("/patients/4711/lab.txt"), lab,   other,    0),
        ("carol refused lab",                at(40),     carol, c,    Open,   "/patients/4711/lab.txt",   None,                           lab,   d,        e),
        ("alice moves chart out",            after(50),  alice, a,    Rename, "/patients/4711/chart.txt", Some("/other/chart.txt"),       chart, d,        0),
        ("alice opens chart in other",       at(60),     alice, a,    Open,   "/other/chart.txt",         None,                           chart, other,    0),
        ("root via sudo renames the folder", after(70),  0,     a,    Rename, "/patients/4711",           Some("/patients/4712"),         d,     patients, 0),
        ("bob opens lab in 4712",            at(80),     bob,   b,    Open,   "/patients/4712/lab.txt",   None,                           lab,   d,        0),
        ("alice opens the new 4711's file",  after(100), alice, a,    Open,   "/patients/4711/new.txt",   None,                           new,   d2,       0),
        ("carol refused a path never made",  at(110),    carol, no,   Create, "/gone/x.txt",              None,                           0,     0,        e),
    ];
    let log = v.audit().expect("a read-write vault holds its audit log");
    let mut seq = std::collections::HashMap::new();
    let mut records = Vec::new();
    for (name, time, uid, login, op, path, target, ino, parent, result) in table {
        let mut r = rec(time, who(uid, login), op, path, ino, parent, result);
        r.target = target.map(|t| t.as_bytes().to_vec());
        r.seq = log.append(r.clone()).unwrap();
        seq.insert(name, r.seq);
        records.push(r);
    }
    v.shutdown().unwrap();
    drop(v);
    Scene {
        store,
        base,
        alice,
        bob,
        carol,
        seq,
        records,
    }
}

impl Scene {
    fn want(&self, names: &[&str]) -> Vec<u64> {
        let mut s: Vec<u64> = names.iter().map(|n| self.seq[n]).collect();
        s.sort_unstable_by(|a, b| b.cmp(a));
        s
    }

    fn time(&self, secs: i64) -> String {
        let t = jiff::Timestamp::from_nanosecond((self.base + secs * S) as i128).unwrap();
        t.to_string()
    }
}

#[test]
fn path_follows_files_renamed_in_and_out_and_a_renamed_directory() {
    let s = scene();
    let st = &s.store;
    assert_eq!(
        st.seqs(&["--path", "/patients/4711"]),
        s.want(&[
            "alice opens chart",
            "bob moves lab in",
            "carol refused lab",
            "alice moves chart out",
            "root via sudo renames the folder",
            "alice opens the new 4711's file",
        ]),
        "the folder at /patients/4711 over time, and what was in it while it was"
    );
    assert_eq!(
        st.seqs(&["--path", "/patients/4712"]),
        s.want(&["root via sudo renames the folder", "bob opens lab in 4712"]),
    );
    assert_eq!(
        st.seqs(&["--path", "/patients/4711/chart.txt"]),
        s.want(&["alice opens chart", "alice moves chart out"]),
        "the file until it left, not the record of an earlier inode with its number"
    );
    assert_eq!(
        st.seqs(&["--path", "/other/chart.txt"]),
        s.want(&["alice moves chart out", "alice opens chart in other"]),
    );
    assert_eq!(
        st.seqs(&["--path", "/gone"]),
        s.want(&["carol refused a path never made"]),
        "a path never in the catalog is matched by recorded path"
    );
    assert_eq!(st.seqs(&["--path", "/"]).len(), s.records.len());
}

#[test]
fn every_filter_narrows_and_they_combine() {
    let s = scene();
    let st = &s.store;
    let all: Vec<u64> = {
        let mut v: Vec<u64> = s.records.iter().map(|r| r.seq).collect();
        v.reverse();
        v
    };
    assert_eq!(st.seqs(&[]), all, "newest first, everything");
    assert_eq!(
        st.seqs(&["--user", "phi-alice"]),
        s.want(&[
            "alice opens chart",
            "alice moves chart out",
            "alice opens chart in other",
            "root via sudo renames the folder",
            "alice opens the new 4711's file",
        ]),
        "by uid or by login uid (root through sudo)"
    );
    assert_eq!(
        st.seqs(&["--user", &s.bob.to_string(), "--user", "phi-carol"])
            .len(),
        3 + 3
    );
    assert_eq!(
        st.seqs(&["--denied"]),
        s.want(&["carol refused lab", "carol refused a path never made"])
    );
    assert_eq!(
        st.seqs(&["--op", "rename"]),
        s.want(&[
            "bob moves lab in",
            "alice moves chart out",
            "root via sudo renames the folder"
        ])
    );
    assert_eq!(
        st.seqs(&["--op", "create", "--op", "OPEN", "--denied"]),
        s.want(&["carol refused lab", "carol refused a path never made"])
    );
    assert_eq!(
        st.seqs(&["--since", &s.time(40), "--until", &s.time(60)]),
        s.want(&[
            "carol refused lab",
            "alice moves chart out",
            "alice opens chart in other"
        ]),
        "both ends inclusive"
    );
    assert_eq!(
        st.seqs(&["--user", "phi-bob", "--path", "/patients/4711"]),
        s.want(&["bob moves lab in"])
    );
    assert_eq!(
        st.seqs(&["--limit", "2"]),
        all[..2].to_vec(),
        "the newest two"
    );

    let bad = st.run(&["audit"], &["--user", "no-such-user-here"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-user-here"));
    let bad = st.run(&["audit"], &["--op", "frobnicate"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let _ = s.alice;
    let _ = s.carol;
}

#[test]
fn table_json_and_csv_show_who_what_and_how_it_ended() {
    let s = scene();
    let st = &s.store;
    let table = String::from_utf8(st.audit(&["--denied"]).stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{table}");
    for col in [
        "time", "user", "login", "process", "op", "path", "detail", "result",
    ] {
        assert!(lines[0].contains(col), "no column {col}: {}", lines[0]);
    }
    assert!(
        lines[2].contains(&format!("phi-carol ({})", s.carol)),
        "{table}"
    );
    assert!(lines[2].contains("4242 cat"), "{table}");
    assert!(lines[2].contains("/patients/4711/lab.txt"), "{table}");
    assert!(lines[2].contains("flags=O_RDONLY"), "{table}");
    assert!(lines[2].trim_end().ends_with("EACCES"), "{table}");
    assert!(lines[1].contains("create"), "{table}");

    let moved = String::from_utf8(st.audit(&["--op", "rename", "--limit", "1"]).stdout).unwrap();
    assert!(
        moved.contains("/patients/4711 -> /patients/4712"),
        "a rename shows its target:\n{moved}"
    );
    assert!(
        moved.contains("root (0)") && moved.contains("phi-alice"),
        "{moved}"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&st.audit(&["--format", "json", "--denied"]).stdout).unwrap();
    let r = &json[1];
    assert_eq!(r["who"]["uid"], s.carol);
    assert_eq!(r["who"]["user"], "phi-carol");
    assert_eq!(r["who"]["comm"], "cat");
    assert_eq!(r["op"], "open");
    assert_eq!(r["result"], "EACCES");
    assert_eq!(r["errno"], libc::EACCES);
    assert_eq!(r["path"], "/patients/4711/lab.txt");
    assert_eq!(r["time_ns"], s.base + 40 * S);

    let csv = String::from_utf8(st.audit(&["--format", "csv", "--op", "rename"]).stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,user,login,process,op,path,detail,result");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[1..].iter().all(|l| l.ends_with(",ok")), "{csv}");
}

#[test]
fn export_round_trips_every_field() {
    let s = scene();
    let st = &s.store;
    let file = st.dir.path().join("export.jsonl");
    let out = st.run(&["audit", "export"], &["-o", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let back: Vec<Record> = text.lines().map(record_from_json).collect();
    assert_eq!(
        back, s.records,
        "export gives back every record, oldest first"
    );

    // --since/--until, to stdout.
    let out = st.run(
        &["audit", "export"],
        &["--since", &s.time(40), "--until", &s.time(60)],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
}

/// A record as `export` wrote it.
fn record_from_json(line: &str) -> Record {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let u32_of = |x: &serde_json::Value| x.as_u64().map(|n| n as u32);
    let w = &v["who"];
    let d = &v["detail"];
    Record {
        seq: v["seq"].as_u64().unwrap(),
        time_ns: v["time_ns"].as_i64().unwrap(),
        who: Who {
            uid: u32_of(&w["uid"]).unwrap(),
            gid: u32_of(&w["gid"]).unwrap(),
            pid: u32_of(&w["pid"]).unwrap(),
            comm: w["comm"].as_str().unwrap().into(),
            exe: w["exe"].as_str().unwrap().into(),
            login_uid: u32_of(&w["login_uid"]),
            session_id: u32_of(&w["session_id"]),
        },
        op: Op::from_name(v["op"].as_str().unwrap()).unwrap(),
        path: v["path"].as_str().unwrap().as_bytes().to_vec(),
        target: v["target"].as_str().map(|t| t.as_bytes().to_vec()),
        ino: v["ino"].as_u64().unwrap(),
        parent: v["parent"].as_u64().unwrap(),
        detail: Detail {
            flags: d["flags"].as_i64().map(|f| f as i32),
            mode: u32_of(&d["mode"]),
            uid: u32_of(&d["uid"]),
            gid: u32_of(&d["gid"]),
            size: d["size"].as_u64(),
            atime: d["atime_ns"].as_i64(),
            mtime: d["mtime_ns"].as_i64(),
            xattr: d["xattr"].as_str().map(|x| x.as_bytes().to_vec()),
            written: d["written"].as_u64(),
        },
        result: v["errno"].as_i64().unwrap() as i32,
    }
}

#[test]
fn follow_streams_new_matching_records_as_json_lines() {
    let s = scene();
    let st = &s.store;
    let mut child = Command::new(bin())
        .args(["audit"])
        .arg(st.path())
        .args([
            "--follow",
            "--format",
            "json",
            "--denied",
            "--passphrase-file",
        ])
        .arg(&st.pwfile)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Appended by a writer beside the follower, as a mount's daemon does.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let v = st.engine(false, Arc::new(ManualClock::starting_at(s.base + 200 * S)));
    let log = v.audit().unwrap();
    let now = s.base + 200 * S;
    log.append(rec(now, who(s.bob, Some(s.bob)), Op::Open, "/a", 1, 0, 0))
        .unwrap();
    let refused = log
        .append(rec(
            now + 1,
            who(s.bob, Some(s.bob)),
            Op::Open,
            "/b",
            1,
            0,
            libc::EPERM,
        ))
        .unwrap();
    log.sync().unwrap();
    let line = lines.next().expect("a line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let r: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        r["seq"], refused,
        "the refused one only, not what was there before"
    );
    assert_eq!(r["result"], "EPERM");
    v.shutdown().unwrap();
}

/// `audit verify`'s exit status and output.
fn verify(st: &Store) -> (i32, String) {
    let out = st.run(&["audit", "verify"], &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn verify_says_intact_on_an_untouched_trail() {
    let s = scene();
    let (code, text) = verify(&s.store);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("intact"), "{text}");
    assert!(
        text.contains(&format!("{} records", s.records.len())),
        "{text}"
    );
}

/// 50 records three years old, in a segment of their own (a segment
/// closes when a record is a month younger than its first), then 50 of
/// yesterday. Returns the store, the first old record's time and the
/// recent records' seqs.
fn trail_with_an_old_segment() -> (Store, i64, Vec<u64>) {
    let store = Store::new();
    let now = base_time() + 10 * 86_400 * S;
    let v = store.engine(true, Arc::new(ManualClock::starting_at(now)));
    let log = v.audit().unwrap();
    let old = now - 3 * 365 * 86_400 * S;
    for i in 0..50 {
        log.append(rec(old + i * S, who(0, None), Op::Open, "/old", 1, 0, 0))
            .unwrap();
    }
    let yesterday = now - 86_400 * S;
    let recent = (0..50)
        .map(|i| {
            let r = rec(yesterday + i * S, who(0, None), Op::Open, "/new", 1, 0, 0);
            log.append(r).unwrap()
        })
        .collect();
    v.shutdown().unwrap();
    drop(v);
    (store, old, recent)
}

#[test]
fn retention_set_and_prune_leave_a_trail_that_verifies() {
    let (store, _, recent) = trail_with_an_old_segment();
    let view = Command::new(bin())
        .arg("retention")
        .arg(store.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&view.stdout);
    assert!(
        text.contains("audit-keep") && text.contains("6 years"),
        "{text}"
    );

    let mut set = Command::new(bin());
    set.arg("retention")
        .arg(store.path())
        .args(["set", "--audit-keep", "6 days", "--passphrase-file"])
        .arg(&store.pwfile);
    let out = common::run(&mut set);
    assert!(!out.status.success(), "shorter than a year is refused");

    let mut set = Command::new(bin());
    set.arg("retention")
        .arg(store.path())
        .args(["set", "--audit-keep", "2 years", "--passphrase-file"])
        .arg(&store.pwfile);
    let out = common::run(&mut set);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = std::fs::read_to_string(store.path().join("vault.toml")).unwrap();
    assert!(
        toml.contains("[audit]") && toml.contains("keep = \"2 years\""),
        "{toml}"
    );

    let out = store.run(&["prune"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = verify(&store);
    assert_eq!(code, 0, "the pruned trail verifies from its anchor: {text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit:    50 records removed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, text) = verify(&store);
    assert_eq!(code, 0, "verified again: {text}");
    let mut left = store.seqs(&[]);
    left.reverse();
    assert_eq!(
        left, recent,
        "the old records went, every recent one stayed"
    );
}

#[test]
fn prune_dry_run_lists_the_audit_segments_retention_would_remove() {
    let (store, old, recent) = trail_with_an_old_segment();
    let mut set = Command::new(bin());
    set.arg("retention")
        .arg(store.path())
        .args(["set", "--audit-keep", "2 years", "--passphrase-file"])
        .arg(&store.pwfile);
    common::ok(&mut set);
    let segment = store.audit_dir().join(format!("{:020}.seg", 1));
    let bytes = std::fs::metadata(&segment).unwrap().len();
    let utc = |ns: i64| jiff::Timestamp::from_nanosecond(ns as i128).unwrap();
    let listed = format!(
        "{:020}.seg  records {} to {}  50 records  {:.1} KiB",
        1,
        utc(old),
        utc(old + 49 * S),
        bytes as f64 / 1024.0
    );

    // `prune ARGS`' output, which must give the audit `counts` and where
    // the kept trail `starts`.
    let prune = |args: &[&str], counts: &str, starts: &str| -> String {
        let out = store.run(&["prune"], args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "prune {args:?}: {text}{err}");
        assert!(text.contains(counts) && text.contains(starts), "{text}");
        text
    };
    let text = prune(
        &["--dry-run"],
        "audit:    50 records would be removed in 1 segments",
        "the trail would start at seq 51",
    );
    assert!(text.contains(&listed), "no line `{listed}`:\n{text}");
    assert!(segment.exists(), "a dry run removes nothing");
    assert_eq!(store.seqs(&[]).len(), 100);

    let text = prune(
        &[],
        "audit:    50 records removed in 1 segments",
        "the trail starts at seq 51",
    );
    assert!(text.contains(&listed), "no line `{listed}`:\n{text}");
    assert!(!segment.exists());
    let mut left = store.seqs(&[]);
    left.reverse();
    assert_eq!(left, recent);
    let (code, text) = verify(&store);
    assert_eq!(code, 0, "{text}");

    prune(
        &["--dry-run"],
        "audit:    0 records would be removed in 0 segments",
        "the trail would start at seq 51",
    );
}

/// Edits the trail's segment files as an intruder with a script would:
/// frames are `len u32` then `len` bytes starting with `seq u64`, after a
/// 16-byte segment header (docs in src/audit/frame.rs). ACTION is one of
/// flip SEQ, delete SEQ, swap SEQ (with the next), copy SEQ (insert a
/// second copy after it), garble SEQ (its length), cut (the last frame).
const TAMPER: &str = r#"
import os, struct, sys
d, action = sys.argv[1], sys.argv[2]
seq = int(sys.argv[3]) if len(sys.argv) > 3 else None
segs = sorted(f for f in os.listdir(d) if f.endswith('.seg'))
done = False
for name in segs:
    p = os.path.join(d, name)
    b = open(p, 'rb').read()
    head, body, frames, i = b[:16], b[16:], [], 0
    while i + 4 <= len(body):
        n = struct.unpack_from('<I', body, i)[0]
        frames.append(body[i:i + 4 + n])
        i += 4 + n
    seqs = [struct.unpack_from('<Q', f, 4)[0] for f in frames]
    if action == 'cut':
        if name != segs[-1]:
            continue
        frames.pop()
    elif seq in seqs:
        k = seqs.index(seq)
        if action == 'flip':
            f = bytearray(frames[k]); f[4 + 8 + 8 + 12 + 2] ^= 0x01; frames[k] = bytes(f)
        elif action == 'delete':
            del frames[k]
        elif action == 'swap':
            frames[k], frames[k + 1] = frames[k + 1], frames[k]
        elif action == 'copy':
            frames.insert(k + 1, frames[k])
        elif action == 'garble':
            frames[k] = b'\xff' * 4 + frames[k][4:]
    else:
        continue
    open(p, 'wb').write(head + b''.join(frames))
    done = True
    break
sys.exit(0 if done else 1)
"#;

fn tamper(st: &Store, action: &str, seq: Option<u64>) {
    common::require_programs(&["python3"]);
    let mut c = Command::new("python3");
    c.arg("-c").arg(TAMPER).arg(st.audit_dir()).arg(action);
    if let Some(s) = seq {
        c.arg(s.to_string());
    }
    let out = common::run(&mut c);
    assert!(
        out.status.success(),
        "tampering ({action} {seq:?}) found nothing to change: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A trail of 20 records, closed: seq N written at `base + N - 1` seconds.
fn trail_of_20() -> (Store, i64) {
    let st = Store::new();
    let t = base_time();
    let v = st.engine(true, Arc::new(ManualClock::starting_at(t)));
    let log = v.audit().unwrap();
    for i in 0..20 {
        log.append(rec(t + i * S, who(0, None), Op::Open, "/f", 1, 0, 0))
            .unwrap();
    }
    v.shutdown().unwrap();
    (st, t)
}

/// A time `audit verify` must give for the damage it found: the bad
/// record's own, or that of the good record with that seq before or after.
enum When {
    Own(u64),
    Before(u64),
    After(u64),
}
use When::{After, Before, Own};

/// Tampers with a trail of 20 records as `action` says; `audit verify`
/// must exit with `code`, name `names`, and give each time of `when`.
fn assert_verify(action: &str, seq: Option<u64>, code: i32, names: &str, when: &[When]) {
    let (st, base) = trail_of_20();
    tamper(&st, action, seq);
    let (got, text) = verify(&st);
    assert_eq!(got, code, "{action} {seq:?}: {text}");
    assert!(
        text.contains(names),
        "{action} {seq:?} should name {names}: {text}"
    );
    let time =
        |n: u64| jiff::Timestamp::from_nanosecond((base + (n as i64 - 1) * S) as i128).unwrap();
    for w in when {
        let said = match *w {
            Own(n) => format!("when: {} (", time(n)),
            Before(n) => format!("{} (seq {n}, the nearest good record before)", time(n)),
            After(n) => format!("{} (seq {n}, the nearest good record after)", time(n)),
        };
        assert!(
            text.contains(&said),
            "{action} {seq:?} should say \"{said}\": {text}"
        );
    }
}

#[test]
fn verify_finds_a_changed_byte() {
    assert_verify("flip", Some(7), 3, "seq 7 ", &[Before(6), After(8)]);
}

#[test]
fn verify_finds_a_deleted_record() {
    assert_verify("delete", Some(7), 4, "seq 7", &[Before(6), After(8)]);
}

#[test]
fn verify_finds_two_swapped_records() {
    assert_verify("swap", Some(7), 6, "seq 8", &[Own(8)]);
}

#[test]
fn verify_finds_an_inserted_record() {
    assert_verify("copy", Some(7), 5, "after seq 7", &[Own(7)]);
}

#[test]
fn verify_finds_a_truncated_trail() {
    assert_verify("cut", None, 7, "seq 20", &[Before(19)]);
}

#[test]
fn verify_finds_an_unreadable_frame() {
    assert_verify("garble", Some(7), 8, "cannot read", &[Before(6)]);
}

#[test]
fn a_store_made_before_the_audit_section_keeps_six_years_and_its_mac() {
    let v = common::Vault::from_fixture("store-f35037b");
    let toml = std::fs::read_to_string(v.store.join("vault.toml")).unwrap();
    assert!(!toml.contains("[audit]"), "the fixture predates [audit]");
    // A prune unlocks it for writing (authenticating a format-1 policy),
    // applies the default audit retention, and leaves it without [audit].
    common::ok(
        Command::new(bin())
            .arg("prune")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    let out = common::ok(Command::new(bin()).arg("retention").arg(&v.store));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("audit-keep:")).unwrap();
    assert!(
        line.contains("6 years") && line.ends_with("(default)"),
        "{text}"
    );
    assert!(text.contains("authenticated:  yes"), "{text}");
    // Its MAC verifies at each unlock, and the trail verifies.
    v.assert_audit_verifies("of a store made before the trail");
}

#[test]
fn a_mounted_store_answers_who_opened_a_folder_and_who_was_refused() {
    use std::os::unix::fs::PermissionsExt;
    common::require_programs(&["setpriv", "sync"]);
    let v = common::Vault::mounted_with(&["-o", "allow_other"]);
    std::fs::set_permissions(v.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let (alice, alice_gid) = user_ids("phi-alice");
    let (bob, _) = user_ids("phi-bob");
    let folder = v.path("patients/4711");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::set_permissions(v.path("patients"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&folder, PermissionsExt::from_mode(0o755)).unwrap();
    let chart = folder.join("chart.txt");
    std::fs::write(&chart, b"allergies: none\n").unwrap();
    std::os::unix::fs::chown(&chart, Some(alice), Some(alice_gid)).unwrap();
    std::fs::set_permissions(&chart, PermissionsExt::from_mode(0o600)).unwrap();
    let cat = format!("cat '{}' > /dev/null", chart.display());
    common::ok_output(&common::as_user("phi-alice", &cat), "alice reads her chart");
    let refused = common::as_user("phi-bob", &cat);
    assert!(
        !refused.status.success(),
        "bob must not read alice's 0600 file"
    );
    std::fs::rename(&folder, v.path("patients/4712")).unwrap();
    common::ok(Command::new("sync").arg("-f").arg(&v.mnt));

    let audit = |args: &[&str]| -> serde_json::Value {
        let out = common::ok(
            Command::new(bin())
                .arg("audit")
                .arg(&v.store)
                .args(args)
                .args(["--format", "json", "--passphrase-file"])
                .arg(&v.pwfile),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let opens = audit(&["--path", "/patients/4711", "--op", "open"]);
    let who: Vec<(u64, String)> = opens
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["who"]["uid"].as_u64().unwrap(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(who.contains(&(alice as u64, "ok".into())), "{opens:#}");
    assert!(who.contains(&(bob as u64, "EACCES".into())), "{opens:#}");
    let refusals = audit(&["--denied", "--user", "phi-bob"]);
    let r = &refusals[0];
    assert_eq!(r["path"], "/patients/4711/chart.txt", "{refusals:#}");
    assert_eq!(r["who"]["comm"], "cat");
    assert_eq!(r["who"]["login_user"], "phi-bob");
    // The folder's new name has its rename, not the opens before it.
    let renamed = audit(&["--path", "/patients/4712"]);
    let ops: Vec<&str> = renamed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"rename") && !ops.contains(&"open"),
        "{renamed:#}"
    );

    v.assert_audit_verifies("while mounted");
}
