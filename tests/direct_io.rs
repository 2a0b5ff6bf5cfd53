//! Direct and buffered I/O on one file agree: once a direct (O_DIRECT,
//! Linux AIO) write has completed, no read through the page cache returns
//! the bytes it replaced, even while other processes keep reading the file
//! through the cache (databases, VM images and backup tools mix both).

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{require_io_uring, Vault};

const FILE_LEN: usize = 640 * 1024;
/// How long the writer goes on: before the fix the first stale read-back
/// came within a second or two, on both transports.
const RUN_FOR: Duration = Duration::from_secs(10);

/// The kernel's `struct iocb` (linux/aio_abi.h, little-endian layout).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// The kernel's `struct io_event`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PWRITE: u16 = 1;

/// A Linux AIO context (io_setup), destroyed on drop.
struct Aio(u64);

impl Aio {
    fn new() -> Self {
        let mut ctx = 0u64;
        // SAFETY: io_setup writes the new context id into `ctx`.
        let rc = unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut ctx as *mut u64) };
        assert_eq!(rc, 0, "io_setup: {}", std::io::Error::last_os_error());
        Aio(ctx)
    }

    /// Writes `buf` at `offset` of `fd` through io_submit and waits for
    /// its completion, which must report the whole length written.
    fn pwrite(&self, fd: i32, buf: &[u8], offset: i64) {
        let mut cb = Iocb {
            opcode: IOCB_CMD_PWRITE,
            fildes: fd as u32,
            buf: buf.as_ptr() as u64,
            nbytes: buf.len() as u64,
            offset,
            ..Iocb::default()
        };
        let mut list = [&mut cb as *mut Iocb];
        // SAFETY: one valid iocb whose buffer outlives the wait below.
        let rc = unsafe { libc::syscall(libc::SYS_io_submit, self.0, 1, list.as_mut_ptr()) };
        assert_eq!(rc, 1, "io_submit: {}", std::io::Error::last_os_error());
        let mut event = IoEvent::default();
        // SAFETY: room for one event; no timeout.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                self.0,
                1,
                1,
                &mut event as *mut IoEvent,
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        assert_eq!(rc, 1, "io_getevents: {}", std::io::Error::last_os_error());
        assert_eq!(event.res, buf.len() as i64, "direct write completed short");
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: destroys the context this value owns.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.0) };
    }
}

/// A buffer aligned for O_DIRECT, filled with `byte`.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn filled(byte: u8, len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: a non-zero size; freed with the same layout on drop.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `len` bytes were just allocated at `ptr`.
        unsafe { std::ptr::write_bytes(ptr, byte, len) };
        Aligned { ptr, layout }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the whole allocation was initialised in `filled`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `filled` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Readers that loop buffered reads of the whole file until stopped.
fn start_readers(path: &Path, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let file = File::open(path).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; FILE_LEN];
                while !stop.load(Ordering::Relaxed) {
                    file.read_exact_at(&mut buf, 0).unwrap();
                }
            })
        })
        .collect()
}

/// Alternates two patterns through direct AIO writes and reads each one
/// back through the page cache while two readers keep the cache busy.
fn direct_writes_are_never_read_back_stale(v: &Vault) {
    let path = v.path("image.bin");
    std::fs::write(&path, vec![0u8; FILE_LEN]).unwrap();
    let patterns = [
        Aligned::filled(0xA5, FILE_LEN),
        Aligned::filled(0x5A, FILE_LEN),
    ];
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let buffered = File::open(&path).unwrap();
    let aio = Aio::new();

    let stop = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&path, &stop);
    let started = Instant::now();
    let mut back = vec![0u8; FILE_LEN];
    let mut round = 0usize;
    let mut stale = None;
    while started.elapsed() < RUN_FOR {
        let want = &patterns[round % 2];
        aio.pwrite(direct.as_raw_fd(), want.bytes(), 0);
        buffered.read_exact_at(&mut back, 0).unwrap();
        if let Some(at) = back.iter().position(|&b| b != want.bytes()[0]) {
            stale = Some((round, at, back[at]));
            break;
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    if let Some((round, at, got)) = stale {
        panic!(
            "round {round}: after the direct write completed, byte {at} read back through the page cache was {got:#x}, not {:#x}",
            patterns[round % 2].bytes()[0]
        );
    }
    assert!(round > 100, "only {round} rounds ran in {RUN_FOR:?}");
}

#[test]
fn direct_writes_beside_buffered_readers_over_io_uring() {
    require_io_uring();
    let v = Vault::mounted_with(&["--io-uring", "on"]);
    direct_writes_are_never_read_back_stale(&v);
}

#[test]
fn direct_writes_beside_buffered_readers_through_dev_fuse() {
    let v = Vault::mounted_with(&["--io-uring", "off"]);
    direct_writes_are_never_read_back_stale(&v);
}
