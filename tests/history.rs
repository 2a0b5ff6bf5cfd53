//! Point-in-time recovery on real mounts with real programs: `log` across
//! editor saves and users, `ls --at` and `--deleted`, `restore --at` in
//! place (mounted and not) and to a new destination, TIME forms, and a
//! model run that reproduces every recorded instant (`restore --at`, `ls
//! --at`, and `.snapshots` for the instants that end a second).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, require_programs, Rng, Vault};

/// `phivault ARGS... --passphrase-file PW` for `v`'s store.
fn phivault(v: &Vault, cmd: &str, args: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg(cmd)
            .arg(&v.store)
            .args(args)
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    )
}

fn ok(v: &Vault, cmd: &str, args: &[&str]) -> String {
    let out = phivault(v, cmd, args);
    common::ok_output(&out, &format!("phivault {cmd} {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(v: &Vault, cmd: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = ok(v, cmd, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Commits the mount's open catalog group (attribute history has its
/// resolution), then reads the wall clock between two 10 ms gaps: an
/// instant after everything before and before everything after.
fn instant(mnt: &Path) -> String {
    syncfs(mnt);
    std::thread::sleep(Duration::from_millis(10));
    let t = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_millis(10));
    t.to_string()
}

fn syncfs(mnt: &Path) {
    let f = std::fs::File::open(mnt).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor.
    assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0);
}

/// Writes a file whole and fsyncs it, so that its version is recorded
/// before this returns (a close's version waits for the kernel's release).
fn save(path: &Path, body: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(body, 0).unwrap();
    f.sync_all().unwrap();
}

/// Editor-style: write a temporary file, fsync, rename it over `path`.
fn editor_save(path: &Path, body: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.swp",
        path.file_name().unwrap().to_string_lossy()
    ));
    save(&tmp, body);
    std::fs::rename(&tmp, path).unwrap();
}

/// (number, size, reason, user) of `log PATH`, newest first.
fn log_rows(v: &Vault, path: &str, follow: bool) -> Vec<(u64, u64, String, Option<u64>)> {
    let mut args = vec![path];
    if follow {
        args.push("--follow");
    }
    json(v, "log", &args)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["size"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
                r["uid"].as_u64(),
            )
        })
        .collect()
}

/// Everything `ls -l`, stat, getfattr, getfacl and cmp would compare, one
/// line per entry under `dir`, sorted by path. Directory sizes and atimes
/// differ between filesystems by nature and are left out; hard links show
/// as a shared group number.
fn describe(dir: &Path) -> String {
    require_programs(&["getfattr", "getfacl", "find", "sha256sum"]);
    let script = r#"
cd "$1" || exit 1
find . -mindepth 1 -printf '%P|%y|%m|%U|%G|%n|%T@|%l|%i\n' | LC_ALL=C sort |
while IFS='|' read -r p y m u g n t l i; do
  if [ "$y" = f ]; then sum=$(sha256sum < "$p" | cut -c1-16); else sum=-; fi
  if [ "$y" = d ]; then t=-; fi
  x=$(getfattr -h -d -e hex -m '^user\.' "$p" 2>/dev/null | grep -v '^#' | tr '\n' ' ')
  a=$(getfacl -P -c -n "$p" 2>/dev/null | tr '\n' ' ')
  echo "$p $y $m $u:$g n=$n t=$t -> $l sha=$sum x=[$x] acl=[$a] ino=$i"
done
"#;
    let out = common::ok(
        Command::new("bash")
            .args(["-c", script, "describe"])
            .arg(dir),
    );
    // Inode numbers differ; which entries share one must not.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    text.lines()
        .map(|l| {
            let (head, ino) = l.rsplit_once(" ino=").unwrap();
            let next = groups.len();
            let g = *groups.entry(ino.to_string()).or_insert(next);
            let shared = head.contains(" n=1 ") || head.contains(" d ");
            if shared {
                format!("{head}\n")
            } else {
                format!("{head} link-group={g}\n")
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(
            (String::new(), BTreeMap::new()),
            |(mut acc, mut renum), l| {
                // Renumber link groups by first appearance in path order.
                if let Some((head, g)) = l.trim_end().rsplit_once(" link-group=") {
                    let next = renum.len();
                    let n = *renum.entry(g.to_string()).or_insert(next);
                    acc.push_str(&format!("{head} link-group={n}\n"));
                } else {
                    acc.push_str(&l);
                }
                (acc, renum)
            },
        )
        .0
}

fn sh(dir: &Path, script: &str) {
    common::ok(Command::new("bash").args(["-euc", script]).current_dir(dir));
}

/// A subtree with everything a restore must give back.
fn make_subtree(mnt: &Path) {
    require_programs(&["setfacl", "setfattr", "mkfifo"]);
    sh(
        mnt,
        r#"
mkdir -p proj/inner
printf 'chart of patient 4711\n' > proj/chart.txt
head -c 300000 /dev/urandom > proj/inner/scan.bin
chmod 640 proj/chart.txt
chmod 2750 proj/inner
setfattr -n user.reviewed -v yes proj/chart.txt
setfacl -m u:65534:r proj/inner/scan.bin
setfacl -d -m u:65534:rx proj/inner
ln -s ../chart.txt proj/inner/chart-link
ln proj/chart.txt proj/chart-hardlink.txt
mkfifo -m 620 proj/pipe
chown 65534:65534 proj/inner/scan.bin
touch -d '2020-02-02 02:02:02.123456789' proj/chart.txt
touch -h -d '2021-03-03 03:03:03' proj/inner/chart-link
touch -d '2019-01-01 00:00:00' proj/inner proj
"#,
    );
}

/// Damages the subtree in every way a restore must undo.
fn damage_subtree(mnt: &Path) {
    sh(
        mnt,
        r#"
echo ENCRYPTED > proj/chart.txt
rm proj/chart-hardlink.txt proj/pipe
rm -r proj/inner
echo ransom > proj/README_DECRYPT.txt
chmod 777 proj
setfattr -n user.extra -v 1 proj
"#,
    );
}

#[test]
fn editor_saves_keep_one_history_and_follow_follows_a_renamed_file() {
    let v = Vault::mounted();
    let chart = v.path("chart.txt");
    save(&chart, b"first");
    editor_save(&chart, b"second!");
    editor_save(&chart, b"third, longer");
    syncfs(&v.mnt);
    let rows = log_rows(&v, "/chart.txt", false);
    let sizes: Vec<u64> = rows.iter().map(|r| r.1).collect();
    // Newest first: each save brings its content and retires the file it
    // replaces (a version holding what it was).
    assert_eq!(sizes, [13, 7, 7, 5, 5], "{rows:?}");
    let numbers: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(numbers, [5, 4, 3, 2, 1]);
    let text = ok(&v, "log", &["/chart.txt"]);
    assert!(text.contains("replaced by rename"), "{text}");
    assert!(text.contains("renamed here"), "{text}");
    // Every version of the history restores to what it held.
    let dest = tempfile::tempdir().unwrap();
    for (n, want) in [(1, &b"first"[..]), (3, b"second!"), (5, b"third, longer")] {
        let d = dest.path().join(format!("v{n}"));
        std::fs::create_dir(&d).unwrap();
        let at = format!("v{n}");
        let to = d.to_str().unwrap();
        ok(&v, "restore", &["/chart.txt", "--at", &at, "--to", to]);
        assert_eq!(std::fs::read(d.join("chart.txt")).unwrap(), want, "v{n}");
    }

    // --follow: one file across its own renames.
    save(&v.path("a.txt"), b"aaa");
    std::fs::create_dir(v.path("archive")).unwrap();
    std::fs::rename(v.path("a.txt"), v.path("archive/b.txt")).unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(v.path("archive/b.txt"))
        .unwrap();
    f.write_all_at(b"bbbb", 3).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let follow = log_rows(&v, "/archive/b.txt", true);
    assert_eq!(
        follow.iter().map(|r| r.1).collect::<Vec<_>>(),
        [7, 3],
        "{follow:?}"
    );
    // Without --follow, the name archive/b.txt only has what happened there.
    let name = log_rows(&v, "/archive/b.txt", false);
    assert_eq!(name.iter().map(|r| r.1).collect::<Vec<_>>(), [7, 3]);
    assert_eq!(
        log_rows(&v, "/a.txt", false).len(),
        1,
        "the old name keeps its own"
    );
    // A directory has no versions; a name never used is not found.
    let out = phivault(&v, "log", &["/archive"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory"));
    let out = phivault(&v, "log", &["/never.txt"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("never in the store"));
}

#[test]
fn log_shows_who_made_each_version() {
    require_programs(&["setpriv"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    let f = v.path("note.txt");
    save(&f, b"by root\n");
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o666)).unwrap();
    common::ok(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        &format!(
            "echo by nobody >> '{}' && sync '{}'",
            f.display(),
            f.display()
        ),
    ]));
    let rows = log_rows(&v, "/note.txt", false);
    assert_eq!(rows[0].3, Some(65534), "{rows:?}");
    assert_eq!(rows.last().unwrap().3, Some(0), "{rows:?}");
    let text = ok(&v, "log", &["/note.txt"]);
    let nobody = common::user_ids("nobody").0;
    assert_eq!(nobody, 65534);
    assert!(text.contains("nobody (65534)"), "{text}");
    assert!(text.contains("root (0)"), "{text}");
    // Local time with UTC beside it (or UTC alone where that is local).
    assert!(text.contains("UTC"), "{text}");
}

#[test]
fn ls_at_shows_the_directory_of_then_and_deleted_finds_what_went() {
    let v = Vault::mounted();
    std::fs::create_dir(v.path("ward")).unwrap();
    save(&v.path("ward/a.txt"), b"alpha");
    save(&v.path("ward/b.txt"), b"bravo bravo");
    std::fs::set_permissions(v.path("ward/b.txt"), PermissionsExt::from_mode(0o600)).unwrap();
    let t1 = instant(&v.mnt);
    std::fs::rename(v.path("ward/a.txt"), v.path("ward/c.txt")).unwrap();
    save(&v.path("ward/b.txt"), b"b");
    std::fs::set_permissions(v.path("ward/b.txt"), PermissionsExt::from_mode(0o644)).unwrap();
    let t2 = instant(&v.mnt);
    std::fs::remove_file(v.path("ward/b.txt")).unwrap();
    std::fs::create_dir(v.path("ward/sub")).unwrap();
    save(&v.path("ward/sub/deep.txt"), b"deep file");
    syncfs(&v.mnt);
    std::fs::remove_file(v.path("ward/sub/deep.txt")).unwrap();
    let t3 = instant(&v.mnt);

    let names = |t: &str| ok(&v, "ls", &["/ward", "--at", t]);
    assert_eq!(names(&t1), "a.txt\nb.txt\n");
    assert_eq!(names(&t2), "b.txt\nc.txt\n");
    assert_eq!(names(&t3), "c.txt\nsub\n");
    let long = ok(&v, "ls", &["/ward", "--at", &t1, "-l"]);
    let lines: Vec<Vec<&str>> = long
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][0], "-rw-r--r--", "{long}");
    assert_eq!(lines[1][0], "-rw-------", "{long}");
    assert_eq!((lines[0][4], lines[1][4]), ("5", "11"), "{long}");
    assert_eq!((lines[0][2], lines[0][3]), ("root", "root"), "{long}");
    let at2 = json(&v, "ls", &["/ward", "--at", &t2]);
    let e = &at2["entries"][0];
    assert_eq!(
        (e["name"].as_str(), e["size"].as_u64(), e["mode"].as_u64()),
        (Some("b.txt"), Some(1), Some(0o644)),
        "{at2:#}"
    );
    assert!(at2["at_ns"].as_i64().is_some());

    // ls --at with a version number is refused: versions are per file.
    let out = phivault(&v, "ls", &["/ward", "--at", "v2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a version"));

    // Where did my files go?
    let gone = json(&v, "ls", &["/ward", "--deleted"]);
    let list = gone["deleted"].as_array().unwrap();
    let paths: Vec<&str> = list.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/ward/sub/deep.txt", "/ward/b.txt"], "{gone:#}");
    assert_eq!(list[1]["size"].as_u64(), Some(1));
    assert_eq!(list[1]["user"].as_str(), Some("root"));
    let text = ok(&v, "ls", &["/ward", "--deleted"]);
    assert!(text.contains("/ward/b.txt"), "{text}");
    // Its printed TIME gives it back byte-exact.
    let dest = tempfile::tempdir().unwrap();
    for d in list {
        let at = d["restore_at"].as_str().unwrap();
        let to = dest.path().to_str().unwrap();
        ok(
            &v,
            "restore",
            &[d["path"].as_str().unwrap(), "--at", at, "--to", to],
        );
    }
    assert_eq!(std::fs::read(dest.path().join("b.txt")).unwrap(), b"b");
    assert_eq!(
        std::fs::read(dest.path().join("deep.txt")).unwrap(),
        b"deep file"
    );
    // Restoring again to the same place is refused, nothing overwritten.
    let out = phivault(
        &v,
        "restore",
        &[
            "/ward/b.txt",
            "--at",
            list[1]["restore_at"].as_str().unwrap(),
            "--to",
            dest.path().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn restore_in_place_while_mounted_shows_at_once_and_loses_nothing() {
    let v = Vault::mounted();
    let f = v.path("record.txt");
    let good = common::pattern(7, 3 << 20);
    save(&f, &good);
    let before = instant(&v.mnt);
    save(&f, b"corrupted by a bad save");
    syncfs(&v.mnt);
    let bad_versions = log_rows(&v, "/record.txt", false).len();
    ok(&v, "restore", &["/record.txt", "--at", &before]);
    // The mount shows it at once, through the same open-able path.
    assert_eq!(std::fs::read(&f).unwrap(), good);
    syncfs(&v.mnt);
    let rows = log_rows(&v, "/record.txt", false);
    assert_eq!(rows.len(), bad_versions + 1, "{rows:?}");
    assert_eq!(rows[0].1, good.len() as u64, "the restore is the newest");
    assert_eq!(rows[1].1, 23, "the bad version is kept");
    // Restoring again changes nothing and adds no version.
    let said = ok(&v, "restore", &["/record.txt", "--at", &before]);
    assert!(said.contains("1 already as they were"), "{said}");
    syncfs(&v.mnt);
    assert_eq!(log_rows(&v, "/record.txt", false).len(), rows.len());
}

#[test]
fn restore_of_a_subtree_gives_back_modes_owners_xattrs_acls_links_and_fifos() {
    let v = Vault::mounted();
    make_subtree(&v.mnt);
    let want = describe(&v.path("proj"));
    let then = instant(&v.mnt);
    damage_subtree(&v.mnt);
    syncfs(&v.mnt);
    assert_ne!(describe(&v.path("proj")), want);

    // To a new destination on another filesystem.
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().to_str().unwrap();
    ok(&v, "restore", &["/proj", "--at", &then, "--to", to]);
    assert_eq!(describe(&dest.path().join("proj")), want);
    let ino = |p: &str| std::fs::metadata(dest.path().join(p)).unwrap().ino();
    assert_eq!(ino("proj/chart.txt"), ino("proj/chart-hardlink.txt"));

    // In place, through the mount.
    ok(&v, "restore", &["/proj", "--at", &then]);
    assert_eq!(describe(&v.path("proj")), want);
    // What the restore removed is still in the history.
    let gone = json(&v, "ls", &["/proj", "--deleted"]);
    let paths: Vec<&str> = gone["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/proj/README_DECRYPT.txt"), "{paths:?}");
}

#[test]
fn restore_of_an_unmounted_store_writes_through_the_engine() {
    let mut v = Vault::mounted();
    make_subtree(&v.mnt);
    let want = describe(&v.path("proj"));
    let then = instant(&v.mnt);
    damage_subtree(&v.mnt);
    v.unmount();
    ok(&v, "restore", &["/proj", "--at", &then]);
    v.mount(&[]);
    assert_eq!(describe(&v.path("proj")), want);
    assert_eq!(
        std::fs::read(v.path("proj/chart.txt")).unwrap(),
        b"chart of patient 4711\n"
    );
    // A single file by version number, unmounted too.
    save(&v.path("proj/chart.txt"), b"later");
    v.unmount();
    let rows = log_rows(&v, "/proj/chart.txt", false);
    let first = rows.last().unwrap().0;
    ok(
        &v,
        "restore",
        &["/proj/chart.txt", "--at", &format!("v{first}")],
    );
    v.mount(&[]);
    assert_eq!(
        std::fs::read(v.path("proj/chart.txt")).unwrap(),
        b"chart of patient 4711\n"
    );
}

#[test]
fn time_forms_name_the_right_instant_and_bad_ones_are_refused() {
    let v = Vault::mounted();
    let f = v.path("t.txt");
    save(&f, b"old");
    std::thread::sleep(Duration::from_millis(1200));
    // A local date-time names the start of its second: after "old".
    let local = jiff::ZonedDateTime::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let rfc = instant(&v.mnt);
    std::thread::sleep(Duration::from_millis(1200));
    save(&f, b"new");
    syncfs(&v.mnt);
    let dest = tempfile::tempdir().unwrap();
    let restore_as = |at: &str, name: &str| -> Vec<u8> {
        let d = dest.path().join(name);
        std::fs::create_dir(&d).unwrap();
        ok(
            &v,
            "restore",
            &["/t.txt", "--at", at, "--to", d.to_str().unwrap()],
        );
        std::fs::read(d.join("t.txt")).unwrap()
    };
    assert_eq!(restore_as("1s ago", "relative"), b"old");
    assert_eq!(restore_as(&rfc, "rfc3339"), b"old");
    assert_eq!(restore_as(&local, "local"), b"old");
    assert_eq!(restore_as("v1", "v1"), b"old");
    assert_eq!(restore_as("v2", "v2"), b"new");
    assert_eq!(restore_as("now", "now"), b"new");

    for (bad, says) in [
        ("yesterdayish", "cannot read"),
        ("v0", "version"),
        ("2h", "ago"),
        ("v9", "no version v9"),
    ] {
        let out = phivault(&v, "restore", &["/t.txt", "--at", bad, "--to", "/tmp"]);
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bad}: {err}");
    }
    // Before the file existed.
    let out = phivault(
        &v,
        "restore",
        &["/t.txt", "--at", "2000-01-01T00:00:00Z", "--to", "/tmp"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not exist"));
}

/// What the mount showed at one instant: per path, content (files),
/// permission bits and user xattrs.
type Tree = BTreeMap<PathBuf, (Option<Vec<u8>>, u32, Vec<(String, Vec<u8>)>)>;

fn snapshot(root: &Path) -> Tree {
    let mut out = Tree::new();
    for p in common::walk_all(root) {
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = m.is_file().then(|| std::fs::read(&p).unwrap());
        let xattrs = common::xattr_names(&p)
            .into_iter()
            .filter(|n| n.starts_with("user."))
            .map(|n| {
                let val = common::xattr(&p, &n);
                (n, val)
            })
            .collect();
        out.insert(rel, (content, m.mode() & 0o7777, xattrs));
    }
    out
}

#[test]
fn a_model_run_is_reproduced_at_every_recorded_instant() {
    let v = Vault::mounted();
    let mut rng = Rng(0x5eed_2024);
    let names = ["a", "b", "c", "d/e", "d/f"];
    std::fs::create_dir(v.path("d")).unwrap();
    let mut recorded: Vec<(String, Tree)> = Vec::new();
    let mut seconds: Vec<(String, Tree)> = Vec::new();
    for step in 0..40 {
        let name = names[rng.below(names.len() as u64) as usize];
        let p = v.path(name);
        let exists = p.exists();
        match (rng.below(7), exists) {
            (_, false) | (0, true) => {
                let len = rng.below(200_000) as usize;
                save(&p, &common::pattern(step, len));
            }
            (1, true) => {
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                let at = rng.below(100_000);
                f.write_all_at(&common::pattern(step + 1000, 5000), at)
                    .unwrap();
                f.sync_all().unwrap();
            }
            (2, true) => {
                let to = v.path(names[rng.below(names.len() as u64) as usize]);
                std::fs::rename(&p, &to).unwrap();
            }
            (3, true) => {
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(rng.below(150_000)).unwrap();
                f.sync_all().unwrap();
            }
            (4, true) => {
                let mode = [0o600, 0o640, 0o644, 0o400, 0o755][rng.below(5) as usize];
                std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).unwrap();
            }
            (5, true) => {
                let val = format!("state-{step}");
                common::ok(
                    Command::new("setfattr")
                        .args(["-n", "user.state", "-v", &val])
                        .arg(&p),
                );
            }
            _ => std::fs::remove_file(&p).unwrap(),
        }
        let t = instant(&v.mnt);
        recorded.push((t, snapshot(&v.mnt)));
        if step % 8 == 0 {
            // `.snapshots` names whole seconds: let this one end with no
            // other change in it, and keep its name.
            let second = jiff::Timestamp::now();
            let next = second.as_second() + 1;
            while jiff::Timestamp::now().as_second() < next {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(50));
            let name = second.strftime("@GMT-%Y.%m.%d-%H.%M.%S").to_string();
            seconds.push((name, recorded.last().unwrap().1.clone()));
        }
    }
    // `.snapshots` on the live mount gives the same trees.
    for (name, want) in &seconds {
        let got = snapshot(&v.mnt.join(".snapshots").join(name));
        assert_eq!(&got, want, ".snapshots/{name}");
    }
    let dest = tempfile::tempdir().unwrap();
    for (i, (t, want)) in recorded.iter().enumerate() {
        let d = dest.path().join(format!("i{i}"));
        std::fs::create_dir(&d).unwrap();
        ok(
            &v,
            "restore",
            &["/", "--at", t, "--to", d.to_str().unwrap()],
        );
        let got = snapshot(&d);
        // The root's own mode is the destination's; compare its entries.
        assert_eq!(got, *want, "instant {i} ({t})");
        let listed = json(&v, "ls", &["/", "--at", t]);
        let mut names: Vec<String> = listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        let mut top: Vec<String> = want
            .keys()
            .filter(|p| p.components().count() == 1)
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(names, top, "ls --at instant {i}");
    }
}

#[test]
fn a_folder_removed_with_rm_r_comes_back_whole_at_its_printed_time() {
    let v = Vault::mounted();
    std::fs::create_dir_all(v.path("lab/2026/nov")).unwrap();
    save(&v.path("lab/old.txt"), b"removed long before");
    std::fs::remove_file(v.path("lab/old.txt")).unwrap();
    save(&v.path("lab/2026/nov/result.txt"), b"potassium 4.1");
    save(&v.path("lab/index.txt"), b"index");
    syncfs(&v.mnt);
    std::thread::sleep(Duration::from_millis(20));
    common::ok(Command::new("rm").arg("-r").arg(v.path("lab")));
    let gone = json(&v, "ls", &["/", "--deleted"]);
    let list = gone["deleted"].as_array().unwrap();
    let lab = list
        .iter()
        .find(|d| d["path"] == "/lab")
        .unwrap_or_else(|| panic!("{gone:#}"));
    assert_eq!(lab["kind"], "directory");
    let dest = tempfile::tempdir().unwrap();
    let at = lab["restore_at"].as_str().unwrap();
    ok(
        &v,
        "restore",
        &["/lab", "--at", at, "--to", dest.path().to_str().unwrap()],
    );
    let back = |p: &str| std::fs::read(dest.path().join(p)).ok();
    assert_eq!(
        back("lab/2026/nov/result.txt").as_deref(),
        Some(&b"potassium 4.1"[..])
    );
    assert_eq!(back("lab/index.txt").as_deref(), Some(&b"index"[..]));
    // Removed before the rm -r, it stays removed.
    assert_eq!(back("lab/old.txt"), None);
}
