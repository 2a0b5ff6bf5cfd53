//! POSIX behaviour of a real mount, syscall by syscall, with the errno each
//! failure must carry. Every expectation here is what ext4 does for the same
//! call; the tests run as root and drop to uid 65534 in a forked child where
//! permissions matter.

mod common;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use common::Vault;

const NOBODY: u32 = 65534;
const BLOCK: u64 = 64 * 1024;
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A mount other users may enter (needed wherever uid 65534 acts).
fn shared_vault() -> Vault {
    Vault::mounted_with(&["-o", "allow_other"])
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("string without NUL")
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// 0 on success, the errno otherwise: what a forked child exits with.
fn code(r: io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(253),
    }
}

fn errname(e: i32) -> String {
    if e == 0 {
        "success".to_string()
    } else {
        format!("{} ({})", io::Error::from_raw_os_error(e), e)
    }
}

/// Asserts that `r` failed with exactly `want`.
#[track_caller]
fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, want: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} but it succeeded ({v:?})",
            errname(want)
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(want),
            "{what}: expected {}, got {e}",
            errname(want)
        ),
    }
}

/// Asserts that a child's exit code is the expected errno (0 = success).
#[track_caller]
fn assert_code(got: i32, want: i32, what: &str) {
    assert_eq!(
        got,
        want,
        "{what}: expected {}, got {}",
        errname(want),
        errname(got)
    );
}

/// Runs `f` in a forked child with umask `mask`, as uid/gid `id` with no
/// supplementary groups (None: stays root). `f` returns 0 or an errno, which
/// becomes the child's exit code and is returned here. Only plain syscalls
/// belong in `f`; prepare paths before calling.
fn in_child(id: Option<u32>, mask: libc::mode_t, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes syscalls and exits with _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            libc::umask(mask);
            if let Some(id) = id {
                // Raw syscalls: the child has one thread, no need for glibc's
                // all-threads setuid broadcast.
                let gid = libc::gid_t::from(id);
                if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setgid, gid) != 0
                    || libc::syscall(libc::SYS_setuid, id) != 0
                {
                    libc::_exit(254);
                }
            }
            let rc = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(255);
            libc::_exit(rc);
        }
        let mut status = 0;
        assert_eq!(
            libc::waitpid(pid, &mut status, 0),
            pid,
            "waitpid: {}",
            io::Error::last_os_error()
        );
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally (status {status:#x})"
        );
        let rc = libc::WEXITSTATUS(status);
        assert_ne!(rc, 254, "child could not switch to uid {id:?}");
        assert_ne!(rc, 255, "child panicked");
        rc
    }
}

/// Runs `f` as uid/gid 65534 (umask 022).
fn as_nobody(f: impl FnOnce() -> i32) -> i32 {
    in_child(Some(NOBODY), 0o022, f)
}

fn sys_open(p: &CString, flags: libc::c_int, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: p is a valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    check(fd)?;
    // SAFETY: fd was just opened by us.
    check(unsafe { libc::close(fd) })
}

fn sys_mkdir(p: &CString, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: p is a valid C string.
    check(unsafe { libc::mkdir(p.as_ptr(), mode) })
}

fn sys_chmod(p: &CString, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: p is a valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode) })
}

fn sys_stat(p: &CString) -> io::Result<()> {
    // SAFETY: p is a valid C string; st is a plain buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::stat(p.as_ptr(), &mut st) })
}

fn sys_opendir(p: &CString) -> io::Result<()> {
    // SAFETY: p is a valid C string; the handle is closed right away.
    unsafe {
        let d = libc::opendir(p.as_ptr());
        if d.is_null() {
            return Err(io::Error::last_os_error());
        }
        libc::closedir(d);
    }
    Ok(())
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (f, t) = (cpath(from), cpath(to));
    // SAFETY: valid C strings.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

fn truncate_path(p: &Path, len: u64) -> io::Result<()> {
    let c = cpath(p);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) })
}

fn fallocate(f: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: f is an open file.
    check(unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    })
}

fn mknod(p: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c = cpath(p);
    // SAFETY: valid C string.
    check(unsafe { libc::mknod(c.as_ptr(), mode, dev) })
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

fn omit() -> libc::timespec {
    ts(0, libc::UTIME_OMIT)
}

fn now() -> libc::timespec {
    ts(0, libc::UTIME_NOW)
}

fn utimensat(
    p: &Path,
    atime: libc::timespec,
    mtime: libc::timespec,
    flags: libc::c_int,
) -> io::Result<()> {
    let c = cpath(p);
    let times = [atime, mtime];
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) })
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: libc::c_int) -> io::Result<()> {
    let (c, n) = (cpath(p), cstr(name));
    // SAFETY: valid C strings; value pointer and length match.
    check(unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

/// getxattr into a buffer of exactly `size` bytes (0 asks for the length).
fn getxattr_sized(p: &Path, name: &str, size: usize) -> io::Result<Vec<u8>> {
    let (c, n) = (cpath(p), cstr(name));
    let mut buf = vec![0u8; size];
    // SAFETY: valid C strings; buffer pointer and length match.
    let got = check_size(unsafe {
        libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            if size == 0 {
                std::ptr::null_mut()
            } else {
                buf.as_mut_ptr().cast()
            },
            size,
        )
    })?;
    if size == 0 {
        buf = vec![0u8; got];
    } else {
        buf.truncate(got);
    }
    Ok(buf)
}

fn getxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let len = getxattr_sized(p, name, 0)?.len();
    getxattr_sized(p, name, len.max(1)).map(|mut v| {
        v.truncate(len);
        v
    })
}

fn listxattr_sized(p: &Path, size: usize) -> io::Result<Vec<u8>> {
    let c = cpath(p);
    let mut buf = vec![0u8; size];
    // SAFETY: valid C string; buffer pointer and length match.
    let got = check_size(unsafe {
        libc::listxattr(
            c.as_ptr(),
            if size == 0 {
                std::ptr::null_mut()
            } else {
                buf.as_mut_ptr().cast()
            },
            size,
        )
    })?;
    buf.truncate(got);
    Ok(buf)
}

fn listxattr(p: &Path) -> Vec<String> {
    let c = cpath(p);
    // SAFETY: valid C string; a null buffer of size 0 asks for the length.
    let len = check_size(unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) }).unwrap();
    let raw = listxattr_sized(p, len.max(1)).unwrap();
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

fn removexattr(p: &Path, name: &str) -> io::Result<()> {
    let (c, n) = (cpath(p), cstr(name));
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) })
}

type StatRow = (String, u64, u32, u64, u32, u32, u64, i64, i64, i64, i64);

/// What must survive a remount, per name.
fn stat_all(v: &Vault, names: &[&str]) -> Vec<StatRow> {
    names
        .iter()
        .map(|n| {
            let m = lstat(&v.path(n));
            (
                n.to_string(),
                m.ino(),
                m.mode(),
                m.nlink(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.atime(),
                m.atime_nsec(),
            )
        })
        .collect()
}

#[track_caller]
fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

fn ctime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

fn atime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.atime()) * 1_000_000_000 + i128::from(m.atime_nsec())
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut t = ts(0, 0);
    // SAFETY: t is a valid timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut t) }, 0);
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// Waits until both the fine and the coarse (kernel timestamp) wall clocks
/// are past `ns`, so that whatever is stamped next is strictly later. This
/// waits for a condition; it asserts nothing about durations.
fn wait_for_clock_past(ns: i128) {
    while clock_ns(libc::CLOCK_REALTIME_COARSE) <= ns || clock_ns(libc::CLOCK_REALTIME) <= ns {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Runs `op` and asserts it advanced the ctime of `path`.
#[track_caller]
fn assert_advances_ctime(what: &str, path: &Path, op: impl FnOnce()) {
    let before = ctime_ns(&lstat(path));
    wait_for_clock_past(before);
    op();
    let after = ctime_ns(&lstat(path));
    assert!(
        after > before,
        "{what} must advance the ctime of {}: before {before}, after {after}",
        path.display()
    );
}

#[track_caller]
fn read_at(f: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)
        .unwrap_or_else(|e| panic!("read {len} bytes at {offset}: {e}"));
    buf
}

#[track_caller]
fn assert_zeros(bytes: &[u8], what: &str) {
    if let Some(i) = bytes.iter().position(|b| *b != 0) {
        panic!("{what}: expected zeros, found {:#04x} at +{i}", bytes[i]);
    }
}

/// First differing offset, for readable failures on large buffers.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: contents differ (lengths {} vs {}), first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

fn rw(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

fn rw_create(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
}

fn make_dir_mode(p: &Path, mode: u32) {
    fs::create_dir(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn make_file_mode(p: &Path, data: &[u8], mode: u32) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------
// Regular files
// ---------------------------------------------------------------------------

#[test]
fn sparse_file_past_4gib_reads_holes_as_zeros() {
    let mut v = Vault::mounted();
    let p = v.path("sparse");
    let tail = common::pattern(7, 100_000);
    let at = 5 * GIB;
    {
        let f = rw_create(&p);
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&tail, at).unwrap();
        // Before close, through the same descriptor.
        assert_eq!(f.metadata().unwrap().len(), at + tail.len() as u64);
        assert_zeros(
            &read_at(&f, 4 * GIB - 10, 20),
            "hole across 4 GiB before close",
        );
        assert_same(
            &read_at(&f, at, tail.len()),
            &tail,
            "data at 5 GiB before close",
        );
    }
    let check = |p: &Path| {
        let m = lstat(p);
        assert_eq!(
            m.len(),
            at + tail.len() as u64,
            "size of a file written at 5 GiB"
        );
        assert!(m.len() > 4 * GIB);
        assert!(
            m.blocks() * 512 < 64 << 20,
            "a file with 5 GiB of holes must not allocate them: st_blocks={}",
            m.blocks()
        );
        let f = File::open(p).unwrap();
        assert_eq!(read_at(&f, 0, 4), b"head");
        assert_zeros(
            &read_at(&f, 4, 2 * BLOCK as usize),
            "hole right after the head",
        );
        assert_zeros(
            &read_at(&f, 4 * GIB - BLOCK, 2 * BLOCK as usize),
            "hole across 4 GiB",
        );
        assert_zeros(
            &read_at(&f, (u32::MAX as u64) - 10, 20),
            "hole across 2^32-1",
        );
        assert_zeros(
            &read_at(&f, at - 3 * BLOCK - 17, 3 * BLOCK as usize + 17),
            "hole right before the data",
        );
        assert_same(&read_at(&f, at, tail.len()), &tail, "data at 5 GiB");
        let mut rest = Vec::new();
        let mut f = f;
        f.seek(SeekFrom::Start(at + tail.len() as u64 - 10))
            .unwrap();
        f.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &tail[tail.len() - 10..], "read up to EOF");
    };
    check(&p);
    v.remount();
    check(&p);
}

#[test]
fn truncate_shrink_then_grow_reads_zeros_past_the_shrink_point() {
    let mut v = Vault::mounted();
    let p = v.path("t");
    let data = common::pattern(11, 200_000);
    fs::write(&p, &data).unwrap();

    // ftruncate down to the middle of block 1, then back up.
    let f = rw(&p);
    f.set_len(100_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    assert_same(
        &read_at(&f, 0, 100_000),
        &data[..100_000],
        "kept prefix after ftruncate shrink",
    );
    let mut buf = [0u8; 10];
    assert_eq!(
        f.read_at(&mut buf, 100_000).unwrap(),
        0,
        "nothing past the new EOF"
    );
    f.set_len(300_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 300_000);
    assert_same(
        &read_at(&f, 0, 100_000),
        &data[..100_000],
        "prefix after regrow",
    );
    assert_zeros(
        &read_at(&f, 100_000, 200_000),
        "bytes past the ftruncate shrink point after regrowing",
    );
    drop(f);

    // truncate(2) by path, down inside block 0 and up again.
    truncate_path(&p, 50_001).unwrap();
    assert_eq!(lstat(&p).len(), 50_001);
    truncate_path(&p, 150_000).unwrap();
    assert_eq!(lstat(&p).len(), 150_000);
    let mut want = data[..50_001].to_vec();
    want.resize(150_000, 0);
    assert_same(
        &fs::read(&p).unwrap(),
        &want,
        "after truncate(2) shrink and regrow",
    );

    // Shrink to exactly a block boundary and to zero.
    truncate_path(&p, BLOCK).unwrap();
    truncate_path(&p, 2 * BLOCK + 1).unwrap();
    want.truncate(BLOCK as usize);
    want.resize(2 * BLOCK as usize + 1, 0);
    assert_same(
        &fs::read(&p).unwrap(),
        &want,
        "after shrink to a block boundary and regrow",
    );

    v.remount();
    assert_same(&fs::read(&p).unwrap(), &want, "after remount");
    truncate_path(&p, 0).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"");
    truncate_path(&p, 10).unwrap();
    assert_eq!(fs::read(&p).unwrap(), [0u8; 10]);
}

#[test]
fn truncate_of_unflushed_writes_then_regrow_reads_zeros() {
    let mut v = Vault::mounted();
    let p = v.path("t");
    let data = common::pattern(12, 200_000);
    let f = rw_create(&p);
    f.write_all_at(&data, 0).unwrap();
    // No close in between: the writes may still be buffered.
    f.set_len(100_000).unwrap();
    f.set_len(300_000).unwrap();
    let mut want = data[..100_000].to_vec();
    want.resize(300_000, 0);
    assert_same(
        &read_at(&f, 0, 300_000),
        &want,
        "same fd after shrink and regrow",
    );
    let g = File::open(&p).unwrap();
    assert_same(
        &read_at(&g, 0, 300_000),
        &want,
        "second fd after shrink and regrow",
    );
    // Write again past the shrink point, then shrink by path while open.
    f.write_all_at(b"tail", 250_000).unwrap();
    truncate_path(&p, 120_000).unwrap();
    truncate_path(&p, 260_000).unwrap();
    want.truncate(120_000);
    want.resize(260_000, 0);
    assert_same(
        &read_at(&f, 0, 260_000),
        &want,
        "after truncate(2) of an open file",
    );
    drop((f, g));
    assert_same(&fs::read(&p).unwrap(), &want, "after close");
    v.remount();
    assert_same(&fs::read(&p).unwrap(), &want, "after remount");
}

#[test]
fn fallocate_punch_hole_over_unflushed_writes() {
    let mut v = Vault::mounted();
    let p = v.path("fa");
    let mut want = common::pattern(13, 4 * BLOCK as usize);
    let f = rw_create(&p);
    f.write_all_at(&want, 0).unwrap();
    fallocate(
        &f,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        BLOCK - 10,
        BLOCK + 20,
    )
    .unwrap();
    want[(BLOCK - 10) as usize..(2 * BLOCK + 10) as usize].fill(0);
    assert_eq!(f.metadata().unwrap().len(), 4 * BLOCK);
    assert_same(
        &read_at(&f, 0, want.len()),
        &want,
        "punched range before close",
    );
    drop(f);
    assert_same(&fs::read(&p).unwrap(), &want, "punched range after close");
    v.remount();
    assert_same(&fs::read(&p).unwrap(), &want, "punched range after remount");
}

#[test]
fn truncate_to_one_pib_is_sparse() {
    let mut v = Vault::mounted();
    let p = v.path("huge");
    fs::write(&p, b"abc").unwrap();
    let size = 1u64 << 50;
    truncate_path(&p, size).unwrap();
    let check = |p: &Path| {
        let m = lstat(p);
        assert_eq!(m.len(), size);
        assert!(
            m.blocks() < 2048,
            "a 1 PiB hole must not be allocated: st_blocks={}",
            m.blocks()
        );
        let f = File::open(p).unwrap();
        assert_eq!(read_at(&f, 0, 3), b"abc");
        assert_zeros(&read_at(&f, size - 100, 100), "end of a 1 PiB hole");
        let mut buf = [1u8; 8];
        assert_eq!(f.read_at(&mut buf, size).unwrap(), 0, "read at EOF");
    };
    check(&p);
    v.remount();
    check(&p);
}

#[test]
fn o_append_writes_always_go_to_the_end() {
    let v = Vault::mounted();
    let p = v.path("log");
    fs::write(&p, b"abc").unwrap();
    let mut f = OpenOptions::new().append(true).read(true).open(&p).unwrap();
    f.write_all(b"def").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"ghi").unwrap();
    // A second appender interleaves at the end too.
    let mut g = OpenOptions::new().append(true).open(&p).unwrap();
    g.write_all(b"jkl").unwrap();
    f.write_all(b"mno").unwrap();
    drop((f, g));
    assert_eq!(fs::read(&p).unwrap(), b"abcdefghijklmno");
}

/// The mount lets the kernel remember that a name does not exist (SQLite
/// asks for its journal at every transaction). Every way a name can come
/// into being must make it visible at once, however often it was missed.
#[test]
fn a_name_looked_up_before_it_exists_appears_when_made() {
    let v = Vault::mounted();
    fs::create_dir(v.path("dir")).unwrap();
    fs::write(v.path("source"), b"moved").unwrap();
    fs::write(v.path("linked"), b"linked").unwrap();
    type Make<'a> = Box<dyn Fn(&Path) -> io::Result<()> + 'a>;
    let makers: Vec<(&str, Make)> = vec![
        ("created file", Box::new(|p: &Path| fs::write(p, b"new"))),
        ("directory", Box::new(|p: &Path| fs::create_dir(p))),
        ("symlink", Box::new(|p: &Path| symlink("target", p))),
        (
            "fifo",
            Box::new(|p: &Path| mknod(p, libc::S_IFIFO | 0o644, 0)),
        ),
        (
            "hard link",
            Box::new(|p: &Path| fs::hard_link(v.path("linked"), p)),
        ),
        (
            "rename",
            Box::new(|p: &Path| fs::rename(v.path("source"), p)),
        ),
        (
            "rename exchange",
            Box::new(|p: &Path| {
                fs::write(v.path("other"), b"x")?;
                renameat2(&v.path("other"), p, libc::RENAME_EXCHANGE)
            }),
        ),
    ];
    for (what, make) in &makers {
        let p = v.path(&format!("dir/{}", what.replace(' ', "-")));
        for _ in 0..3 {
            assert_errno(fs::symlink_metadata(&p), libc::ENOENT, what);
        }
        let made = make(&p);
        if *what == "rename exchange" {
            // Exchanging with a missing name is ENOENT, as on ext4; the
            // name then still does not exist.
            assert_errno(made, libc::ENOENT, what);
            assert_errno(fs::symlink_metadata(&p), libc::ENOENT, what);
            continue;
        }
        made.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(fs::symlink_metadata(&p).is_ok(), "{what} is not visible");
        let names: Vec<_> = fs::read_dir(v.path("dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().any(|n| p.file_name() == Some(n)),
            "{what} is not listed"
        );
    }
    assert_eq!(fs::read(v.path("dir/rename")).unwrap(), b"moved");
    assert_errno(
        fs::symlink_metadata(v.path("source")),
        libc::ENOENT,
        "renamed away",
    );

    // Removed names are missed again, and come back when made again.
    fs::remove_file(v.path("dir/created-file")).unwrap();
    assert_errno(
        fs::symlink_metadata(v.path("dir/created-file")),
        libc::ENOENT,
        "removed",
    );
    fs::write(v.path("dir/created-file"), b"again").unwrap();
    assert_eq!(fs::read(v.path("dir/created-file")).unwrap(), b"again");
}

#[test]
fn o_excl_refuses_an_existing_name() {
    let v = Vault::mounted();
    let p = v.path("x");
    fs::write(&p, b"keep").unwrap();
    assert_errno(
        OpenOptions::new().write(true).create_new(true).open(&p),
        libc::EEXIST,
        "O_CREAT|O_EXCL on a file",
    );
    assert_eq!(
        fs::read(&p).unwrap(),
        b"keep",
        "O_EXCL failure must not touch the file"
    );
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(v.path("d")),
        libc::EEXIST,
        "O_CREAT|O_EXCL on a directory",
    );
    symlink("nowhere", v.path("dangling")).unwrap();
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(v.path("dangling")),
        libc::EEXIST,
        "O_CREAT|O_EXCL on a dangling symlink",
    );
    assert_errno(
        fs::metadata(v.path("nowhere")),
        libc::ENOENT,
        "O_EXCL must not follow the symlink",
    );
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(v.path("fresh"))
        .unwrap();
    drop(f);
    assert_eq!(lstat(&v.path("fresh")).len(), 0);
}

#[test]
fn o_trunc_empties_an_existing_file() {
    let mut v = Vault::mounted();
    let p = v.path("t");
    fs::write(&p, common::pattern(3, 3 * BLOCK as usize + 5)).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 0);
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"");
    // File::create is O_CREAT|O_TRUNC: the old tail must not resurface.
    fs::write(&p, b"xy").unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(b"z").unwrap();
    drop(f);
    truncate_path(&p, 4).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"z\0\0\0");
    v.remount();
    assert_eq!(fs::read(&p).unwrap(), b"z\0\0\0");
}

#[test]
fn fsync_and_fdatasync_succeed_and_data_persists() {
    let mut v = Vault::mounted();
    let p = v.path("durable");
    let data = common::pattern(5, 2 * BLOCK as usize + 9);
    let mut f = rw_create(&p);
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    f.write_all(b"more").unwrap();
    f.sync_data().unwrap();
    drop(f);
    fs::create_dir(v.path("d")).unwrap();
    let d = File::open(v.path("d")).unwrap();
    d.sync_all().unwrap();
    d.sync_data().unwrap();
    File::open(&v.mnt).unwrap().sync_all().unwrap();
    drop(d);
    v.remount();
    let mut want = data;
    want.extend_from_slice(b"more");
    assert_same(&fs::read(&p).unwrap(), &want, "fsynced data after remount");
}

#[test]
fn fallocate_extends_size_and_punch_hole_zeroes_a_range() {
    let mut v = Vault::mounted();
    let p = v.path("fa");
    let data = common::pattern(9, 3 * BLOCK as usize);
    fs::write(&p, &data).unwrap();
    let f = rw(&p);

    // Mode 0 inside the file changes nothing visible.
    fallocate(&f, 0, 10, 100).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3 * BLOCK);
    // Mode 0 past EOF extends the size with zeros.
    fallocate(&f, 0, 2 * BLOCK, 3 * BLOCK + 7).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        5 * BLOCK + 7,
        "fallocate mode 0 must extend st_size"
    );
    let mut want = data.clone();
    want.resize(5 * BLOCK as usize + 7, 0);
    assert_same(
        &read_at(&f, 0, want.len()),
        &want,
        "after fallocate extension",
    );

    // Punch a hole across a block boundary: zeros there, size unchanged.
    let (off, len) = (70_000u64, 100_000u64);
    fallocate(
        &f,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        off,
        len,
    )
    .unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        5 * BLOCK + 7,
        "punching a hole keeps the size"
    );
    want[off as usize..(off + len) as usize].fill(0);
    assert_same(&read_at(&f, 0, want.len()), &want, "after punching a hole");

    // Punch a hole past EOF with KEEP_SIZE: size unchanged.
    fallocate(
        &f,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        5 * BLOCK,
        10 * BLOCK,
    )
    .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 5 * BLOCK + 7);
    // Punch hole without KEEP_SIZE is invalid.
    assert_errno(
        fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 0, 10),
        libc::EOPNOTSUPP,
        "FALLOC_FL_PUNCH_HOLE without FALLOC_FL_KEEP_SIZE",
    );
    want.truncate(5 * BLOCK as usize);
    want.resize(5 * BLOCK as usize + 7, 0);
    drop(f);
    v.remount();
    assert_same(
        &fs::read(&p).unwrap(),
        &want,
        "fallocated and punched file after remount",
    );
}

#[test]
fn pread_pwrite_at_random_offsets_across_block_boundaries() {
    let mut v = Vault::mounted();
    let p = v.path("rand");
    let f = rw_create(&p);
    let mut model: Vec<u8> = Vec::new();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..300u64 {
        let boundary = rng.below(20) * BLOCK;
        let off = (boundary + rng.below(600)).saturating_sub(300);
        let len = match rng.below(4) {
            0 => 1 + rng.below(16),
            1 => 1 + rng.below(BLOCK),
            _ => 1 + rng.below(3 * BLOCK),
        } as usize;
        let data = common::pattern(1000 + i, len);
        f.write_all_at(&data, off).unwrap();
        let end = off as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[off as usize..end].copy_from_slice(&data);
        // Read back a window around the write, clipped at EOF.
        let from = off.saturating_sub(rng.below(BLOCK));
        let to = (end + rng.below(BLOCK) as usize).min(model.len());
        assert_same(
            &read_at(&f, from, to - from as usize),
            &model[from as usize..to],
            &format!("window after write {i}"),
        );
        if i % 50 == 49 {
            assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
            assert_same(
                &read_at(&f, 0, model.len()),
                &model,
                &format!("whole file after write {i}"),
            );
        }
    }
    let mut short = vec![0u8; 100];
    assert_eq!(
        f.read_at(&mut short, model.len() as u64 - 10).unwrap(),
        10,
        "pread across EOF is short"
    );
    drop(f);
    assert_same(&fs::read(&p).unwrap(), &model, "whole file after close");
    v.remount();
    assert_same(&fs::read(&p).unwrap(), &model, "whole file after remount");
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

#[test]
fn mkdir_and_rmdir() {
    let v = Vault::mounted();
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    assert!(lstat(&d).is_dir());
    assert_errno(
        fs::create_dir(&d),
        libc::EEXIST,
        "mkdir of an existing directory",
    );
    fs::write(v.path("f"), b"").unwrap();
    assert_errno(
        fs::create_dir(v.path("f")),
        libc::EEXIST,
        "mkdir over a file",
    );
    assert_errno(
        fs::create_dir(v.path("missing/sub")),
        libc::ENOENT,
        "mkdir under a missing parent",
    );
    assert_errno(
        fs::create_dir(v.path("f/sub")),
        libc::ENOTDIR,
        "mkdir under a file",
    );
    assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
    fs::remove_dir(&d).unwrap();
    assert_errno(fs::symlink_metadata(&d), libc::ENOENT, "stat after rmdir");
    assert_errno(
        fs::remove_dir(&d),
        libc::ENOENT,
        "rmdir of a missing directory",
    );
    let names: Vec<_> = fs::read_dir(&v.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"], "the removed directory must not be listed");
    // The name is reusable.
    fs::create_dir(&d).unwrap();
    assert!(lstat(&d).is_dir());
}

#[test]
fn rmdir_of_a_non_empty_directory_is_enotempty() {
    let v = Vault::mounted();
    fs::create_dir_all(v.path("d/sub")).unwrap();
    fs::create_dir(v.path("e")).unwrap();
    fs::write(v.path("e/f"), b"x").unwrap();
    assert_errno(
        fs::remove_dir(v.path("d")),
        libc::ENOTEMPTY,
        "rmdir of a dir holding a dir",
    );
    assert_errno(
        fs::remove_dir(v.path("e")),
        libc::ENOTEMPTY,
        "rmdir of a dir holding a file",
    );
    assert!(lstat(&v.path("d/sub")).is_dir());
    assert_eq!(fs::read(v.path("e/f")).unwrap(), b"x");
    fs::remove_file(v.path("e/f")).unwrap();
    fs::remove_dir(v.path("e")).unwrap();
}

#[test]
fn rmdir_of_a_file_is_enotdir() {
    let v = Vault::mounted();
    fs::write(v.path("f"), b"x").unwrap();
    assert_errno(
        fs::remove_dir(v.path("f")),
        libc::ENOTDIR,
        "rmdir of a regular file",
    );
    symlink(".", v.path("l")).unwrap();
    assert_errno(
        fs::remove_dir(v.path("l")),
        libc::ENOTDIR,
        "rmdir of a symlink to a directory",
    );
    assert_eq!(fs::read(v.path("f")).unwrap(), b"x");
}

#[test]
fn unlink_of_a_directory_is_eisdir() {
    let v = Vault::mounted();
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        fs::remove_file(v.path("d")),
        libc::EISDIR,
        "unlink of a directory",
    );
    assert!(lstat(&v.path("d")).is_dir());
    assert_errno(
        fs::remove_file(v.path("missing")),
        libc::ENOENT,
        "unlink of a missing name",
    );
}

#[test]
fn directory_with_100000_entries_lists_every_name() {
    let mut v = Vault::mounted();
    let d = v.path("big");
    fs::create_dir(&d).unwrap();
    const N: usize = 100_000;
    const THREADS: usize = 4;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let d = &d;
            s.spawn(move || {
                for i in (t..N).step_by(THREADS) {
                    File::create(d.join(format!("entry-{i:06}")))
                        .unwrap_or_else(|e| panic!("create entry {i}: {e}"));
                }
            });
        }
    });
    let check = |d: &Path| {
        let mut seen = vec![false; N];
        let mut count = 0usize;
        for e in fs::read_dir(d).unwrap() {
            let name = e.unwrap().file_name();
            let name = name.to_str().expect("utf-8 name");
            let i: usize = name
                .strip_prefix("entry-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected entry {name:?}"));
            assert!(
                i < N && !seen[i],
                "entry {name:?} listed twice or out of range"
            );
            seen[i] = true;
            count += 1;
        }
        assert_eq!(count, N, "read_dir must list every entry exactly once");
        assert!(seen.iter().all(|s| *s));
        assert_eq!(lstat(&d.join("entry-099999")).len(), 0);
    };
    check(&d);
    v.remount();
    check(&d);
}

#[test]
fn directory_link_count_tracks_subdirectories() {
    let mut v = Vault::mounted();
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    assert_eq!(lstat(&d).nlink(), 2, "a new directory has nlink 2");
    let root_before = lstat(&v.mnt).nlink();
    fs::create_dir(d.join("a")).unwrap();
    assert_eq!(lstat(&d).nlink(), 3, "one subdirectory adds one link");
    fs::create_dir(d.join("b")).unwrap();
    assert_eq!(lstat(&d).nlink(), 4, "two subdirectories add two links");
    fs::write(d.join("file"), b"").unwrap();
    symlink("a", d.join("link")).unwrap();
    assert_eq!(lstat(&d).nlink(), 4, "files and symlinks do not add links");
    assert_eq!(lstat(&d.join("a")).nlink(), 2);
    assert_eq!(
        lstat(&v.mnt).nlink(),
        root_before,
        "grandchildren do not count for the root"
    );
    fs::remove_dir(d.join("a")).unwrap();
    assert_eq!(
        lstat(&d).nlink(),
        3,
        "removing a subdirectory takes its link back"
    );
    v.remount();
    assert_eq!(lstat(&d).nlink(), 3, "link count after remount");
    fs::remove_dir(d.join("b")).unwrap();
    assert_eq!(lstat(&d).nlink(), 2);
    fs::remove_file(d.join("file")).unwrap();
    fs::remove_file(d.join("link")).unwrap();
    fs::remove_dir(&d).unwrap();
    assert_eq!(
        lstat(&v.mnt).nlink(),
        root_before - 1,
        "removing d takes its link from the root"
    );
}

// ---------------------------------------------------------------------------
// Name and path length limits
// ---------------------------------------------------------------------------

/// A name of exactly `len` bytes with multi-byte UTF-8 in it.
fn long_name(len: usize) -> String {
    let mut s = "é".repeat(len / 2);
    if len % 2 == 1 {
        s.push('a');
    }
    assert_eq!(s.len(), len);
    s
}

#[test]
fn names_up_to_255_bytes_work_and_256_bytes_are_enametoolong() {
    let mut v = Vault::mounted();
    let n255 = long_name(255);
    let d255 = format!("{}d", long_name(254));
    let n256 = long_name(256);

    fs::write(v.path(&n255), b"long").unwrap();
    fs::create_dir(v.path(&d255)).unwrap();
    assert_eq!(fs::read(v.path(&n255)).unwrap(), b"long");
    assert!(lstat(&v.path(&d255)).is_dir());
    fs::write(v.path(&d255).join(&n255), b"nested").unwrap();
    symlink(&n255, v.path("ln")).unwrap();
    assert_eq!(fs::read(v.path("ln")).unwrap(), b"long");

    assert_errno(
        File::create(v.path(&n256)),
        libc::ENAMETOOLONG,
        "create with a 256-byte name",
    );
    assert_errno(
        fs::create_dir(v.path(&n256)),
        libc::ENAMETOOLONG,
        "mkdir with a 256-byte name",
    );
    assert_errno(
        fs::symlink_metadata(v.path(&n256)),
        libc::ENAMETOOLONG,
        "lstat of a 256-byte name",
    );
    assert_errno(
        fs::metadata(v.path(&n256)),
        libc::ENAMETOOLONG,
        "stat of a 256-byte name",
    );
    assert_errno(
        symlink("x", v.path(&n256)),
        libc::ENAMETOOLONG,
        "symlink named with 256 bytes",
    );
    assert_errno(
        fs::hard_link(v.path(&n255), v.path(&n256)),
        libc::ENAMETOOLONG,
        "link to a 256-byte name",
    );
    assert_errno(
        fs::rename(v.path(&n255), v.path(&n256)),
        libc::ENAMETOOLONG,
        "rename to a 256-byte name",
    );
    assert_errno(
        mknod(&v.path(&n256), libc::S_IFIFO | 0o644, 0),
        libc::ENAMETOOLONG,
        "mknod with a 256-byte name",
    );

    let mut names: Vec<String> = fs::read_dir(&v.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec![n255.clone(), d255.clone(), "ln".to_string()];
    want.sort();
    assert_eq!(names, want, "only the valid names exist");

    v.remount();
    assert_eq!(fs::read(v.path(&n255)).unwrap(), b"long");
    assert_eq!(fs::read(v.path(&d255).join(&n255)).unwrap(), b"nested");
}

#[test]
fn symlink_targets_up_to_4095_bytes_round_trip_and_4096_are_enametoolong() {
    let mut v = Vault::mounted();
    // A target made of 255-byte components, with a multi-byte tail.
    let mut target = String::new();
    while target.len() + 256 <= 4095 {
        target.push_str(&long_name(255));
        target.push('/');
    }
    target.push_str(&"z".repeat(4095 - target.len()));
    assert_eq!(target.len(), 4095);
    symlink(&target, v.path("max")).unwrap();
    assert_eq!(
        fs::read_link(v.path("max")).unwrap().as_os_str().as_bytes(),
        target.as_bytes()
    );
    assert_eq!(
        lstat(&v.path("max")).len(),
        4095,
        "lstat size of a symlink is the target length"
    );

    let short = "a".repeat(4094);
    symlink(&short, v.path("short")).unwrap();

    let too_long = "b".repeat(4096);
    assert_errno(
        symlink(&too_long, v.path("over")),
        libc::ENAMETOOLONG,
        "symlink with a 4096-byte target",
    );
    assert_errno(
        fs::symlink_metadata(v.path("over")),
        libc::ENOENT,
        "failed symlink must not exist",
    );

    v.remount();
    assert_eq!(
        fs::read_link(v.path("max")).unwrap().as_os_str().as_bytes(),
        target.as_bytes()
    );
    assert_eq!(
        fs::read_link(v.path("short"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        short.as_bytes()
    );
}

// ---------------------------------------------------------------------------
// Symlinks and hard links
// ---------------------------------------------------------------------------

#[test]
fn symlink_readlink_and_lstat() {
    let mut v = Vault::mounted();
    fs::create_dir(v.path("dir")).unwrap();
    fs::write(v.path("dir/file"), b"pointed to").unwrap();
    symlink("dir/file", v.path("rel")).unwrap();
    symlink(v.path("dir"), v.path("abs")).unwrap();
    symlink("does/not/exist", v.path("dangling")).unwrap();

    let check = |v: &Vault| {
        assert_eq!(fs::read_link(v.path("rel")).unwrap(), Path::new("dir/file"));
        assert_eq!(fs::read_link(v.path("abs")).unwrap(), v.path("dir"));
        let m = lstat(&v.path("rel"));
        assert!(m.file_type().is_symlink());
        assert_eq!(m.len(), "dir/file".len() as u64);
        assert_eq!(m.nlink(), 1);
        assert!(
            fs::metadata(v.path("rel")).unwrap().is_file(),
            "stat follows the link"
        );
        assert_eq!(fs::read(v.path("rel")).unwrap(), b"pointed to");
        assert_eq!(fs::read(v.path("abs/file")).unwrap(), b"pointed to");
        assert!(lstat(&v.path("dangling")).file_type().is_symlink());
        assert_errno(
            fs::metadata(v.path("dangling")),
            libc::ENOENT,
            "stat through a dangling symlink",
        );
        assert_errno(
            fs::read_link(v.path("dir/file")),
            libc::EINVAL,
            "readlink of a regular file",
        );
        assert_errno(
            fs::read_link(v.path("dir")),
            libc::EINVAL,
            "readlink of a directory",
        );
    };
    check(&v);
    // Writing through a symlink writes the target.
    fs::write(v.path("rel"), b"rewritten").unwrap();
    assert_eq!(fs::read(v.path("dir/file")).unwrap(), b"rewritten");
    fs::write(v.path("dir/file"), b"pointed to").unwrap();
    // A symlink loop is ELOOP.
    symlink("loop2", v.path("loop1")).unwrap();
    symlink("loop1", v.path("loop2")).unwrap();
    assert_errno(
        fs::metadata(v.path("loop1")),
        libc::ELOOP,
        "stat of a symlink loop",
    );
    v.remount();
    check(&v);
}

#[test]
fn hard_link_shares_content_and_counts_links() {
    let mut v = Vault::mounted();
    let (a, b) = (v.path("a"), v.path("sub/b"));
    fs::create_dir(v.path("sub")).unwrap();
    fs::write(&a, b"one").unwrap();
    assert_eq!(lstat(&a).nlink(), 1);
    fs::hard_link(&a, &b).unwrap();
    assert_eq!(lstat(&a).nlink(), 2);
    assert_eq!(lstat(&b).nlink(), 2);
    assert_eq!(lstat(&a).ino(), lstat(&b).ino(), "both names are one inode");
    fs::write(&b, b"two, longer").unwrap();
    assert_eq!(
        fs::read(&a).unwrap(),
        b"two, longer",
        "a write through one name is seen through the other"
    );
    rw(&a).write_all_at(b"TWO", 0).unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"TWO, longer");
    assert_errno(
        fs::hard_link(&a, &b),
        libc::EEXIST,
        "link onto an existing name",
    );
    assert_errno(
        fs::hard_link(v.path("missing"), v.path("c")),
        libc::ENOENT,
        "link of a missing file",
    );
    v.remount();
    assert_eq!(lstat(&a).nlink(), 2, "nlink after remount");
    assert_eq!(lstat(&a).ino(), lstat(&b).ino());
    fs::remove_file(&a).unwrap();
    assert_eq!(lstat(&b).nlink(), 1);
    assert_eq!(
        fs::read(&b).unwrap(),
        b"TWO, longer",
        "content stays with the last name"
    );
    v.remount();
    assert_eq!(lstat(&b).nlink(), 1);
    assert_eq!(fs::read(&b).unwrap(), b"TWO, longer");
}

#[test]
fn hard_link_to_a_directory_is_eperm() {
    let v = Vault::mounted();
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        fs::hard_link(v.path("d"), v.path("d2")),
        libc::EPERM,
        "link(2) of a directory",
    );
    assert_errno(
        fs::symlink_metadata(v.path("d2")),
        libc::ENOENT,
        "no name is left behind",
    );
    assert_eq!(lstat(&v.path("d")).nlink(), 2);
}

// ---------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------

#[test]
fn rename_over_an_existing_file_replaces_it() {
    let mut v = Vault::mounted();
    let (src, dst, keep) = (v.path("src"), v.path("dst"), v.path("keep"));
    fs::write(&src, b"new content").unwrap();
    fs::write(&dst, common::pattern(2, 2 * BLOCK as usize + 3)).unwrap();
    fs::hard_link(&dst, &keep).unwrap();
    let src_ino = lstat(&src).ino();
    fs::rename(&src, &dst).unwrap();
    assert_errno(
        fs::symlink_metadata(&src),
        libc::ENOENT,
        "old name after rename",
    );
    assert_eq!(
        fs::read(&dst).unwrap(),
        b"new content",
        "the target shows the new content"
    );
    assert_eq!(lstat(&dst).ino(), src_ino);
    assert_eq!(lstat(&keep).nlink(), 1, "the replaced inode lost one link");
    assert_same(
        &fs::read(&keep).unwrap(),
        &common::pattern(2, 2 * BLOCK as usize + 3),
        "replaced inode via its other name",
    );
    // Renaming a name onto itself (same inode) is a no-op.
    fs::hard_link(&dst, v.path("alias")).unwrap();
    fs::rename(&dst, v.path("alias")).unwrap();
    assert!(
        lstat(&dst).is_file(),
        "rename between two links of one inode leaves both"
    );
    v.remount();
    assert_eq!(fs::read(&dst).unwrap(), b"new content");
    assert_errno(
        fs::symlink_metadata(&src),
        libc::ENOENT,
        "old name after remount",
    );
    let mut names: Vec<_> = fs::read_dir(&v.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["alias", "dst", "keep"]);
}

#[test]
fn rename_over_an_open_file_keeps_the_old_content_for_its_descriptor() {
    let mut v = Vault::mounted();
    let (src, dst) = (v.path("src"), v.path("dst"));
    let old = common::pattern(14, BLOCK as usize + 5);
    fs::write(&dst, &old).unwrap();
    fs::write(&src, b"replacement").unwrap();
    let f = rw(&dst);
    fs::rename(&src, &dst).unwrap();
    assert_eq!(fs::read(&dst).unwrap(), b"replacement");
    assert_same(
        &read_at(&f, 0, old.len()),
        &old,
        "the replaced file through its open fd",
    );
    f.write_all_at(b"still mine", 0).unwrap();
    assert_eq!(&read_at(&f, 0, 10), b"still mine");
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "the replaced file has no name left"
    );
    assert_eq!(
        fs::read(&dst).unwrap(),
        b"replacement",
        "writes to the replaced file do not reach the name"
    );
    drop(f);
    v.remount();
    assert_eq!(fs::read(&dst).unwrap(), b"replacement");
    assert_eq!(fs::read_dir(&v.mnt).unwrap().count(), 1);
}

#[test]
fn rename_moves_a_file_across_directories() {
    let mut v = Vault::mounted();
    fs::create_dir_all(v.path("a/deep")).unwrap();
    fs::create_dir(v.path("b")).unwrap();
    let data = common::pattern(4, BLOCK as usize + 1);
    fs::write(v.path("a/deep/f"), &data).unwrap();
    let ino = lstat(&v.path("a/deep/f")).ino();
    fs::rename(v.path("a/deep/f"), v.path("b/g")).unwrap();
    assert_errno(
        fs::symlink_metadata(v.path("a/deep/f")),
        libc::ENOENT,
        "source after a cross-dir rename",
    );
    assert_eq!(lstat(&v.path("b/g")).ino(), ino, "rename keeps the inode");
    assert_eq!(fs::read_dir(v.path("a/deep")).unwrap().count(), 0);
    assert_errno(
        fs::rename(v.path("b/missing"), v.path("a/x")),
        libc::ENOENT,
        "rename of a missing name",
    );
    assert_errno(
        fs::rename(v.path("b/g"), v.path("nodir/x")),
        libc::ENOENT,
        "rename into a missing directory",
    );
    v.remount();
    assert_same(
        &fs::read(v.path("b/g")).unwrap(),
        &data,
        "moved file after remount",
    );
    assert_errno(
        fs::symlink_metadata(v.path("a/deep/f")),
        libc::ENOENT,
        "source after remount",
    );
}

#[test]
fn rename_of_a_directory_across_directories_fixes_both_parents_link_counts() {
    let mut v = Vault::mounted();
    fs::create_dir_all(v.path("p1/child/grandchild")).unwrap();
    fs::write(v.path("p1/child/file"), b"inside").unwrap();
    fs::create_dir(v.path("p2")).unwrap();
    assert_eq!(lstat(&v.path("p1")).nlink(), 3);
    assert_eq!(lstat(&v.path("p2")).nlink(), 2);
    fs::rename(v.path("p1/child"), v.path("p2/moved")).unwrap();
    let check = |v: &Vault| {
        assert_eq!(
            lstat(&v.path("p1")).nlink(),
            2,
            "the old parent lost the moved dir's '..'"
        );
        assert_eq!(
            lstat(&v.path("p2")).nlink(),
            3,
            "the new parent gained the moved dir's '..'"
        );
        assert_eq!(lstat(&v.path("p2/moved")).nlink(), 3);
        assert_eq!(
            lstat(&v.path("p2/moved/..")).ino(),
            lstat(&v.path("p2")).ino(),
            "'..' of the moved dir is its new parent"
        );
        assert_eq!(fs::read(v.path("p2/moved/file")).unwrap(), b"inside");
        assert!(lstat(&v.path("p2/moved/grandchild")).is_dir());
    };
    check(&v);
    assert_errno(
        fs::rename(v.path("p2"), v.path("p2/moved/grandchild/inside")),
        libc::EINVAL,
        "moving a directory into its own subtree",
    );
    v.remount();
    check(&v);
}

#[test]
fn rename_noreplace_refuses_an_existing_target() {
    let mut v = Vault::mounted();
    fs::write(v.path("a"), b"A").unwrap();
    fs::write(v.path("b"), b"B").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        renameat2(&v.path("a"), &v.path("b"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "NOREPLACE onto a file",
    );
    assert_errno(
        renameat2(&v.path("a"), &v.path("d"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "NOREPLACE onto a dir",
    );
    assert_eq!(fs::read(v.path("a")).unwrap(), b"A");
    assert_eq!(fs::read(v.path("b")).unwrap(), b"B");
    renameat2(&v.path("a"), &v.path("d/c"), libc::RENAME_NOREPLACE).unwrap();
    assert_errno(
        fs::symlink_metadata(v.path("a")),
        libc::ENOENT,
        "source after NOREPLACE rename",
    );
    assert_eq!(fs::read(v.path("d/c")).unwrap(), b"A");
    v.remount();
    assert_eq!(fs::read(v.path("d/c")).unwrap(), b"A");
    assert_eq!(fs::read(v.path("b")).unwrap(), b"B");
}

#[test]
fn rename_exchange_swaps_two_files() {
    let mut v = Vault::mounted();
    fs::create_dir(v.path("d")).unwrap();
    fs::write(v.path("a"), b"content of a").unwrap();
    fs::write(v.path("d/b"), b"b").unwrap();
    let (ia, ib) = (lstat(&v.path("a")).ino(), lstat(&v.path("d/b")).ino());
    renameat2(&v.path("a"), &v.path("d/b"), libc::RENAME_EXCHANGE).unwrap();
    let check = |v: &Vault| {
        assert_eq!(fs::read(v.path("a")).unwrap(), b"b");
        assert_eq!(fs::read(v.path("d/b")).unwrap(), b"content of a");
        assert_eq!(lstat(&v.path("a")).ino(), ib);
        assert_eq!(lstat(&v.path("d/b")).ino(), ia);
    };
    check(&v);
    assert_errno(
        renameat2(&v.path("a"), &v.path("missing"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing target",
    );
    v.remount();
    check(&v);
}

#[test]
fn rename_exchange_swaps_a_file_and_a_directory() {
    let mut v = Vault::mounted();
    fs::create_dir(v.path("p1")).unwrap();
    fs::create_dir_all(v.path("p2/dir")).unwrap();
    fs::write(v.path("p1/file"), b"file").unwrap();
    fs::write(v.path("p2/dir/inside"), b"inside").unwrap();
    assert_eq!(lstat(&v.path("p1")).nlink(), 2);
    assert_eq!(lstat(&v.path("p2")).nlink(), 3);
    renameat2(&v.path("p1/file"), &v.path("p2/dir"), libc::RENAME_EXCHANGE).unwrap();
    let check = |v: &Vault| {
        assert!(
            lstat(&v.path("p1/file")).is_dir(),
            "p1/file is now the directory"
        );
        assert_eq!(fs::read(v.path("p1/file/inside")).unwrap(), b"inside");
        assert_eq!(fs::read(v.path("p2/dir")).unwrap(), b"file");
        assert_eq!(lstat(&v.path("p1")).nlink(), 3, "p1 gained a subdirectory");
        assert_eq!(lstat(&v.path("p2")).nlink(), 2, "p2 lost its subdirectory");
        assert_eq!(
            lstat(&v.path("p1/file/..")).ino(),
            lstat(&v.path("p1")).ino()
        );
    };
    check(&v);
    v.remount();
    check(&v);
}

#[test]
fn rename_of_a_directory_over_a_non_empty_directory_is_enotempty() {
    let mut v = Vault::mounted();
    fs::create_dir(v.path("src")).unwrap();
    fs::write(v.path("src/s"), b"s").unwrap();
    fs::create_dir(v.path("full")).unwrap();
    fs::write(v.path("full/f"), b"f").unwrap();
    fs::create_dir(v.path("empty")).unwrap();
    let root = lstat(&v.mnt).nlink();
    assert_errno(
        fs::rename(v.path("src"), v.path("full")),
        libc::ENOTEMPTY,
        "rename dir over a non-empty dir",
    );
    assert_eq!(fs::read(v.path("full/f")).unwrap(), b"f");
    assert_eq!(fs::read(v.path("src/s")).unwrap(), b"s");
    fs::rename(v.path("src"), v.path("empty")).unwrap();
    assert_eq!(
        fs::read(v.path("empty/s")).unwrap(),
        b"s",
        "rename over an empty dir replaces it"
    );
    assert_errno(
        fs::symlink_metadata(v.path("src")),
        libc::ENOENT,
        "source after replacing an empty dir",
    );
    assert_eq!(
        lstat(&v.mnt).nlink(),
        root - 1,
        "the replaced directory's link is gone from the parent"
    );
    v.remount();
    assert_eq!(fs::read(v.path("empty/s")).unwrap(), b"s");
    assert_eq!(lstat(&v.mnt).nlink(), root - 1);
}

#[test]
fn rename_of_a_file_over_a_directory_is_eisdir() {
    let v = Vault::mounted();
    fs::write(v.path("f"), b"f").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        fs::rename(v.path("f"), v.path("d")),
        libc::EISDIR,
        "rename file over empty dir",
    );
    assert!(lstat(&v.path("d")).is_dir());
    assert_eq!(fs::read(v.path("f")).unwrap(), b"f");
}

#[test]
fn rename_of_a_directory_over_a_file_is_enotdir() {
    let v = Vault::mounted();
    fs::write(v.path("f"), b"f").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    assert_errno(
        fs::rename(v.path("d"), v.path("f")),
        libc::ENOTDIR,
        "rename dir over file",
    );
    assert!(lstat(&v.path("d")).is_dir());
    assert_eq!(fs::read(v.path("f")).unwrap(), b"f");
}

// ---------------------------------------------------------------------------
// Unlinked open files
// ---------------------------------------------------------------------------

#[test]
fn unlinked_open_file_stays_readable_and_writable_until_close() {
    let mut v = Vault::mounted();
    let p = v.path("doomed");
    let data = common::pattern(6, 2 * BLOCK as usize + 77);
    fs::write(&p, &data).unwrap();
    let mut f = rw(&p);
    fs::remove_file(&p).unwrap();
    assert_errno(
        fs::symlink_metadata(&p),
        libc::ENOENT,
        "the name is gone after unlink",
    );
    assert_eq!(
        fs::read_dir(&v.mnt).unwrap().count(),
        0,
        "the name is not listed"
    );
    assert_same(
        &read_at(&f, 0, data.len()),
        &data,
        "data through the open fd",
    );
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"appended after unlink").unwrap();
    f.write_all_at(b"HEAD", 0).unwrap();
    f.sync_all().unwrap();
    let mut want = data;
    want.extend_from_slice(b"appended after unlink");
    want[..4].copy_from_slice(b"HEAD");
    assert_same(
        &read_at(&f, 0, want.len()),
        &want,
        "writes through the fd of an unlinked file",
    );
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "fstat of an unlinked file shows nlink 0"
    );
    assert_eq!(f.metadata().unwrap().len(), want.len() as u64);
    // A new file under the same name is a different file.
    fs::write(&p, b"new").unwrap();
    assert_same(
        &read_at(&f, 0, want.len()),
        &want,
        "the open unlinked file is untouched by the new name",
    );
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"new");
    v.remount();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(fs::read_dir(&v.mnt).unwrap().count(), 1);
}

// ---------------------------------------------------------------------------
// ctime, chmod, chown, utimensat
// ---------------------------------------------------------------------------

/// After a remount (the engine's own record, not the kernel's cache), the
/// ctime of `path` is still later than `before`.
#[track_caller]
fn assert_ctime_durably_after(v: &mut Vault, what: &str, path: &Path, before: i128) {
    v.remount();
    let again = ctime_ns(&lstat(path));
    assert!(
        again > before,
        "{what}: after remount the ctime of {} went back: before {before}, after remount {again}",
        path.display()
    );
}

#[test]
fn ctime_advances_on_chmod() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    let before = ctime_ns(&lstat(&p));
    assert_advances_ctime("chmod", &p, || {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap()
    });
    assert_ctime_durably_after(&mut v, "chmod", &p, before);
    assert_eq!(lstat(&p).mode() & 0o7777, 0o600);
}

#[test]
fn ctime_advances_on_chown() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    let before = ctime_ns(&lstat(&p));
    assert_advances_ctime("chown", &p, || {
        std::os::unix::fs::lchown(&p, Some(1234), Some(5678)).unwrap()
    });
    assert_ctime_durably_after(&mut v, "chown", &p, before);
    let m = lstat(&p);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
}

#[test]
fn ctime_advances_on_link() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    let before = ctime_ns(&lstat(&p));
    assert_advances_ctime("link", &p, || fs::hard_link(&p, v.path("g")).unwrap());
    assert_ctime_durably_after(&mut v, "link", &p, before);
}

#[test]
fn ctime_advances_on_unlink_of_a_hard_linked_file() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    fs::hard_link(&p, v.path("g")).unwrap();
    let before = ctime_ns(&lstat(&p));
    assert_advances_ctime("unlink of the other name", &p, || {
        fs::remove_file(v.path("g")).unwrap()
    });
    assert_ctime_durably_after(&mut v, "unlink of the other name", &p, before);
    assert_eq!(lstat(&p).nlink(), 1);
}

#[test]
fn ctime_advances_on_rename() {
    let mut v = Vault::mounted();
    let (p, q) = (v.path("f"), v.path("g"));
    fs::write(&p, b"x").unwrap();
    let before = ctime_ns(&lstat(&p));
    wait_for_clock_past(before);
    fs::rename(&p, &q).unwrap();
    let after = ctime_ns(&lstat(&q));
    assert!(
        after > before,
        "rename must advance the ctime of the renamed file: before {before}, after {after}"
    );
    assert_ctime_durably_after(&mut v, "rename", &q, before);
}

#[test]
fn ctime_and_mtime_advance_on_truncate() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"some bytes").unwrap();
    let (c0, m0) = (ctime_ns(&lstat(&p)), mtime_ns(&lstat(&p)));
    assert_advances_ctime("truncate", &p, || truncate_path(&p, 3).unwrap());
    assert!(mtime_ns(&lstat(&p)) > m0, "truncate must advance mtime");
    assert_ctime_durably_after(&mut v, "truncate", &p, c0);
    assert!(mtime_ns(&lstat(&p)) > m0, "truncate's mtime after remount");
    let (c1, m1) = (ctime_ns(&lstat(&p)), mtime_ns(&lstat(&p)));
    let f = rw(&p);
    assert_advances_ctime("ftruncate", &p, || f.set_len(100).unwrap());
    assert!(mtime_ns(&lstat(&p)) > m1, "ftruncate must advance mtime");
    drop(f);
    assert_ctime_durably_after(&mut v, "ftruncate", &p, c1);
    assert!(mtime_ns(&lstat(&p)) > m1, "ftruncate's mtime after remount");
}

#[test]
fn ctime_and_mtime_advance_on_write() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"some bytes").unwrap();
    let f = rw(&p);
    let (c0, m0) = (ctime_ns(&lstat(&p)), mtime_ns(&f.metadata().unwrap()));
    assert_advances_ctime("write", &p, || f.write_all_at(b"more", 2).unwrap());
    assert!(
        mtime_ns(&f.metadata().unwrap()) > m0,
        "write must advance mtime"
    );
    drop(f);
    assert!(mtime_ns(&lstat(&p)) > m0, "mtime after close");
    assert_ctime_durably_after(&mut v, "write", &p, c0);
    assert!(mtime_ns(&lstat(&p)) > m0, "write's mtime after remount");
}

/// A named operation on the entries of directory `d`.
type DirOp = (&'static str, fn(&Vault));

#[test]
fn directory_mtime_and_ctime_advance_on_entry_changes() {
    let mut v = Vault::mounted();
    let d = v.path("d");
    let e = v.path("e");
    fs::create_dir(&d).unwrap();
    fs::create_dir(&e).unwrap();
    let steps: [DirOp; 8] = [
        ("create", |v: &Vault| {
            fs::write(v.path("d/f"), b"x").unwrap()
        }),
        ("mkdir", |v: &Vault| {
            fs::create_dir(v.path("d/sub")).unwrap()
        }),
        ("symlink", |v: &Vault| symlink("f", v.path("d/l")).unwrap()),
        ("link", |v: &Vault| {
            fs::hard_link(v.path("d/f"), v.path("d/g")).unwrap()
        }),
        ("rename within", |v: &Vault| {
            fs::rename(v.path("d/g"), v.path("d/h")).unwrap()
        }),
        ("rename out", |v: &Vault| {
            fs::rename(v.path("d/h"), v.path("e/h")).unwrap()
        }),
        ("unlink", |v: &Vault| {
            fs::remove_file(v.path("d/l")).unwrap()
        }),
        ("rmdir", |v: &Vault| {
            fs::remove_dir(v.path("d/sub")).unwrap()
        }),
    ];
    for (what, op) in steps {
        let m = lstat(&d);
        let (c0, m0) = (ctime_ns(&m), mtime_ns(&m));
        wait_for_clock_past(c0.max(m0));
        op(&v);
        let m = lstat(&d);
        assert!(
            mtime_ns(&m) > m0,
            "{what} in a directory must advance its mtime"
        );
        assert!(
            ctime_ns(&m) > c0,
            "{what} in a directory must advance its ctime"
        );
        v.remount();
        let m = lstat(&d);
        assert!(mtime_ns(&m) > m0, "{what}: directory mtime after remount");
        assert!(ctime_ns(&m) > c0, "{what}: directory ctime after remount");
    }
}

#[test]
fn utimensat_sets_exact_times_and_honours_now_and_omit() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    let (a1, m1) = (
        1_000_000_000i128 * 1_000_000_000 + 111_111_111,
        1_100_000_000i128 * 1_000_000_000 + 222_222_222,
    );
    utimensat(
        &p,
        ts(1_000_000_000, 111_111_111),
        ts(1_100_000_000, 222_222_222),
        0,
    )
    .unwrap();
    let m = lstat(&p);
    assert_eq!(
        (atime_ns(&m), mtime_ns(&m)),
        (a1, m1),
        "exact atime/mtime with nanoseconds"
    );

    // OMIT atime, NOW mtime.
    let c0 = ctime_ns(&lstat(&p));
    wait_for_clock_past(c0);
    let t0 = clock_ns(libc::CLOCK_REALTIME_COARSE);
    utimensat(&p, omit(), now(), 0).unwrap();
    let t1 = clock_ns(libc::CLOCK_REALTIME);
    let m = lstat(&p);
    assert_eq!(atime_ns(&m), a1, "UTIME_OMIT leaves atime alone");
    let m_now = mtime_ns(&m);
    assert!(
        t0 <= m_now && m_now <= t1,
        "UTIME_NOW sets mtime to the current time: {t0} <= {m_now} <= {t1}"
    );
    assert!(ctime_ns(&m) > c0, "utimensat advances ctime");

    // Specific atime, OMIT mtime.
    utimensat(&p, ts(1_200_000_000, 5), omit(), 0).unwrap();
    let m = lstat(&p);
    assert_eq!(atime_ns(&m), 1_200_000_000i128 * 1_000_000_000 + 5);
    assert_eq!(mtime_ns(&m), m_now, "UTIME_OMIT leaves mtime alone");

    // On a symlink itself, with AT_SYMLINK_NOFOLLOW.
    let s = v.path("s");
    symlink("f", &s).unwrap();
    let target_before = lstat(&p);
    utimensat(
        &s,
        ts(1_300_000_000, 1),
        ts(1_400_000_000, 2),
        libc::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let ms = lstat(&s);
    assert_eq!(
        atime_ns(&ms),
        1_300_000_000i128 * 1_000_000_000 + 1,
        "symlink atime"
    );
    assert_eq!(
        mtime_ns(&ms),
        1_400_000_000i128 * 1_000_000_000 + 2,
        "symlink mtime"
    );
    let target_after = lstat(&p);
    assert_eq!(
        atime_ns(&target_after),
        atime_ns(&target_before),
        "NOFOLLOW leaves the target's atime alone"
    );
    assert_eq!(
        mtime_ns(&target_after),
        mtime_ns(&target_before),
        "NOFOLLOW leaves the target's mtime alone"
    );
    let t0 = clock_ns(libc::CLOCK_REALTIME_COARSE);
    utimensat(&s, now(), omit(), libc::AT_SYMLINK_NOFOLLOW).unwrap();
    let t1 = clock_ns(libc::CLOCK_REALTIME);
    let ms = lstat(&s);
    assert!(
        t0 <= atime_ns(&ms) && atime_ns(&ms) <= t1,
        "UTIME_NOW on a symlink's atime"
    );
    assert_eq!(
        mtime_ns(&ms),
        1_400_000_000i128 * 1_000_000_000 + 2,
        "UTIME_OMIT on a symlink's mtime"
    );
    let s_atime = atime_ns(&ms);

    v.remount();
    let m = lstat(&p);
    assert_eq!(
        atime_ns(&m),
        1_200_000_000i128 * 1_000_000_000 + 5,
        "atime after remount"
    );
    assert_eq!(mtime_ns(&m), m_now, "mtime after remount");
    let ms = lstat(&s);
    assert_eq!(atime_ns(&ms), s_atime, "symlink atime after remount");
    assert_eq!(
        mtime_ns(&ms),
        1_400_000_000i128 * 1_000_000_000 + 2,
        "symlink mtime after remount"
    );
}

#[test]
fn utimensat_keeps_pre_1970_times_exactly() {
    let mut v = Vault::mounted();
    let (f, d) = (v.path("f"), v.path("d"));
    fs::write(&f, b"x").unwrap();
    fs::create_dir(&d).unwrap();
    // timespec {-86400, 7} is 1969-12-31T00:00:00.000000007Z; {-1, 999999999}
    // is one nanosecond before the epoch. ext4 keeps both exactly.
    let want_m = -86_400i128 * 1_000_000_000 + 7;
    let want_a = -1i128;
    for p in [&f, &d] {
        utimensat(p, ts(-1, 999_999_999), ts(-86_400, 7), 0).unwrap();
    }
    let check = |when: &str| {
        for p in [&f, &d] {
            let m = lstat(p);
            assert_eq!(
                mtime_ns(&m),
                want_m,
                "pre-1970 mtime of {} {when}",
                p.display()
            );
            assert_eq!(
                atime_ns(&m),
                want_a,
                "pre-1970 atime of {} {when}",
                p.display()
            );
        }
    };
    check("right after utimensat");
    v.remount();
    check("after remount");
}

#[test]
fn chmod_chown_and_utimensat_by_a_non_owner_are_refused() {
    let v = shared_vault();
    let p = v.path("rootfile");
    make_file_mode(&p, b"x", 0o644);
    let c = cpath(&p);
    assert_code(
        as_nobody(|| code(sys_chmod(&c, 0o666))),
        libc::EPERM,
        "chmod by a non-owner",
    );
    assert_eq!(
        lstat(&p).mode() & 0o7777,
        0o644,
        "mode unchanged after refused chmod"
    );
    // SAFETY (closures below): valid C strings, plain syscalls.
    let chown = || code(check(unsafe { libc::chown(c.as_ptr(), NOBODY, NOBODY) }));
    assert_code(as_nobody(chown), libc::EPERM, "chown by a non-owner");
    let m = lstat(&p);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    let set_times = || {
        let times = [ts(1, 0), ts(2, 0)];
        code(check(unsafe {
            libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0)
        }))
    };
    assert_code(
        as_nobody(set_times),
        libc::EPERM,
        "utimensat with explicit times by a non-owner",
    );
    let touch = || {
        let times = [now(), now()];
        code(check(unsafe {
            libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0)
        }))
    };
    assert_code(
        as_nobody(touch),
        libc::EACCES,
        "utimensat(NOW) by a non-owner without write permission",
    );
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    assert_code(
        as_nobody(touch),
        0,
        "utimensat(NOW) by a non-owner with write permission",
    );
    assert_code(
        as_nobody(set_times),
        libc::EPERM,
        "explicit times still need ownership",
    );

    // The owner may chmod but not give the file away.
    make_dir_mode(&v.path("pub"), 0o777);
    let mine = v.path("pub/mine");
    let cm = cpath(&mine);
    assert_code(
        as_nobody(|| code(sys_open(&cm, libc::O_CREAT | libc::O_WRONLY, 0o644))),
        0,
        "create as nobody",
    );
    assert_code(
        as_nobody(|| code(sys_chmod(&cm, 0o600))),
        0,
        "chmod by the owner",
    );
    assert_eq!(lstat(&mine).mode() & 0o7777, 0o600);
    let give = || code(check(unsafe { libc::chown(cm.as_ptr(), 0, u32::MAX) }));
    assert_code(
        as_nobody(give),
        libc::EPERM,
        "chown to another user by a non-root owner",
    );
    assert_eq!(lstat(&mine).uid(), NOBODY);
}

// ---------------------------------------------------------------------------
// Ownership and creation modes
// ---------------------------------------------------------------------------

#[test]
fn new_files_and_directories_belong_to_their_creator() {
    let mut v = shared_vault();
    make_dir_mode(&v.path("pub"), 0o777);
    let (f, d, s, n) = (
        cpath(&v.path("pub/f")),
        cpath(&v.path("pub/d")),
        cpath(&v.path("pub/s")),
        cpath(&v.path("pub/n")),
    );
    let target = cstr("f");
    let rc = as_nobody(|| {
        let r = sys_open(&f, libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL, 0o644)
            .and_then(|_| sys_mkdir(&d, 0o755))
            // SAFETY: valid C strings.
            .and_then(|_| check(unsafe { libc::symlink(target.as_ptr(), s.as_ptr()) }))
            .and_then(|_| check(unsafe { libc::mknod(n.as_ptr(), libc::S_IFIFO | 0o644, 0) }));
        code(r)
    });
    assert_code(rc, 0, "creating file, dir, symlink and fifo as nobody");
    let check = |v: &Vault| {
        for name in ["pub/f", "pub/d", "pub/s", "pub/n"] {
            let m = lstat(&v.path(name));
            assert_eq!(
                (m.uid(), m.gid()),
                (NOBODY, NOBODY),
                "{name} must belong to its creator"
            );
        }
    };
    check(&v);
    v.remount();
    check(&v);
}

#[test]
fn new_modes_are_the_requested_mode_less_the_umask() {
    let mut v = Vault::mounted();
    let p = |n: &str| cpath(&v.path(n));
    let (d151, f640, fifo604, d777, f666, d700) = (
        p("d151"),
        p("f640"),
        p("fifo604"),
        p("d777"),
        p("f666"),
        p("d700"),
    );
    let rc = in_child(None, 0, || {
        code(
            sys_mkdir(&d151, 0o151)
                .and_then(|_| sys_open(&f640, libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL, 0o640))
                // SAFETY: valid C string.
                .and_then(|_| {
                    check(unsafe { libc::mknod(fifo604.as_ptr(), libc::S_IFIFO | 0o604, 0) })
                }),
        )
    });
    assert_code(rc, 0, "creating with umask 0");
    let rc = in_child(None, 0o022, || {
        code(
            sys_mkdir(&d777, 0o777)
                .and_then(|_| sys_open(&f666, libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL, 0o666))
                .and_then(|_| sys_mkdir(&d700, 0o700)),
        )
    });
    assert_code(rc, 0, "creating with umask 022");
    let check = |v: &Vault| {
        for (name, want) in [
            ("d151", 0o151),
            ("f640", 0o640),
            ("fifo604", 0o604),
            ("d777", 0o755),
            ("f666", 0o644),
            ("d700", 0o700),
        ] {
            let got = lstat(&v.path(name)).mode() & 0o7777;
            assert_eq!(got, want, "mode of {name}: expected {want:o}, got {got:o}");
        }
    };
    check(&v);
    v.remount();
    check(&v);
}

/// The kernel leaves clearing set-id bits to phivault (it asks for
/// FUSE_HANDLE_KILLPRIV_V2): a write, truncate or O_TRUNC open by an
/// unprivileged caller and every chown of a non-directory clear set-user-ID
/// and set-group-ID (with group execute), as on ext4; root's writes do not,
/// nor does a chown of a directory.
#[test]
fn set_id_bits_are_cleared_by_unprivileged_writes_truncates_and_any_chown() {
    let v = shared_vault();
    let p = v.path("setid");
    make_file_mode(&p, b"0123456789", 0o644);
    std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
    let c = cpath(&p);
    let set_mode = |m| fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
    let mode = || lstat(&p).mode() & 0o7777;

    set_mode(0o6775);
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"root").unwrap();
    drop(f);
    assert_eq!(mode(), 0o6775, "root's write keeps set-id bits");

    // SAFETY (closures below): valid C strings and buffers, plain syscalls.
    let write = || {
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
        if fd < 0 {
            return code(Err(io::Error::last_os_error()));
        }
        let r = check_size(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }).map(drop);
        unsafe { libc::close(fd) };
        code(r)
    };
    assert_code(as_nobody(write), 0, "write by the owner");
    assert_eq!(mode(), 0o0775, "an unprivileged write clears set-id bits");
    assert_eq!(fs::read(&p).unwrap(), b"0123456789rootx");

    set_mode(0o6775);
    let truncate = || code(check(unsafe { libc::truncate(c.as_ptr(), 3) }));
    assert_code(as_nobody(truncate), 0, "truncate by the owner");
    assert_eq!(
        mode(),
        0o0775,
        "an unprivileged truncate clears set-id bits"
    );

    set_mode(0o6775);
    let open_trunc = || code(sys_open(&c, libc::O_WRONLY | libc::O_TRUNC, 0));
    assert_code(as_nobody(open_trunc), 0, "O_TRUNC open by the owner");
    assert_eq!(
        mode(),
        0o0775,
        "an unprivileged O_TRUNC open clears set-id bits"
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);

    set_mode(0o6775);
    std::os::unix::fs::chown(&p, Some(NOBODY), None).unwrap();
    assert_eq!(
        mode(),
        0o0775,
        "chown, even by root to the same owner, clears set-id bits"
    );

    let d = v.path("setgid-dir");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    assert_eq!(
        lstat(&d).mode() & 0o7777,
        0o2775,
        "chown of a directory keeps set-gid"
    );
}

// ---------------------------------------------------------------------------
// Special files
// ---------------------------------------------------------------------------

#[test]
fn fifo_works_as_a_pipe() {
    let mut v = Vault::mounted();
    let p = v.path("fifo");
    let c = cpath(&p);
    // SAFETY: valid C string.
    check(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }).unwrap();
    let pump = |p: &PathBuf| {
        let msg = common::pattern(8, 200_000); // more than a pipe buffer
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut w = OpenOptions::new().write(true).open(p).unwrap();
                w.write_all(&msg).unwrap();
            });
            let reader = s.spawn(|| {
                let mut r = File::open(p).unwrap();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                got
            });
            writer.join().unwrap();
            assert_same(&reader.join().unwrap(), &msg, "bytes through the fifo");
        });
        let m = lstat(p);
        assert!(m.file_type().is_fifo(), "stat shows a fifo");
        assert_eq!(m.len(), 0, "a fifo has no stored size");
    };
    pump(&p);
    v.remount();
    pump(&p);
}

#[test]
fn unix_socket_can_be_bound_and_connected() {
    let v = Vault::mounted();
    let p = v.path("sock");
    assert!(
        p.as_os_str().len() < 100,
        "socket path too long for sun_path: {}",
        p.display()
    );
    let listener = UnixListener::bind(&p).unwrap();
    assert!(lstat(&p).file_type().is_socket(), "stat shows a socket");
    assert_errno(
        UnixListener::bind(&p),
        libc::EADDRINUSE,
        "binding an existing socket path",
    );
    let mut client = UnixStream::connect(&p).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    drop((client, server, listener));
    fs::remove_file(&p).unwrap();
    assert_errno(
        UnixStream::connect(&p),
        libc::ENOENT,
        "connect after the socket was removed",
    );
}

#[test]
fn device_nodes_keep_their_type_and_rdev() {
    let mut v = Vault::mounted();
    let null = libc::makedev(1, 3);
    let big = libc::makedev(259, 70_000);
    mknod(&v.path("null"), libc::S_IFCHR | 0o644, null).unwrap();
    mknod(&v.path("blk"), libc::S_IFBLK | 0o600, big).unwrap();
    assert_errno(
        mknod(&v.path("null"), libc::S_IFCHR | 0o666, null),
        libc::EEXIST,
        "mknod over an existing name",
    );
    let check = |v: &Vault| {
        let m = lstat(&v.path("null"));
        assert!(
            m.file_type().is_char_device(),
            "stat shows a character device"
        );
        assert_eq!(m.rdev(), null, "rdev of the character device");
        assert_eq!(m.mode() & 0o7777, 0o644);
        let m = lstat(&v.path("blk"));
        assert!(m.file_type().is_block_device(), "stat shows a block device");
        assert_eq!(m.rdev(), big, "rdev with a large minor");
    };
    check(&v);
    v.remount();
    check(&v);
}

// ---------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------

#[test]
fn owner_only_file_is_eacces_for_others() {
    let v = shared_vault();
    make_file_mode(&v.path("secret"), b"phi", 0o600);
    make_file_mode(&v.path("public"), b"ok", 0o644);
    let (secret, public) = (cpath(&v.path("secret")), cpath(&v.path("public")));
    assert_code(
        as_nobody(|| code(sys_open(&public, libc::O_RDONLY, 0))),
        0,
        "reading a 0644 file as nobody",
    );
    assert_code(
        as_nobody(|| code(sys_open(&secret, libc::O_RDONLY, 0))),
        libc::EACCES,
        "reading a 0600 root file",
    );
    assert_code(
        as_nobody(|| code(sys_open(&secret, libc::O_WRONLY, 0))),
        libc::EACCES,
        "writing a 0600 root file",
    );
    assert_code(
        as_nobody(|| code(sys_open(&public, libc::O_WRONLY, 0))),
        libc::EACCES,
        "writing a 0644 root file",
    );
    assert_code(
        as_nobody(|| code(sys_open(&public, libc::O_WRONLY | libc::O_TRUNC, 0))),
        libc::EACCES,
        "O_TRUNC of a 0644 root file",
    );
    assert_eq!(fs::read(v.path("public")).unwrap(), b"ok");
    // Creating in a directory without write permission.
    let newf = cpath(&v.path("new"));
    assert_code(
        as_nobody(|| code(sys_open(&newf, libc::O_CREAT | libc::O_WRONLY, 0o644))),
        libc::EACCES,
        "creating in a 0755 root dir",
    );
    assert_code(
        as_nobody(|| code(sys_mkdir(&newf, 0o755))),
        libc::EACCES,
        "mkdir in a 0755 root dir",
    );
    // SAFETY: valid C string.
    let unlink = || code(check(unsafe { libc::unlink(public.as_ptr()) }));
    assert_code(as_nobody(unlink), libc::EACCES, "unlink in a 0755 root dir");
    assert!(lstat(&v.path("public")).is_file());
}

#[test]
fn directory_without_search_permission_is_eacces() {
    let v = shared_vault();
    make_dir_mode(&v.path("open"), 0o755);
    make_file_mode(&v.path("open/f"), b"x", 0o644);
    make_dir_mode(&v.path("closed"), 0o700);
    make_file_mode(&v.path("closed/f"), b"x", 0o644);
    make_dir_mode(&v.path("listonly"), 0o744);
    make_file_mode(&v.path("listonly/f"), b"x", 0o644);
    let c = |n: &str| cpath(&v.path(n));
    let (open_f, closed, closed_f, listonly, listonly_f) = (
        c("open/f"),
        c("closed"),
        c("closed/f"),
        c("listonly"),
        c("listonly/f"),
    );
    assert_code(
        as_nobody(|| code(sys_stat(&open_f))),
        0,
        "stat through a 0755 dir",
    );
    assert_code(
        as_nobody(|| code(sys_open(&open_f, libc::O_RDONLY, 0))),
        0,
        "open through a 0755 dir",
    );
    assert_code(
        as_nobody(|| code(sys_stat(&closed_f))),
        libc::EACCES,
        "stat through a 0700 dir",
    );
    assert_code(
        as_nobody(|| code(sys_open(&closed_f, libc::O_RDONLY, 0))),
        libc::EACCES,
        "open through a 0700 dir",
    );
    assert_code(
        as_nobody(|| code(sys_opendir(&closed))),
        libc::EACCES,
        "opendir of a 0700 dir",
    );
    assert_code(
        as_nobody(|| code(sys_opendir(&listonly))),
        0,
        "opendir of a 0744 dir",
    );
    assert_code(
        as_nobody(|| code(sys_stat(&listonly_f))),
        libc::EACCES,
        "stat through a dir without x",
    );
}

// ---------------------------------------------------------------------------
// Extended attributes
// ---------------------------------------------------------------------------

#[test]
fn user_xattrs_set_get_list_and_remove() {
    let mut v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    setxattr(&p, "user.one", b"1", 0).unwrap();
    setxattr(&p, "user.two", b"second value", 0).unwrap();
    setxattr(&p, "user.empty", b"", 0).unwrap();
    setxattr(&v.path("d"), "user.ondir", b"dir value", 0).unwrap();
    assert_eq!(getxattr(&p, "user.one").unwrap(), b"1");
    assert_eq!(getxattr(&p, "user.two").unwrap(), b"second value");
    assert_eq!(getxattr(&p, "user.empty").unwrap(), b"");
    assert_eq!(getxattr(&v.path("d"), "user.ondir").unwrap(), b"dir value");
    let mut names = listxattr(&p);
    names.sort();
    assert_eq!(names, ["user.empty", "user.one", "user.two"]);
    // Overwrite with flags 0, shorter then longer.
    setxattr(&p, "user.two", b"2", 0).unwrap();
    assert_eq!(getxattr(&p, "user.two").unwrap(), b"2");
    removexattr(&p, "user.one").unwrap();
    assert_errno(getxattr(&p, "user.one"), libc::ENODATA, "get after remove");
    let mut names = listxattr(&p);
    names.sort();
    assert_eq!(names, ["user.empty", "user.two"]);
    v.remount();
    assert_eq!(getxattr(&p, "user.two").unwrap(), b"2");
    assert_eq!(getxattr(&p, "user.empty").unwrap(), b"");
    assert_errno(
        getxattr(&p, "user.one"),
        libc::ENODATA,
        "removed xattr after remount",
    );
    assert_eq!(getxattr(&v.path("d"), "user.ondir").unwrap(), b"dir value");
    // The content is not affected by xattrs.
    assert_eq!(fs::read(&p).unwrap(), b"x");
}

#[test]
fn xattr_create_and_replace_flags_check_existence() {
    let v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    setxattr(&p, "user.k", b"v1", libc::XATTR_CREATE).unwrap();
    assert_errno(
        setxattr(&p, "user.k", b"v2", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE on an existing name",
    );
    assert_eq!(getxattr(&p, "user.k").unwrap(), b"v1");
    assert_errno(
        setxattr(&p, "user.none", b"v", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE on a missing name",
    );
    assert_errno(
        getxattr(&p, "user.none"),
        libc::ENODATA,
        "XATTR_REPLACE must not create",
    );
    setxattr(&p, "user.k", b"v3", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&p, "user.k").unwrap(), b"v3");
    assert_errno(
        getxattr(&p, "user.missing"),
        libc::ENODATA,
        "getxattr of a missing name",
    );
    assert_errno(
        removexattr(&p, "user.missing"),
        libc::ENODATA,
        "removexattr of a missing name",
    );
}

#[test]
fn xattr_buffer_too_small_is_erange() {
    let v = Vault::mounted();
    let p = v.path("f");
    fs::write(&p, b"x").unwrap();
    setxattr(&p, "user.k", b"twelve bytes", 0).unwrap();
    assert_eq!(
        getxattr_sized(&p, "user.k", 0).unwrap().len(),
        12,
        "size query"
    );
    assert_errno(
        getxattr_sized(&p, "user.k", 11),
        libc::ERANGE,
        "getxattr into a buffer one byte short",
    );
    assert_eq!(getxattr_sized(&p, "user.k", 12).unwrap(), b"twelve bytes");
    assert_eq!(getxattr_sized(&p, "user.k", 100).unwrap(), b"twelve bytes");
    assert_eq!(
        listxattr_sized(&p, 0).unwrap().len(),
        0,
        "size-0 listxattr returns the length only"
    );
    assert_errno(
        listxattr_sized(&p, 3),
        libc::ERANGE,
        "listxattr into a too small buffer",
    );
    assert_eq!(listxattr_sized(&p, 7).unwrap(), b"user.k\0");
}

#[test]
fn samba_xattrs_with_binary_values_survive_remount() {
    let mut v = Vault::mounted();
    let f = v.path("doc.docx");
    let d = v.path("share");
    fs::write(&f, b"document").unwrap();
    fs::create_dir(&d).unwrap();
    // DOSATTRIB: a small binary blob with NULs and high bytes.
    let dos: Vec<u8> = [
        0x00u8, 0x00, 0x04, 0x00, 0x04, 0x00, 0x00, 0x00, 0x11, 0x00, 0xff, 0xfe, 0x80, 0x00,
    ]
    .to_vec();
    // NTACL: a bigger blob, every byte value present.
    let mut ntacl: Vec<u8> = (0..=255u8).collect();
    ntacl.extend(common::pattern(21, 3000));
    for p in [&f, &d] {
        setxattr(p, "user.DOSATTRIB", &dos, 0).unwrap();
        setxattr(p, "security.NTACL", &ntacl, 0).unwrap();
    }
    let check = |f: &Path, d: &Path| {
        for p in [f, d] {
            assert_eq!(
                getxattr(p, "user.DOSATTRIB").unwrap(),
                dos,
                "user.DOSATTRIB of {}",
                p.display()
            );
            assert_eq!(
                getxattr(p, "security.NTACL").unwrap(),
                ntacl,
                "security.NTACL of {}",
                p.display()
            );
            let names = listxattr(p);
            assert!(
                names.iter().any(|n| n == "user.DOSATTRIB"),
                "listxattr shows user.DOSATTRIB: {names:?}"
            );
            assert!(
                names.iter().any(|n| n == "security.NTACL"),
                "listxattr shows security.NTACL: {names:?}"
            );
        }
    };
    check(&f, &d);
    v.remount();
    check(&f, &d);
    assert_eq!(fs::read(&f).unwrap(), b"document");
}

#[test]
fn selinux_labels_are_not_supported_so_ls_asks_for_them_once() {
    common::require_programs(&["strace", "ls"]);
    let v = Vault::mounted();
    let d = v.path("listed");
    fs::create_dir(&d).unwrap();
    for i in 0..20 {
        fs::write(d.join(format!("f{i}")), b"x").unwrap();
    }
    let f = d.join("f0");
    assert_errno(
        setxattr(&f, "security.selinux", b"system_u:object_r:etc_t:s0\0", 0),
        libc::EOPNOTSUPP,
        "setting an SELinux label",
    );
    assert_errno(
        getxattr(&f, "security.selinux"),
        libc::EOPNOTSUPP,
        "reading an SELinux label",
    );
    assert_errno(
        removexattr(&f, "security.selinux"),
        libc::EOPNOTSUPP,
        "removing an SELinux label",
    );
    // Other security.* names are kept (Samba's NT ACLs, tested above).
    setxattr(&f, "security.phivault-test", b"kept", 0).unwrap();
    assert_eq!(getxattr(&f, "security.phivault-test").unwrap(), b"kept");

    // coreutils remembers per device that labels are not supported: one
    // question for the whole listing instead of one round trip per file.
    let trace = tempfile::NamedTempFile::new().unwrap();
    common::ok(
        std::process::Command::new("strace")
            .args(["-f", "-e", "trace=lgetxattr,getxattr", "-o"])
            .arg(trace.path())
            .args(["ls", "-l"])
            .arg(&d),
    );
    let log = fs::read_to_string(trace.path()).unwrap();
    let asked = log.matches("\"security.selinux\"").count();
    assert_eq!(
        asked, 1,
        "ls -l of 20 files asked for security.selinux {asked} times:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// statfs, mmap
// ---------------------------------------------------------------------------

#[test]
fn statfs_reports_name_max_and_capacity() {
    let v = Vault::mounted();
    let c = cpath(&v.mnt);
    // SAFETY: valid C string; plain output structs.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(c.as_ptr(), &mut s) }).unwrap();
    assert_eq!(s.f_namemax, 255, "f_namemax");
    assert!(
        s.f_bsize > 0 && s.f_frsize > 0,
        "block sizes: {} {}",
        s.f_bsize,
        s.f_frsize
    );
    assert!(s.f_blocks > 0, "f_blocks must be nonzero");
    assert!(
        s.f_bfree <= s.f_blocks && s.f_bavail <= s.f_blocks,
        "free {} avail {} of {}",
        s.f_bfree,
        s.f_bavail,
        s.f_blocks
    );
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    fs::write(v.path("f"), b"x").unwrap();
    let f = File::open(v.path("f")).unwrap();
    check(unsafe { libc::fstatfs(f.as_raw_fd(), &mut sf) }).unwrap();
    assert_eq!(sf.f_namelen, 255, "fstatfs f_namelen");
    assert!(sf.f_blocks > 0);
}

#[test]
fn mmap_shared_writes_reach_the_file() {
    let mut v = Vault::mounted();
    let p = v.path("mapped");
    let len = 3 * BLOCK as usize + 100;
    let mut want = common::pattern(31, len);
    fs::write(&p, &want).unwrap();
    let patch = common::pattern(32, 20_000);
    let at = BLOCK as usize - 7_000; // spans the first block boundary
    {
        let f = rw(&p);
        // SAFETY: a fresh shared mapping of `len` bytes of an open file,
        // written within bounds and unmapped before the file is closed.
        unsafe {
            let m = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(m, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
            let base = m.cast::<u8>();
            assert_eq!(
                std::slice::from_raw_parts(base, len),
                &want[..],
                "mapping shows the file"
            );
            std::ptr::copy_nonoverlapping(patch.as_ptr(), base.add(at), patch.len());
            *base.add(len - 1) = 0xAB;
            check(libc::msync(m, len, libc::MS_SYNC)).unwrap();
            check(libc::munmap(m, len)).unwrap();
        }
    }
    want[at..at + patch.len()].copy_from_slice(&patch);
    want[len - 1] = 0xAB;
    assert_same(
        &fs::read(&p).unwrap(),
        &want,
        "read() after msync/munmap/close",
    );
    assert_eq!(
        lstat(&p).len(),
        len as u64,
        "mmap writes do not change the size"
    );
    v.remount();
    assert_same(
        &fs::read(&p).unwrap(),
        &want,
        "mmap-written data after remount",
    );
}

// ---------------------------------------------------------------------------
// Everything together across a remount
// ---------------------------------------------------------------------------

#[test]
fn metadata_of_every_kind_survives_remount() {
    let mut v = Vault::mounted();
    fs::create_dir_all(v.path("a/b")).unwrap();
    fs::write(v.path("a/file"), b"content").unwrap();
    // chown first: it clears set-uid.
    std::os::unix::fs::lchown(v.path("a/file"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(v.path("a/file"), fs::Permissions::from_mode(0o4750)).unwrap();
    fs::hard_link(v.path("a/file"), v.path("a/b/link")).unwrap();
    symlink("../file", v.path("a/b/sym")).unwrap();
    utimensat(
        &v.path("a/file"),
        ts(1_500_000_000, 123),
        ts(1_600_000_000, 456),
        0,
    )
    .unwrap();
    setxattr(&v.path("a/file"), "user.tag", b"\x00\x01tag", 0).unwrap();
    mknod(&v.path("a/fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    let names = ["a", "a/b", "a/file", "a/b/link", "a/b/sym", "a/fifo"];
    let before = stat_all(&v, &names);
    v.remount();
    let after = stat_all(&v, &names);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            b, a,
            "(name, ino, mode, nlink, uid, gid, size, mtime, atime) before vs after remount"
        );
    }
    let m = lstat(&v.path("a/file"));
    assert_eq!(m.mode() & 0o7777, 0o4750);
    assert_eq!((m.uid(), m.gid(), m.nlink()), (1234, 5678, 2));
    assert_eq!(fs::read(v.path("a/b/sym")).unwrap(), b"content");
    assert_eq!(
        getxattr(&v.path("a/file"), "user.tag").unwrap(),
        b"\x00\x01tag"
    );
}
