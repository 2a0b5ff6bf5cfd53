//! The command line as a user meets it: init, mount, umount, passwd, info,
//! help, and the failures each must report clearly without side effects.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, MountGuard, Vault, PASSPHRASE};

fn is_mounted(mp: &Path) -> bool {
    mount_entry(mp).is_some()
}

/// Every non-directory under `root` with its content hash.
fn hash_tree(root: &Path) -> BTreeMap<PathBuf, blake3::Hash> {
    common::walk_all(root)
        .into_iter()
        .filter(|p| !std::fs::symlink_metadata(p).unwrap().is_dir())
        .map(|p| {
            let h = blake3::hash(&std::fs::read(&p).unwrap());
            (p, h)
        })
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed with a single, non-empty line of explanation.
fn assert_clear_failure(o: &Output, what: &str, must_mention: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: succeeded but should fail\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    let text = err.trim();
    assert!(!text.is_empty(), "{what}: failed without saying why");
    assert_eq!(
        text.lines().count(),
        1,
        "{what}: expected one line of explanation, got:\n{text}"
    );
    let lower = text.to_lowercase();
    for m in must_mention {
        assert!(
            lower.contains(&m.to_lowercase()),
            "{what}: message does not mention {m:?}: {text}"
        );
    }
}

fn init_cmd(store: &Path, pwfile: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("init")
        .arg(store)
        .arg("--passphrase-file")
        .arg(pwfile);
    c.args(["--kdf-memory-mib", "8", "--kdf-iterations", "1"]);
    c
}

fn mount_with(store: &Path, mnt: &Path, pwfile: &Path, extra: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg("mount")
            .arg(store)
            .arg(mnt)
            .arg("--passphrase-file")
            .arg(pwfile)
            .args(extra)
            .stdin(Stdio::null()),
    )
}

fn phivault_umount(mnt: &Path) {
    common::unmount(mnt);
}

fn write_pw(dir: &Path, name: &str, pass: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pass}\n")).unwrap();
    p
}

// ---------------------------------------------------------------- init

#[test]
fn init_refuses_existing_stores_non_empty_dirs_and_weak_passphrases() {
    let v = Vault::init();
    let tmp = v.dir.path();

    // An existing store is left alone.
    let before = hash_tree(&v.store);
    let out = common::run(&mut init_cmd(&v.store, &v.pwfile));
    assert_clear_failure(&out, "init on an existing store", &["already"]);
    assert_eq!(
        hash_tree(&v.store),
        before,
        "init on an existing store changed it"
    );

    // A non-empty directory is left alone.
    let full = tmp.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    let out = common::run(&mut init_cmd(&full, &v.pwfile));
    assert_clear_failure(&out, "init in a non-empty dir", &["not empty"]);
    let names: Vec<_> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("keep.txt")],
        "init touched a non-empty dir"
    );
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"mine");

    // Empty passphrase files.
    for (i, content) in ["", "\n", "\r\n"].iter().enumerate() {
        let pw = tmp.join(format!("empty-pw-{i}"));
        std::fs::write(&pw, content).unwrap();
        let store = tmp.join(format!("store-empty-{i}"));
        let out = common::run(&mut init_cmd(&store, &pw));
        assert_clear_failure(
            &out,
            &format!("init with passphrase file {content:?}"),
            &["empty"],
        );
        assert!(
            !store.exists(),
            "init with an empty passphrase created {}",
            store.display()
        );
    }

    // Weak passphrases.
    for weak in ["password", "12345678", "abc", "password123", "aaaaaaaaaaaa"] {
        let pw = write_pw(tmp, "weak-pw", weak);
        let store = tmp.join("store-weak");
        let out = common::run(&mut init_cmd(&store, &pw));
        assert!(
            !out.status.success(),
            "init accepted the weak passphrase {weak:?}"
        );
        let err = stderr(&out).to_lowercase();
        assert!(
            err.contains("weak") || err.contains("short"),
            "init with {weak:?}: unclear message: {err}"
        );
        assert!(
            !store.exists(),
            "init with the weak passphrase {weak:?} created the store"
        );
    }

    // A fresh empty directory and a missing one both work, and mount.
    let empty = tmp.join("fresh");
    std::fs::create_dir(&empty).unwrap();
    common::ok(&mut init_cmd(&empty, &v.pwfile));
    assert!(empty.join("vault.toml").is_file());
    let missing = tmp.join("a/b/new-store");
    common::ok(&mut init_cmd(&missing, &v.pwfile));
    assert!(missing.join("vault.toml").is_file());
    let mnt = tmp.join("fresh-mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let out = mount_with(&empty, &mnt, &v.pwfile, &[]);
    assert!(
        out.status.success(),
        "mounting a freshly initialised store: {}",
        stderr(&out)
    );
    std::fs::write(mnt.join("hello"), b"world").unwrap();
    phivault_umount(&mnt);
    assert!(!is_mounted(&mnt));
}

// ---------------------------------------------------------------- mount

#[test]
fn wrong_passphrase_fails_clearly_and_changes_nothing() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("data"), common::pattern(3, 100_000)).unwrap();
    v.unmount();
    let before = hash_tree(&v.store);
    let wrong = write_pw(v.dir.path(), "wrong", "an entirely different passphrase 99");
    let out = mount_with(&v.store, &v.mnt, &wrong, &[]);
    assert_clear_failure(&out, "mount with a wrong passphrase", &["wrong passphrase"]);
    assert!(
        !is_mounted(&v.mnt),
        "a mount with a wrong passphrase left something mounted"
    );
    assert_eq!(std::fs::read_dir(&v.mnt).unwrap().count(), 0);
    assert_eq!(
        hash_tree(&v.store),
        before,
        "a failed unlock changed the store"
    );
    // The right passphrase still works.
    v.mount(&[]);
    assert_eq!(
        std::fs::read(v.path("data")).unwrap(),
        common::pattern(3, 100_000)
    );
}

#[test]
fn mount_conflicts_fail_clearly_and_leave_the_first_mount_alone() {
    let mut v = Vault::mounted();
    let data = common::pattern(5, 200_000);
    std::fs::write(v.path("f"), &data).unwrap();

    // The same store on a second mountpoint.
    let mnt2 = v.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let _g2 = MountGuard(mnt2.clone());
    let out = mount_with(&v.store, &mnt2, &v.pwfile, &[]);
    assert_clear_failure(&out, "mounting a mounted store again", &[]);
    let msg = stderr(&out);
    assert!(
        msg.contains("already mounted") || msg.contains("in use"),
        "unclear: {msg}"
    );
    assert!(!is_mounted(&mnt2));

    // Another store on the busy mountpoint.
    let other = Vault::init();
    let out = mount_with(&other.store, &v.mnt, &other.pwfile, &[]);
    assert_clear_failure(&out, "mounting on a busy mountpoint", &["busy"]);

    // A missing mountpoint.
    let missing = other.dir.path().join("no-such-dir");
    let out = mount_with(&other.store, &missing, &other.pwfile, &[]);
    assert_clear_failure(
        &out,
        "mounting on a missing mountpoint",
        &["does not exist"],
    );
    assert!(!missing.exists(), "the missing mountpoint was created");

    // A non-empty directory and a regular file as mountpoints.
    let full = other.dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("hidden-if-mounted"), b"x").unwrap();
    let out = mount_with(&other.store, &full, &other.pwfile, &[]);
    assert_clear_failure(&out, "mounting on a non-empty dir", &["not empty"]);
    assert!(!is_mounted(&full));
    let file = other.dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = mount_with(&other.store, &file, &other.pwfile, &[]);
    assert_clear_failure(&out, "mounting on a regular file", &["not a directory"]);

    // The first mount is untouched and still works.
    assert!(is_mounted(&v.mnt));
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    std::fs::write(v.path("g"), b"still works").unwrap();
    assert_eq!(std::fs::read(v.path("g")).unwrap(), b"still works");
    v.remount();
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    assert_eq!(std::fs::read(v.path("g")).unwrap(), b"still works");
}

/// `info` and `mount` both know when a store is mounted, and where.
#[test]
fn a_mounted_store_is_recognised_as_mounted() {
    let v = Vault::mounted();
    let st = v.store.to_str().unwrap().to_string();
    let live = common::ok(Command::new(bin()).args(["info", &st]));
    let text = stdout(&live);
    let at = text
        .lines()
        .find_map(|l| l.strip_prefix("mounted at:"))
        .map(str::trim);
    assert_eq!(
        at,
        Some(v.mnt.to_str().unwrap()),
        "info while mounted does not say where:\n{text}"
    );

    let mnt2 = v.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let _g2 = MountGuard(mnt2.clone());
    let out = mount_with(&v.store, &mnt2, &v.pwfile, &[]);
    assert_clear_failure(
        &out,
        "mounting a mounted store again",
        &["already mounted", v.mnt.to_str().unwrap()],
    );
}

#[test]
fn mount_create_makes_a_store_only_when_asked() {
    let tmp = tempfile::Builder::new()
        .prefix("phivault-create-")
        .tempdir()
        .unwrap();
    let pw = write_pw(tmp.path(), "pw", PASSPHRASE);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());

    // No --create, no terminal: refuses and creates nothing.
    let store = tmp.path().join("store");
    let out = mount_with(&store, &mnt, &pw, &[]);
    assert_clear_failure(
        &out,
        "mount of a missing store without --create",
        &["--create"],
    );
    assert!(
        !store.exists(),
        "mount without --create created {}",
        store.display()
    );
    assert!(!is_mounted(&mnt));

    // --create: creates and mounts.
    let out = mount_with(&store, &mnt, &pw, &["--create"]);
    assert!(
        out.status.success(),
        "mount --create failed: {}",
        stderr(&out)
    );
    assert!(store.join("vault.toml").is_file());
    assert!(is_mounted(&mnt));
    std::fs::write(mnt.join("first"), b"first file").unwrap();
    phivault_umount(&mnt);

    // It is a normal store now: mounts without --create, data is there.
    let out = mount_with(&store, &mnt, &pw, &[]);
    assert!(out.status.success(), "remount: {}", stderr(&out));
    assert_eq!(std::fs::read(mnt.join("first")).unwrap(), b"first file");
    phivault_umount(&mnt);
}

/// Runs `args` on a new pseudo-terminal (its controlling terminal and all
/// of its stdio), answering each prompt that appears with the paired line.
/// Returns the exit status and everything the terminal showed.
fn on_terminal(
    args: &[&std::ffi::OsStr],
    answers: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; no name, termios or window size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just returned these descriptors, owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let slave_fd = slave.as_raw_fd();
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe syscalls; they make
    // the pty the child's controlling terminal (where passphrases are read).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // the parent's copies of the slave
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut writer = std::fs::File::from(master);
    let mut shown = String::new();
    let mut pending = answers.iter();
    let mut next = pending.next();
    let mut answered_up_to = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                shown.push_str(&String::from_utf8_lossy(&chunk));
            }
            return (status, shown);
        }
        assert!(
            Instant::now() < deadline,
            "no exit within 120 s; the terminal showed:\n{shown}"
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
            shown.push_str(&String::from_utf8_lossy(&chunk));
        }
        if let Some((prompt, answer)) = next {
            if let Some(at) = shown[answered_up_to..].find(prompt) {
                answered_up_to += at + prompt.len();
                if prompt.contains("assphrase") {
                    // The prompt is printed before echo is switched off: a
                    // reply typed in between would be echoed by the
                    // terminal, not by phivault.
                    wait_for_echo_off(&writer);
                }
                writer.write_all(format!("{answer}\n").as_bytes()).unwrap();
                next = pending.next();
            }
        }
    }
}

/// Waits (up to 5 s) until the program on the pty has switched echo off;
/// if it never does, the answer goes out anyway and the echo check fails.
fn wait_for_echo_off(master: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // SAFETY: a zeroed termios is a valid out-buffer for tcgetattr, which
        // on a pty master reports the terminal's (slave's) settings.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) } == 0
            && t.c_lflag & libc::ECHO == 0
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The README's quick start on a terminal: a missing store is created after
/// asking, the new passphrase is asked twice and then unlocks it without a
/// third prompt, and the mount is ready when the command returns.
#[test]
fn quick_start_on_a_terminal_creates_the_store_and_mounts_it() {
    common::require_fuse();
    let tmp = tempfile::Builder::new()
        .prefix("phivault-quick-")
        .tempdir()
        .unwrap();
    let store = tmp.path().join("phi-store");
    let mnt = tmp.path().join("phi");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let (status, shown) = on_terminal(
        &["mount".as_ref(), store.as_os_str(), mnt.as_os_str()],
        &[
            ("Create it? [y/N]", "y"),
            ("New passphrase:", PASSPHRASE),
            ("Repeat the new passphrase:", PASSPHRASE),
        ],
    );
    assert!(
        status.success(),
        "quick start failed; the terminal showed:\n{shown}"
    );
    assert!(shown.contains("Created store"), "terminal showed:\n{shown}");
    let after_create = &shown[shown.find("Created store").unwrap()..];
    assert!(
        !after_create.contains("Passphrase:"),
        "the passphrase just chosen was asked for again:\n{shown}"
    );
    assert!(
        !shown.contains(PASSPHRASE),
        "the passphrase was echoed to the terminal:\n{shown}"
    );
    assert!(is_mounted(&mnt), "not mounted when the command returned");
    std::fs::write(mnt.join("note.txt"), b"first note").unwrap();
    phivault_umount(&mnt);

    // Later mounts ask once, on the same terminal.
    let (status, shown) = on_terminal(
        &["mount".as_ref(), store.as_os_str(), mnt.as_os_str()],
        &[("Passphrase:", PASSPHRASE)],
    );
    assert!(
        status.success(),
        "remount failed; the terminal showed:\n{shown}"
    );
    assert_eq!(std::fs::read(mnt.join("note.txt")).unwrap(), b"first note");
    phivault_umount(&mnt);
}

// ---------------------------------------------------------------- passwd

/// (slot id, kind) from `passwd --list`.
fn slots(v: &Vault) -> Vec<(u32, String)> {
    let out = common::ok(
        Command::new(bin())
            .arg("passwd")
            .arg(&v.store)
            .arg("--list"),
    );
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let id = it.next()?.parse().ok()?;
            Some((id, it.next()?.to_string()))
        })
        .collect()
}

fn passwd(v: &Vault, pwfile: &Path, args: &[&str]) -> Output {
    common::run(
        Command::new(bin())
            .arg("passwd")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(pwfile)
            .args(["--kdf-memory-mib", "8", "--kdf-iterations", "1"])
            .args(args)
            .stdin(Stdio::null()),
    )
}

fn pack_hashes(v: &Vault) -> BTreeMap<PathBuf, blake3::Hash> {
    hash_tree(&v.store.join("packs"))
}

/// Mounts with `pwfile`, checks the data, unmounts.
fn unlocks(v: &Vault, pwfile: &Path, data: &[u8]) -> bool {
    let out = mount_with(&v.store, &v.mnt, pwfile, &[]);
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("wrong passphrase"),
            "mount failed for another reason: {err}"
        );
        assert!(!is_mounted(&v.mnt));
        return false;
    }
    let _g = MountGuard(v.mnt.clone());
    assert_eq!(
        std::fs::read(v.mnt.join("data")).unwrap(),
        data,
        "data changed"
    );
    phivault_umount(&v.mnt);
    true
}

fn recovery_key(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|t| {
            let parts: Vec<_> = t.split('-').collect();
            parts.len() == 8
                && parts
                    .iter()
                    .all(|p| p.len() == 5 && p.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .map(str::to_string)
}

#[test]
fn passwd_adds_changes_removes_slots_without_touching_data() {
    let mut v = Vault::mounted();
    let data = common::pattern(11, 700_000);
    std::fs::write(v.path("data"), &data).unwrap();
    v.unmount();
    let packs = pack_hashes(&v);
    assert!(!packs.is_empty());
    let dir = v.dir.path().to_path_buf();
    let pw1 = v.pwfile.clone();
    let pw2 = write_pw(&dir, "pw2", "second passphrase for the night shift");
    let pw3 = write_pw(&dir, "pw3", "third passphrase replaces the second one");

    let s0 = slots(&v);
    assert_eq!(s0.len(), 1, "{s0:?}");
    assert_eq!(s0[0].1, "passphrase");
    let slot1 = s0[0].0;

    // Add a second passphrase: both unlock.
    let out = passwd(
        &v,
        &pw1,
        &["--add", "--new-passphrase-file", pw2.to_str().unwrap()],
    );
    assert!(out.status.success(), "passwd --add: {}", stderr(&out));
    let s = slots(&v);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(
        unlocks(&v, &pw1, &data),
        "first passphrase no longer unlocks after --add"
    );
    assert!(unlocks(&v, &pw2, &data), "added passphrase does not unlock");
    assert_eq!(pack_hashes(&v), packs, "passwd --add rewrote pack files");

    // Change the second passphrase: old one fails, new one works, first still works.
    let out = passwd(&v, &pw2, &["--new-passphrase-file", pw3.to_str().unwrap()]);
    assert!(out.status.success(), "passwd change: {}", stderr(&out));
    assert_eq!(slots(&v).len(), 2);
    assert!(
        !unlocks(&v, &pw2, &data),
        "changed passphrase still unlocks"
    );
    assert!(unlocks(&v, &pw3, &data), "new passphrase does not unlock");
    assert!(
        unlocks(&v, &pw1, &data),
        "changing one passphrase broke another"
    );

    // A weak new passphrase is refused.
    let weak = write_pw(&dir, "weak", "password");
    let out = passwd(
        &v,
        &pw1,
        &["--add", "--new-passphrase-file", weak.to_str().unwrap()],
    );
    assert!(!out.status.success(), "passwd accepted a weak passphrase");
    assert_eq!(slots(&v).len(), 2);

    // A recovery key unlocks too.
    let out = passwd(&v, &pw1, &["--add-recovery-key"]);
    assert!(out.status.success(), "--add-recovery-key: {}", stderr(&out));
    let key = recovery_key(&stdout(&out))
        .unwrap_or_else(|| panic!("no recovery key in:\n{}", stdout(&out)));
    let keyfile = write_pw(&dir, "recovery", &key);
    let s = slots(&v);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(
        s.iter().filter(|(_, k)| k == "recovery-key").count(),
        1,
        "--list: {s:?}"
    );
    assert!(
        unlocks(&v, &keyfile, &data),
        "the recovery key does not unlock"
    );

    // Remove the first passphrase's slot.
    let out = passwd(&v, &pw3, &["--remove", &slot1.to_string()]);
    assert!(out.status.success(), "--remove {slot1}: {}", stderr(&out));
    let s = slots(&v);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(!s.iter().any(|(id, _)| *id == slot1));
    assert!(
        !unlocks(&v, &pw1, &data),
        "removed passphrase still unlocks"
    );
    assert!(unlocks(&v, &pw3, &data));
    assert!(unlocks(&v, &keyfile, &data));

    // Remove the recovery key, then refuse to remove the last slot.
    let rec_id = s.iter().find(|(_, k)| k == "recovery-key").unwrap().0;
    let out = passwd(&v, &pw3, &["--remove", &rec_id.to_string()]);
    assert!(out.status.success(), "--remove {rec_id}: {}", stderr(&out));
    let s = slots(&v);
    assert_eq!(s.len(), 1, "{s:?}");
    let last = s[0].0;
    let before = hash_tree(&v.store);
    let out = passwd(&v, &pw3, &["--remove", &last.to_string()]);
    assert_clear_failure(&out, "removing the last slot", &["last"]);
    assert_eq!(
        hash_tree(&v.store),
        before,
        "refusing to remove the last slot changed the store"
    );
    assert!(
        unlocks(&v, &pw3, &data),
        "the last passphrase no longer unlocks"
    );
    assert!(
        !unlocks(&v, &keyfile, &data),
        "removed recovery key still unlocks"
    );

    // No re-encryption at any point.
    assert_eq!(
        pack_hashes(&v),
        packs,
        "key slot changes rewrote pack files"
    );
}

// ---------------------------------------------------------------- info

/// The value after "key:" in `info` output.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("info has no {key:?} line:\n{text}"))
        .trim()
}

fn leading_number(s: &str) -> f64 {
    let n: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    n.parse()
        .unwrap_or_else(|_| panic!("no number at the start of {s:?}"))
}

#[test]
fn info_reports_format_counts_and_ratios() {
    let mut v = Vault::mounted();
    let mb = common::pattern(21, 1 << 20);
    std::fs::write(v.path("copy-one.bin"), &mb).unwrap();
    std::fs::write(v.path("copy-two.bin"), &mb).unwrap();
    std::fs::create_dir(v.path("sub")).unwrap();
    std::fs::write(v.path("sub/a.txt"), b"a").unwrap();
    std::fs::write(v.path("sub/b.txt"), b"bb").unwrap();
    std::fs::write(v.path("c.txt"), b"ccc").unwrap();
    std::fs::write(v.path("gone.txt"), b"deleted later").unwrap();
    std::fs::remove_file(v.path("gone.txt")).unwrap();
    std::os::unix::fs::symlink("c.txt", v.path("link")).unwrap();

    let st = v.store.to_str().unwrap().to_string();
    // Works while mounted (the count of files is known at create time). The
    // daemon groups catalog changes and commits them within 50 ms, and info
    // reads what is committed: it must catch up well within two seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let files = loop {
        let live = common::ok(Command::new(bin()).args(["info", &st]));
        let files = field(&stdout(&live), "files").to_string();
        if files == "5" || std::time::Instant::now() > deadline {
            break files;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(files, "5", "info while mounted");
    v.unmount();

    let out = common::ok(Command::new(bin()).args(["info", &st]));
    let text = stdout(&out);
    assert!(
        field(&text, "format").starts_with(|c: char| c.is_ascii_digit()),
        "format:\n{text}"
    );
    assert_eq!(field(&text, "block size"), "64.0 KiB", "\n{text}");
    assert_eq!(field(&text, "files"), "5", "files count\n{text}");
    assert_eq!(
        field(&text, "directories"),
        "2",
        "directories count (root and sub)\n{text}"
    );
    assert_eq!(field(&text, "other entries"), "1", "the symlink\n{text}");
    assert!(leading_number(field(&text, "versions")) >= 6.0, "\n{text}");
    let dedup = leading_number(field(&text, "dedup ratio"));
    assert!(
        (1.9..=2.1).contains(&dedup),
        "dedup ratio {dedup}, want about 2 (same 1 MiB twice)\n{text}"
    );
    let comp = leading_number(field(&text, "compression"));
    assert!(
        comp > 0.5 && comp < 10.0,
        "compression ratio {comp}\n{text}"
    );
    assert!(
        !text.contains("mounted at"),
        "info after unmount still says mounted\n{text}"
    );
}

// ---------------------------------------------------------------- ro, signals, umount

#[test]
fn read_only_mount_refuses_writes_and_serves_reads() {
    let mut v = Vault::mounted();
    let data = common::pattern(31, 150_000);
    std::fs::write(v.path("f"), &data).unwrap();
    std::fs::create_dir(v.path("d")).unwrap();
    v.unmount();
    let before = hash_tree(&v.store.join("packs"));
    v.mount(&["-o", "ro"]);

    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(&format!("{what} succeeded on a read-only mount"));
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs("create", std::fs::write(v.path("new"), b"x"));
    erofs(
        "open for writing",
        OpenOptions::new().write(true).open(v.path("f")).map(|_| ()),
    );
    erofs(
        "append",
        OpenOptions::new()
            .append(true)
            .open(v.path("f"))
            .and_then(|mut f| f.write_all(b"x")),
    );
    erofs("mkdir", std::fs::create_dir(v.path("d2")));
    erofs("unlink", std::fs::remove_file(v.path("f")));
    erofs("rename", std::fs::rename(v.path("f"), v.path("g")));
    erofs(
        "truncate",
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(v.path("f"))
            .map(|_| ()),
    );

    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    assert!(v.path("d").is_dir());
    v.unmount();
    assert_eq!(hash_tree(&v.store.join("packs")), before);
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
    assert!(!v.path("new").exists());
}

#[test]
fn sigterm_flushes_and_unmounts() {
    let mut v = Vault::mounted();
    let data = common::pattern(41, 3 * 65536 + 777);
    std::fs::write(v.path("f"), &data).unwrap();
    let pid = v.daemon_pid();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_mounted(&v.mnt) {
        assert!(
            Instant::now() < deadline,
            "still mounted 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    v.forget_mount();
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("f")).unwrap(), data);
}

/// SIGTERM while a program has a file open: the unmount may have to wait,
/// but once the file is closed, a second SIGTERM (as a service manager sends
/// on retry) must still flush and unmount.
#[test]
fn sigterm_while_busy_unmounts_once_files_are_closed() {
    let mut v = Vault::mounted();
    let data = common::pattern(43, 200_000);
    let mut held = std::fs::File::create(v.path("held")).unwrap();
    held.write_all(&data).unwrap();
    let pid = v.daemon_pid();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // Let the daemon act on the first signal before the file is closed.
    let log = v.log.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("signal")
    {
        assert!(
            Instant::now() < deadline,
            "daemon did not log the SIGTERM within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(held);
    if is_mounted(&v.mnt) {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_mounted(&v.mnt) {
        assert!(
            Instant::now() < deadline,
            "still mounted 30 s after the file was closed and SIGTERM was sent again; daemon.log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    v.forget_mount();
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("held")).unwrap(), data);
}

#[test]
fn umount8_and_fusermount3_unmount_cleanly() {
    let mut v = Vault::mounted();
    let one = common::pattern(51, 200_000);
    std::fs::write(v.path("one"), &one).unwrap();
    common::ok(Command::new("umount").arg(&v.mnt));
    v.forget_mount();
    assert!(!is_mounted(&v.mnt));
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("one")).unwrap(), one);

    let two = common::pattern(52, 300_000);
    std::fs::write(v.path("two"), &two).unwrap();
    common::ok(Command::new("fusermount3").arg("-u").arg(&v.mnt));
    v.forget_mount();
    assert!(!is_mounted(&v.mnt));
    v.mount(&[]);
    assert_eq!(std::fs::read(v.path("one")).unwrap(), one);
    assert_eq!(std::fs::read(v.path("two")).unwrap(), two);
}

/// The kernel's entries for mounts at `mp`, lowest first: each one's
/// filesystem type and superblock options, from /proc/self/mountinfo.
fn mounts_at(mp: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mp.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if left.split(' ').nth(4)? != want {
                return None;
            }
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            Some((fstype, r.next()?.to_string()))
        })
        .collect()
}

/// The first entry of `mounts_at`.
fn mount_entry(mp: &Path) -> Option<(String, String)> {
    mounts_at(mp).into_iter().next()
}

#[test]
fn the_kernel_lists_a_mount_as_fuse_phivault() {
    let v = Vault::mounted();
    let (fstype, _) = mount_entry(&v.mnt).expect("the mount is listed");
    assert_eq!(fstype, "fuse.phivault");
    // What findmnt, df and systemd select mounts by.
    let out =
        common::ok(Command::new("findmnt").args(["-n", "-t", "fuse.phivault", "-o", "TARGET"]));
    assert!(
        stdout(&out).lines().any(|l| Path::new(l.trim()) == v.mnt),
        "findmnt -t fuse.phivault does not list {}:\n{}",
        v.mnt.display(),
        stdout(&out)
    );
}

/// Lets everyone open /dev/fuse while it lives, as distributions set it up
/// (some VMs and containers leave it to root); then puts the mode back.
struct DevFuseOpenToAll(Option<u32>);

impl DevFuseOpenToAll {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return Self(None);
        }
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
        Self(Some(mode))
    }
}

impl Drop for DevFuseOpenToAll {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(mode) = self.0 {
            let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(mode));
        }
    }
}

/// The quick start as a user who is not root: `mount` goes through
/// fusermount3, the user works in the mount, and unmounts it.
#[test]
fn a_user_who_is_not_root_mounts_works_and_unmounts() {
    use std::os::unix::fs::{chown, PermissionsExt};
    common::require_fuse();
    let (uid, gid) = common::user_ids("tests");
    let _dev = DevFuseOpenToAll::new();
    let dir = tempfile::Builder::new()
        .prefix("phivault-user-")
        .tempdir()
        .unwrap();
    // The user's home: the program, the passphrase, the store, the mountpoint.
    let home = dir.path();
    let give = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(p, Some(uid), Some(gid)).unwrap();
    };
    give(home, 0o755);
    let program = home.join("phivault");
    std::fs::copy(bin(), &program).unwrap();
    give(&program, 0o755);
    let pwfile = write_pw(home, "passphrase", PASSPHRASE);
    give(&pwfile, 0o600);
    let mnt = home.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    give(&mnt, 0o755);
    let store = home.join("store");
    let as_user = |args: &[&std::ffi::OsStr]| {
        let mut c = Command::new("runuser");
        c.args(["-u", "tests", "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .args(args)
            .stdin(Stdio::null());
        c
    };
    let phivault = |args: &[&std::ffi::OsStr]| {
        let mut all = vec![program.as_os_str()];
        all.extend_from_slice(args);
        common::ok(&mut as_user(&all))
    };
    let pw = pwfile.as_os_str();
    phivault(&[
        "init".as_ref(),
        store.as_os_str(),
        "--passphrase-file".as_ref(),
        pw,
        "--kdf-memory-mib".as_ref(),
        "8".as_ref(),
        "--kdf-iterations".as_ref(),
        "1".as_ref(),
    ]);
    let _guard = MountGuard(mnt.clone());
    phivault(&[
        "mount".as_ref(),
        store.as_os_str(),
        mnt.as_os_str(),
        "--passphrase-file".as_ref(),
        pw,
    ]);

    let (fstype, options) = mount_entry(&mnt).expect("the user's mount is listed");
    assert_eq!(fstype, "fuse.phivault");
    assert!(
        options.split(',').any(|o| o == format!("user_id={uid}")),
        "not the user's mount: {options}"
    );
    let script = format!(
        "umask 022 && cd '{}' && echo 'visit notes' > n.txt && mkdir d && stat -c '%u %a' n.txt d && cat n.txt",
        mnt.display()
    );
    let out = common::ok(&mut as_user(&[
        "sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
    ]));
    assert_eq!(
        stdout(&out),
        format!("{uid} 644\n{uid} 755\nvisit notes\n"),
        "the user's new file and directory"
    );

    phivault(&["umount".as_ref(), mnt.as_os_str()]);
    assert!(!is_mounted(&mnt), "still mounted after the user's umount");
}

/// Kills the daemon of `v` with SIGKILL and waits until its mount is dead.
fn kill_daemon(v: &Vault) {
    common::sigkill(v.daemon_pid());
    let err = std::fs::read_dir(&v.mnt).expect_err("a dead mount lists nothing");
    // See `is_dead_mount` in src/cli/util.rs for the three.
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
        ),
        "a dead mount answered {err}"
    );
}

/// After a kill -9 (or the OOM killer), mounting again works without a
/// manual umount: on the same mountpoint, as systemd's Restart= does, and
/// on another one.
#[test]
fn mounting_after_the_daemon_was_killed_clears_its_dead_mount() {
    let mut v = Vault::mounted();
    let closed = common::pattern(61, 150_000);
    std::fs::write(v.path("closed.bin"), &closed).unwrap();
    kill_daemon(&v);
    let info = common::ok(Command::new(bin()).arg("info").arg(&v.store));
    assert!(
        stdout(&info).contains(&format!("mounted at:     {} (dead", v.mnt.display())),
        "info does not call the mount dead:\n{}",
        stdout(&info)
    );

    let out = mount_with(&v.store, &v.mnt, &v.pwfile, &[]);
    common::ok_output(&out, "mount over the dead mount");
    assert!(
        stderr(&out).contains("Cleared the mount at"),
        "the mount does not say it cleared the dead one: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(v.path("closed.bin")).unwrap(), closed);
    assert_eq!(
        mount_entry(&v.mnt).map(|(fstype, _)| fstype).as_deref(),
        Some("fuse.phivault"),
        "one live mount, not two stacked"
    );
    assert_eq!(
        mounts_at(&v.mnt).len(),
        1,
        "the dead mount is still under the new one"
    );

    // The store's dead mount elsewhere does not block a mount here.
    kill_daemon(&v);
    let mnt2 = v.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let _g2 = MountGuard(mnt2.clone());
    common::ok_output(
        &mount_with(&v.store, &mnt2, &v.pwfile, &[]),
        "mount elsewhere",
    );
    assert!(!is_mounted(&v.mnt), "the dead mount was left behind");
    v.forget_mount();
    assert_eq!(std::fs::read(mnt2.join("closed.bin")).unwrap(), closed);
}

/// Another store's dead mount is not ours to clear: the mount says what it
/// is and how to clear it, and leaves it.
#[test]
fn a_dead_mount_of_another_store_is_named_and_left_alone() {
    let mut dead = Vault::mounted();
    kill_daemon(&dead);
    let other = Vault::init();
    let out = mount_with(&other.store, &dead.mnt, &other.pwfile, &[]);
    assert_clear_failure(
        &out,
        "mount over another store's dead mount",
        &["daemon is gone", "phivault umount", "fusermount3 -u"],
    );
    assert!(is_mounted(&dead.mnt), "another store's mount was cleared");
    phivault_umount(&dead.mnt);
    dead.forget_mount();
    assert!(!is_mounted(&dead.mnt));
}

#[test]
fn umount_of_something_not_mounted_fails_clearly() {
    let v = Vault::init();
    let out = common::run(Command::new(bin()).arg("umount").arg(&v.mnt));
    assert_clear_failure(&out, "umount of a plain directory", &["not a mount point"]);
}

// ---------------------------------------------------------------- help

#[test]
fn help_explains_every_command() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--help"],
            &["encrypted", "version", "mount", "init", "passwd"],
        ),
        (&["init", "--help"], &["create", "store", "passphrase"]),
        (&["mount", "--help"], &["mount", "store", "passphrase-file"]),
        (&["umount", "--help"], &["unmount", "flush"]),
        (&["passwd", "--help"], &["passphrase", "slot", "recovery"]),
        (&["info", "--help"], &["store", "counts"]),
        (&["log", "--help"], &["version"]),
    ];
    for (args, words) in cases {
        let out = common::run(Command::new(bin()).args(args));
        assert!(
            out.status.success(),
            "phivault {args:?} exited {}",
            out.status
        );
        let text = stdout(&out).to_lowercase();
        for w in words {
            assert!(
                text.contains(w),
                "phivault {args:?} does not mention {w:?}:\n{text}"
            );
        }
    }
}

/// A command whose reader has gone (`phivault retention STORE | head -0`)
/// ends quietly, as other Unix tools do, instead of panicking.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::fd::FromRawFd;
    let v = Vault::init();
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors, which are owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned once each.
    let (read_end, write_end) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    drop(read_end);
    let out = Command::new(bin())
        .arg("retention")
        .arg(&v.store)
        .stdout(Stdio::from(write_end))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}
