//! Unmodified real programs (tar, diff, sqlite3, git, sed, cp, python3's
//! mmap, LibreOffice) running on a real phivault mount. Each test checks
//! the result the way a user would, and again after an unmount/mount cycle.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require_programs, sh, Vault};

/// Single-quotes a path for bash.
fn q(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 path");
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A native (non-FUSE) scratch directory.
fn native_tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// tar + diff

/// Extracting a real source tree (/usr/include: thousands of files, symlinks)
/// into the mount gives exactly what extracting it natively gives.
#[test]
fn untar_real_tree_matches_native_extraction() {
    require_programs(&["tar", "diff"]);
    assert!(
        Path::new("/usr/include").is_dir(),
        "this test tars /usr/include, which is missing"
    );
    let mut v = Vault::mounted();
    let scratch = native_tmp("phivault-untar-");
    let tarball = scratch.path().join("include.tar");
    let native = scratch.path().join("native");
    fs::create_dir(&native).unwrap();
    // Unreadable files are skipped rather than failing the archive.
    let out = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg("/usr")
        .arg("include")
        .output()
        .unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "tar -cf of /usr/include failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = stdout(&sh(&format!("tar -tf {} | wc -l", q(&tarball))));
    let entries: usize = entries.parse().unwrap();
    assert!(
        entries > 500,
        "the tarball should hold a real tree, holds {entries} entries"
    );

    sh(&format!("tar -xf {} -C {}", q(&tarball), q(&native)));
    sh(&format!("tar -xf {} -C {}", q(&tarball), q(&v.mnt)));

    let check =
        |v: &Vault, when: &str| {
            let out = common::run(
                Command::new("diff")
                    .arg("-r")
                    .arg("--no-dereference")
                    .arg(native.join("include"))
                    .arg(v.path("include")),
            );
            assert!(
                out.status.success(),
                "{when}: diff -r --no-dereference native vs mount differs (exit {}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(4000)
                    .collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(2000)
                    .collect::<String>()
            );
            let out = common::run(
                Command::new("tar")
                    .arg("-df")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(&v.mnt),
            );
            assert!(
            out.status.success(),
            "{when}: tar -df (compare archive with the mount) found differences (exit {}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).chars().take(4000).collect::<String>(),
            String::from_utf8_lossy(&out.stderr).chars().take(2000).collect::<String>()
        );
            // Same set of entries and types, symlinks included.
            let list = |root: &Path| {
                stdout(&sh(&format!(
                    "cd {} && find include -printf '%y %p %l\\n' | sort",
                    q(root)
                )))
            };
            let (a, b) = (list(&native), list(&v.mnt));
            assert_eq!(
                a.lines().count(),
                b.lines().count(),
                "{when}: entry count differs"
            );
            assert!(
                a == b,
                "{when}: find listings (type, path, link target) differ"
            );
            assert!(
                a.lines().any(|l| l.starts_with("l ")),
                "{when}: the tree should contain symlinks"
            );
        };
    check(&v, "after extraction");
    v.remount();
    check(&v, "after remount");
    // Extracting again over the existing tree replaces every file.
    sh(&format!("tar -xf {} -C {}", q(&tarball), q(&v.mnt)));
    check(&v, "after extracting again over the tree");
    // rm -rf reads directories while it empties them.
    sh(&format!("rm -rf {}", q(&v.path("include"))));
    assert_eq!(
        names(&v.mnt),
        Vec::<String>::new(),
        "rm -rf left entries behind"
    );
    v.remount();
    assert_eq!(
        names(&v.mnt),
        Vec::<String>::new(),
        "rm -rf: entries came back after remount"
    );
}

// ---------------------------------------------------------------------------
// sqlite3

/// Feeds `script` to one sqlite3 process on `db`; returns its stdout.
fn sqlite(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg("-batch")
        .arg("-bail")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sqlite3");
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("feed sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 {} failed with {}\nstdout: {}\nstderr: {}",
        db.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .take(2000)
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SQL_ROWS: usize = 2000;

/// 2000 separate transactions, each one INSERT, with the given journal mode.
fn sqlite_inserts_script(journal_mode: &str) -> String {
    let mut s = format!(
        "PRAGMA journal_mode={journal_mode};\nPRAGMA synchronous=FULL;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL);\n"
    );
    for i in 0..SQL_ROWS {
        // Autocommit: each statement is its own transaction. Row sizes vary so
        // the database grows across many 64 KiB blocks and pages split.
        s.push_str(&format!(
            "INSERT INTO t(k, v) VALUES ('key-{:05}', randomblob({}));\n",
            (i * 7919) % 100_000,
            (i * 37) % 700 + 1
        ));
    }
    s
}

fn expected_blob_total() -> usize {
    (0..SQL_ROWS).map(|i| (i * 37) % 700 + 1).sum()
}

fn check_sqlite_db(db: &Path, when: &str) {
    let out = sqlite(
        db,
        "PRAGMA integrity_check;\nSELECT count(*) FROM t;\nSELECT sum(length(v)) FROM t;\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "ok".to_string(),
            SQL_ROWS.to_string(),
            expected_blob_total().to_string()
        ],
        "{when}: integrity_check / count(*) / sum(length(v)) of {}",
        db.display()
    );
}

#[test]
fn sqlite_2000_transactions_journal_delete() {
    require_programs(&["sqlite3"]);
    let mut v = Vault::mounted();
    fs::create_dir(v.path("db")).unwrap();
    let db = v.path("db/test.sqlite");
    let out = sqlite(&db, &sqlite_inserts_script("DELETE"));
    assert_eq!(
        out.lines().next(),
        Some("delete"),
        "journal_mode=DELETE not accepted: {out}"
    );
    check_sqlite_db(&db, "after 2000 inserts");
    assert_eq!(
        names(&v.path("db")),
        vec!["test.sqlite".to_string()],
        "the rollback journal must be gone after the last commit"
    );
    v.remount();
    check_sqlite_db(&v.path("db/test.sqlite"), "after remount");
    // And the database is still writable after remount.
    sqlite(
        &v.path("db/test.sqlite"),
        "PRAGMA journal_mode=DELETE;\nDELETE FROM t WHERE id % 2 = 0;\nVACUUM;\n",
    );
    let out = sqlite(
        &v.path("db/test.sqlite"),
        "PRAGMA integrity_check;\nSELECT count(*) FROM t;\n",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["ok", "1000"],
        "after delete + VACUUM"
    );
}

#[test]
fn sqlite_2000_transactions_wal() {
    require_programs(&["sqlite3"]);
    let mut v = Vault::mounted();
    let db = v.path("wal.sqlite");
    let out = sqlite(&db, &sqlite_inserts_script("WAL"));
    assert_eq!(
        out.lines().next(),
        Some("wal"),
        "journal_mode=WAL not accepted (shared mmap of -shm?): {out}"
    );
    check_sqlite_db(&db, "after 2000 WAL inserts");
    v.remount();
    check_sqlite_db(&v.path("wal.sqlite"), "after remount");
    let out = sqlite(&v.path("wal.sqlite"), "PRAGMA journal_mode;\n");
    assert_eq!(out.trim(), "wal", "journal mode is persistent");
}

// ---------------------------------------------------------------------------
// git

fn git(repo: &Path, args: &[&str]) -> String {
    let out = common::ok(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", repo.parent().unwrap())
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_git(repo: &Path, commits: &[String], when: &str) {
    let fsck = common::ok(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["fsck", "--full", "--strict"])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", repo.parent().unwrap()),
    );
    let err = String::from_utf8_lossy(&fsck.stderr);
    let outp = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        !err.contains("error")
            && !outp.contains("missing")
            && !outp.contains("broken")
            && !outp.contains("corrupt"),
        "{when}: git fsck --full not clean:\nstdout: {outp}\nstderr: {err}"
    );
    let log = git(repo, &["log", "--format=%s"]);
    let mut want: Vec<&str> = commits.iter().map(String::as_str).collect();
    want.reverse();
    assert_eq!(log.lines().collect::<Vec<_>>(), want, "{when}: git log");
    assert_eq!(
        git(repo, &["status", "--porcelain"]),
        "",
        "{when}: work tree should be clean"
    );
    // Every file's content at HEAD matches what is checked out.
    assert_eq!(
        git(repo, &["diff", "HEAD", "--stat"]),
        "",
        "{when}: checkout differs from HEAD"
    );
}

#[test]
fn git_init_commit_fsck_gc() {
    require_programs(&["git"]);
    let mut v = Vault::mounted();
    let repo = v.path("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Phi Vault"]);
    git(&repo, &["config", "user.email", "phivault@example.invalid"]);
    let mut commits = Vec::new();
    for round in 0..6u64 {
        fs::create_dir_all(repo.join(format!("src/mod{}", round % 3))).unwrap();
        for f in 0..8u64 {
            let p = repo.join(format!("src/mod{}/file{f}.txt", round % 3));
            let mut text = String::new();
            for line in 0..(50 + 40 * f + round * 7) {
                text.push_str(&format!("round {round} file {f} line {line}\n"));
            }
            fs::write(&p, text).unwrap();
        }
        // A binary file that spans 64 KiB blocks and changes every round.
        fs::write(
            repo.join("blob.bin"),
            common::pattern(round + 100, 150_000 + round as usize * 1000),
        )
        .unwrap();
        if round == 3 {
            fs::remove_file(repo.join("src/mod0/file1.txt")).unwrap();
            fs::rename(
                repo.join("src/mod1/file2.txt"),
                repo.join("src/renamed.txt"),
            )
            .unwrap();
        }
        git(&repo, &["add", "-A"]);
        let msg = format!("commit number {round}");
        git(&repo, &["commit", "-q", "-m", &msg]);
        commits.push(msg);
    }
    check_git(&repo, &commits, "after commits");
    git(&repo, &["gc", "-q", "--aggressive", "--prune=now"]);
    assert!(
        fs::read_dir(repo.join(".git/objects/pack"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".pack")),
        "git gc should have written a pack"
    );
    check_git(&repo, &commits, "after git gc");
    // Check out an old commit and come back.
    git(&repo, &["checkout", "-q", "HEAD~4"]);
    assert!(
        repo.join("src/mod1/file2.txt").exists(),
        "old checkout should restore the renamed file"
    );
    git(&repo, &["checkout", "-q", "main"]);
    v.remount();
    let repo = v.path("repo");
    check_git(&repo, &commits, "after remount");
    assert_eq!(
        fs::read(repo.join("blob.bin")).unwrap(),
        common::pattern(105, 155_000),
        "blob.bin after remount"
    );
}

// ---------------------------------------------------------------------------
// editor-style saves

/// What vim (writebackup + rename) and LibreOffice do: write a temp file,
/// fsync it, rename it over the original.
#[test]
fn editor_save_via_temp_fsync_rename() {
    let mut v = Vault::mounted();
    let dir = v.path("docs");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("report.txt");
    fs::write(&file, b"first draft\n").unwrap();
    // An editor that keeps the file open while saving.
    let reader = fs::File::open(&file).unwrap();
    let mut last = Vec::new();
    for i in 0..12u64 {
        let tmp = dir.join(".report.txt.swp");
        let mut content = format!("version {i}\n").into_bytes();
        content.extend_from_slice(&common::pattern(i, (i as usize * 23_456) % 200_000));
        {
            let mut f = fs::File::create(&tmp).unwrap();
            f.write_all(&content).unwrap();
            f.sync_all().unwrap();
        }
        fs::rename(&tmp, &file).unwrap();
        fs::File::open(&dir).unwrap().sync_all().unwrap();
        assert_eq!(
            fs::read(&file).unwrap(),
            content,
            "content right after save {i}"
        );
        last = content;
    }
    // The handle opened before the first save still reads the replaced file.
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut &reader, &mut old).unwrap();
    assert_eq!(
        old, b"first draft\n",
        "an open handle must keep reading the file that was renamed over"
    );
    drop(reader);
    assert_eq!(
        names(&dir),
        vec!["report.txt".to_string()],
        "no temp files may remain"
    );
    assert_eq!(fs::metadata(&file).unwrap().nlink(), 1);
    v.remount();
    let file = v.path("docs/report.txt");
    assert_eq!(
        fs::read(&file).unwrap(),
        last,
        "final content after remount"
    );
    assert_eq!(
        names(&v.path("docs")),
        vec!["report.txt".to_string()],
        "no temp files after remount"
    );
}

/// LibreOffice, headless, as an office suite uses a share: a text note
/// becomes an ODF document, that a Word document, that text again; then the
/// note changes and its document is saved over, and after a remount the
/// documents still open. Each text that comes back is the note (LibreOffice
/// adds a byte-order mark), and the same as LibreOffice makes on the native
/// disk.
#[test]
fn libreoffice_converts_and_saves_over_documents() {
    require_programs(&["soffice"]);
    let mut v = Vault::mounted();
    let native = native_tmp("phivault-office-");
    // LibreOffice's profile, outside the mount: it is not the documents.
    let profile = native_tmp("phivault-office-profile-");
    let office = |dir: &Path, to: &str, out: &str, input: &str| {
        let outdir = dir.join(out);
        fs::create_dir_all(&outdir).unwrap();
        common::ok(
            Command::new("soffice")
                .arg(format!(
                    "-env:UserInstallation=file://{}",
                    profile.path().display()
                ))
                .args(["--headless", "--convert-to", to, "--outdir"])
                .arg(&outdir)
                .arg(dir.join(input))
                .env("HOME", profile.path()),
        );
    };
    const TEXT: &str = "txt:Text (encoded):UTF8";
    let read_text = |p: &Path| -> String {
        let bytes = fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let text = String::from_utf8(bytes).expect("utf-8 text");
        text.strip_prefix('\u{feff}').unwrap_or(&text).to_string()
    };
    let note: String = (0..400)
        .map(|i| format!("Patient {i:04}: follow-up in {} days.\n", i % 30 + 1))
        .collect();
    let changed = format!("{note}Addendum: results reviewed.\n");
    let session = |dir: &Path| -> (String, String) {
        fs::write(dir.join("note.txt"), &note).unwrap();
        office(dir, "odt", "docs", "note.txt");
        office(dir, "docx", "docs", "docs/note.odt");
        office(dir, TEXT, "back", "docs/note.docx");
        let first = read_text(&dir.join("back/note.txt"));
        // Saved over: the same names, new content.
        fs::write(dir.join("note.txt"), &changed).unwrap();
        office(dir, "odt", "docs", "note.txt");
        office(dir, "docx", "docs", "docs/note.odt");
        office(dir, TEXT, "back", "docs/note.docx");
        (first, read_text(&dir.join("back/note.txt")))
    };
    let on_native = session(native.path());
    let on_mount = session(&v.mnt);
    assert_eq!(on_mount.0, note, "the first round trip changed the note");
    assert_eq!(
        on_mount.1, changed,
        "the saved-over document is not the new note"
    );
    assert_eq!(on_mount, on_native, "the mount and the native disk differ");
    assert_eq!(names(&v.path("docs")), vec!["note.docx", "note.odt"]);

    v.remount();
    fs::remove_dir_all(v.path("back")).unwrap();
    office(&v.mnt, TEXT, "back", "docs/note.docx");
    assert_eq!(
        read_text(&v.path("back/note.txt")),
        changed,
        "the document after a remount"
    );
}

#[test]
fn sed_in_place() {
    require_programs(&["sed"]);
    let mut v = Vault::mounted();
    fs::create_dir(v.path("etc")).unwrap();
    let file = v.path("etc/config.ini");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("option{i} = foo {i}\n"));
    }
    fs::write(&file, &text).unwrap();
    sh(&format!("sed -i 's/foo/bar/g; /option13 /d' {}", q(&file)));
    sh(&format!("sed -i -e '1i # edited' {}", q(&file)));
    let mut want = String::from("# edited\n");
    want.push_str(
        &text
            .replace("foo", "bar")
            .replace("option13 = bar 13\n", ""),
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), want, "sed -i result");
    assert_eq!(
        names(&v.path("etc")),
        vec!["config.ini".to_string()],
        "sed -i temp file must be gone"
    );
    v.remount();
    assert_eq!(
        fs::read_to_string(v.path("etc/config.ini")).unwrap(),
        want,
        "after remount"
    );
}

// ---------------------------------------------------------------------------
// mmap

fn python(script: &str, args: &[&Path]) {
    common::ok(Command::new("python3").arg("-c").arg(script).args(args));
}

#[test]
fn mmap_writes_then_reads() {
    require_programs(&["python3", "cat", "cmp"]);
    let mut v = Vault::mounted();
    let scratch = native_tmp("phivault-mmap-");
    let size = 5 * 65536 + 4321;
    let want = common::pattern(77, size);
    let src = scratch.path().join("src.bin");
    fs::write(&src, &want).unwrap();
    let target = v.path("mapped.bin");

    // Grow an empty file, map it shared, fill it in chunks written backwards
    // (each chunk straddles 64 KiB boundaries), msync, read back via the map.
    python(
        r#"
import mmap, os, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
fd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, len(data))
m = mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
chunk = 40000
starts = list(range(0, len(data), chunk))
for s in reversed(starts):
    m[s:s + chunk] = data[s:s + chunk]
m.flush()
assert m[:] == data, 'mapped content differs right after writing'
m.close()
os.close(fd)
"#,
        &[&src, &target],
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        want,
        "read(2) after mmap writes"
    );

    // Modify an existing file in place through a map: bytes across a block edge.
    let mut want2 = want.clone();
    for (i, b) in want2[65530..65550].iter_mut().enumerate() {
        *b = 0xA0 + i as u8;
    }
    for b in &mut want2[3 * 65536..3 * 65536 + 10] {
        *b = 0x55;
    }
    python(
        r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[65530:65550] = bytes(0xA0 + i for i in range(20))
m[3 * 65536:3 * 65536 + 10] = b'\x55' * 10
m.flush()
m.close()
os.close(fd)
"#,
        &[&target],
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        want2,
        "read(2) after in-place mmap edit"
    );

    v.remount();
    let copy = scratch.path().join("copy.bin");
    sh(&format!("cat {} > {}", q(&v.path("mapped.bin")), q(&copy)));
    let got = fs::read(&copy).unwrap();
    assert_eq!(got.len(), want2.len(), "size via cat after remount");
    assert!(
        got == want2,
        "content via cat after remount differs (first diff at byte {:?})",
        common::first_diff(&got, &want2)
    );
    // Read back through a fresh read-only map as well.
    python(
        r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
assert m[:] == open(sys.argv[2], 'rb').read(), 'mapped read after remount differs'
"#,
        &[&v.path("mapped.bin"), &copy],
    );
}

// ---------------------------------------------------------------------------
// cp -a

/// `find` + `stat` listing of a tree: type, perms, owner, mtime, size (files
/// and symlinks only: directory sizes are filesystem-specific), link count
/// (files only), symlink target.
fn stat_listing(root: &Path) -> String {
    stdout(&sh(&format!(
        "cd {} && find . -mindepth 1 ! -type d -print0 | sort -z | xargs -0 stat -c '%n %F %a %u:%g %Y %s %h' \
         && find . -mindepth 1 -type d -print0 | sort -z | xargs -0 stat -c '%n %F %a %u:%g %Y' \
         && find . -mindepth 1 -type l -print0 | sort -z | xargs -0 -n1 sh -c 'echo \"$0 -> $(readlink \"$0\")\"'",
        q(root)
    )))
}

#[test]
fn cp_a_preserves_tree() {
    require_programs(&["cp", "stat", "find", "touch", "diff"]);
    let mut v = Vault::mounted();
    let scratch = native_tmp("phivault-cpa-");
    let src: PathBuf = scratch.path().join("tree");
    sh(&format!(
        r#"
src={src}
mkdir -p "$src/a/b/c" "$src/private" "$src/empty"
printf 'hello\n' > "$src/a/hello.txt"
head -c 200000 /dev/urandom > "$src/a/b/random.bin"
head -c 65536 /dev/zero > "$src/a/b/c/zeros.bin"
: > "$src/a/b/c/empty.txt"
printf '#!/bin/sh\necho hi\n' > "$src/a/run.sh"
printf 'secret\n' > "$src/private/key"
ln "$src/a/hello.txt" "$src/a/b/hardlink.txt"
ln -s ../hello.txt "$src/a/b/rel-link"
ln -s /nonexistent/target "$src/a/dangling"
chmod 0755 "$src/a/run.sh"
chmod 0600 "$src/private/key"
chmod 0444 "$src/a/b/c/zeros.bin"
chmod 0640 "$src/a/b/random.bin"
chmod 2750 "$src/a/b/c"
chmod 0700 "$src/private"
chmod 1777 "$src/empty"
chown 1234:5678 "$src/a/hello.txt" "$src/private"
chown -h 4321:8765 "$src/a/b/rel-link"
touch -h -d '2001-02-03 04:05:06' "$src/a/b/rel-link" "$src/a/dangling"
touch -d '1999-12-31 23:59:59' "$src/a/hello.txt"
touch -d '2010-06-15 12:00:00' "$src/a/b/random.bin" "$src/a/b/c/zeros.bin" "$src/a/b/c/empty.txt" "$src/private/key"
touch -d '2005-05-05 05:05:05' "$src/a/b/c" "$src/a/b" "$src/empty" "$src/private" "$src/a"
"#,
        src = q(&src)
    ));
    let want = stat_listing(&src);
    assert!(
        want.lines().count() > 12,
        "source listing too small: {want}"
    );
    sh(&format!("cp -a {} {}", q(&src), q(&v.path("copy"))));
    let check = |v: &Vault, when: &str| {
        let got = stat_listing(&v.path("copy"));
        assert!(
            got == want,
            "{when}: cp -a did not preserve the tree:\n--- native\n{want}\n--- mount\n{got}"
        );
        sh(&format!(
            "diff -r --no-dereference {} {}",
            q(&src),
            q(&v.path("copy"))
        ));
    };
    check(&v, "after cp -a");
    v.remount();
    check(&v, "after remount");
}
