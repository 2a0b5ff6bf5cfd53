//! S3 Object Lock on a remote (issue 26), against moto's S3 server on
//! loopback (the in-process s3s-fs server has no Object Lock): every object
//! is locked in COMPLIANCE mode for the retention lock and a day, the
//! server refuses to delete it, a bucket without Object Lock is refused at
//! `remote add`, and the store recovers from the locked bucket, also after
//! someone hid its objects behind delete markers.

mod common;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/s3_cli.rs"]
mod s3cli;
#[path = "common/s3.rs"]
mod s3server;

use common::replica::{stderr, stdout, tree, without_mtimes};
use common::{ok_output, Vault};
use moto::MotoServer;
use s3cli::{on_store, phivault, recovered_tree, remote_add, replicate};

const MARKER: &str = "PHI-MARKER-lock-51c3-Roe-Richard";
const LOCK_DAYS: i64 = 30;

#[test]
fn an_object_lock_remote_locks_every_object_and_recovers() {
    let moto = MotoServer::start();
    moto.boto3(
        "s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)\n\
         s3.create_bucket(Bucket='plain')",
    );
    let flags = moto.flags();
    let mut v = Vault::init();
    common::ok(
        phivault(false)
            .arg("retention")
            .arg(&v.store)
            .args(["set", "--lock-days", &LOCK_DAYS.to_string()])
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );

    // Bad input: nothing recorded.
    let out = remote_add(&v, &flags, "off", "s3://plain/clinic", &["--object-lock"]);
    assert!(
        !out.status.success(),
        "a bucket without Object Lock was added"
    );
    assert!(
        stderr(&out).contains("does not have Object Lock enabled"),
        "{}",
        stderr(&out)
    );
    let dir = v.dir.path().join("offsite");
    let out = remote_add(&v, &[], "off", dir.to_str().unwrap(), &["--object-lock"]);
    assert!(!out.status.success(), "a directory took --object-lock");
    assert!(stderr(&out).contains("--object-lock"), "{}", stderr(&out));
    let listed = common::ok(phivault(false).arg("remote").arg(&v.store).arg("list"));
    assert!(
        stdout(&listed).contains("no remotes"),
        "{}",
        stdout(&listed)
    );

    v.mount(&[]);
    std::fs::create_dir(v.path("ward")).unwrap();
    for i in 0..10 {
        let text = format!("{MARKER} note {i}\n").repeat(200);
        std::fs::write(v.path(&format!("ward/note-{i}.txt")), text).unwrap();
    }
    std::fs::write(v.path("ward/scan.bin"), common::pattern(51, 3 << 20)).unwrap();
    std::fs::write(v.path("ward/note-0.txt"), "second version\n").unwrap();
    let want = without_mtimes(tree(&v.mnt));
    v.unmount();

    let url = "s3://locked/clinic";
    ok_output(
        &remote_add(
            &v,
            &flags,
            "off",
            url,
            &["--object-lock", "--delay", "3600"],
        ),
        "remote add --object-lock",
    );
    let listed = common::ok(phivault(false).arg("remote").arg(&v.store).arg("list"));
    assert!(
        stdout(&listed).contains("object lock"),
        "{}",
        stdout(&listed)
    );
    let shipped_at = jiff::Timestamp::now().as_second();
    let said = replicate(&v);
    assert!(said.contains("off: shipped"), "{said}");
    let st = common::replica::remote_status(&v, "off");
    assert_eq!(st["object_lock"], true, "{st:#}");
    assert!(
        st["history_from"].is_string() && st["history_from"] == st["last_snapshot"],
        "one pass, a snapshot: {st:#}"
    );

    // Every object, as a client phivault did not write sees it.
    let locks = moto.boto3(
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='locked'):\n\
         \x20   for o in page.get('Contents', []):\n\
         \x20       h = s3.head_object(Bucket='locked', Key=o['Key'])\n\
         \x20       until = h.get('ObjectLockRetainUntilDate')\n\
         \x20       print(o['Key'], h.get('ObjectLockMode'), int(until.timestamp()) if until else 0)",
    );
    let hold = (LOCK_DAYS + 1) * 86_400;
    let mut kinds = std::collections::BTreeSet::new();
    for line in locks.lines() {
        let [key, mode, until] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("unexpected line {line:?}");
        };
        assert!(key.starts_with("clinic/"), "{key} outside the prefix");
        kinds.insert(key.split('/').nth(1).unwrap().to_string());
        assert_eq!(mode, "COMPLIANCE", "{key}");
        let until: i64 = until.parse().unwrap();
        assert!(
            until >= shipped_at + hold - 60 && until <= shipped_at + hold + 3600,
            "{key} is locked until {until}, not about {} (the lock and a day)",
            shipped_at + hold
        );
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["data", "heads", "keys"],
        "{locks}"
    );

    // The server refuses to delete a locked version, even to these keys.
    let refused = moto.boto3(
        "v = s3.list_object_versions(Bucket='locked', Prefix='clinic/data/')['Versions'][0]\n\
         try:\n\
         \x20   s3.delete_object(Bucket='locked', Key=v['Key'], VersionId=v['VersionId'])\n\
         \x20   print('deleted')\n\
         except Exception as e:\n\
         \x20   print('refused', e)",
    );
    assert!(refused.starts_with("refused"), "{refused}");

    // Nothing changed: a second pass ships nothing and locks nothing anew.
    assert!(replicate(&v).contains("up to date"));

    let mut new = recovered_tree(
        &flags,
        url,
        &v.pwfile,
        &want,
        "recovered from a locked bucket",
    );
    new.unmount();

    // Someone holding the bucket's keys hides every object behind a delete
    // marker (a plain DELETE, which Object Lock allows). The locked
    // versions stay: the remote still verifies, and recovery reads through
    // the markers.
    let hidden = moto.boto3(
        "keys = [o['Key'] for page in s3.get_paginator('list_objects_v2').paginate(Bucket='locked')\n\
         \x20       for o in page.get('Contents', [])]\n\
         for k in keys:\n\
         \x20   s3.delete_object(Bucket='locked', Key=k)\n\
         print(len(keys), s3.list_objects_v2(Bucket='locked')['KeyCount'])",
    );
    let counts: Vec<usize> = hidden
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] > 3 && counts[1] == 0,
        "not all hidden: {hidden}"
    );
    on_store(&v, &["verify"], &["--remote", "off", "--read-data"]);
    let mut again = recovered_tree(
        &flags,
        url,
        &v.pwfile,
        &want,
        "recovered through delete markers",
    );
    again.unmount();
}

/// The place itself: a put locks until the date asked, `retain_until` reads
/// it back, a delete before it is `Locked` and removes nothing, and after it
/// removes every version of the object, not just hide it behind a delete
/// marker.
#[test]
fn a_locked_object_is_deleted_only_after_its_date_and_then_whole() {
    use phivault::replicate::place::{
        NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome,
        S3Credentials, S3Place, S3Spec,
    };
    let moto = MotoServer::start();
    moto.boto3("s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)");
    let spec = S3Spec {
        bucket: "locked".into(),
        prefix: "p".into(),
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        path_style: true,
        allow_http: true,
        object_lock: true,
    };
    let keys = S3Credentials::new("moto".into(), "moto".into(), None);
    let p = S3Place::create_with(&spec, keys).unwrap();
    assert!(p.locks_objects());
    let bytes = common::pattern(7, 5000);
    let name = ObjectName::of(ObjectKind::Data, &bytes);
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let o = PutOptions {
        retain_until: Some(until),
    };
    assert_eq!(
        p.put_new(NamedBytes::new(name.kind, &bytes), &o).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        p.put_new(NamedBytes::new(name.kind, &bytes), &o).unwrap(),
        PutOutcome::AlreadyThere
    );
    let locked = p.retain_until(&name).unwrap().expect("a lock date");
    assert!(
        locked >= until && locked.as_second() <= until.as_second() + 1,
        "{locked}"
    );

    let e = p.delete(&name).unwrap_err();
    assert!(matches!(e, PlaceError::Locked { .. }), "{e}");
    assert_eq!(p.get(&name).unwrap(), bytes, "still there");

    std::thread::sleep(std::time::Duration::from_secs(6));
    p.delete(&name).unwrap();
    assert_eq!(p.size(&name).unwrap(), None);
    let left = moto.boto3(&format!(
        "v = s3.list_object_versions(Bucket='locked', Prefix='p/{}')\n\
         print(len(v.get('Versions', [])) + len(v.get('DeleteMarkers', [])))",
        name.key()
    ));
    assert_eq!(left.trim(), "0", "versions or markers left behind");
    p.delete(&name).expect("deleting what is gone is no error");

    // A bucket without Object Lock is refused for a locked place.
    moto.boto3("s3.create_bucket(Bucket='plain')");
    let plain = S3Spec {
        bucket: "plain".into(),
        ..spec
    };
    let keys = S3Credentials::new("moto".into(), "moto".into(), None);
    let e = S3Place::create_with(&plain, keys).err().expect("refused");
    assert!(
        e.to_string().contains("does not have Object Lock enabled"),
        "{e}"
    );
}
