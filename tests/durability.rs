//! Durability: a daemon killed mid-storm loses nothing that was closed or
//! fsync'd, and a full disk is reported as ENOSPC without damaging the store.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Vault;

/// close(2) with its result checked (dropping a File ignores close errors).
fn close_checked(f: File) -> std::io::Result<()> {
    let fd = f.into_raw_fd();
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes statvfs(2) says an unprivileged writer may still use under `path`.
fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::statvfs(c.as_ptr(), &mut st) },
        0,
        "statvfs {}",
        path.display()
    );
    st.f_bavail as u64 * st.f_frsize as u64
}

fn is_mounted(mp: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mp.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn integrity_ok(db: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec!["ok".to_string()],
        "integrity_check of {}",
        db.display()
    );
}

struct Done {
    path: PathBuf,
    hash: blake3::Hash,
    len: usize,
    fsynced: bool,
}

#[test]
fn sigkill_during_write_storm_loses_nothing_closed() {
    let mut v = Vault::mounted();
    std::fs::create_dir(v.path("storm")).unwrap();
    let done: Arc<Mutex<Vec<Done>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Two writers, so the kill can land between and inside requests of both.
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (done, stop, dir) = (done.clone(), stop.clone(), v.path("storm"));
            std::thread::spawn(move || -> std::io::Error {
                let mut i: u64 = t << 32;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return std::io::Error::other("stopped");
                    }
                    i += 1;
                    let path = dir.join(format!("f{i:012x}"));
                    let len = ((i * 7919) % (300 * 1024)) as usize + 1;
                    let data = common::pattern(i, len);
                    let fsync = i.is_multiple_of(3);
                    let res = (|| -> std::io::Result<()> {
                        let mut f = OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)?;
                        // Several writes, some not block-aligned.
                        for chunk in data.chunks(40_000) {
                            f.write_all(chunk)?;
                        }
                        if fsync {
                            f.sync_all()?;
                        }
                        close_checked(f)
                    })();
                    match res {
                        Ok(()) => done.lock().unwrap().push(Done {
                            path,
                            hash: blake3::hash(&data),
                            len,
                            fsynced: fsync,
                        }),
                        Err(e) => return e,
                    }
                }
            })
        })
        .collect();

    // Let the storm run, then kill the daemon without warning.
    std::thread::sleep(Duration::from_millis(1500));
    common::sigkill(v.daemon_pid());
    // Ends the writer if it is between calls; a call in flight fails now.
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        eprintln!("writer stopped with: {}", w.join().unwrap());
    }

    assert!(
        Command::new("umount")
            .arg("-l")
            .arg(&v.mnt)
            .status()
            .unwrap()
            .success(),
        "umount -l"
    );
    v.forget_mount();
    assert!(!is_mounted(&v.mnt));

    let done = std::mem::take(&mut *done.lock().unwrap());
    assert!(
        done.len() >= 10,
        "the storm completed only {} files in 1.5 s",
        done.len()
    );
    let fsynced = done.iter().filter(|d| d.fsynced).count();
    eprintln!(
        "{} files completed before the kill ({fsynced} fsync'd)",
        done.len()
    );
    assert!(fsynced >= 3, "only {fsynced} fsync'd files");

    v.mount(&[]);
    let mut bad = Vec::new();
    for d in &done {
        match std::fs::read(&d.path) {
            Ok(got) if got.len() == d.len && blake3::hash(&got) == d.hash => {}
            Ok(got) => bad.push(format!(
                "{}: {} bytes, want {} ({}), content {}",
                d.path.display(),
                got.len(),
                d.len,
                if d.fsynced { "fsync'd" } else { "closed" },
                if got.len() == d.len { "differs" } else { "-" }
            )),
            Err(e) => bad.push(format!("{}: {e}", d.path.display())),
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} completed files damaged after kill -9:\n{}",
        bad.len(),
        done.len(),
        bad.join("\n")
    );

    // The mount is fully usable.
    let fresh = common::pattern(999_999, 500_000);
    std::fs::write(v.path("after-crash.bin"), &fresh).unwrap();
    std::fs::create_dir(v.path("after-dir")).unwrap();
    std::fs::write(v.path("after-dir/x"), b"x").unwrap();
    assert_eq!(std::fs::read(v.path("after-crash.bin")).unwrap(), fresh);
    std::fs::rename(v.path("after-crash.bin"), v.path("after-dir/moved.bin")).unwrap();
    v.remount();
    assert_eq!(std::fs::read(v.path("after-dir/moved.bin")).unwrap(), fresh);
    assert_eq!(
        std::fs::read(&done[0].path)
            .map(|b| blake3::hash(&b))
            .unwrap(),
        done[0].hash
    );
    v.unmount();
    integrity_ok(&v.store.join("catalog.db"));
}

fn errno_of(e: &std::io::Error) -> String {
    format!("{e} (errno {:?})", e.raw_os_error())
}

#[test]
fn full_disk_reports_enospc_and_recovers() {
    fill_until_enospc(4 << 20, 8000, true);
}

/// Without fsync the error can only surface at write or close; a close that
/// returned 0 is a promise that the data is stored.
#[test]
fn full_disk_without_fsync_reports_enospc_at_write_or_close() {
    fill_until_enospc(3 << 20, 8000, false);
}

/// Many small files: the catalog grows as fast as the packs, so the disk
/// may fill under SQLite as well as under a pack append.
#[test]
fn full_disk_with_small_files_reports_enospc_and_recovers() {
    fill_until_enospc(24 * 1024, 100_000, true);
}

/// Fills a 64 MiB tmpfs holding the store with `file_len`-byte files until
/// ENOSPC, then checks the earlier files, frees space, and writes again.
fn fill_until_enospc(file_len: usize, max_files: u64, fsync: bool) {
    // Declared first so it is dropped last, after the vault has unmounted.
    let fs = common::Tmpfs::new("64m");
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, common::pattern(1, 8 << 20)).unwrap();
    let mut v = Vault::init_on(&fs);
    v.mount(&[]);

    let mut completed: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let chunk = 1 << 20;
    let mut failure = None;
    for i in 0..max_files {
        let path = v.path(&format!("fill-{i:06}.bin"));
        let data = common::pattern(1000 + i, file_len);
        let res = (|| -> Result<(), (&'static str, std::io::Error)> {
            let mut f = File::create(&path).map_err(|e| ("create", e))?;
            for c in data.chunks(chunk) {
                f.write_all(c).map_err(|e| ("write", e))?;
            }
            if fsync {
                f.sync_all().map_err(|e| ("fsync", e))?;
            }
            close_checked(f).map_err(|e| ("close", e))
        })();
        match res {
            Ok(()) => completed.push((path, data)),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let Some((i, (step, err))) = failure else {
        panic!("wrote {max_files} files of {file_len} bytes to a 64 MiB tmpfs without an error")
    };
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "file {i}: {step} failed with {} instead of ENOSPC",
        errno_of(&err)
    );
    assert!(
        !completed.is_empty(),
        "not a single 4 MiB file fitted before ENOSPC"
    );
    eprintln!(
        "ENOSPC at {step} of file {i} after {} complete files",
        completed.len()
    );

    for (p, data) in &completed {
        let got = std::fs::read(p)
            .unwrap_or_else(|e| panic!("{} after ENOSPC: {}", p.display(), errno_of(&e)));
        assert!(got == *data, "{} changed after ENOSPC", p.display());
    }

    // The space kept for the catalog is not offered to programs...
    let store_free = free_bytes(fs.path());
    let mount_free = free_bytes(&v.mnt);
    assert!(
        mount_free <= store_free.saturating_sub(15 << 20),
        "the mount offers {mount_free} bytes with {store_free} free on the store's disk"
    );
    // ...and keeps renames and deletes working on the full disk.
    let (last, data) = completed.pop().unwrap();
    let moved = v.path("moved-on-full-disk.bin");
    std::fs::rename(&last, &moved)
        .unwrap_or_else(|e| panic!("rename on a full disk: {}", errno_of(&e)));
    completed.push((moved, data));
    if completed.len() > 1 {
        let (first, _) = completed.remove(0);
        std::fs::remove_file(&first)
            .unwrap_or_else(|e| panic!("unlink on a full disk: {}", errno_of(&e)));
    }

    // Free space: writing works again.
    std::fs::remove_file(&ballast).unwrap();
    let _ = std::fs::remove_file(v.path(&format!("fill-{i:06}.bin")));
    let again = common::pattern(5555, 2 << 20);
    {
        let mut f = File::create(v.path("after-space.bin")).unwrap();
        f.write_all(&again)
            .unwrap_or_else(|e| panic!("write after freeing space: {}", errno_of(&e)));
        f.sync_all()
            .unwrap_or_else(|e| panic!("fsync after freeing space: {}", errno_of(&e)));
        close_checked(f).unwrap_or_else(|e| panic!("close after freeing space: {}", errno_of(&e)));
    }
    assert_eq!(std::fs::read(v.path("after-space.bin")).unwrap(), again);

    v.remount();
    for (p, data) in &completed {
        let got = std::fs::read(p)
            .unwrap_or_else(|e| panic!("{} after remount: {}", p.display(), errno_of(&e)));
        assert!(
            got == *data,
            "{} changed after ENOSPC and remount",
            p.display()
        );
    }
    assert_eq!(std::fs::read(v.path("after-space.bin")).unwrap(), again);
    v.unmount();
    integrity_ok(&v.store.join("catalog.db"));
}

/// A full pack is sealed in the background. If its index and trailer do not
/// fit on the disk, the next sync seals it itself and reports the failure
/// until space is back: an fsync never succeeds over a pack left unsealed.
#[test]
fn a_background_seal_that_hits_a_full_disk_is_retried_by_sync() {
    use phivault::store::{PackStore, RECORD_HEADER_LEN};
    const PAGE: u64 = 4096;
    let fs = common::Tmpfs::new("1m");
    std::fs::create_dir(fs.path().join("packs")).unwrap();
    // A pack is full at one page, so the seal is what needs a second one.
    let store = PackStore::with_target_size(
        fs.path().join("packs"),
        PAGE,
        Arc::new(|_, index: &[u8]| index.to_vec()),
    );
    let blocks = phivault::crypto::Keys::derive(&phivault::crypto::MasterKey::generate()).blocks;
    let first = blocks.seal(&common::pattern(1, 100));
    let placed = store.append(&[&first]).unwrap().locations[0];
    let pack = placed.pack;
    let end = placed.offset + placed.len as u64;

    // Fill the tmpfs to the last page.
    let ballast = fs.path().join("ballast");
    {
        let mut f = File::create(&ballast).unwrap();
        let page = vec![7u8; PAGE as usize];
        while f.write_all(&page).is_ok() {}
    }
    // Raw records grow by 17 bytes (format byte and tag): this one ends the
    // pack exactly at the end of its first page, which is already allocated.
    let plain_len = (PAGE - end) as usize - RECORD_HEADER_LEN - 17;
    let second = blocks.seal(&common::pattern(2, plain_len));
    assert_eq!(second.ciphertext.len(), plain_len + 17, "stored raw");
    let out = store.append(&[&second]).unwrap();
    assert_eq!(out.locations[0].pack, pack);

    let err = store
        .sync()
        .expect_err("the seal cannot fit, so sync must fail");
    assert!(
        err.to_string().contains("No space left"),
        "expected ENOSPC, got: {err}"
    );
    assert!(store.take_sealed().is_empty());

    std::fs::remove_file(&ballast).unwrap();
    store.sync().expect("with space back, sync seals the pack");
    let sealed: Vec<_> = store.take_sealed().iter().map(|p| p.id).collect();
    assert_eq!(sealed, vec![pack]);
    let bytes = std::fs::read(store.pack_path(pack)).unwrap();
    assert!(
        bytes.len() as u64 > PAGE,
        "index and trailer follow the records"
    );
    assert_eq!(&bytes[bytes.len() - 8..], b"PHIPEND1");
    // Both records are intact and readable.
    for (loc, plain) in [
        (placed, common::pattern(1, 100)),
        (out.locations[0], common::pattern(2, plain_len)),
    ] {
        let rec = store.read(&loc).unwrap();
        let back = blocks
            .open(&rec.id, &rec.nonce, rec.ciphertext, rec.plain_len as usize)
            .unwrap();
        assert_eq!(back, plain);
    }
}

/// Without the reserve, a commit can fail on a full disk, and SQLite then
/// undoes its whole group: a create and block records that were already
/// answered. The engine must say so at the next close and access (ENOSPC),
/// not answer ENOENT or record a file with holes, and must not reuse the
/// lost inode number.
#[test]
fn a_catalog_group_lost_to_a_full_disk_is_reported_not_hidden() {
    use phivault::vault::{RenameMode, ROOT_INO};
    let fs = common::Tmpfs::new("32m");
    // No reserve: the commit itself must be able to hit the full disk.
    let v = common::open_engine(fs.path(), true, 0);
    let new_file = |name: &str| common::engine_file(&v, name);
    let enospc = |r: phivault::vault::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.errno(), libc::ENOSPC, "{what}: {e}");
    };

    let kept = new_file("kept.bin");
    let kept_data = common::pattern(1, 200_000);
    v.write(kept, 0, &kept_data).unwrap();
    v.release_file(kept).unwrap();
    let grown = new_file("grown.bin");
    v.release_file(grown).unwrap();

    // In the group that will be lost: whole blocks written to `grown` and
    // `written` are stored and recorded at once; `written` and `created`
    // are created.
    v.open_file(grown, false).unwrap();
    v.write(grown, 0, &common::pattern(4, 300_000)).unwrap();
    let written = new_file("written.bin");
    v.write(written, 0, &common::pattern(2, 300_000)).unwrap();
    let created = new_file("created.bin");

    // Fill the tmpfs to its last page, then commit through a rename.
    let ballast = fs.path().join("ballast");
    {
        let mut f = File::create(&ballast).unwrap();
        let page = vec![7u8; 4096];
        while f.write_all(&page).is_ok() {}
    }
    enospc(
        v.rename(
            &phivault::vault::Caller::root(),
            ROOT_INO,
            b"kept.bin",
            ROOT_INO,
            b"renamed.bin",
            RenameMode::Replace,
        ),
        "the rename's commit must fail on the full disk",
    );

    std::fs::remove_file(&ballast).unwrap();
    // A directory's fsync reports the loss once, as a file's does for its own.
    enospc(v.sync_dir(), "the first directory fsync after the loss");
    v.sync_dir().unwrap();
    // Not a file with holes: the close fails, and the file is as last closed.
    enospc(
        v.flush(grown),
        "close of a file whose block records were rolled back",
    );
    assert_eq!(v.getattr(grown).unwrap().size, 0);
    v.release_file(grown).unwrap();
    enospc(
        v.flush(written),
        "close of a file created and written in the lost group",
    );
    enospc(
        v.getattr(created).map(|_| ()),
        "access to an inode whose creation was rolled back",
    );
    enospc(
        v.flush(created),
        "close of a file whose creation was rolled back",
    );

    // Nothing that was committed changed, and writing works again.
    assert_eq!(v.read(kept, 0, 300_000).unwrap(), kept_data);
    assert!(v.lookup(ROOT_INO, b"written.bin").is_err());
    let again = new_file("again.bin");
    assert!(again > created, "inode {again} reused a lost number");
    let again_data = common::pattern(3, 150_000);
    v.write(again, 0, &again_data).unwrap();
    v.release_file(again).unwrap();
    v.write(written, 0, b"still open, starts over").unwrap();
    v.release_file(written).unwrap_err();
    v.release_file(created).unwrap_err();
    v.shutdown().unwrap();
    drop(v);

    let v = common::open_engine(fs.path(), false, phivault::store::DEFAULT_RESERVE);
    assert_eq!(v.read(kept, 0, 300_000).unwrap(), kept_data);
    assert_eq!(v.read(again, 0, 300_000).unwrap(), again_data);
    v.integrity_check().unwrap();
    v.shutdown().unwrap();
    drop(v);
    integrity_ok(&fs.path().join("store").join("catalog.db"));
}
