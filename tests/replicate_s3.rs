//! Replication to an S3-compatible remote (issue 26), against a real S3
//! server on loopback (s3s-fs, started by each test in this process): the
//! place's contract over real HTTP, the disaster drill through the binary,
//! a server that goes down while a mount works, and bad input.

mod common;
#[path = "common/s3_cli.rs"]
mod s3cli;
#[path = "common/s3.rs"]
mod s3server;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::replica::{stderr, stdout, syncfs, tree, wait_status, without_mtimes};
use common::{ok_output, Vault};
use phivault::replicate::place::{
    NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome,
    S3Credentials, S3Place, S3Spec, DEFAULT_REGION,
};
use s3cli::{mount_with_keys, on_store, phivault, recovered_tree, remote_add, replicate, scratch};
use s3server::{S3Server, ACCESS_KEY, SECRET_KEY};

const MARKER: &str = "PHI-MARKER-s3-9b1e-Doe-Jane";

// ------------------------------------------------------------ the place

fn spec(server: &S3Server, bucket: &str, prefix: &str) -> S3Spec {
    S3Spec {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: Some(server.endpoint.clone()),
        region: DEFAULT_REGION.into(),
        path_style: true,
        allow_http: true,
        object_lock: false,
    }
}

fn keys() -> S3Credentials {
    S3Credentials::new(ACCESS_KEY.into(), SECRET_KEY.into(), None)
}

fn place(server: &S3Server, bucket: &str, prefix: &str) -> S3Place {
    S3Place::create_with(&spec(server, bucket, prefix), keys())
        .unwrap_or_else(|e| panic!("open s3://{bucket}/{prefix}: {e}"))
}

fn object(kind: ObjectKind, seed: u64, len: usize) -> (ObjectName, Vec<u8>) {
    let bytes = common::pattern(seed, len);
    (ObjectName::of(kind, &bytes), bytes)
}

fn put(p: &S3Place, name: &ObjectName, bytes: &[u8]) -> PutOutcome {
    p.put_new(NamedBytes::new(name.kind, bytes), &PutOptions::default())
        .unwrap_or_else(|e| panic!("put {name}: {e}"))
}

/// (inode, mtime ns, bytes) of the file the server keeps an object in.
fn stored(server: &S3Server, bucket: &str, key: &str) -> (u64, i128, Vec<u8>) {
    let path = server.bucket_dir(bucket).join(key);
    let m = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    (m.ino(), mtime, std::fs::read(&path).unwrap())
}

#[test]
fn an_s3_place_keeps_the_place_contract() {
    let tmp = scratch();
    let server = S3Server::with_bucket(tmp.path(), "contract");
    let p = place(&server, "contract", "site/a");
    assert_eq!(
        p.describe(),
        format!("s3://contract/site/a (endpoint {})", server.endpoint)
    );

    // Create-only: the second put stores nothing and changes nothing.
    let (name, bytes) = object(ObjectKind::Data, 1, 300_000);
    assert_eq!(put(&p, &name, &bytes), PutOutcome::Created);
    let key = format!("site/a/{}", name.key());
    let before = stored(&server, "contract", &key);
    assert_eq!(before.2, bytes, "the server holds other bytes than put");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(put(&p, &name, &bytes), PutOutcome::AlreadyThere);
    assert_eq!(
        stored(&server, "contract", &key),
        before,
        "a second put rewrote the object"
    );

    // Reads.
    assert_eq!(p.get(&name).unwrap(), bytes);
    assert_eq!(p.size(&name).unwrap(), Some(bytes.len() as u64));
    assert_eq!(p.get_range(&name, 1000..1100).unwrap(), &bytes[1000..1100]);
    assert_eq!(p.get_range(&name, 5..5).unwrap(), Vec::<u8>::new());
    let past = bytes.len() as u64;
    assert!(
        matches!(
            p.get_range(&name, past - 10..past + 10),
            Err(PlaceError::Damaged { .. })
        ),
        "a range past the end is not reported short"
    );
    assert_eq!(p.retain_until(&name).unwrap(), None);
    let (absent, _) = object(ObjectKind::Data, 2, 10);
    assert_eq!(p.size(&absent).unwrap(), None);
    assert!(matches!(p.get(&absent), Err(PlaceError::NotFound(n)) if n == absent));
    assert!(matches!(
        p.retain_until(&absent),
        Err(PlaceError::NotFound(_))
    ));

    // A lock asked of a remote added without --object-lock is refused
    // rather than ignored.
    let (locked, locked_bytes) = object(ObjectKind::Data, 4, 100);
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let e = p
        .put_new(
            NamedBytes::new(locked.kind, &locked_bytes),
            &PutOptions {
                retain_until: Some(until),
            },
        )
        .unwrap_err();
    assert!(
        matches!(&e, PlaceError::Refused { message, .. } if message.contains("--object-lock")),
        "{e}"
    );
    assert!(!e.is_transient());
    assert_eq!(p.size(&locked).unwrap(), None);

    // Damage on the server is caught when read.
    let (hurt, hurt_bytes) = object(ObjectKind::Head, 5, 4096);
    put(&p, &hurt, &hurt_bytes);
    let mut flipped = hurt_bytes.clone();
    flipped[100] ^= 1;
    std::fs::write(
        server
            .bucket_dir("contract")
            .join(format!("site/a/{}", hurt.key())),
        &flipped,
    )
    .unwrap();
    let e = p.get(&hurt).unwrap_err();
    assert!(matches!(e, PlaceError::Damaged { .. }), "{e}");

    // Lists: every page (more than the server's 1000 a page), sorted, by
    // kind, only this prefix, strays skipped.
    let mut want: Vec<(ObjectName, u64)> = vec![(name, bytes.len() as u64)];
    let made: Vec<(ObjectName, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let p = &p;
                s.spawn(move || {
                    (0..260u64)
                        .map(|i| {
                            let (n, b) = object(ObjectKind::Data, 1000 + t * 1000 + i, 40);
                            assert_eq!(put(p, &n, &b), PutOutcome::Created);
                            (n, 40)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    want.extend(made);
    want.sort();
    let (key_obj, key_bytes) = object(ObjectKind::Keys, 6, 64);
    put(&p, &key_obj, &key_bytes);
    let neighbour = place(&server, "contract", "site/b");
    let (theirs, their_bytes) = object(ObjectKind::Data, 7, 64);
    put(&neighbour, &theirs, &their_bytes);
    std::fs::write(
        server.bucket_dir("contract").join("site/a/data/stray"),
        b"x",
    )
    .unwrap();
    let data = p.list(ObjectKind::Data).unwrap();
    assert_eq!(data.len(), want.len(), "objects missing from the listing");
    assert_eq!(data, want);
    assert_eq!(p.list(ObjectKind::Keys).unwrap(), vec![(key_obj, 64)]);
    assert_eq!(
        p.list(ObjectKind::Head).unwrap(),
        vec![(hurt, hurt_bytes.len() as u64)]
    );
    assert_eq!(
        neighbour.list(ObjectKind::Data).unwrap(),
        vec![(theirs, 64)]
    );

    // Delete, twice.
    p.delete(&name).unwrap();
    assert_eq!(p.size(&name).unwrap(), None);
    assert!(!server.bucket_dir("contract").join(&key).exists());
    p.delete(&name).unwrap();
    assert_eq!(neighbour.size(&theirs).unwrap(), Some(64));
}

#[test]
fn a_big_object_put_again_is_already_there() {
    // The server answers 412 to the second put before it reads the body,
    // and closes the connection under an upload bigger than the socket's
    // buffers: the answer must still be "already there".
    let tmp = scratch();
    let server = S3Server::with_bucket(tmp.path(), "big");
    let p = place(&server, "big", "");
    let (name, bytes) = object(ObjectKind::Data, 31, 40 << 20);
    assert_eq!(put(&p, &name, &bytes), PutOutcome::Created);
    let before = stored(&server, "big", &name.key());
    for _ in 0..3 {
        assert_eq!(put(&p, &name, &bytes), PutOutcome::AlreadyThere);
    }
    assert!(stored(&server, "big", &name.key()) == before, "rewritten");
    assert_eq!(p.get(&name).unwrap().len(), bytes.len());
}

#[test]
fn a_stopped_server_is_a_transient_error_soon_and_a_restarted_one_works() {
    let tmp = scratch();
    let mut server = S3Server::with_bucket(tmp.path(), "down");
    let p = place(&server, "down", "");
    let (name, bytes) = object(ObjectKind::Data, 11, 5000);
    put(&p, &name, &bytes);
    server.stop();

    let (new, new_bytes) = object(ObjectKind::Data, 12, 5000);
    type Call<'a> = Box<dyn Fn() -> Result<(), PlaceError> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "put_new",
            Box::new(|| {
                p.put_new(
                    NamedBytes::new(new.kind, &new_bytes),
                    &PutOptions::default(),
                )
                .map(drop)
            }),
        ),
        ("get", Box::new(|| p.get(&name).map(drop))),
        ("size", Box::new(|| p.size(&name).map(drop))),
        ("list", Box::new(|| p.list(ObjectKind::Data).map(drop))),
        ("delete", Box::new(|| p.delete(&name))),
    ];
    for (what, call) in &calls {
        let started = Instant::now();
        let e = call().expect_err(&format!("{what} succeeded with the server stopped"));
        let took = started.elapsed();
        println!("{what} with the server stopped: {took:?}: {e}");
        assert!(e.is_transient(), "{what}: not transient: {e}");
        assert!(
            took < Duration::from_secs(45),
            "{what} took {took:?} to fail"
        );
        assert!(!e.to_string().contains(SECRET_KEY));
    }

    // A place opened before the outage works again, with nothing lost.
    server.restart();
    assert_eq!(p.get(&name).unwrap(), bytes);
    assert_eq!(put(&p, &new, &new_bytes), PutOutcome::Created);
    assert_eq!(p.list(ObjectKind::Data).unwrap().len(), 2);
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_refused_clearly() {
    let tmp = scratch();
    let server = S3Server::with_bucket(tmp.path(), "guarded");
    let wrong_secret = S3Credentials::new(ACCESS_KEY.into(), "not-the-secret-000".into(), None);
    let unknown_key = S3Credentials::new("AKIAUNKNOWN000000000".into(), SECRET_KEY.into(), None);
    for (what, creds) in [("wrong secret", wrong_secret), ("unknown key", unknown_key)] {
        let e = S3Place::create_with(&spec(&server, "guarded", "x"), creds.clone())
            .err()
            .unwrap_or_else(|| panic!("{what}: the bucket opened"));
        println!("{what}: {e}");
        assert!(
            matches!(e, PlaceError::Refused { status: 403, .. }),
            "{what}: {e}"
        );
        assert!(!e.is_transient(), "{what}: {e}");
        assert!(!e.to_string().contains(SECRET_KEY), "{what}: {e}");
        assert!(
            !e.to_string().contains("not-the-secret"),
            "{what}: the secret is in the message: {e}"
        );
        // And on a put, not only at open.
        let p = S3Place::open_with(&spec(&server, "guarded", "x"), creds).unwrap();
        let (n, b) = object(ObjectKind::Data, 21, 100);
        let e = p
            .put_new(NamedBytes::new(n.kind, &b), &PutOptions::default())
            .unwrap_err();
        assert!(
            matches!(e, PlaceError::Refused { status: 403, .. }),
            "{what}: {e}"
        );
    }
    assert!(
        std::fs::read_dir(server.bucket_dir("guarded"))
            .unwrap()
            .next()
            .is_none(),
        "a refused request stored something"
    );

    let e = S3Place::create_with(&spec(&server, "no-such-bucket", ""), keys())
        .err()
        .expect("a missing bucket opened");
    println!("missing bucket: {e}");
    assert!(
        matches!(&e, PlaceError::Refused { status: 404, message, .. } if message.contains("no such bucket")),
        "{e}"
    );
    assert!(!e.is_transient());
}

// ------------------------------------------------------------ the binary

/// Every object in the bucket folder under `prefix` hashes to its name
/// and has the remote layout; the count of each kind.
fn check_objects(bucket_dir: &Path, prefix: &str) -> BTreeMap<String, usize> {
    let root = bucket_dir.join(prefix);
    let mut counts = BTreeMap::new();
    for p in common::files_under(bucket_dir) {
        let rel = p
            .strip_prefix(&root)
            .unwrap_or_else(|_| panic!("an object outside the prefix: {}", p.display()))
            .to_string_lossy()
            .into_owned();
        let name = ObjectName::from_key(&rel)
            .unwrap_or_else(|e| panic!("not an object of the remote layout: {e}"));
        let bytes = std::fs::read(&p).unwrap();
        assert!(name.matches(&bytes), "{rel} does not hash to its name");
        *counts.entry(name.kind.folder().to_string()).or_insert(0) += 1;
    }
    counts
}

fn write_tree(mnt: &Path, scratch: &Path) {
    std::fs::write(scratch.join("scan.bin"), common::pattern(26, 2 << 20)).unwrap();
    common::ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(format!(
                "mkdir -p ward/a lab/2026
                 for i in $(seq 1 25); do
                   printf '{MARKER} visit %s\\n' $i > ward/a/visit-$i.txt
                 done
                 cp '{}' lab/2026/scan.bin
                 echo 'first draft' > ward/chart.txt
                 echo 'second draft, {MARKER}' > ward/chart.txt
                 ln -s ../lab/2026/scan.bin ward/scan-link
                 chmod 640 ward/chart.txt",
                scratch.join("scan.bin").display()
            ))
            .current_dir(mnt),
    );
    syncfs(mnt);
}

#[test]
fn a_store_replicated_to_s3_is_recovered_from_it_alone() {
    common::require_programs(&["cp", "ln", "chmod"]);
    let mut v = Vault::mounted();
    let server = S3Server::with_bucket(v.dir.path(), "clinic");
    let url = "s3://clinic/site-a";
    write_tree(&v.mnt, v.dir.path());
    let want = without_mtimes(tree(&v.mnt));

    let out = remote_add(&v, &server.flags(), "offsite", url, &["--delay", "3600"]);
    ok_output(&out, "phivault remote add s3");
    println!("remote add: {}", stdout(&out).trim());
    let listed = common::ok(
        phivault(false)
            .arg("remote")
            .arg(&v.store)
            .args(["list", "--format", "json"]),
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["remotes"][0]["url"], url, "{listed:#}");
    assert_eq!(listed["remotes"][0]["endpoint"], server.endpoint.as_str());
    let config = std::fs::read_to_string(v.store.join("replica/remotes.toml")).unwrap();
    assert!(
        !config.contains(SECRET_KEY) && !config.contains(ACCESS_KEY),
        "{config}"
    );
    v.unmount();

    let said = replicate(&v);
    println!("replicate: {}", said.trim());
    assert!(said.contains("offsite: shipped"), "{said}");
    let counts = check_objects(&server.bucket_dir("clinic"), "site-a");
    println!("objects on the server: {counts:?}");
    assert!(
        counts.get("keys") >= Some(&1) && counts.get("heads") >= Some(&1),
        "{counts:?}"
    );
    assert!(counts.get("data") >= Some(&1), "{counts:?}");
    common::assert_absent(
        &server.bucket_dir("clinic"),
        &[MARKER.as_bytes(), b"visit-1.txt", b"chart.txt"],
        "the bucket",
    );
    let again = replicate(&v);
    assert!(again.contains("up to date"), "{again}");
    // The other readers of a remote read S3 the same way.
    for words in [
        &["verify", "--read-data", "--remote", "offsite"][..],
        &["audit", "verify", "--remote", "offsite"][..],
    ] {
        let (cmd, rest) = match words[0] {
            "audit" => (&words[..2], &words[2..]),
            _ => (&words[..1], &words[1..]),
        };
        on_store(&v, cmd, rest);
    }

    // Without the keys in the environment, recover says what is missing.
    let home = scratch();
    let out = common::run(
        phivault(false)
            .arg("recover")
            .arg(url)
            .arg(home.path().join("store"))
            .args(server.flags())
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    assert!(!out.status.success(), "recovered without credentials");
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    assert!(!home.path().join("store").exists());

    let mut new = recovered_tree(&server.flags(), url, &v.pwfile, &want, "recovered from S3");
    assert_eq!(
        std::fs::read(new.path("lab/2026/scan.bin")).unwrap(),
        common::pattern(26, 2 << 20)
    );
    new.unmount();
    new.assert_audit_verifies("of the store recovered from S3");
}

#[test]
fn a_stopped_s3_server_grows_the_lag_and_the_mount_goes_on() {
    common::require_programs(&["cp", "dd"]);
    let v = Vault::init();
    let mut server = S3Server::with_bucket(v.dir.path(), "lagging");
    let url = "s3://lagging";
    let out = remote_add(&v, &server.flags(), "s3", url, &["--delay", "1"]);
    ok_output(&out, "phivault remote add s3");
    let mounted = mount_with_keys(&v);

    // Shipping works while the server is up.
    write_tree(&v.mnt, v.dir.path());
    wait_status(&v, "s3", 60, "shipped the first tree", |st| {
        st["pending"]["objects"] == 0 && st["last_success"].is_string()
    });

    server.stop();
    let started = Instant::now();
    common::ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(
                "mkdir during-outage
                 for i in $(seq 1 20); do
                   dd if=/dev/urandom of=during-outage/f$i bs=64k count=4 status=none
                 done
                 cp -r ward during-outage/ward-copy",
            )
            .current_dir(&v.mnt),
    );
    syncfs(&v.mnt);
    let took = started.elapsed();
    println!("writes with the server down took {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "the writes took {took:?} with the server down"
    );
    let want = without_mtimes(tree(&v.mnt));

    let down = wait_status(&v, "s3", 60, "an error and a lag", |st| {
        st["last_error"].is_object() && st["pending"]["objects"].as_u64() > Some(0)
    });
    println!("status with the server down: {down:#}");
    let message = down["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot be reached"), "{message}");
    assert!(!message.contains(SECRET_KEY), "{message}");

    server.restart();
    let up = wait_status(&v, "s3", 60, "caught up after the restart", |st| {
        st["pending"]["objects"] == 0 && st["last_error"].is_null()
    });
    println!("status once caught up: {up:#}");
    mounted.unmount();

    // What was written during the outage is on the remote.
    let mut new = recovered_tree(
        &server.flags(),
        url,
        &v.pwfile,
        &want,
        "recovered after the outage",
    );
    new.unmount();
    check_objects(&server.bucket_dir("lagging"), "");
}

/// The command failed, saying so in a message that mentions `needle`,
/// and without the secret.
fn assert_refused(out: &Output, what: &str, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: succeeded\n{}", stdout(out));
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: the message does not mention {needle:?}: {err}"
    );
    assert!(!err.contains(SECRET_KEY), "{what}: the secret is in: {err}");
}

#[test]
fn bad_s3_remotes_are_refused_and_nothing_is_recorded() {
    let v = Vault::init();
    let server = S3Server::with_bucket(v.dir.path(), "shared");

    let out = remote_add(&v, &server.flags(), "r", "s3://missing-bucket/x", &[]);
    assert_refused(&out, "a missing bucket", "no such bucket");

    let out = common::run(
        phivault(true)
            .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
            .arg("remote")
            .arg(&v.store)
            .args(["add", "r", "s3://shared/x"])
            .args(server.flags())
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    assert_refused(&out, "wrong credentials", "access denied");
    assert!(!stderr(&out).contains("wrong-secret-value"));

    let out = common::run(
        phivault(false)
            .arg("remote")
            .arg(&v.store)
            .args(["add", "r", "s3://shared/x"])
            .args(server.flags())
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    assert_refused(&out, "no credentials", "AWS_ACCESS_KEY_ID");

    let out = remote_add(&v, &server.flags(), "r", "s3://Bad_Bucket", &[]);
    assert_refused(&out, "a bad bucket name", "bucket name");
    let out = common::run(
        phivault(true)
            .arg("remote")
            .arg(&v.store)
            .args(["add", "r", "s3://shared/x", "--endpoint", &server.endpoint])
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    assert_refused(&out, "http without --allow-http", "--allow-http");
    let dir = v.dir.path().join("offsite");
    let out = remote_add(&v, &server.flags(), "r", dir.to_str().unwrap(), &[]);
    assert_refused(&out, "S3 options on a directory", "s3://");
    assert!(!dir.exists(), "a refused directory remote was made");

    let listed = common::ok(phivault(false).arg("remote").arg(&v.store).arg("list"));
    assert!(
        stdout(&listed).contains("no remotes"),
        "{}",
        stdout(&listed)
    );
    assert!(
        std::fs::read_dir(server.bucket_dir("shared"))
            .unwrap()
            .next()
            .is_none(),
        "a refused remote stored something"
    );

    // A prefix that holds another store's replica is refused; another
    // prefix of the same bucket is fine.
    ok_output(
        &remote_add(&v, &server.flags(), "r", "s3://shared/x", &[]),
        "remote add",
    );
    replicate(&v);
    let other = Vault::init();
    let out = remote_add(&other, &server.flags(), "r", "s3://shared/x", &[]);
    assert_refused(&out, "another store's prefix", "another store");
    ok_output(
        &remote_add(&other, &server.flags(), "r", "s3://shared/y", &[]),
        "remote add on another prefix",
    );
}

/// (inode, mtime ns) of every object file in `bucket_dir`: s3s-fs writes
/// an object to a temporary file and renames it in, so an overwrite shows
/// as a new inode.
fn identities(bucket_dir: &Path) -> BTreeMap<PathBuf, (u64, i128)> {
    common::files_under(bucket_dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            (p, (m.ino(), mtime))
        })
        .collect()
}

#[test]
fn replication_to_s3_killed_anywhere_reruns_to_a_complete_remote() {
    let mut v = Vault::mounted();
    let server = S3Server::with_bucket(v.dir.path(), "killed");
    let url = "s3://killed/k";
    let bucket = server.bucket_dir("killed");
    let mut rng = common::Rng(0x53_2026);
    ok_output(
        &remote_add(&v, &server.flags(), "s3", url, &["--delay", "3600"]),
        "remote add",
    );
    let mut seen: BTreeMap<PathBuf, (u64, i128)> = BTreeMap::new();
    let mut cut_short = 0;
    // Kills from 5 ms into a run to a little past the last run that
    // finished: all along a pass on any machine.
    let mut last_ms: Option<u64> = None;
    for round in 0..8u64 {
        if round > 0 {
            v.mount(&[]);
        }
        let dir = v.path(&format!("round{round}"));
        std::fs::create_dir(&dir).unwrap();
        for i in 0..20u64 {
            let len = 1 + rng.below(300_000) as usize;
            std::fs::write(
                dir.join(format!("f{i}")),
                common::pattern(round * 100 + i, len),
            )
            .unwrap();
        }
        syncfs(&v.mnt);
        v.unmount();
        // Until a run has finished, the span doubles each round.
        let span = last_ms.map_or(300 << round.min(4), |l| (l * 6 / 5).clamp(1, 5000));
        let delay = Duration::from_millis(5 + rng.below(span));
        let started = Instant::now();
        let mut child = phivault(true)
            .arg("replicate")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut finished = false;
        while started.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                last_ms = Some(started.elapsed().as_millis() as u64);
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if !finished {
            cut_short += 1;
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
        let now = identities(&bucket);
        for (path, first) in &seen {
            assert_eq!(
                now.get(path),
                Some(first),
                "round {round}: {} was overwritten or removed",
                path.display()
            );
        }
        println!(
            "round {round}: {} after {delay:?}, {} objects on the server",
            if finished { "finished" } else { "killed" },
            now.len()
        );
        seen = now;
        check_objects(&bucket, "k");
    }
    println!("{cut_short} of 8 runs killed");
    assert!(cut_short >= 2, "only {cut_short} runs were cut short");

    let said = replicate(&v);
    println!("rerun: {}", said.trim());
    v.mount(&[]);
    let want = without_mtimes(tree(&v.mnt));
    v.unmount();
    let mut new = recovered_tree(
        &server.flags(),
        url,
        &v.pwfile,
        &want,
        "recovered after the kills",
    );
    new.unmount();
    new.assert_audit_verifies("after killed passes to S3");
}
