//! Helpers of the replication tests (tests/replicate.rs, tests/replicate_s3.rs).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{bin, Vault};

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn syncfs(mnt: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(mnt).unwrap();
    // SAFETY: a valid open descriptor.
    assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0);
}

/// This remote's entry of `phivault status STORE --format json`.
pub fn remote_status(v: &Vault, name: &str) -> serde_json::Value {
    let out = super::ok(
        Command::new(bin())
            .arg("status")
            .arg(&v.store)
            .args(["--format", "json"])
            .stdin(Stdio::null()),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --format json: {e}: {}", stdout(&out)));
    doc["remotes"]
        .as_array()
        .unwrap_or_else(|| panic!("no remotes array in {doc:#}"))
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no remote {name} in {doc:#}"))
        .clone()
}

/// Polls `status` of `name` until `done` holds of its entry, for up to
/// `secs` seconds; fails with the last entry otherwise.
pub fn wait_status(
    v: &Vault,
    name: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = remote_status(v, name);
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{secs} s and not {what}: {st:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
