//! Read-only mounts are audited too: a `-o ro` mount and a `mount --at`
//! view of the past record every open, granted or refused, in the store's
//! one trail, beside a read-write daemon of the same store if one runs.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{bin, require_programs, user_ids, Vault};
use serde_json::Value;

/// Every record of the trail, oldest first, as `phivault audit --format
/// json` lists them.
fn trail(v: &Vault) -> Vec<Value> {
    let out = common::ok(
        Command::new(bin())
            .arg("audit")
            .arg(&v.store)
            .args(["--format", "json", "--passphrase-file"])
            .arg(&v.pwfile),
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut all = all.as_array().unwrap().clone();
    all.sort_by_key(|r| r["seq"].as_u64().unwrap());
    all
}

/// The opens of `name` (a path ending so) the trail holds.
fn opens_of<'a>(recs: &'a [Value], name: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["op"] == "open" && r["path"].as_str().unwrap().ends_with(name))
        .collect()
}

fn seqs(recs: &[Value]) -> Vec<u64> {
    recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

/// Mounts the store as it was at `at` on `mnt` (a second daemon).
fn mount_past(v: &Vault, mnt: &Path, at: &str) {
    common::ok(
        Command::new("timeout")
            .args(["--kill-after=5", "120"])
            .arg(bin())
            .arg("mount")
            .arg(&v.store)
            .arg(mnt)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .arg("--log-file")
            .arg(v.dir.path().join("past.log"))
            .args(["--at", at]),
    );
}

/// Unmounts the view on drop, so that a failing test leaves no daemon.
struct PastView(PathBuf);

impl Drop for PastView {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            common::unmount(&self.0);
        } else {
            let _ = Command::new(bin()).arg("umount").arg(&self.0).status();
        }
    }
}

#[test]
fn a_read_only_mount_records_opens_and_refusals() {
    require_programs(&["setpriv"]);
    let mut v = Vault::mounted();
    std::fs::set_permissions(v.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let (alice, alice_gid) = user_ids("phi-alice");
    let (bob, _) = user_ids("phi-bob");
    let chart = v.path("chart.txt");
    std::fs::write(&chart, b"allergies: none\n").unwrap();
    std::os::unix::fs::chown(&chart, Some(alice), Some(alice_gid)).unwrap();
    std::fs::set_permissions(&chart, PermissionsExt::from_mode(0o600)).unwrap();
    v.unmount();
    let before = trail(&v).len();

    v.mount(&["-o", "ro", "-o", "allow_other"]);
    let cat = format!("cat '{}' > /dev/null", chart.display());
    common::ok_output(&common::as_user("phi-alice", &cat), "alice reads her chart");
    let refused = common::as_user("phi-bob", &cat);
    assert!(!refused.status.success(), "bob read alice's 0600 file");

    // Read while the read-only daemon still runs: nothing waits for its end.
    let recs = trail(&v);
    let opens = opens_of(&recs[before..], "/chart.txt");
    let who: Vec<(u64, &str)> = opens
        .iter()
        .map(|r| {
            (
                r["who"]["uid"].as_u64().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [(alice as u64, "ok"), (bob as u64, "EACCES")],
        "{recs:#?}"
    );
    assert_eq!(opens[1]["who"]["comm"], "cat");
    assert_eq!(seqs(&recs), (1..=recs.len() as u64).collect::<Vec<_>>());
    v.assert_audit_verifies("beside the read-only mount");
    v.unmount();
    v.assert_audit_verifies("after it");
    let log = std::fs::read_to_string(&v.log).unwrap();
    assert!(!log.contains("NO AUDIT TRAIL"), "{log}");
}

#[test]
fn a_live_mount_and_a_past_view_record_into_one_chain() {
    let mut v = Vault::mounted();
    let mut chart = std::fs::File::create(v.path("chart.txt")).unwrap();
    chart.write_all(b"blood pressure 120/80\n").unwrap();
    chart.sync_all().unwrap();
    drop(chart);
    // The view shows the tree at a whole second after the write.
    std::thread::sleep(Duration::from_millis(1100));
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let past = v.dir.path().join("past");
    std::fs::create_dir(&past).unwrap();
    mount_past(&v, &past, &format!("@{secs}"));
    let view = PastView(past.clone());

    // Alternately through the live mount (cat) and the past view (head).
    for _ in 0..4 {
        common::ok(Command::new("cat").arg(v.path("chart.txt")));
        common::ok(Command::new("head").arg("-c1").arg(past.join("chart.txt")));
    }
    let recs = trail(&v);
    let opens = opens_of(&recs, "chart.txt");
    let by: Vec<&str> = opens
        .iter()
        .map(|r| r["who"]["comm"].as_str().unwrap())
        .filter(|c| ["cat", "head"].contains(c))
        .collect();
    assert_eq!(by, ["cat", "head"].repeat(4), "{recs:#?}");
    assert_eq!(seqs(&recs), (1..=recs.len() as u64).collect::<Vec<_>>());
    v.assert_audit_verifies("with both mounted");

    // The view's records name the file as it was at the view's instant,
    // under the `.snapshots` name of that instant, even once it is renamed.
    std::fs::rename(v.path("chart.txt"), v.path("moved.txt")).unwrap();
    common::ok(Command::new("head").arg("-c1").arg(past.join("chart.txt")));
    let recs = trail(&v);
    let by_head: Vec<&str> = recs
        .iter()
        .filter(|r| r["op"] == "open" && r["who"]["comm"] == "head")
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let name = jiff::Timestamp::from_second(secs as i64)
        .unwrap()
        .strftime("@GMT-%Y.%m.%d-%H.%M.%S")
        .to_string();
    assert_eq!(
        by_head,
        vec![format!("/.snapshots/{name}/chart.txt"); 5],
        "{recs:#?}"
    );
    std::fs::rename(v.path("moved.txt"), v.path("chart.txt")).unwrap();

    drop(view);
    v.unmount();
    let last = recs.len() as u64;
    v.assert_audit_verifies("after both unmounted");
    v.mount(&[]);
    common::ok(Command::new("cat").arg(v.path("chart.txt")));
    let recs = trail(&v);
    assert_eq!(seqs(&recs), (1..=recs.len() as u64).collect::<Vec<_>>());
    let after: Vec<&Value> = opens_of(&recs, "chart.txt")
        .into_iter()
        .filter(|r| r["seq"].as_u64().unwrap() > last)
        .collect();
    assert_eq!(after.len(), 1, "{recs:#?}");
    v.assert_audit_verifies("after a fresh mount appended");
}

/// Only a read-only filesystem lets a read-only mount go on unrecorded:
/// a trail that cannot be opened for another reason fails the mount.
#[test]
fn a_read_only_mount_that_cannot_open_the_trail_is_refused() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("chart.txt"), b"x").unwrap();
    v.unmount();
    let lock = v.store.join("audit/lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let out = common::run(v.mount_cmd(&["-o", "ro"]));
    assert!(!out.status.success(), "mounted without its audit trail");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cannot open store") && said.contains("audit/lock"),
        "{said}"
    );
    assert!(std::fs::read_dir(&v.mnt).unwrap().next().is_none());
}
