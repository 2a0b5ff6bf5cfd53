//! FUSE over io_uring (Linux 6.14+, `fuse.enable_uring=Y`).
//!
//! With `/dev/fuse`, a request from a program on one CPU is read by whichever
//! worker thread the scheduler wakes, often on another CPU, and the reply
//! wakes the program back across CPUs. On virtual machines each of those
//! cross-CPU wakeups costs a halted vCPU exit, and they dominate small-file
//! workloads. With io_uring the kernel keeps one queue per CPU: a request is
//! queued on the CPU its caller runs on and served by a worker pinned to that
//! CPU, so caller and worker hand over on one CPU.
//!
//! Protocol (`Documentation/filesystems/fuse-io-uring.rst`):
//! - after INIT negotiated `FUSE_OVER_IO_URING`, every queue (one per possible
//!   CPU) must get at least one `REGISTER` command; until all have, the kernel
//!   holds new requests back;
//! - a registered entry is a header area and a payload buffer; the kernel fills
//!   them with a request and completes the command;
//! - the worker writes the reply into the same areas and sends
//!   `COMMIT_AND_FETCH`, which hands the entry back for the next request.
//!
//! FORGET and INTERRUPT still come through `/dev/fuse`, so the classic worker
//! threads keep running alongside.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::Arc;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::reply::ReplyEmpty;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;
use crate::session::dispatch_catching_panics;

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// Sizes fixed by the kernel ABI (`struct fuse_uring_req_header`).
const IN_OUT_HEADER_SIZE: usize = 128;
const OP_IN_OUT_SIZE: usize = 128;
const IN_HEADER_SIZE: usize = 40; // struct fuse_in_header
const OUT_HEADER_SIZE: usize = 16; // struct fuse_out_header

/// The kernel never sends a smaller payload buffer than this.
const FUSE_MIN_READ_BUFFER: usize = 8192;

/// Room in front of the payload where the in-header and op header are copied,
/// so that header, op header and payload form one contiguous request in the
/// layout `/dev/fuse` delivers, without copying the payload.
const PREFIX: usize = 512;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EntInOut {
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_req_header`.
#[repr(C)]
struct ReqHeader {
    in_out: [u8; IN_OUT_HEADER_SIZE],
    op_in: [u8; OP_IN_OUT_SIZE],
    ent_in_out: EntInOut,
}

/// `struct fuse_uring_cmd_req`, in the SQE's 80-byte command area.
fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    // flags (u64) stays zero
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

/// Memory the kernel reads and writes asynchronously: only touched through
/// raw pointers, and only while the entry is ours (between its completion
/// and its next COMMIT_AND_FETCH).
struct EntryBuffers {
    header: *mut ReqHeader,
    /// `PREFIX` bytes, then the payload the kernel sees.
    buf: *mut u8,
    payload_cap: usize,
    _header_mem: Box<[u64]>,
    _buf_mem: Box<[u64]>,
    iov: Box<[libc::iovec; 2]>,
}

impl EntryBuffers {
    fn new(payload_cap: usize) -> Self {
        let words = |bytes: usize| bytes.div_ceil(8);
        let mut header_mem = vec![0u64; words(size_of::<ReqHeader>())].into_boxed_slice();
        let mut buf_mem = vec![0u64; words(PREFIX + payload_cap)].into_boxed_slice();
        let header = header_mem.as_mut_ptr().cast::<ReqHeader>();
        let buf = buf_mem.as_mut_ptr().cast::<u8>();
        let iov = Box::new([
            libc::iovec {
                iov_base: header.cast(),
                iov_len: size_of::<ReqHeader>(),
            },
            libc::iovec {
                // SAFETY: PREFIX is inside the allocation.
                iov_base: unsafe { buf.add(PREFIX) }.cast(),
                iov_len: payload_cap,
            },
        ]);
        EntryBuffers {
            header,
            buf,
            payload_cap,
            _header_mem: header_mem,
            _buf_mem: buf_mem,
            iov,
        }
    }

    fn payload(&self) -> *mut u8 {
        // SAFETY: PREFIX is inside the allocation.
        unsafe { self.buf.add(PREFIX) }
    }
}

/// Where a reply to a ring request is written, shared with the reply object
/// the filesystem holds. Replies must be sent before the handler returns:
/// once the worker commits the entry, a late reply is refused.
#[derive(Clone)]
pub(crate) struct RingReply {
    slot: Arc<Mutex<ReplySlot>>,
    channel: ChannelSender,
}

impl std::fmt::Debug for RingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingReply")
    }
}

enum ReplySlot {
    /// Waiting for the reply. `direct` is where payload bytes may be written
    /// in place (null when the request's own payload still occupies it).
    Open {
        header: *mut ReqHeader,
        direct: *mut u8,
        cap: usize,
    },
    /// Replied; a payload that could not go in place waits in `staged`.
    Replied {
        staged: Option<Vec<u8>>,
    },
    Closed,
}

// SAFETY: the pointers are only dereferenced under the mutex, while the
// worker that owns the entry waits for the handler to return.
unsafe impl Send for ReplySlot {}

impl RingReply {
    pub(crate) fn channel(&self) -> &ChannelSender {
        &self.channel
    }

    pub(crate) fn send(&self, data: &[io::IoSlice<'_>]) -> io::Result<()> {
        let mut slot = self.slot.lock();
        let ReplySlot::Open {
            header,
            direct,
            cap,
        } = *slot
        else {
            return Err(io::Error::other(
                "io_uring request already answered (replies must come before the handler returns)",
            ));
        };
        let total: usize = data.iter().map(|s| s.len()).sum();
        if total < OUT_HEADER_SIZE || total - OUT_HEADER_SIZE > cap {
            return Err(io::Error::other(format!(
                "reply of {total} bytes does not fit the ring entry ({cap})"
            )));
        }
        let payload_len = total - OUT_HEADER_SIZE;
        let mut staged =
            (direct.is_null() && payload_len > 0).then(|| Vec::with_capacity(payload_len));
        let mut at = 0usize; // offset in the concatenated reply
        for chunk in data.iter().map(|s| &s[..]) {
            let mut chunk = chunk;
            if at < OUT_HEADER_SIZE {
                let n = chunk.len().min(OUT_HEADER_SIZE - at);
                // SAFETY: `header` is the entry's header area, ours until commit;
                // in_out is 128 bytes and at + n <= 16.
                unsafe {
                    ptr::copy_nonoverlapping(
                        chunk.as_ptr(),
                        (*header).in_out.as_mut_ptr().add(at),
                        n,
                    )
                };
                at += n;
                chunk = &chunk[n..];
            }
            if chunk.is_empty() {
                continue;
            }
            match staged.as_mut() {
                Some(v) => v.extend_from_slice(chunk),
                // SAFETY: `direct` has `cap` bytes no request data borrows, and
                // at - 16 + len <= payload_len <= cap.
                None => unsafe {
                    ptr::copy_nonoverlapping(
                        chunk.as_ptr(),
                        direct.add(at - OUT_HEADER_SIZE),
                        chunk.len(),
                    )
                },
            }
            at += chunk.len();
        }
        // SAFETY: as above.
        unsafe { (*header).ent_in_out.payload_sz = payload_len as u32 };
        *slot = ReplySlot::Replied { staged };
        Ok(())
    }
}

impl RingReply {
    /// Lets `fill` write up to `len` payload bytes straight into the ring
    /// entry, then completes the reply with the `n` bytes it reports, or
    /// with its error (phivault patch: a READ decrypted into place needs no
    /// copy). Hands `fill` back unused when the entry has no free payload
    /// area that large; the caller then replies the usual way.
    pub(crate) fn send_filled<F>(&self, unique: u64, len: usize, fill: F) -> Result<io::Result<()>, F>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, crate::Errno>,
    {
        let mut slot = self.slot.lock();
        let ReplySlot::Open {
            header,
            direct,
            cap,
        } = *slot
        else {
            return Ok(Err(io::Error::other(
                "io_uring request already answered (replies must come before the handler returns)",
            )));
        };
        if direct.is_null() || len > cap {
            return Err(fill);
        }
        // SAFETY: `direct` has `cap` bytes no request data borrows, ours
        // until the worker commits the entry, which waits for this handler.
        let payload = unsafe { std::slice::from_raw_parts_mut(direct, len) };
        let (error, n) = match fill(payload) {
            Ok(n) => {
                assert!(n <= len, "filled {n} bytes of {len}");
                (0i32, n)
            }
            Err(e) => (-e.code(), 0),
        };
        let mut out = [0u8; OUT_HEADER_SIZE];
        out[0..4].copy_from_slice(&((OUT_HEADER_SIZE + n) as u32).to_ne_bytes());
        out[4..8].copy_from_slice(&error.to_ne_bytes());
        out[8..16].copy_from_slice(&unique.to_ne_bytes());
        // SAFETY: `header` is the entry's header area, ours until commit.
        unsafe {
            ptr::copy_nonoverlapping(out.as_ptr(), (*header).in_out.as_mut_ptr(), OUT_HEADER_SIZE);
            (*header).ent_in_out.payload_sz = n as u32;
        }
        *slot = ReplySlot::Replied { staged: None };
        Ok(Ok(()))
    }
}

/// Parameters of the ring, settled by the INIT exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingParams {
    /// Payload buffer size the kernel demands of every entry.
    pub(crate) payload_size: usize,
    /// The kernel's queues, one per possible CPU: each needs a worker.
    pub(crate) queues: usize,
}

impl RingParams {
    /// Fails if the queues cannot be counted; INIT must then not accept
    /// io_uring, since an unregistered queue would hold every request back.
    pub(crate) fn new(max_write: u32, max_pages: u16) -> io::Result<Self> {
        let pages = max_pages as usize * page_size::get();
        Ok(RingParams {
            payload_size: FUSE_MIN_READ_BUFFER.max(max_write as usize).max(pages),
            queues: queue_count()?,
        })
    }
}

/// Whether this process can set up the rings the transport needs. Check
/// before asking INIT for `FUSE_OVER_IO_URING`: once granted, the kernel holds
/// every request back until all queues are registered, and a worker that
/// cannot build its ring could never register (for instance when
/// `kernel.io_uring_disabled` forbids io_uring). Also counts the kernel's
/// queues, as INIT will: a success here means INIT keeps the flag.
pub fn io_uring_supported() -> io::Result<()> {
    new_ring(2)?;
    queue_count().map(drop)
}

fn new_ring(entries: u32) -> io::Result<IoUring<squeue::Entry128, cqueue::Entry>> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
}

/// The kernel keeps one queue per possible CPU.
fn queue_count() -> io::Result<usize> {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut count = 0usize;
    for range in possible.trim().split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| io::Error::other(format!("bad CPU list {possible:?}")))
        };
        count += parse(hi)? - parse(lo)? + 1;
    }
    Ok(count)
}

/// One worker: its own ring, pinned to the CPU of queue `qid`, serving one
/// entry of that queue.
pub(crate) struct RingWorker<FS: Filesystem> {
    pub(crate) qid: u16,
    pub(crate) params: RingParams,
    pub(crate) context: SessionEventLoop<FS>,
}

impl<FS: Filesystem> RingWorker<FS> {
    pub(crate) fn run(self) -> io::Result<()> {
        let mut cpus = nix::sched::CpuSet::new();
        if cpus.set(self.qid as usize).is_ok() {
            if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus) {
                debug!("queue {}: not pinned to its CPU: {e}", self.qid);
            }
        }
        let mut ring = new_ring(4)?;
        let fd = types::Fd(self.context.ch.as_fd().as_raw_fd());
        let entry = EntryBuffers::new(self.params.payload_size);

        let register = opcode::UringCmd80::new(fd, FUSE_IO_URING_CMD_REGISTER)
            .cmd(cmd_req(0, self.qid))
            .addr(Some(entry.iov.as_ptr() as u64))
            .build();
        // SAFETY: the iovecs and the buffers they name live in `entry`, which
        // outlives every command (see the end of this function).
        unsafe { push(&mut ring, with_len(register, 2))? };

        let result = self.serve(&mut ring, fd, &entry);
        drop(ring);
        match result {
            // The kernel completed the entry's last command with an error.
            Ok(()) => drop(entry),
            // A command may still be in flight and the kernel may still
            // write into the entry: leak it rather than free it under the
            // kernel.
            Err(_) => std::mem::forget(entry),
        }
        result
    }

    fn serve(
        &self,
        ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
        fd: types::Fd,
        entry: &EntryBuffers,
    ) -> io::Result<()> {
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let Some(cqe) = ring.completion().next() else {
                continue;
            };
            match cqe.result() {
                0 => {}
                // The connection is gone: unmounted or aborted.
                r if [
                    libc::ENOTCONN,
                    libc::ECONNABORTED,
                    libc::ECANCELED,
                    libc::ENODEV,
                ]
                .contains(&-r) =>
                {
                    return Ok(());
                }
                r => {
                    let e = io::Error::from_raw_os_error(-r);
                    warn!("FUSE io_uring queue {}: {e}", self.qid);
                    return Err(e);
                }
            }
            let commit_id = self.handle(entry);
            let commit = opcode::UringCmd80::new(fd, FUSE_IO_URING_CMD_COMMIT_AND_FETCH)
                .cmd(cmd_req(commit_id, self.qid))
                .build();
            // SAFETY: the entry's buffers outlive the ring (see `run`).
            unsafe { push(ring, commit)? };
        }
    }

    /// Serves the request in the entry and leaves its reply there. Returns the
    /// commit id that hands the entry back.
    fn handle(&self, entry: &EntryBuffers) -> u64 {
        self.context.served.count_ring();
        // SAFETY: the kernel completed the command, so until we commit, the
        // entry's memory is ours; reads go through raw pointers.
        let ent_in_out = unsafe { ptr::read(&raw const (*entry.header).ent_in_out) };
        let in_out = unsafe { &raw const (*entry.header).in_out };
        let op_in = unsafe { &raw const (*entry.header).op_in };
        let mut in_len_bytes = [0u8; 4];
        unsafe { ptr::copy_nonoverlapping(in_out.cast::<u8>(), in_len_bytes.as_mut_ptr(), 4) };
        let total = u32::from_ne_bytes(in_len_bytes) as usize;
        let payload_len = ent_in_out.payload_sz as usize;
        let op_len = total
            .checked_sub(IN_HEADER_SIZE + payload_len)
            .filter(|&n| n <= OP_IN_OUT_SIZE && n % 8 == 0 && payload_len <= entry.payload_cap);

        let slot = Arc::new(Mutex::new(ReplySlot::Open {
            header: entry.header,
            // Payload bytes can go in place only if the request has none.
            direct: if payload_len == 0 {
                entry.payload()
            } else {
                ptr::null_mut()
            },
            cap: entry.payload_cap,
        }));
        let reply = RingReply {
            slot: slot.clone(),
            channel: self.context.ch.sender(),
        };

        match op_len {
            Some(op_len) => {
                let start = PREFIX - op_len - IN_HEADER_SIZE;
                // SAFETY: [start, PREFIX) is the prefix area, which only we
                // use; the request slice below ends where the payload ends.
                let request = unsafe {
                    ptr::copy_nonoverlapping(
                        in_out.cast::<u8>(),
                        entry.buf.add(start),
                        IN_HEADER_SIZE,
                    );
                    ptr::copy_nonoverlapping(
                        op_in.cast::<u8>(),
                        entry.buf.add(PREFIX - op_len),
                        op_len,
                    );
                    std::slice::from_raw_parts(entry.buf.add(start), total)
                };
                self.dispatch(reply, request);
            }
            None => warn!(
                "FUSE io_uring queue {}: malformed request ({total} bytes, payload {payload_len})",
                self.qid
            ),
        }

        let mut slot = slot.lock();
        match std::mem::replace(&mut *slot, ReplySlot::Closed) {
            ReplySlot::Replied { staged: None } => {}
            ReplySlot::Replied {
                staged: Some(bytes),
            } => {
                // SAFETY: the request slice is no longer borrowed.
                unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), entry.payload(), bytes.len()) }
            }
            ReplySlot::Open { .. } | ReplySlot::Closed => {
                // No reply (a malformed request, or a handler that kept its
                // reply object): the entry still has to be handed back.
                write_error(entry, ent_in_out.commit_id, libc::EIO);
            }
        }
        ent_in_out.commit_id
    }

    fn dispatch(&self, reply: RingReply, request: &[u8]) {
        let Some(req) = RequestWithSender::from_ring(self.context.ch.sender(), reply, request)
        else {
            return;
        };
        if let Ok(Operation::Destroy(_)) = req.request.operation() {
            req.reply::<ReplyEmpty>().ok();
        } else if !dispatch_catching_panics(|| req.dispatch(&self.context)) {
            error!(
                "FUSE io_uring queue {}: a request handler panicked; answered EIO",
                self.qid
            );
        }
    }
}

fn write_error(entry: &EntryBuffers, unique: u64, errno: i32) {
    let mut out = [0u8; OUT_HEADER_SIZE];
    out[0..4].copy_from_slice(&(OUT_HEADER_SIZE as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    // SAFETY: the entry is ours until commit.
    unsafe {
        ptr::copy_nonoverlapping(
            out.as_ptr(),
            (*entry.header).in_out.as_mut_ptr(),
            OUT_HEADER_SIZE,
        );
        (*entry.header).ent_in_out.payload_sz = 0;
    }
}

/// The io-uring crate has no setter for `sqe->len`, which REGISTER uses for
/// the iovec count.
fn with_len(entry: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: Entry128 is repr(C): a 64-byte io_uring_sqe then 64 bytes of
    // command; `len` is the u32 at offset 24 of the SQE.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(entry) };
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute(raw) }
}

/// # Safety
/// Whatever memory the entry names must stay valid until it completes.
unsafe fn push(
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    entry: squeue::Entry128,
) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    unsafe { ring.submission().push(&entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))
}
