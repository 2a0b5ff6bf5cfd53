//! Recovery after a power loss: catalog rows survived but the never-fsync'd
//! blocks they point at did not. The file must fall back to its previous
//! version, never read as EIO or as a mix.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Vault;

fn packs(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(store.join("packs")).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

/// The pack still being appended to: it has no sealed trailer yet.
fn unsealed_pack(store: &Path) -> PathBuf {
    let open: Vec<PathBuf> = packs(store)
        .into_iter()
        .filter(|p| {
            let data = std::fs::read(p).unwrap();
            !data.ends_with(b"PHIPEND1")
        })
        .collect();
    assert_eq!(
        open.len(),
        1,
        "expected exactly one unsealed pack, found {open:?}"
    );
    open.into_iter().next().unwrap()
}

/// Where the pack's records end: the zeros written ahead of them (or the
/// end of the file) follow.
fn records_end(pack: &Path) -> u64 {
    let data = std::fs::read(pack).unwrap();
    let mut pos = 8;
    while pos + 4 <= data.len() {
        let body = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if body == 0 || pos + 4 + body > data.len() {
            break;
        }
        pos += 4 + body;
    }
    pos as u64
}

/// The pack's tail is kept written with zeros ahead of its records, durably,
/// so what a power loss leaves of records never fsync'd is those zeros.
#[test]
fn power_loss_of_unsynced_blocks_falls_back_to_the_previous_version() {
    power_loss_falls_back(|pack, durable_end| {
        let f = OpenOptions::new().write(true).open(pack).unwrap();
        let len = f.metadata().unwrap().len();
        f.write_all_at(&vec![0u8; (len - durable_end) as usize], durable_end)
            .unwrap();
    });
}

/// Without zeros ahead (a full disk, a filesystem that gets no zero-ahead),
/// the file is cut where the fsync'd records ended.
#[test]
fn power_loss_that_cuts_the_pack_falls_back_to_the_previous_version() {
    power_loss_falls_back(|pack, durable_end| {
        OpenOptions::new()
            .write(true)
            .open(pack)
            .unwrap()
            .set_len(durable_end)
            .unwrap();
    });
}

/// Version 1 of a file is fsync'd, version 2 only closed; then the power
/// fails and `lose` takes from the pack what never reached the disk.
fn power_loss_falls_back(lose: fn(&Path, u64)) {
    let mut v = Vault::mounted();
    let path = v.path("ledger.db");
    let v1 = common::pattern(1, 200_000);
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&v1).unwrap();
        f.sync_all().unwrap();
    }
    let pack = unsealed_pack(&v.store);
    let durable_end = records_end(&pack);

    // Version 2 overwrites in place and is closed, never fsync'd.
    let v2 = common::pattern(2, 200_000);
    {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&v2, 0).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), v2);

    // Power loss: the daemon dies and the pack bytes written after the last
    // fsync never reach the disk, while the catalog rows did.
    common::sigkill(v.daemon_pid());
    let _ = Command::new("umount").arg("-l").arg(&v.mnt).status();
    v.forget_mount();
    assert!(
        records_end(&pack) > durable_end,
        "version 2 should have appended blocks"
    );
    lose(&pack, durable_end);

    v.mount(&[]);
    let back = std::fs::read(&path).expect("the file reads after recovery, not EIO");
    assert!(back == v1, "the file must be exactly its previous version");
    let log = std::fs::read_to_string(&v.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("/ledger.db") && l.contains("fell back")),
        "the log names the file that fell back:\n{log}"
    );
    // Writing works again, and the recovered store stays consistent.
    std::fs::write(v.path("after.txt"), b"new data").unwrap();
    v.remount();
    assert_eq!(std::fs::read(&path).unwrap(), v1);
    assert_eq!(std::fs::read(v.path("after.txt")).unwrap(), b"new data");
}
