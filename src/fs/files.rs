//! File contents through open handles: OPEN, CREATE, READ, WRITE, FLUSH,
//! RELEASE, FSYNC, FALLOCATE, and the set-id bits a change clears.

use std::ffi::OsStr;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, ReplyCreate,
    ReplyData, ReplyEmpty, ReplyOpen, ReplyWrite, Request, WriteFlags,
};

use super::convert::{caller, file_attr, kind_from_mode};
use super::{empty, errno, name, on_tree, PhiFs, Place, Tree};
use crate::audit::Op;
use crate::vault::{Caller, Capability, NodeSpec, Released, SetAttr, MAY_EXEC, MAY_READ};

/// The kernel's open flag for an exec (`__FMODE_EXEC`).
const FMODE_EXEC: i32 = 0x20;

impl PhiFs {
    pub(super) fn do_open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let rec = self
            .audit
            .start(req, Op::Open, self.subject(ino))
            .flags(flags.0);
        let opened = match self.admit(req) {
            Ok(who) if self.live(ino).is_err() => {
                rec.opened(None, self.may_open_past(&who, ino, flags.0))
            }
            Ok(who) => rec.opened(Some(ino.0), self.open_live(req, &who, ino, flags.0)),
            Err(e) => Err(rec.failed(e)),
        };
        match opened {
            Ok(fh) => reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    /// OPEN of live node `ino` with `flags` by `who`, once allowed.
    fn open_live(
        &self,
        req: &Request,
        who: &Caller,
        ino: INodeNo,
        flags: i32,
    ) -> Result<(), Errno> {
        self.vault.may_open(who, ino.0, flags).map_err(errno)?;
        let truncate = flags & libc::O_TRUNC != 0;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        // Set-id bits go before the handle is registered, so a failure
        // leaves no handle that the kernel would never release.
        if truncate && self.set_id_to_drop(who, ino) {
            self.drop_set_id(who, ino).map_err(errno)?;
        }
        self.vault
            .open_file_as(ino.0, truncate, writes.then(|| req.uid()))
            .map_err(errno)
    }

    /// Whether `who` may OPEN node `ino` of the past (or `.snapshots`)
    /// with `flags`: the past is read-only, and its content never changes.
    fn may_open_past(&self, who: &Caller, ino: INodeNo, flags: i32) -> Result<(), Errno> {
        let mask = match flags & FMODE_EXEC {
            0 => MAY_READ,
            _ => MAY_EXEC,
        };
        let changes = flags & (libc::O_ACCMODE | libc::O_TRUNC) != libc::O_RDONLY;
        match self.place(ino)? {
            _ if changes => Err(Errno::EROFS),
            Place::Node {
                tree: Tree::Past(p),
                ino,
                ..
            } => self.past_may(&p, who, ino, mask).map_err(errno),
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.place(ino) {
            // Straight into the kernel's reply buffer (see `vault::read`).
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| reply
                .data_in_place(size as usize, |buf| {
                    t.read_into(ino, offset, buf).map_err(errno)
                })),
            Ok(Place::SnapshotsDir) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wflags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Err(e) = self.live(ino) {
            return reply.error(e);
        }
        let written = self.vault.write(ino.0, offset, data).and_then(|n| {
            // The kernel sets the flag for every write by a caller without
            // CAP_FSETID, whatever the mode.
            if wflags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
                && self.vault.has_set_id_to_drop(ino.0)?
            {
                self.drop_set_id(&caller(req), ino)?;
            }
            Ok(n)
        });
        match written {
            Ok(n) => {
                self.audit.wrote(fh, n);
                reply.written(n as u32)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.live(ino) {
            Ok(ino) => empty(reply, self.vault.flush(ino)),
            Err(_) => reply.ok(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if self.live(ino).is_err() {
            return reply.ok();
        }
        let released = self.vault.release_file(ino.0).map_err(errno);
        match self.audit.release(fh, released) {
            Ok(released) => {
                reply.ok();
                if released == Released::WrittenWhole {
                    self.drop_behind.written_whole(ino);
                }
            }
            Err(e) => reply.error(e),
        }
    }

    pub(super) fn do_fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.live(ino) {
            Ok(ino) => empty(reply, self.vault.fsync(ino)),
            Err(_) => reply.ok(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let rec = self
            .audit
            .start(req, Op::Create, self.entry_subject(parent, name(n)))
            .flags(flags)
            .mode(mode);
        let spec = kind_from_mode(mode | libc::S_IFREG).map(|kind| NodeSpec {
            kind,
            mode,
            umask,
            rdev: 0,
        });
        let (parent, attr) = match self.new_node(req, parent, n, spec) {
            Ok(made) => made,
            Err(e) => return reply.error(rec.failed(e)),
        };
        let opened = self.vault.open_file_as(attr.ino, false, Some(req.uid()));
        match rec.opened(Some(attr.ino), opened.map_err(errno)) {
            Ok(fh) => reply.created(
                &self.entry_timeout(parent),
                &file_attr(&attr),
                Generation(self.vault.generation(attr.ino)),
                fh,
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.live(ino) {
            return reply.error(e);
        }
        // As the kernel's file_modified() would: anything but reserving
        // space beyond the end changes the file.
        let changes_data = mode & libc::FALLOC_FL_KEEP_SIZE == 0
            || mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0;
        let res = self
            .vault
            .fallocate(ino.0, offset, length, mode)
            .and_then(|()| {
                let who = caller(req);
                if changes_data && self.set_id_to_drop(&who, ino) {
                    self.drop_set_id(&who, ino)?;
                }
                Ok(())
            });
        empty(reply, res)
    }

    /// Clears set-id bits where the kernel leaves it to us (see
    /// `SetAttr::drop_set_id`), and has it forget the mode it cached: the
    /// replies to WRITE, OPEN and FALLOCATE carry no attributes.
    pub(super) fn drop_set_id(&self, who: &Caller, ino: INodeNo) -> crate::vault::Result<()> {
        let set = SetAttr {
            drop_set_id: true,
            ..SetAttr::default()
        };
        self.vault.setattr(who, ino.0, &set)?;
        self.kernel.attributes_changed(ino);
        Ok(())
    }

    /// Whether `ino` has set-id bits that a change by this caller clears:
    /// it lacks CAP_FSETID. Asks /proc only for such files.
    pub(super) fn set_id_to_drop(&self, who: &Caller, ino: INodeNo) -> bool {
        // A file that cannot be read fails the request itself next.
        self.vault.has_set_id_to_drop(ino.0).unwrap_or(false) && !who.has_cap(Capability::Fsetid)
    }
}
