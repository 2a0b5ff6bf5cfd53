//! vault.toml as a user and an attacker meet it: key-slot changes that run
//! at the same time (mounted or not) lose nothing, the retention policy is
//! authenticated with the master key and a hand edit of it is refused, and
//! a store made by the previous release (format 1) opens and is upgraded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{bin, Vault};
use phivault::crypto::Passphrase;
use phivault::store::StoreDir;
use phivault::vault::{unlock_store, UnlockFor};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_pw(dir: &Path, name: &str, pass: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pass}\n")).unwrap();
    p
}

/// Whether `pass` opens a key slot of `store` (through the engine, without a mount).
fn opens(store: &Path, pass: &str) -> bool {
    unlock_store(
        &StoreDir::new(store),
        &Passphrase::new(pass.as_bytes().to_vec()),
        UnlockFor::Reading,
    )
    .is_ok()
}

fn slot_ids(store: &Path) -> Vec<u32> {
    let out = common::ok(Command::new(bin()).arg("passwd").arg(store).arg("--list"));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn retention(store: &Path, pwfile: &Path, args: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg("retention")
            .arg(store)
            .arg("set")
            .arg("--passphrase-file")
            .arg(pwfile)
            .args(args)
            .stdin(Stdio::null()),
    )
}

fn assert_refused(out: &Output, what: &str, must_mention: &[&str]) {
    assert!(!out.status.success(), "{what} succeeded");
    let err = stderr(out);
    for m in must_mention {
        assert!(
            err.contains(m),
            "{what}: the error does not mention {m:?}:\n{err}"
        );
    }
}

/// Runs `passwd --add` from `n` processes at once; returns the passphrases added.
fn add_passphrases_at_once(v: &Vault, n: usize, tag: &str) -> Vec<String> {
    let passes: Vec<String> = (0..n)
        .map(|i| format!("{tag} shift passphrase {i} for the records room"))
        .collect();
    let children: Vec<_> = passes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let file = write_pw(v.dir.path(), &format!("{tag}-{i}"), p);
            Command::new(bin())
                .arg("passwd")
                .arg(&v.store)
                .arg("--passphrase-file")
                .arg(&v.pwfile)
                .arg("--add")
                .arg("--new-passphrase-file")
                .arg(file)
                .args(["--kdf-memory-mib", "8", "--kdf-iterations", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        common::ok_output(&out, "passwd --add");
    }
    passes
}

#[test]
fn concurrent_passwd_adds_keep_every_slot_mounted_or_not() {
    let mut v = Vault::init();
    let first = add_passphrases_at_once(&v, 8, "night");
    let ids = slot_ids(&v.store);
    assert_eq!(ids.len(), 9, "a concurrent --add lost a slot: {ids:?}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "two slots share an id: {ids:?}");

    // While mounted, the daemon holds the store lock: the edits still serialize.
    v.mount(&[]);
    std::fs::write(v.path("chart.txt"), b"written before the passwd runs").unwrap();
    let second = add_passphrases_at_once(&v, 8, "day");
    assert_eq!(
        slot_ids(&v.store).len(),
        17,
        "a concurrent --add lost a slot while mounted"
    );
    v.unmount();

    assert!(opens(&v.store, common::PASSPHRASE));
    for p in first.iter().chain(&second) {
        assert!(opens(&v.store, p), "added passphrase {p:?} does not unlock");
    }
    // And a mount with one of them serves the data.
    v.pwfile = write_pw(v.dir.path(), "last", second.last().unwrap());
    v.mount(&[]);
    assert_eq!(
        std::fs::read(v.path("chart.txt")).unwrap(),
        b"written before the passwd runs"
    );
    v.unmount();
}

#[test]
fn a_hand_edited_policy_is_refused_until_set_with_a_passphrase() {
    let mut v = Vault::init();
    let toml = v.store.join("vault.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    assert!(original.contains("format = 2"), "{original}");
    assert!(original.contains("policy-mac = "), "{original}");

    // Shorten the policy by hand: mount, passwd and the engine refuse it.
    std::fs::write(&toml, original.replace("keep-daily = 90", "keep-daily = 1")).unwrap();
    let out = common::run(v.mount_cmd(&[]).stdin(Stdio::null()));
    assert_refused(
        &out,
        "mount with a hand-edited policy",
        &["edited by hand", "phivault retention"],
    );
    let pw2 = write_pw(
        v.dir.path(),
        "pw2",
        "a second passphrase for the front desk",
    );
    let out = common::run(
        Command::new(bin())
            .arg("passwd")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .arg("--add")
            .arg("--new-passphrase-file")
            .arg(&pw2)
            .stdin(Stdio::null()),
    );
    assert_refused(&out, "passwd on a hand-edited policy", &["edited by hand"]);
    assert!(!opens(&v.store, common::PASSPHRASE));

    // A format-2 file without its MAC is refused too.
    let no_mac: String = original
        .lines()
        .filter(|l| !l.starts_with("policy-mac"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&toml, no_mac).unwrap();
    let out = common::run(v.mount_cmd(&[]).stdin(Stdio::null()));
    assert_refused(&out, "mount without policy-mac", &["policy-mac"]);

    // Setting the policy with a passphrase authenticates it again.
    std::fs::write(&toml, original.replace("keep-daily = 90", "keep-daily = 1")).unwrap();
    let out = retention(&v.store, &v.pwfile, &["--keep-daily", "120"]);
    common::ok_output(&out, "retention set");
    assert!(
        stdout(&out).contains("not authenticated"),
        "{}",
        stdout(&out)
    );
    v.mount(&[]);
    v.unmount();
    let shown = common::ok(
        Command::new(bin())
            .arg("retention")
            .arg(&v.store)
            .args(["--format", "json"]),
    );
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["keep-daily"], 120);
    assert_eq!(json["authenticated"], true);
}

#[test]
fn retention_set_lengthens_the_lock_and_never_shortens_it() {
    let mut v = Vault::init();
    v.mount(&[]);
    std::fs::write(v.path("note.txt"), b"a version").unwrap();
    v.unmount();
    common::ok_output(
        &retention(&v.store, &v.pwfile, &["--lock-days", "30"]),
        "raising lock-days",
    );
    let before = std::fs::read(v.store.join("vault.toml")).unwrap();
    let out = retention(
        &v.store,
        &v.pwfile,
        &["--lock-days", "29", "--keep-daily", "5"],
    );
    assert_refused(
        &out,
        "lowering lock-days",
        &[
            "lock-days cannot go down from 30 to 29",
            "nothing was changed",
        ],
    );
    assert_eq!(std::fs::read(v.store.join("vault.toml")).unwrap(), before);
    let out = retention(&v.store, &v.pwfile, &["--min-versions", "0"]);
    assert_refused(&out, "min-versions 0", &["min-versions"]);
    let wrong = write_pw(v.dir.path(), "wrong", "an entirely different passphrase 99");
    let out = retention(&v.store, &wrong, &["--keep-daily", "5"]);
    assert_refused(
        &out,
        "retention set with a wrong passphrase",
        &["wrong passphrase"],
    );
    assert_eq!(std::fs::read(v.store.join("vault.toml")).unwrap(), before);
    // The numbers and the words.
    let out = common::ok(Command::new(bin()).arg("retention").arg(&v.store));
    let text = stdout(&out);
    assert!(text.contains("lock-days:           30"), "{text}");
    assert!(
        text.contains("Lock: no version younger than 30 days"),
        "{text}"
    );
}

#[test]
fn info_and_retention_speak_json() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("a"), common::pattern(3, 100_000)).unwrap();
    v.unmount();
    let out = common::ok(
        Command::new(bin())
            .arg("info")
            .arg(&v.store)
            .args(["--format", "json"]),
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format"], 2);
    assert_eq!(info["files"], 1);
    assert_eq!(info["logical_bytes"], 100_000);
    assert_eq!(info["passphrase_slots"], 1);
    assert!(info["mounted_at"].as_array().unwrap().is_empty());
    let out = common::ok(
        Command::new(bin())
            .arg("retention")
            .arg(&v.store)
            .args(["--format", "json"]),
    );
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(policy["lock-days"], 7);
    assert_eq!(policy["min-versions"], 3);
}

// ------------------------------------------------- a format-1 store (fixture)

/// tests/fixtures/store-format1 was made by the release before format 2
/// (86d9b34): see the commit that added it.
const FIXTURE_PASSPHRASE: &str = "fixture passphrase for format one stores";

fn fixture_copy(tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format1");
    common::ok(Command::new("cp").arg("-a").arg(&src).arg(&store));
    common::ok(Command::new("chmod").args(["-R", "go-rwx"]).arg(&store));
    store
}

fn scan() -> Vec<u8> {
    (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_format_1_store_opens_and_its_first_mount_authenticates_its_policy() {
    common::require_fuse();
    let tmp = tempfile::tempdir().unwrap();
    let store = fixture_copy(tmp.path());
    let pw = write_pw(tmp.path(), "pw", FIXTURE_PASSPHRASE);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let toml = store.join("vault.toml");
    let before = std::fs::read_to_string(&toml).unwrap();
    assert!(before.contains("format = 1") && !before.contains("policy-mac"));

    // A read-only view (`log`) reads it and leaves vault.toml as it is.
    let out = common::ok(
        Command::new(bin())
            .arg("log")
            .arg(&store)
            .arg("/chart.txt")
            .arg("--passphrase-file")
            .arg(&pw)
            .stdin(Stdio::null()),
    );
    assert!(stdout(&out).contains("truncate"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), before);

    let mount_with = |extra: &[&str]| {
        common::ok(
            Command::new(bin())
                .arg("mount")
                .arg(&store)
                .arg(&mnt)
                .arg("--passphrase-file")
                .arg(&pw)
                .arg("--log-file")
                .arg(tmp.path().join("log"))
                .args(extra)
                .stdin(Stdio::null()),
        );
    };
    let mount = || mount_with(&[]);
    let umount = || common::unmount(&mnt);

    // So does a read-only mount (the store may sit on read-only media).
    mount_with(&["-o", "ro"]);
    let chart = std::fs::read(mnt.join("chart.txt"));
    umount();
    assert!(
        chart.is_ok(),
        "read-only mount of a format-1 store: {chart:?}"
    );
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), before);

    mount();
    let chart = std::fs::read(mnt.join("chart.txt"));
    let scanned = std::fs::read(mnt.join("scans/scan-001.bin"));
    std::fs::write(mnt.join("after-upgrade.txt"), b"new").unwrap();
    umount();
    assert_eq!(
        chart.unwrap(),
        b"Chart of 2026-11-20: blood pressure 125/85 (corrected).\n"
    );
    assert!(scanned.unwrap() == scan(), "the scan's content changed");

    let after = std::fs::read_to_string(&toml).unwrap();
    assert!(after.contains("format = 2"), "not upgraded:\n{after}");
    assert!(after.contains("policy-mac = "), "no MAC:\n{after}");
    for keep in [
        "vault-id = ",
        "block-size = 4096",
        "keep-daily = 90",
        "[[slot]]",
    ] {
        let line = before.lines().find(|l| l.starts_with(keep)).unwrap();
        assert!(
            after.contains(line),
            "the upgrade changed {line:?}:\n{after}"
        );
    }
    assert!(opens(&store, FIXTURE_PASSPHRASE));

    // The upgraded store mounts again, with its old and new files.
    mount();
    let new = std::fs::read(mnt.join("after-upgrade.txt"));
    let scanned = std::fs::read(mnt.join("scans/scan-001.bin"));
    umount();
    assert_eq!(new.unwrap(), b"new");
    assert!(scanned.unwrap() == scan());

    let out = common::ok(Command::new(bin()).arg("retention").arg(&store));
    assert!(
        stdout(&out).contains("authenticated:  yes"),
        "{}",
        stdout(&out)
    );
}
