//! The audit trail as a real mount writes it: who opened what (uid, gid,
//! process, login uid through su and sudo), refused opens, the bytes a
//! handle wrote, one record with its path for every change to the tree,
//! and no record lost to a kill -9 of the daemon.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{require_programs, user_ids, Vault};
use phivault::audit::{Op, Query, Record};

/// Every record of the store's trail, read while it is mounted (a
/// read-only open, as `phivault audit` does).
fn records(v: &Vault) -> Vec<Record> {
    use phivault::crypto::Passphrase;
    use phivault::store::StoreDir;
    use phivault::vault::{read_config, unlock_master, OpenOptions};
    let store = StoreDir::new(&v.store);
    let pass = Passphrase::new(common::PASSPHRASE.as_bytes().to_vec());
    let (master, _) = unlock_master(&read_config(&store).unwrap(), &pass).unwrap();
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let engine = phivault::vault::Vault::open(&store, &master, &opts).unwrap();
    let reader = engine.audit_reader().expect("the store's audit trail");
    reader.query(&Query::default()).expect("reading the trail")
}

/// The records of `op` on `path`.
fn of<'a>(recs: &'a [Record], op: Op, path: &str) -> Vec<&'a Record> {
    recs.iter()
        .filter(|r| r.op == op && r.path == path.as_bytes())
        .collect()
}

/// The one record of `op` on `path`; fails listing the trail otherwise.
fn one<'a>(recs: &'a [Record], op: Op, path: &str) -> &'a Record {
    let found = of(recs, op, path);
    assert_eq!(
        found.len(),
        1,
        "want one {op:?} of {path}, trail:\n{}",
        listing(recs)
    );
    found[0]
}

fn listing(recs: &[Record]) -> String {
    recs.iter()
        .map(|r| {
            format!(
                "{} {:?} {} -> {:?} uid={} login={:?} comm={} result={} {:?}\n",
                r.seq,
                r.op,
                String::from_utf8_lossy(&r.path),
                r.target
                    .as_ref()
                    .map(|t| String::from_utf8_lossy(t).into_owned()),
                r.who.uid,
                r.who.login_uid,
                r.who.comm,
                r.result,
                r.detail
            )
        })
        .collect()
}

/// The node a recorded mkdir made.
fn mkdir_parent(recs: &[Record], path: &str) -> u64 {
    one(recs, Op::Mkdir, path).ino
}

/// A mount other users can reach: allow_other, and the test's private
/// directory opened for them to pass through.
fn shared_mount() -> Vault {
    require_programs(&["setpriv"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    std::fs::set_permissions(v.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&v.mnt, PermissionsExt::from_mode(0o777)).unwrap();
    v
}

/// Runs `script` with sh as `user` (root if None), after setting the login
/// uid to `login`, as pam_loginuid does at a login: it stays through su,
/// sudo and setpriv.
fn run_as(user: Option<&str>, login: u32, script: &str) -> Output {
    let switch = match user {
        Some(u) => {
            let (uid, gid) = user_ids(u);
            format!("setpriv --reuid={uid} --regid={gid} --init-groups")
        }
        None => String::new(),
    };
    common::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo {login} > /proc/self/loginuid || exit 97; exec {switch} sh -c \"$0\""
            ))
            .arg(script),
    )
}

fn cat_path() -> String {
    let out = common::sh("readlink -f \"$(command -v cat)\"");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn opens_by_two_users_name_each_with_their_process_and_login_uid() {
    let v = shared_mount();
    let f = v.path("chart.txt");
    std::fs::write(&f, b"blood pressure 120/80\n").unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o644)).unwrap();
    let (alice, alice_gid) = user_ids("phi-alice");
    let (bob, bob_gid) = user_ids("phi-bob");
    let script = format!("cat '{}' > /dev/null", f.display());
    for (user, login) in [
        (Some("phi-alice"), alice),
        (Some("phi-bob"), bob),
        (None, alice),
    ] {
        let out = run_as(user, login, &script);
        common::ok_output(&out, &format!("cat as {user:?}"));
    }
    let recs = records(&v);
    let opens = of(&recs, Op::Open, "/chart.txt");
    let by = |uid: u32| -> Vec<&&Record> { opens.iter().filter(|r| r.who.uid == uid).collect() };
    let cat = cat_path();
    for (uid, gid, login) in [
        (alice, alice_gid, alice),
        (bob, bob_gid, bob),
        (0, 0, alice),
    ] {
        let mine = by(uid);
        assert_eq!(mine.len(), 1, "opens by uid {uid}:\n{}", listing(&recs));
        let who = &mine[0].who;
        assert_eq!((who.gid, who.login_uid), (gid, Some(login)), "{who:?}");
        assert_eq!(who.comm, "cat", "{who:?}");
        assert_eq!(who.exe, cat, "{who:?}");
        assert!(who.pid != 0 && who.session_id.is_some(), "{who:?}");
        assert_eq!(mine[0].result, 0);
        assert_eq!(
            mine[0].detail.flags.map(|f| f & libc::O_ACCMODE),
            Some(libc::O_RDONLY)
        );
    }
}

#[test]
fn a_refused_open_of_another_users_file_is_recorded_with_eacces() {
    let v = shared_mount();
    let (alice, _) = user_ids("phi-alice");
    let (bob, _) = user_ids("phi-bob");
    let out = run_as(
        Some("phi-alice"),
        alice,
        &format!(
            "umask 077; echo private > '{}'",
            v.path("alice.txt").display()
        ),
    );
    common::ok_output(&out, "alice writes her file");
    let out = run_as(
        Some("phi-bob"),
        bob,
        &format!("cat '{}'", v.path("alice.txt").display()),
    );
    assert!(!out.status.success(), "bob read alice's 0600 file");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&v);
    let refused: Vec<_> = of(&recs, Op::Open, "/alice.txt")
        .into_iter()
        .filter(|r| r.who.uid == bob)
        .collect();
    assert_eq!(refused.len(), 1, "{}", listing(&recs));
    assert_eq!(refused[0].result, libc::EACCES);
    assert_eq!(refused[0].who.login_uid, Some(bob));
    assert!(refused[0].denied());
}

#[test]
fn refused_creates_and_searches_are_recorded_with_their_paths() {
    let v = shared_mount();
    let (alice, _) = user_ids("phi-alice");
    let (bob, _) = user_ids("phi-bob");
    let script = format!(
        "cd '{}' && mkdir open shut && chmod 755 open && chmod 700 shut && touch shut/x",
        v.mnt.display()
    );
    common::ok_output(&run_as(Some("phi-alice"), alice, &script), "alice's dirs");
    let tries = format!(
        "cd '{}'; mkdir open/new; touch open/file; cat shut/x; true",
        v.mnt.display()
    );
    common::ok_output(&run_as(Some("phi-bob"), bob, &tries), "bob tries");
    let recs = records(&v);
    let mkdir = one(&recs, Op::Mkdir, "/open/new");
    assert_eq!(
        (mkdir.who.uid, mkdir.result, mkdir.ino),
        (bob, libc::EACCES, 0)
    );
    let create = one(&recs, Op::Create, "/open/file");
    assert_eq!((create.who.uid, create.result), (bob, libc::EACCES));
    // One record per LOOKUP that reached the daemon (the kernel may ask
    // twice in one path walk).
    let searches = of(&recs, Op::Search, "/shut/x");
    assert!(!searches.is_empty(), "{}", listing(&recs));
    for s in searches {
        assert_eq!(
            (s.who.uid, s.result, s.parent),
            (bob, libc::EACCES, mkdir_parent(&recs, "/shut"))
        );
        assert_eq!(s.who.comm, "cat");
    }
}

#[test]
fn a_handle_that_wrote_closes_with_its_byte_count() {
    let v = shared_mount();
    let (alice, _) = user_ids("phi-alice");
    let f = v.path("notes.bin");
    let out = run_as(
        Some("phi-alice"),
        alice,
        &format!("head -c 123457 /dev/urandom > '{}'", f.display()),
    );
    common::ok_output(&out, "alice writes");
    // A read-only open writes nothing: no CLOSE record for it.
    std::fs::read(&f).unwrap();
    let recs = records(&v);
    let created = one(&recs, Op::Create, "/notes.bin");
    assert_eq!(created.who.uid, alice);
    assert_eq!(created.detail.mode.map(|m| m & 0o777), Some(0o666));
    let close = one(&recs, Op::Close, "/notes.bin");
    assert_eq!(close.detail.written, Some(123_457), "{}", listing(&recs));
    assert_eq!((close.who.uid, close.who.login_uid), (alice, Some(alice)));
    // The shell opened it for head's output.
    assert_eq!(close.who.comm, "sh");
    assert_eq!(close.ino, created.ino);
    assert!(close.seq > created.seq);
}

#[test]
fn each_change_gives_one_record_with_its_path() {
    require_programs(&["setfattr", "truncate", "touch"]);
    let v = Vault::mounted();
    let p = |rel: &str| v.path(rel);
    std::fs::create_dir(p("ward")).unwrap();
    std::fs::write(p("ward/a.txt"), b"x").unwrap();
    std::fs::set_permissions(p("ward/a.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(p("ward/a.txt"), Some(1234), Some(5678)).unwrap();
    common::ok(
        Command::new("touch")
            .args(["-d", "2020-01-02 03:04:05Z"])
            .arg(p("ward/a.txt")),
    );
    common::ok(
        Command::new("truncate")
            .args(["-s", "4096"])
            .arg(p("ward/a.txt")),
    );
    common::ok(
        Command::new("setfattr")
            .args(["-n", "user.tag", "-v", "x"])
            .arg(p("ward/a.txt")),
    );
    common::ok(
        Command::new("setfattr")
            .args(["-x", "user.tag"])
            .arg(p("ward/a.txt")),
    );
    std::fs::hard_link(p("ward/a.txt"), p("ward/hard.txt")).unwrap();
    std::os::unix::fs::symlink("a.txt", p("ward/soft")).unwrap();
    std::fs::rename(p("ward/a.txt"), p("ward/b.txt")).unwrap();
    std::fs::rename(p("ward"), p("wing")).unwrap();
    std::fs::remove_file(p("wing/b.txt")).unwrap();
    std::fs::create_dir(p("wing/sub")).unwrap();
    std::fs::remove_dir(p("wing/sub")).unwrap();

    let recs = records(&v);
    let mkdir = one(&recs, Op::Mkdir, "/ward");
    assert!(mkdir.ino != 0 && mkdir.parent == 1);
    assert_eq!(mkdir.detail.mode.map(|m| m & 0o777), Some(0o777));
    let file = one(&recs, Op::Create, "/ward/a.txt");
    assert_eq!(
        one(&recs, Op::Chmod, "/ward/a.txt")
            .detail
            .mode
            .map(|m| m & 0o7777),
        Some(0o640)
    );
    let chown = one(&recs, Op::Chown, "/ward/a.txt");
    assert_eq!(
        (chown.detail.uid, chown.detail.gid),
        (Some(1234), Some(5678))
    );
    let utimes = one(&recs, Op::Utimes, "/ward/a.txt");
    assert_eq!(utimes.detail.mtime, Some(1_577_934_245_000_000_000));
    assert_eq!(
        one(&recs, Op::Truncate, "/ward/a.txt").detail.size,
        Some(4096)
    );
    let set = one(&recs, Op::SetXattr, "/ward/a.txt");
    assert_eq!(set.detail.xattr.as_deref(), Some(&b"user.tag"[..]));
    assert_eq!(
        one(&recs, Op::RemoveXattr, "/ward/a.txt")
            .detail
            .xattr
            .as_deref(),
        Some(&b"user.tag"[..])
    );
    let link = one(&recs, Op::Link, "/ward/a.txt");
    assert_eq!(link.target.as_deref(), Some(&b"/ward/hard.txt"[..]));
    assert_eq!(link.ino, file.ino);
    let symlink = one(&recs, Op::Symlink, "/ward/soft");
    assert_eq!(symlink.target.as_deref(), Some(&b"a.txt"[..]));
    let rename = one(&recs, Op::Rename, "/ward/a.txt");
    assert_eq!(rename.target.as_deref(), Some(&b"/ward/b.txt"[..]));
    assert_eq!(rename.ino, file.ino);
    let moved = one(&recs, Op::Rename, "/ward");
    assert_eq!(moved.target.as_deref(), Some(&b"/wing"[..]));
    assert_eq!(moved.ino, mkdir.ino);
    // After the directory moved, paths below it are named anew.
    let unlink = one(&recs, Op::Unlink, "/wing/b.txt");
    assert_eq!(
        (unlink.ino, unlink.parent, unlink.result),
        (file.ino, mkdir.ino, 0)
    );
    one(&recs, Op::Mkdir, "/wing/sub");
    one(&recs, Op::Rmdir, "/wing/sub");
    for r in &recs {
        assert!(r.time_ns > 0 && !r.who.comm.is_empty(), "{r:?}");
    }
}

#[test]
fn ten_thousand_opens_survive_a_kill_9_of_the_daemon() {
    let mut v = Vault::mounted();
    let f = v.path("often.txt");
    std::fs::write(&f, b"x").unwrap();
    for _ in 0..10_000 {
        drop(std::fs::File::open(&f).unwrap());
    }
    common::sigkill(v.daemon_pid());
    common::ok(Command::new("umount").arg("-l").arg(&v.mnt));
    v.forget_mount();
    v.mount(&[]);
    let recs = records(&v);
    assert_eq!(of(&recs, Op::Open, "/often.txt").len(), 10_000);
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps in the sequence"
    );
}

#[test]
fn a_read_of_the_past_names_its_snapshot_and_the_path_then() {
    let v = Vault::mounted();
    std::fs::create_dir(v.path("ward")).unwrap();
    std::fs::write(v.path("ward/old.txt"), b"then").unwrap();
    // A snapshot names a second that has passed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let sec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    std::fs::rename(v.path("ward"), v.path("wing")).unwrap();
    let out = common::sh(&format!("TZ=UTC date -d @{sec} +@GMT-%Y.%m.%d-%H.%M.%S"));
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let then = v.path(&format!(".snapshots/{name}/ward/old.txt"));
    assert_eq!(std::fs::read(&then).unwrap(), b"then");
    let recs = records(&v);
    let open = one(&recs, Op::Open, &format!("/.snapshots/{name}/ward/old.txt"));
    assert_eq!((open.result, open.who.uid), (0, 0));
}

#[test]
fn an_outsider_of_allow_group_is_refused_and_recorded() {
    require_programs(&["setpriv"]);
    let v = Vault::mounted_with(&["-o", "allow_other", "--allow-group", "phi-staff"]);
    std::fs::set_permissions(v.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(v.path("open.txt"), b"x").unwrap();
    std::fs::set_permissions(v.path("open.txt"), PermissionsExt::from_mode(0o644)).unwrap();
    let (carol, _) = user_ids("phi-carol");
    let out = run_as(
        Some("phi-carol"),
        carol,
        &format!("cat '{}'", v.path("open.txt").display()),
    );
    assert!(!out.status.success(), "phi-carol is not in phi-staff");
    let recs = records(&v);
    let refused: Vec<_> = recs.iter().filter(|r| r.who.uid == carol).collect();
    assert!(!refused.is_empty(), "{}", listing(&recs));
    for r in refused {
        assert_eq!(r.result, libc::EACCES, "{}", listing(&recs));
        assert_eq!(r.who.login_uid, Some(carol));
    }
}
