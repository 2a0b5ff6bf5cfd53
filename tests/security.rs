//! Security properties of a store as it sits on disk: nothing readable leaks
//! into it, tampering is detected and reported, permissions are private, and
//! the passphrase is never written down or exposed by the daemon.

mod common;

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Vault, PASSPHRASE};

const MARKER: &str = "PHI-MARKER-7f3a9c-Smith-John";
const BLOCK: usize = 64 * 1024;

/// Every regular file under `root`, recursively (symlinks are not followed).
fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads every byte of every file under `root` and panics if any needle is
/// found. Returns how many bytes were scanned and the files seen.
fn assert_absent(root: &Path, needles: &[&[u8]], when: &str) -> (u64, Vec<PathBuf>) {
    let files = walk_files(root);
    let mut total = 0u64;
    for f in &files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            // A file may vanish while the daemon runs (e.g. -shm, *.tmp).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {}: {e}", f.display()),
        };
        total += bytes.len() as u64;
        for n in needles {
            if let Some(at) = find(&bytes, n) {
                panic!(
                    "{when}: {:?} found in plaintext in {} at byte {at} (file is {} bytes)",
                    String::from_utf8_lossy(n),
                    f.display(),
                    bytes.len()
                );
            }
        }
    }
    (total, files)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    let rc = unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {} {name}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn nothing_readable_reaches_the_store() {
    let mut v = Vault::mounted();
    let m = MARKER.as_bytes();

    // Compressible text full of the marker.
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("patient {i}: {MARKER}\n").as_bytes());
    }
    std::fs::write(v.path("notes.txt"), &text).unwrap();

    // The marker mixed with random bytes, across many blocks.
    let noise = common::pattern(77, 3 * 1024 * 1024);
    let mut mixed = Vec::new();
    for chunk in noise.chunks(997) {
        mixed.extend_from_slice(chunk);
        mixed.extend_from_slice(m);
    }
    std::fs::write(v.path("mixed.bin"), &mixed).unwrap();

    // A block that is nothing but the marker, and a tiny file that is exactly it.
    let pure: Vec<u8> = m.iter().copied().cycle().take(BLOCK * 2).collect();
    std::fs::write(v.path("pure.bin"), &pure).unwrap();
    std::fs::write(v.path("exact.txt"), m).unwrap();

    // Names: file, directory, nested file, renamed file, symlink and its target.
    let dir = v.path(&format!("dir-{MARKER}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(format!("{MARKER}.txt")), b"x").unwrap();
    std::fs::write(v.path(MARKER), b"named after the marker").unwrap();
    std::fs::write(v.path("before-rename"), b"y").unwrap();
    std::fs::rename(
        v.path("before-rename"),
        v.path(&format!("renamed-{MARKER}")),
    )
    .unwrap();
    let target = format!("/home/{MARKER}/records/{MARKER}.pdf");
    std::os::unix::fs::symlink(&target, v.path("link")).unwrap();
    std::os::unix::fs::symlink("exact.txt", v.path(&format!("link-{MARKER}"))).unwrap();

    // Extended attributes: names and values, on a file and on a directory.
    let xname = format!("user.{MARKER}");
    let xvalue: Vec<u8> = m.iter().copied().cycle().take(m.len() * 50).collect();
    set_xattr(&v.path("notes.txt"), &xname, &xvalue);
    set_xattr(&dir, "user.patient", m);

    // Everything really went in (a silent failure would make the scan pointless).
    assert_eq!(std::fs::read(v.path("mixed.bin")).unwrap(), mixed);
    assert_eq!(
        std::fs::read_link(v.path("link")).unwrap(),
        Path::new(&target)
    );
    assert_eq!(common::xattr(&v.path("notes.txt"), &xname), xvalue);
    assert_eq!(common::xattr(&dir, "user.patient"), m);
    assert!(std::fs::read_dir(&v.mnt)
        .unwrap()
        .any(|e| e.unwrap().file_name().as_bytes() == format!("renamed-{MARKER}").as_bytes()));

    let needles: Vec<&[u8]> = vec![
        m,
        b"PHI-MARKER-7f3a9c",
        b"MARKER-7f3a9c",
        b"7f3a9c-Smith",
        b"Smith-John",
        b"patient 1234: ",
    ];

    // While mounted (catalog WAL, active pack) ...
    assert_absent(&v.store, &needles, "while mounted");

    // ... and after a clean unmount.
    v.unmount();
    let (scanned, files) = assert_absent(&v.store, &needles, "after unmount");
    assert!(
        files.iter().any(|f| f.ends_with("catalog.db")),
        "catalog.db not scanned: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("/packs/")),
        "no pack files scanned: {files:?}"
    );
    assert!(
        scanned > 3 * 1024 * 1024,
        "only {scanned} bytes in the store: was the data stored at all?"
    );
}

/// (offset of the first record, end of the record region) of a pack file.
fn record_region(pack: &[u8]) -> (usize, usize) {
    assert_eq!(&pack[..8], b"PHIPACK1", "not a pack file");
    let n = pack.len();
    if n >= 28 && &pack[n - 8..] == b"PHIPEND1" {
        let index_offset = u64::from_le_bytes(pack[n - 20..n - 12].try_into().unwrap()) as usize;
        assert!(index_offset > 8 && index_offset <= n - 20, "bad trailer");
        (8, index_offset)
    } else {
        (8, n)
    }
}

fn read_block(f: &File, idx: usize, len: usize) -> (Vec<u8>, Option<std::io::Error>) {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], (idx * BLOCK + got) as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(got);
                return (buf, Some(e));
            }
        }
    }
    buf.truncate(got);
    (buf, None)
}

/// Offsets and total lengths of the records in a pack's record region.
fn records(pack: &[u8]) -> Vec<(usize, usize)> {
    let (mut pos, end) = record_region(pack);
    let mut out = Vec::new();
    while pos + 60 <= end {
        let total = u32::from_le_bytes(pack[pos..pos + 4].try_into().unwrap()) as usize + 4;
        assert!(
            pos + total <= end,
            "record at {pos} runs past the record region"
        );
        out.push((pos, total));
        pos += total;
    }
    out
}

/// Writes a file of several blocks, unmounts, lets `tamper` damage the pack
/// (given its path and bytes), mounts again and checks that reads fail with
/// EIO rather than return wrong bytes, and that daemon.log names the file and
/// a failing block.
fn tamper_case(label: &str, tamper: impl FnOnce(&Path, Vec<u8>)) {
    let mut v = Vault::mounted();
    let nblocks = 8;
    let data = common::pattern(4242, nblocks * BLOCK);
    std::fs::write(v.path("tampered.bin"), &data).unwrap();
    assert_eq!(std::fs::read(v.path("tampered.bin")).unwrap(), data);
    v.unmount();

    let packs: Vec<PathBuf> = walk_files(&v.store.join("packs"));
    assert_eq!(packs.len(), 1, "{label}: expected one pack file: {packs:?}");
    let pack = &packs[0];
    let bytes = std::fs::read(pack).unwrap();
    assert_eq!(
        records(&bytes).len(),
        nblocks,
        "{label}: one record per block expected"
    );
    tamper(pack, bytes);

    v.mount(&[]);
    let f = File::open(v.path("tampered.bin")).unwrap();
    let mut failed = Vec::new();
    for idx in 0..nblocks {
        let want = &data[idx * BLOCK..(idx + 1) * BLOCK];
        let (got, err) = read_block(&f, idx, BLOCK);
        assert!(
            got[..] == want[..got.len()],
            "{label}: block {idx}: wrong bytes returned"
        );
        match err {
            None => assert_eq!(
                got.len(),
                BLOCK,
                "{label}: block {idx}: short read without an error"
            ),
            Some(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "{label}: block {idx}: expected EIO, got {e}"
                );
                failed.push(idx);
            }
        }
    }
    assert!(!failed.is_empty(), "{label}: every block read back fine");
    // Reading the whole file fails too, with EIO.
    let whole =
        std::fs::read(v.path("tampered.bin")).expect_err("reading a tampered file succeeded");
    assert_eq!(
        whole.raw_os_error(),
        Some(libc::EIO),
        "{label}: whole-file read: {whole}"
    );

    let log = std::fs::read_to_string(&v.log).unwrap_or_default();
    let names_block = |line: &str| {
        failed.iter().any(|b| {
            let tag = format!("block {b}");
            line.match_indices(&tag)
                .any(|(i, _)| !line[i + tag.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
    };
    assert!(
        log.lines().any(|l| l.contains("tampered.bin") && names_block(l)),
        "{label}: daemon.log has no line naming tampered.bin and one of the failed blocks {failed:?}:\n{log}"
    );
    // The store is still usable for other files.
    std::fs::write(v.path("other"), b"fine").unwrap();
    assert_eq!(std::fs::read(v.path("other")).unwrap(), b"fine");
}

#[test]
fn tampered_pack_is_detected_and_reported() {
    tamper_case("one byte flipped mid-pack", |pack, mut bytes| {
        let (start, end) = record_region(&bytes);
        let at = start + (end - start) / 2;
        bytes[at] ^= 0x5a;
        std::fs::write(pack, &bytes).unwrap();
    });
}

#[test]
fn tampering_with_any_part_of_a_record_is_detected() {
    // Record layout: len:u32 plain_len:u32 id:[32] nonce:[12] ciphertext.
    for (label, field) in [
        ("length field", 1),
        ("block id", 20),
        ("nonce", 50),
        ("first ciphertext byte", 60),
    ] {
        tamper_case(label, |pack, mut bytes| {
            let (pos, _) = records(&bytes)[3];
            bytes[pos + field] ^= 0x01;
            std::fs::write(pack, &bytes).unwrap();
        });
    }
    tamper_case("last ciphertext byte", |pack, mut bytes| {
        let (pos, total) = records(&bytes)[5];
        bytes[pos + total - 1] ^= 0x80;
        std::fs::write(pack, &bytes).unwrap();
    });
    tamper_case("two records swapped", |pack, bytes| {
        let r = records(&bytes);
        let ((a, la), (b, lb)) = (r[1], r[2]);
        assert_eq!(la, lb, "records 1 and 2 differ in length; cannot swap");
        let mut out = bytes.clone();
        out[a..a + la].copy_from_slice(&bytes[b..b + lb]);
        out[b..b + lb].copy_from_slice(&bytes[a..a + la]);
        std::fs::write(pack, &out).unwrap();
    });
    tamper_case("pack truncated inside the last record", |pack, bytes| {
        let (pos, total) = *records(&bytes).last().unwrap();
        std::fs::write(pack, &bytes[..pos + total / 2]).unwrap();
    });
    tamper_case("pack file deleted", |pack, _| {
        std::fs::remove_file(pack).unwrap();
    });
}

#[test]
fn store_files_are_private() {
    // A typical login umask: the store must be private regardless.
    unsafe { libc::umask(0o022) };
    let mut v = Vault::mounted();
    std::fs::create_dir_all(v.path("a/b")).unwrap();
    std::fs::write(v.path("a/b/f"), common::pattern(1, 200_000)).unwrap();
    std::fs::write(v.path("g"), b"small").unwrap();
    set_xattr(&v.path("g"), "user.k", b"v");
    // Read-only openers of the store while it is mounted.
    let info = v.phivault(&["info", v.store.to_str().unwrap()]);
    assert!(
        info.status.success(),
        "info failed: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let log = v.phivault(&[
        "log",
        v.store.to_str().unwrap(),
        "/g",
        "--passphrase-file",
        v.pwfile.to_str().unwrap(),
    ]);
    assert!(
        log.status.success(),
        "log failed: {}",
        String::from_utf8_lossy(&log.stderr)
    );

    check_private(&v.store, "while mounted");
    v.unmount();
    let info = v.phivault(&["info", v.store.to_str().unwrap()]);
    assert!(info.status.success());
    check_private(&v.store, "after unmount");
    assert!(!walk_files(&v.store.join("packs")).is_empty());

    // `init` into an existing empty directory that is world-readable.
    let pre = v.dir.path().join("pre");
    std::fs::create_dir(&pre).unwrap();
    std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o755)).unwrap();
    common::ok(
        std::process::Command::new(common::bin())
            .arg("init")
            .arg(&pre)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .args(["--kdf-memory-mib", "8", "--kdf-iterations", "1"]),
    );
    check_private(&pre, "after init into an existing 0755 dir");

    // A store made by `mount --create`.
    let created = v.dir.path().join("created");
    let mnt2 = v.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    common::ok(
        std::process::Command::new(common::bin())
            .arg("mount")
            .arg(&created)
            .arg(&mnt2)
            .arg("--passphrase-file")
            .arg(&v.pwfile)
            .arg("--create"),
    );
    let wrote = std::fs::write(mnt2.join("x"), b"x");
    let mode_while_mounted =
        std::panic::catch_unwind(|| check_private(&created, "mount --create, mounted"));
    common::ok(
        std::process::Command::new(common::bin())
            .arg("umount")
            .arg(&mnt2),
    );
    wrote.unwrap();
    if let Err(e) = mode_while_mounted {
        std::panic::resume_unwind(e);
    }
    check_private(&created, "mount --create, after unmount");
}

/// Every directory in the store is 0700 and every file 0600.
fn check_private(root: &Path, when: &str) {
    let mut bad = Vec::new();
    for p in common::walk_all(root) {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            bad.push(format!("{} is {mode:04o}, want {want:04o}", p.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "{when}: store entries with wrong modes:\n{}",
        bad.join("\n")
    );
}

#[test]
fn passphrase_is_never_written_or_exposed() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("f"), common::pattern(9, 300_000)).unwrap();
    let pw = v.pwfile.to_str().unwrap();
    let st = v.store.to_str().unwrap();
    for args in [
        vec!["info", st],
        vec!["log", st, "/f", "--passphrase-file", pw],
        vec!["passwd", st, "--list"],
    ] {
        let out = v.phivault(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = [out.stdout, out.stderr].concat();
        assert!(
            find(&all, PASSPHRASE.as_bytes()).is_none(),
            "{args:?} printed the passphrase"
        );
    }

    let pid = v.daemon_pid();
    let needles: Vec<&[u8]> = vec![
        PASSPHRASE.as_bytes(),
        b"correct horse battery",
        b"battery staple 42",
    ];
    for what in ["cmdline", "environ"] {
        let p = format!("/proc/{pid}/{what}");
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        if what == "cmdline" {
            assert!(
                find(&bytes, b"daemon").is_some() || find(&bytes, b"phivault").is_some(),
                "{p} is not the daemon's"
            );
        }
        for n in &needles {
            assert!(find(&bytes, n).is_none(), "{p} contains the passphrase");
        }
    }
    assert_absent(&v.store, &needles, "while mounted");
    v.unmount();
    let (_, files) = assert_absent(&v.store, &needles, "after unmount");
    assert!(
        !files.iter().any(|f| f.ends_with(".log")),
        "a log file inside the store could leak names: {files:?}"
    );
    let log = std::fs::read(&v.log).expect("the daemon log exists outside the store");
    for n in &needles {
        assert!(
            find(&log, n).is_none(),
            "the daemon log contains the passphrase"
        );
    }
    assert!(files.iter().any(|f| f.ends_with("vault.toml")));
}
