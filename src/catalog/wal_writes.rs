//! One write per catalog commit instead of two per page.
//!
//! SQLite appends a transaction to the WAL as frames, each written with two
//! `pwrite`s: a 24-byte frame header, then the page. A close through the
//! mount changes about fifteen 1 KiB pages of the catalog, so each close
//! cost some thirty system calls, 14% of the daemon's CPU under untar.
//!
//! This VFS is SQLite's default one with the WAL's writes gathered: writes
//! that continue each other are kept in memory and reach the file as one
//! write when the transaction's commit frame is complete, before anything
//! else touches the file, or when the gathered bytes pass `GATHER_LIMIT`.
//! A commit frame's header that does not continue the gathered writes is
//! written at once: SQLite writes such headers alone when it rewrites the
//! checksums of frames it overwrote in place, and nothing follows them.
//!
//! Why this is safe:
//! - The commit frame is the one whose header holds the database size
//!   (non-zero only there). Its page is the transaction's last write before
//!   SQLite publishes the frames in the shared WAL index, so other
//!   connections never see a frame that is not in the file yet, and a
//!   committed transaction is in the OS (kill -9 proof) when COMMIT returns.
//! - If that write fails (disk full), the error is the commit frame's own,
//!   so SQLite rolls the transaction back exactly as without gathering.
//!   A failed write of spilled frames surfaces at a later call and ends the
//!   whole transaction too (see `after_flush`).
//! - Rolled-back frames still gathered are written at the next call, over
//!   the frames' own places, as SQLite itself would have written them
//!   earlier. That is safe with one writing connection, which the catalog
//!   has (the store's lock keeps out a second daemon).
//! - Every other call on the file (read, size, sync, truncate, close, file
//!   control) writes what is gathered first, so the file is never seen
//!   with writes missing.
//!
//! The WAL also keeps zeros written ahead of its end (`ZERO_AHEAD`) where
//! that makes its fdatasync cheaper (`store::overwrites_skip_journal`): a
//! WAL that grows changes the file's size at every commit, and each fsync
//! through the mount then waits for a journal commit besides the data
//! (measured: 1,500 fsyncs of a SQLite program averaged 847 µs, gocryptfs
//! 402 µs). The zeros are harmless to SQLite: it reads a WAL only up to the
//! first frame whose salt and checksum do not match its header, as it does
//! after every rewind, when old frames follow the new ones.
//!
//! The main database and every other file use the default VFS unchanged.

use std::ffi::{c_void, CStr};
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the catalog with.
pub const VFS_NAME: &CStr = c"phivault-wal";

/// Gathered bytes that are written out even without a commit (a large
/// transaction spilling its cache).
const GATHER_LIMIT: usize = 64 << 10;

/// The largest write the default VFS takes: it keeps 17 bits of a write's
/// length (`seekAndWriteFd`), so 128 KiB or more comes out short.
const MAX_WRITE: usize = 64 << 10;

/// Zeros kept written past the end of a WAL, topped up when fewer than half
/// are left: one journal commit per 2-4 MiB of WAL instead of one per fsync.
const ZERO_AHEAD: i64 = 4 << 20;

static ZEROS: [u8; MAX_WRITE] = [0; MAX_WRITE];

/// Bytes in a WAL frame header; bytes 4..8 are the database size in pages
/// after a commit frame and zero in every other frame.
const FRAME_HEADER: usize = 24;

static WRITES: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);

/// How much gathering happened in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalWriteStats {
    /// Writes SQLite made to WAL files.
    pub writes: u64,
    /// Writes that reached the files.
    pub flushes: u64,
}

pub fn stats() -> WalWriteStats {
    WalWriteStats {
        writes: WRITES.load(Ordering::Relaxed),
        flushes: FLUSHES.load(Ordering::Relaxed),
    }
}

/// The default VFS, which this one wraps.
struct InnerVfs(*mut ffi::sqlite3_vfs);

// SAFETY: a registered VFS struct is immutable and lives for the process;
// SQLite itself shares it between threads.
unsafe impl Send for InnerVfs {}
unsafe impl Sync for InnerVfs {}

static VFS: OnceLock<Option<InnerVfs>> = OnceLock::new();

/// Registers the VFS (once) and returns its name, or None if the default
/// VFS could not be wrapped; connections then use the default VFS (one
/// write per page, equally correct).
pub fn vfs_name() -> Option<&'static CStr> {
    VFS.get_or_init(register).as_ref().map(|_| VFS_NAME)
}

fn register() -> Option<InnerVfs> {
    // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe;
    // the registered struct is leaked, so it outlives every connection.
    unsafe {
        let inner = ffi::sqlite3_vfs_find(std::ptr::null());
        if inner.is_null() {
            return None;
        }
        let mut vfs = *inner;
        vfs.zName = VFS_NAME.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.szOsFile = (std::mem::size_of::<WalFile>() + (*inner).szOsFile as usize) as c_int;
        vfs.xOpen = Some(open);
        let ours = Box::into_raw(Box::new(vfs));
        if ffi::sqlite3_vfs_register(ours, 0) != ffi::SQLITE_OK {
            drop(Box::from_raw(ours));
            return None;
        }
        Some(InnerVfs(inner))
    }
}

fn inner_vfs() -> *mut ffi::sqlite3_vfs {
    VFS.get()
        .and_then(|v| v.as_ref())
        .map(|v| v.0)
        .expect("open is only called through the registered VFS")
}

/// Our part of a WAL file; the default VFS's file follows it in the same
/// allocation (SQLite allocates `szOsFile` bytes for each file).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Writes held back: `bytes` belong at `offset` in the file.
#[derive(Default)]
struct Gathered {
    offset: i64,
    bytes: Vec<u8>,
    /// Where the page of the last commit frame header goes: the write
    /// there completes a transaction.
    commit_page_at: Option<i64>,
    /// Where the zeros written ahead end (a hint: the file's real size
    /// decides where new ones start); None where they are not kept.
    zeroed_end: Option<i64>,
}

impl Gathered {
    fn end(&self) -> i64 {
        self.offset + self.bytes.len() as i64
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner = inner_vfs();
    let Some(inner_open) = (*inner).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a WAL: the default VFS's file takes the whole allocation and
        // SQLite calls its methods directly.
        return inner_open(inner, name, file, flags, out_flags);
    }
    let wal = file as *mut WalFile;
    (*wal).base.pMethods = std::ptr::null();
    let rc = inner_open(inner, name, inner_file(file), flags, out_flags);
    if rc == ffi::SQLITE_OK {
        let zeros_ahead = !name.is_null()
            && flags & ffi::SQLITE_OPEN_READONLY == 0
            && crate::store::overwrites_skip_journal(std::path::Path::new(
                std::ffi::OsStr::from_bytes(CStr::from_ptr(name).to_bytes()),
            ));
        (*wal).gathered = Box::into_raw(Box::new(Gathered {
            zeroed_end: zeros_ahead.then_some(0),
            ..Default::default()
        }));
        (*wal).base.pMethods = &WAL_METHODS;
    }
    rc
}

/// The default VFS's file, right after ours.
unsafe fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (file as *mut u8).add(std::mem::size_of::<WalFile>()) as *mut ffi::sqlite3_file
}

unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    &*(*inner_file(file)).pMethods
}

unsafe fn gathered<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gathered {
    &mut *(*(file as *mut WalFile)).gathered
}

/// Writes what is gathered, in one write. On failure the gathered bytes
/// are dropped: the error goes to SQLite, which abandons the transaction
/// they belong to.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    flush_gathered(file, gathered(file))
}

unsafe fn flush_gathered(file: *mut ffi::sqlite3_file, g: &mut Gathered) -> c_int {
    if g.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    let xwrite = inner_methods(file).xWrite.expect("the default VFS writes");
    let mut rc = ffi::SQLITE_OK;
    let mut at = g.offset;
    for chunk in g.bytes.chunks(MAX_WRITE) {
        rc = xwrite(
            inner_file(file),
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            at,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    g.bytes.clear();
    if rc == ffi::SQLITE_OK {
        keep_zeros_ahead(file, g, at);
    }
    rc
}

/// After a write that ended at `written_end`: when fewer than half of
/// `ZERO_AHEAD` zeros are left past it, writes zeros from the file's end.
/// Best effort: a failure (a full disk) only leaves fsyncs at their usual
/// cost, and is not retried before the WAL passes the attempted end.
unsafe fn keep_zeros_ahead(file: *mut ffi::sqlite3_file, g: &mut Gathered, written_end: i64) {
    let Some(zeroed_end) = g.zeroed_end.as_mut() else {
        return;
    };
    if written_end + ZERO_AHEAD / 2 <= *zeroed_end {
        return;
    }
    let methods = inner_methods(file);
    let (Some(xsize), Some(xwrite)) = (methods.xFileSize, methods.xWrite) else {
        return;
    };
    // Zeros start at the real end, never over frames, whatever the hint says.
    let mut at = 0i64;
    if xsize(inner_file(file), &mut at) != ffi::SQLITE_OK {
        return;
    }
    let to = ((written_end + ZERO_AHEAD) as u64).next_multiple_of(4096) as i64;
    *zeroed_end = to.max(at);
    while at < to {
        let n = (to - at).min(MAX_WRITE as i64);
        let rc = xwrite(
            inner_file(file),
            ZEROS.as_ptr() as *const c_void,
            n as c_int,
            at,
        );
        if rc != ffi::SQLITE_OK {
            return;
        }
        at += n;
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    WRITES.fetch_add(1, Ordering::Relaxed);
    let data = std::slice::from_raw_parts(data as *const u8, amount as usize);
    let g = gathered(file);
    let completes_commit = g.commit_page_at.take() == Some(offset);
    let commit_header = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
    let continues = !g.bytes.is_empty() && offset == g.end();
    if !continues {
        let rc = flush_gathered(file, g);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        g.offset = offset;
    }
    if commit_header {
        g.commit_page_at = Some(offset + FRAME_HEADER as i64);
    }
    g.bytes.extend_from_slice(data);
    // A commit frame's header on its own (a one-page transaction, or
    // SQLite rewriting checksums at commit, after which no page follows)
    // must not wait either.
    let lone_commit_header = commit_header && !continues;
    if completes_commit || lone_commit_header || g.bytes.len() >= GATHER_LIMIT {
        return flush_gathered(file, g);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    let closed = inner_methods(file)
        .xClose
        .map_or(ffi::SQLITE_OK, |f| f(inner_file(file)));
    drop(Box::from_raw((*(file as *mut WalFile)).gathered));
    (*(file as *mut WalFile)).gathered = std::ptr::null_mut();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// The calls that see the file's contents or size: gathered writes first.
///
/// A gathered write that fails here belongs to frames SQLite already counts
/// as written: pages it spilled from a full cache in the middle of a
/// transaction. SQLite must then give up the whole transaction, as it does
/// when the spill's own write fails. So the error is reported as an I/O
/// error even when the disk is full: SQLite answers a full disk on a read
/// by undoing only the current statement, which would leave the lost frames
/// in the transaction for its commit to publish.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            if flush(file) != ffi::SQLITE_OK {
                return ffi::SQLITE_IOERR_WRITE;
            }
            match inner_methods(file).$method {
                Some(f) => f(inner_file(file), $($arg),*),
                None => ffi::SQLITE_NOTFOUND,
            }
        }
    };
}

after_flush!(read, xRead, (buf: *mut c_void, amount: c_int, offset: i64));

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    if flush(file) != ffi::SQLITE_OK {
        return ffi::SQLITE_IOERR_WRITE;
    }
    let g = gathered(file);
    if let Some(zeroed_end) = g.zeroed_end.as_mut() {
        *zeroed_end = size;
    }
    match inner_methods(file).xTruncate {
        Some(f) => f(inner_file(file), size),
        None => ffi::SQLITE_NOTFOUND,
    }
}
after_flush!(sync, xSync, (flags: c_int));
after_flush!(file_size, xFileSize, (size: *mut i64));
after_flush!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
after_flush!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));

/// Calls that do not involve the file's contents go straight through.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            match inner_methods(file).$method {
                Some(f) => f(inner_file(file), $($arg),*),
                None => ffi::SQLITE_NOTFOUND,
            }
        }
    };
}

forward!(lock, xLock, (level: c_int));
forward!(unlock, xUnlock, (level: c_int));
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
forward!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int));
forward!(shm_unmap, xShmUnmap, (delete: c_int));
forward!(unfetch, xUnfetch, (offset: i64, page: *mut c_void));

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    inner_methods(file)
        .xSectorSize
        .map_or(4096, |f| f(inner_file(file)))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    inner_methods(file)
        .xDeviceCharacteristics
        .map_or(0, |f| f(inner_file(file)))
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    if let Some(f) = inner_methods(file).xShmBarrier {
        f(inner_file(file))
    }
}
