//! fallocate(2) through a real mount: allocated space is counted, shown
//! as taken by `df`, refused when it is not free, and there for the writes
//! into it however full the store's filesystem has become since.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use common::{Tmpfs, Vault};

const MIB: u64 = 1 << 20;
/// What `df` may move by for other reasons than the allocation itself: the
/// catalog's pages and a pack's index, rounded to the tmpfs page.
const SLACK: u64 = 512 << 10;

fn fallocate(f: &File, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: a valid descriptor; fallocate only reads its arguments.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes `df` says an unprivileged writer may still use under `path`.
fn available(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs is plain old data; the call fills it or fails.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and an out-pointer to a live statvfs.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

/// `st_blocks` in bytes.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn create(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

fn assert_near(what: &str, got: u64, want: u64) {
    assert!(
        got.abs_diff(want) <= SLACK,
        "{what}: {got} bytes, expected {want} give or take {SLACK}"
    );
}

/// A store on a 64 MiB tmpfs of its own (16 MiB of it kept for the catalog).
struct SmallStore {
    // Declared first so it is dropped first: unmounted before the tmpfs goes.
    v: Vault,
    _fs: Tmpfs,
}

impl SmallStore {
    fn mounted() -> Self {
        let fs = Tmpfs::new("64m");
        let mut v = Vault::init_on(&fs);
        v.mount(&[]);
        SmallStore { v, _fs: fs }
    }

    fn available(&self) -> u64 {
        available(&self.v.mnt)
    }

    /// Writes 1 MiB files of incompressible data until the store refuses.
    fn fill(&self) -> u64 {
        for i in 0.. {
            let path = self.v.path(&format!("filler-{i}"));
            let res = (|| -> std::io::Result<()> {
                let mut f = File::create(&path)?;
                f.write_all(&common::pattern(100 + i, MIB as usize))?;
                f.sync_all()
            })();
            if let Err(e) = res {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                return i;
            }
        }
        unreachable!()
    }
}

#[test]
fn allocated_blocks_count_in_st_blocks_before_they_are_written() {
    let v = Vault::mounted();
    let plain = create(&v.path("plain"));
    fallocate(&plain, 0, 0, MIB).unwrap();
    assert_eq!(plain.metadata().unwrap().len(), MIB);
    assert_eq!(allocated(&v.path("plain")), MIB);

    let kept = create(&v.path("kept"));
    fallocate(&kept, libc::FALLOC_FL_KEEP_SIZE, 0, MIB).unwrap();
    assert_eq!(kept.metadata().unwrap().len(), 0, "KEEP_SIZE");
    assert_eq!(allocated(&v.path("kept")), MIB);
}

/// `fallocate -n -l 1M f; printf 0123456789 > f` (without truncating):
/// the size is what was written, the allocation stays as it was.
#[test]
fn a_write_inside_a_keep_size_allocation_keeps_the_posix_size() {
    let mut v = Vault::mounted();
    let path = v.path("f");
    let f = create(&path);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, MIB).unwrap();
    f.write_all_at(b"0123456789", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
    assert_eq!(allocated(&path), MIB, "written or not, 1 MiB is allocated");

    v.remount();
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    assert_eq!(allocated(&path), MIB);
}

/// The same through xfs_io, closed without an fsync: the previous
/// release left this file 65,536 bytes long (one whole block).
#[test]
fn xfs_io_writing_into_a_keep_size_allocation_keeps_the_posix_size() {
    common::require_programs(&["xfs_io"]);
    let mut v = Vault::mounted();
    let path = v.path("g");
    common::ok(
        std::process::Command::new("xfs_io")
            .args(["-f", "-c", "falloc -k 0 1m", "-c", "pwrite 0 10"])
            .arg(&path),
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
    v.remount();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
    assert_eq!(allocated(&path), MIB);
}

#[test]
fn an_allocation_beyond_the_free_space_fails_and_changes_nothing() {
    let s = SmallStore::mounted();
    let path = s.v.path("huge");
    let f = create(&path);
    f.sync_all().unwrap();
    let before = s.available();
    for mode in [0, libc::FALLOC_FL_KEEP_SIZE] {
        let err = fallocate(&f, mode, 0, 1 << 30).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "mode {mode}: {err}");
        assert_eq!(f.metadata().unwrap().len(), 0, "mode {mode}: size");
        assert_eq!(allocated(&path), 0, "mode {mode}: st_blocks");
        assert_near("df after the refusal", s.available(), before);
    }
    // What fits is still allocated.
    fallocate(&f, 0, 0, 4 * MIB).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 4 * MIB);
}

#[test]
fn df_shows_the_allocation_as_taken() {
    let s = SmallStore::mounted();
    let f = create(&s.v.path("db"));
    f.sync_all().unwrap();
    let before = s.available();
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 8 * MIB).unwrap();
    assert_near("df after allocating 8 MiB", s.available(), before - 8 * MIB);
}

/// The point of allocating first: a database or a download that allocated
/// its file can write it whole although the disk filled up meanwhile.
#[test]
fn writes_into_an_allocation_succeed_after_the_disk_filled_up() {
    fill_then_write_the_allocation(false);
}

#[test]
fn an_allocation_made_before_a_remount_is_there_after_the_disk_filled_up() {
    fill_then_write_the_allocation(true);
}

fn fill_then_write_the_allocation(remount: bool) {
    let mut s = SmallStore::mounted();
    let path = s.v.path("db");
    let data = common::pattern(7, 8 * MIB as usize);
    {
        let f = create(&path);
        fallocate(&f, 0, 0, data.len() as u64).unwrap();
    }
    if remount {
        s.v.remount();
    }
    let fillers = s.fill();
    assert!(fillers > 0, "the rest of the store took some data first");

    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    for chunk in data.chunks(MIB as usize) {
        f.write_all(chunk).expect("a write into allocated space");
    }
    f.sync_all().expect("fsync of writes into allocated space");
    drop(f);
    let mut back = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == data, "the allocated file reads back as written");
    assert_eq!(allocated(&path), data.len() as u64);
}

#[test]
fn an_allocation_survives_a_remount_and_rm_gives_it_back() {
    let mut s = SmallStore::mounted();
    let path = s.v.path("kept");
    create(&path).sync_all().unwrap();
    let free = s.available();
    {
        let f = create(&path);
        fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 8 * MIB).unwrap();
    }
    assert_near("df with 8 MiB allocated", s.available(), free - 8 * MIB);

    s.v.remount();
    assert_eq!(allocated(&path), 8 * MIB, "st_blocks after remount");
    assert_near("df after remount", s.available(), free - 8 * MIB);
    std::fs::remove_file(&path).unwrap();
    assert_near("df after rm", s.available(), free);

    s.v.remount();
    assert_near("df after rm and remount", s.available(), free);
}

#[test]
fn truncate_and_punch_hole_give_allocated_blocks_back() {
    let s = SmallStore::mounted();
    let path = s.v.path("f");
    let free = s.available();
    let f = create(&path);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 8 * MIB).unwrap();

    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, punch, 0, 2 * MIB).unwrap();
    assert_eq!(allocated(&path), 6 * MIB, "st_blocks after punching 2 MiB");
    assert_near("df after punching 2 MiB", s.available(), free - 6 * MIB);

    f.set_len(0).unwrap();
    assert_eq!(allocated(&path), 0, "st_blocks after truncate to 0");
    assert_near("df after truncate to 0", s.available(), free);
}

#[test]
fn zero_range_allocates_its_range() {
    let v = Vault::mounted();
    let path = v.path("f");
    let f = create(&path);
    f.write_all_at(&common::pattern(3, MIB as usize), 0)
        .unwrap();
    f.sync_all().unwrap();
    fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 0, 4 * MIB).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 4 * MIB);
    assert_eq!(allocated(&path), 4 * MIB);
    drop(f);
    assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));

    let kept = create(&v.path("kept"));
    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&kept, mode, 0, MIB).unwrap();
    assert_eq!(kept.metadata().unwrap().len(), 0);
    assert_eq!(allocated(&v.path("kept")), MIB);
}

/// Removed while open, a file can still be written: its allocation stays
/// until the last handle is closed.
#[test]
fn an_open_file_keeps_its_allocation_until_its_last_close() {
    let s = SmallStore::mounted();
    let path = s.v.path("f");
    let free = s.available();
    let f = create(&path);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 8 * MIB).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_near(
        "df while the removed file is open",
        s.available(),
        free - 8 * MIB,
    );
    drop(f);
    // The release reaches the daemon after close(2) returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.available().abs_diff(free) > SLACK && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_near("df after the last close", s.available(), free);
}

/// Stores made before allocations were kept in the catalog (schema 1,
/// tests/fixtures/store-f35037b, see tests/upgrade.rs) are upgraded when
/// they are mounted, and keep allocations from then on.
#[test]
fn a_store_from_before_allocations_were_kept_still_mounts() {
    let mut v = Vault::from_fixture("store-f35037b");
    v.mount(&[]);
    let f = create(&v.path("f"));
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, MIB).unwrap();
    assert_eq!(allocated(&v.path("f")), MIB);
    drop(f);
    v.remount();
    assert_eq!(allocated(&v.path("f")), MIB, "the allocation was kept");
    v.unmount();
    assert_eq!(v.catalog_version(), phivault::catalog::SCHEMA_VERSION);
}
