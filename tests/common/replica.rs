//! Helpers of the replication tests (tests/replicate.rs, tests/replicate_s3.rs).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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

/// One line per entry under `root` (root itself left out): kind, mode,
/// owner, mtime, and the content's BLAKE3, a symlink's target or a
/// directory's nothing, and user xattrs.
pub type Tree = BTreeMap<PathBuf, String>;

pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    for p in super::walk_all(root) {
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            format!("file {} {}", bytes.len(), blake3::hash(&bytes).to_hex())
        } else if m.is_symlink() {
            format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            "dir".to_string()
        } else {
            format!("other {:o}", m.mode())
        };
        let xattrs: Vec<String> = if m.is_symlink() {
            Vec::new()
        } else {
            super::xattr_names(&p)
                .into_iter()
                .filter(|n| n.starts_with("user."))
                .map(|n| {
                    let val = super::xattr(&p, &n);
                    format!("{n}={}", String::from_utf8_lossy(&val))
                })
                .collect()
        };
        let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
        out.insert(
            rel,
            format!(
                "{what} mode={:o} owner={}:{} mtime={mtime} xattrs={xattrs:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        );
    }
    out
}

/// `t` without mtimes, for a tree seen through the mount that wrote it
/// (whose mtimes may be a clock tick away from what it stored).
pub fn without_mtimes(t: Tree) -> Tree {
    t.into_iter()
        .map(|(p, line)| {
            let (head, rest) = line.split_once(" mtime=").unwrap();
            let (_, tail) = rest.split_once(' ').unwrap();
            (p, format!("{head} {tail}"))
        })
        .collect()
}

pub fn assert_same_tree(want: &Tree, got: &Tree, what: &str) {
    let mut diffs = Vec::new();
    for p in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (w, g) = (want.get(p), got.get(p));
        if w != g {
            diffs.push(format!("{}:\n  want {w:?}\n  got  {g:?}", p.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} entries differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The options that point `phivault` at a plain-http S3 server on loopback.
pub fn s3_flags(endpoint: &str) -> Vec<String> {
    vec![
        "--endpoint".into(),
        endpoint.to_string(),
        "--path-style".into(),
        "--allow-http".into(),
    ]
}
