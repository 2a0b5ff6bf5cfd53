//! Stores outlive builds: a store made by the last landed release (build
//! f35037b, catalog schema 1, vault.toml format 1) opens with this one,
//! is upgraded in place at its first read-write mount (to the current
//! catalog schema), and keeps its files,
//! their attributes and their versions.
//!
//! tests/fixtures/store-f35037b was made with that build's release binary:
//! `init` (with `common::PASSPHRASE`, `--kdf-memory-mib 8 --kdf-iterations 1`),
//! mount, then `mkdir -p charts/4711`; `note.txt` written twice 0.1 s apart
//! ("first note", then "second note, longer" through `>`), `chmod 640`,
//! `setfattr -n user.clinic -v lab`; `ln -s note.txt charts/4711/latest`;
//! 70,000 random bytes in `charts/scan.bin`, hard-linked as
//! `charts/scan-link.bin`; `mkfifo charts/pipe`; umount.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ok, xattr};

const SCAN_SHA256: &str = "5fb60834fa656d0ab167f12385da42f8c3967b3323a4da8c9b31d75d2c4f6586";

fn sha256(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_store_of_the_last_release_mounts_upgraded_with_its_files_and_versions() {
    let mut v = common::Vault::from_fixture("store-f35037b");
    assert_eq!(v.catalog_version(), 1);
    v.mount(&[]);
    let charts = v.path("charts");
    let note = charts.join("4711/note.txt");
    assert_eq!(std::fs::read(&note).unwrap(), b"second note, longer\n");
    let meta = std::fs::metadata(&note).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(xattr(&note, "user.clinic"), b"lab");
    assert_eq!(
        std::fs::read_link(charts.join("4711/latest")).unwrap(),
        Path::new("note.txt")
    );
    assert_eq!(sha256(&charts.join("scan.bin")), SCAN_SHA256);
    assert_eq!(
        std::fs::metadata(charts.join("scan.bin")).unwrap().nlink(),
        2
    );
    assert_eq!(
        std::fs::metadata(charts.join("scan-link.bin"))
            .unwrap()
            .ino(),
        std::fs::metadata(charts.join("scan.bin")).unwrap().ino()
    );
    assert!(std::fs::symlink_metadata(charts.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());

    // The upgraded store takes new changes, and they keep their history.
    std::fs::write(&note, b"third note\n").unwrap();
    v.unmount();
    assert_eq!(v.catalog_version(), phivault::catalog::SCHEMA_VERSION);
    let toml = std::fs::read_to_string(v.store.join("vault.toml")).unwrap();
    assert!(toml.contains("format = 2"), "{toml}");

    // Its versions from before the upgrade are still listed.
    let out = ok(Command::new(common::bin())
        .arg("log")
        .arg(&v.store)
        .arg("/charts/4711/note.txt")
        .args(["--format", "json"])
        .arg("--passphrase-file")
        .arg(&v.pwfile)
        .stdin(Stdio::null()));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<&serde_json::Value> = log["versions"].as_array().unwrap().iter().collect();
    rows.reverse();
    let sizes: Vec<u64> = rows.iter().map(|r| r["size"].as_u64().unwrap()).collect();
    // Written, truncated by `>`, written: the release before; then ours.
    assert_eq!(sizes, [11, 0, 20, 11], "{log:#}");
    // The release before kept no uids: who made those is unknown.
    assert!(rows[0]["uid"].is_null(), "{log:#}");
    let text = ok(Command::new(common::bin())
        .arg("log")
        .arg(&v.store)
        .arg("/charts/4711/note.txt")
        .arg("--passphrase-file")
        .arg(&v.pwfile)
        .stdin(Stdio::null()));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("unknown"), "{text}");
}
