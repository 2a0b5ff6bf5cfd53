//! The FUSE adapter: translates kernel requests into engine calls and engine
//! errors into errno values. Holds no business logic and never touches SQL.
//!
//! It reads every tree through `vault::TreeView`: the live one, the instant
//! a `mount --at` serves, and the instants under the hidden `.snapshots`
//! directory at the root (see `snapshots`), whose nodes only ever read.

mod audit;
mod convert;
mod dir_handles;
mod drop_behind;
mod io_uring;
mod kernel_cache;
mod snapshots;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::vault::{
    Attr, Capability, Kind, NodeSpec, Past, Released, RenameMode, SetAttr, TimeSet, TreeView,
    Vault, VaultError, ROOT_INO,
};
use convert::{caller, file_attr, kernel_time_ns, kind_from_mode};
use dir_handles::DirHandles;
use snapshots::{node_id, Listings, Node, Slots};

pub use convert::{mount_config, MountSettings};
use drop_behind::DropBehind;
pub use io_uring::{io_uring_enabled, IoUringMode};
pub use kernel_cache::KernelCache;

/// Everything below comes from this mount, so the kernel may cache long.
const TTL: Duration = Duration::from_secs(60);
const MAX_WRITE: u32 = 1 << 20;

pub struct PhiFs {
    vault: Arc<Vault>,
    io_uring: IoUringMode,
    /// Whether to ask the kernel to enforce POSIX ACLs (`-o noacl` not).
    posix_acls: bool,
    /// What the kernel is told to forget; its notifier comes from the
    /// mount once the session exists.
    kernel: Arc<KernelCache>,
    /// Files whose pages leave the kernel's cache.
    drop_behind: DropBehind,
    dirs: DirHandles,
    /// The instant a `mount --at` serves; None for the live tree.
    at: Option<i64>,
    /// The instants named under `.snapshots` so far, and its listings.
    slots: Slots,
    listings: Listings,
}

/// A tree, read through `TreeView`: each request is served by code made
/// for its kind of tree (see `on_tree!`), with no indirection.
enum Tree<'a> {
    Live(&'a Vault),
    Past(Past<'a>),
}

/// Runs `$body` with `$t` bound to the tree's `TreeView`.
macro_rules! on_tree {
    ($tree:expr, |$t:ident| $body:expr) => {
        match $tree {
            Tree::Live($t) => $body,
            Tree::Past(ref $t) => $body,
        }
    };
}

/// What a node number names: inode `ino` of a tree, whose node numbers
/// carry `slot` (see `snapshots`), or `.snapshots` itself.
enum Place<'a> {
    Node { tree: Tree<'a>, ino: u64, slot: u64 },
    SnapshotsDir,
}

impl PhiFs {
    pub fn new(vault: Arc<Vault>, io_uring: IoUringMode, posix_acls: bool) -> Self {
        let kernel = Arc::new(KernelCache::default());
        Self {
            vault,
            io_uring,
            posix_acls,
            kernel: kernel.clone(),
            drop_behind: DropBehind::new(kernel),
            dirs: DirHandles::default(),
            at: None,
            slots: Slots::default(),
            listings: Listings::default(),
        }
    }

    /// Serves the tree as it was at instant `at` (ns since the epoch),
    /// read-only and without `.snapshots`, instead of the live one.
    pub fn at_instant(mut self, at: i64) -> Self {
        self.at = Some(at);
        self
    }

    /// For the mount, to attach the session's notifier.
    pub fn kernel_cache(&self) -> Arc<KernelCache> {
        self.kernel.clone()
    }
}

fn errno(e: VaultError) -> Errno {
    if matches!(e.errno(), libc::EIO | libc::ENOSPC) {
        tracing::warn!("{e}");
    }
    Errno::from_i32(e.errno())
}

fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

impl Filesystem for PhiFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_WRITEBACK_CACHE,
            InitFlags::FUSE_DONT_MASK,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
            // We clear set-id bits ourselves (see `SetAttr::drop_set_id`).
            // In return the kernel skips a GETATTR before every chown and
            // marks inodes S_NOSEC, so a write() no longer costs a
            // security.capability GETXATTR round trip each time.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // open(O_TRUNC) truncates in the OPEN request itself, instead of
            // a separate SETATTR round trip (shell `>`, cp over a file).
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            // File handles (NFS export, open_by_handle_at) keep working once
            // the kernel has forgotten the inode: it asks for the node by
            // number with LOOKUP(ino, "."), and for a directory's parent
            // with LOOKUP(dir, "..").
            InitFlags::FUSE_EXPORT_SUPPORT,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // Not FUSE_ASYNC_DIO: with it, the kernel completes an AIO direct
        // write without dropping the pages of its range that buffered
        // readers cached while it was in flight, so a read after the write
        // returned the bytes it replaced. Without it, the kernel waits for
        // the write and then invalidates that range, as for a synchronous one.
        // The kernel checks POSIX ACLs and the vault keeps them (see
        // `vault::acl`); without this the vault refuses them, as ext4
        // mounted `noacl` does.
        if self.posix_acls && config.add_capabilities(InitFlags::FUSE_POSIX_ACL).is_ok() {
            self.vault.enable_acls();
        }
        let over_io_uring = io_uring::request(self.io_uring, config)?;
        tracing::info!(
            "kernel requests arrive {}",
            if over_io_uring {
                "over io_uring, one queue per CPU"
            } else {
                "through /dev/fuse"
            }
        );
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vault.shutdown() {
            tracing::error!("flushing the store at unmount failed: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        match self.place(parent) {
            Ok(Place::Node { tree, ino, slot }) => {
                on_tree!(tree, |t| self.lookup_in(t, slot, ino, name(n), reply))
            }
            Ok(Place::SnapshotsDir) => self.lookup_snapshot(name(n), reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => match on_tree!(tree, |t| t.getattr(ino)) {
                Ok(a) => reply.attr(&TTL, &node_attr(slot, &a)),
                Err(e) => reply.error(errno(e)),
            },
            Ok(Place::SnapshotsDir) => reply.attr(&TTL, &file_attr(&self.snapshots_attr())),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let Err(e) = self.live(ino) {
            return reply.error(e);
        }
        let ts = |t: TimeOrNow| match t {
            TimeOrNow::Now => TimeSet::Now,
            TimeOrNow::SpecificTime(t) => TimeSet::At(kernel_time_ns(t)),
        };
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(ts),
            mtime: mtime.map(ts),
            ctime: ctime.map(kernel_time_ns),
            // FATTR_KILL_SUIDGID is not passed on by fuser; these are the
            // cases where the kernel sets it.
            drop_set_id: uid.is_some()
                || gid.is_some()
                || (size.is_some() && self.set_id_to_drop(req, ino)),
        };
        match self.vault.setattr(&caller(req), ino.0, &set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.readlink(ino)).map_err(errno),
            Ok(Place::SnapshotsDir) => Err(Errno::EINVAL),
            Err(e) => Err(e),
        };
        match target {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let parent = match self.live_name(parent, n) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let Some(kind) = kind_from_mode(mode) else {
            return reply.error(Errno::EINVAL);
        };
        let made = self.vault.create_node(
            &caller(req),
            parent,
            name(n),
            NodeSpec {
                kind,
                mode,
                umask,
                rdev,
            },
        );
        self.entry(reply, made)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let parent = match self.live_name(parent, n) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let made = self.vault.create_node(
            &caller(req),
            parent,
            name(n),
            NodeSpec {
                kind: Kind::Dir,
                mode,
                umask,
                rdev: 0,
            },
        );
        self.entry(reply, made)
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.live_name(parent, n) {
            Ok(parent) => empty(reply, self.vault.unlink(&caller(req), parent, name(n))),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.live_name(parent, n) {
            Ok(parent) => empty(reply, self.vault.rmdir(&caller(req), parent, name(n))),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let parent = match self.live_name(parent, link) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.entry(
            reply,
            self.vault.symlink(
                &caller(req),
                parent,
                name(link),
                target.as_os_str().as_bytes(),
            ),
        )
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (parent, newparent) = match (
            self.live_name(parent, n),
            self.live_name(newparent, newname),
        ) {
            (Ok(p), Ok(np)) => (p, np),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let mode = match flags.bits() {
            0 => RenameMode::Replace,
            f if f == libc::RENAME_NOREPLACE => RenameMode::NoReplace,
            f if f == libc::RENAME_EXCHANGE => RenameMode::Exchange,
            _ => return reply.error(Errno::EINVAL),
        };
        match self.vault.rename(
            &caller(req),
            parent,
            name(n),
            newparent,
            name(newname),
            mode,
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match (self.live(ino), self.live_name(newparent, newname)) {
            (Ok(ino), Ok(np)) => self.entry(reply, self.vault.link(ino, np, name(newname))),
            (Err(e), _) | (_, Err(e)) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if self.live(ino).is_err() {
            // The past is read-only, and its content never changes.
            return match self.place(ino) {
                Ok(_) if writes || truncate => reply.error(Errno::EROFS),
                Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            };
        }
        // Set-id bits go before the handle is registered, so a failure
        // leaves no handle that the kernel would never release.
        let opened = if truncate && self.set_id_to_drop(req, ino) {
            self.drop_set_id(req, ino)
        } else {
            Ok(())
        }
        .and_then(|()| {
            self.vault
                .open_file_as(ino.0, truncate, writes.then(|| req.uid()))
        });
        match opened {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
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

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
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
                self.drop_set_id(req, ino)?;
            }
            Ok(n)
        });
        match written {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
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

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if self.live(ino).is_err() {
            return reply.ok();
        }
        match self.vault.release_file(ino.0) {
            Ok(released) => {
                reply.ok();
                if released == Released::WrittenWhole {
                    self.drop_behind.written_whole(ino);
                }
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(
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

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let kind = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.getattr(ino))
                .map(|a| a.kind)
                .map_err(errno),
            Ok(Place::SnapshotsDir) => Ok(Kind::Dir),
            Err(e) => Err(e),
        };
        match kind {
            Ok(Kind::Dir) => reply.opened(self.dirs.open(), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.release(fh);
        self.listings.release(fh);
        reply.ok()
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => on_tree!(tree, |t| {
                self.walk_dir(t, ino, fh, offset, 256, |e| {
                    let name = OsStr::from_bytes(&e.name);
                    let node = INodeNo(self.entry_node(slot, ino, e));
                    Ok(reply.add(node, e.next, convert::file_type(e.kind), name))
                })
            }),
            Ok(Place::SnapshotsDir) => self.walk_snapshots(fh, offset, |node, next, name, _| {
                Ok(reply.add(node, next, fuser::FileType::Directory, name))
            }),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let res = match self.place(ino) {
            Ok(Place::Node { tree, ino, slot }) => on_tree!(tree, |t| {
                self.walk_dir(t, ino, fh, offset, 128, |e| {
                    let attr = match t.getattr(e.ino) {
                        Ok(a) => a,
                        Err(VaultError::NotFound) => return Ok(false),
                        Err(err) => return Err(errno(err)),
                    };
                    let mut attr = node_attr(slot, &attr);
                    attr.ino = INodeNo(self.entry_node(slot, ino, e));
                    let name = OsStr::from_bytes(&e.name);
                    let generation = Generation(self.vault.generation(e.ino));
                    Ok(reply.add(attr.ino, e.next, name, &TTL, &attr, generation))
                })
            }),
            Ok(Place::SnapshotsDir) => self.walk_snapshots(fh, offset, |node, next, name, attr| {
                let generation = Generation(self.vault.generation(ROOT_INO));
                Ok(reply.add(node, next, name, &TTL, &file_attr(attr), generation))
            }),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The past is as durable as it will ever be.
        match self.live(ino) {
            Ok(_) => empty(reply, self.vault.sync_dir()),
            Err(_) => reply.ok(),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.vault.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_avail,
                s.files,
                s.files_free,
                s.block_size,
                crate::vault::NAME_MAX as u32,
                s.block_size,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _pos: u32,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.live(ino) {
            return reply.error(e);
        }
        let name = name(n);
        empty(
            reply,
            self.vault.setxattr(&caller(req), ino.0, name, value, flags),
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.getxattr(ino, name(n))),
            Ok(Place::SnapshotsDir) => Err(VaultError::NoAttr),
            Err(e) => return reply.error(e),
        };
        match value {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.listxattr(ino)),
            Ok(Place::SnapshotsDir) => Ok(Vec::new()),
            Err(e) => return reply.error(e),
        };
        match names {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match self.live(ino) {
            Ok(ino) => empty(reply, self.vault.removexattr(ino, name(n))),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok()
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let parent = match self.live_name(parent, n) {
            Ok(p) => INodeNo(p),
            Err(e) => return reply.error(e),
        };
        let Some(kind) = kind_from_mode(mode | libc::S_IFREG) else {
            return reply.error(Errno::EINVAL);
        };
        let attr = match self.vault.create_node(
            &caller(req),
            parent.0,
            name(n),
            NodeSpec {
                kind,
                mode,
                umask,
                rdev: 0,
            },
        ) {
            Ok(a) => a,
            Err(e) => return reply.error(errno(e)),
        };
        let _ = flags;
        match self.vault.open_file_as(attr.ino, false, Some(req.uid())) {
            Ok(()) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(self.vault.generation(attr.ino)),
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
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
                if changes_data && self.set_id_to_drop(req, ino) {
                    self.drop_set_id(req, ino)?;
                }
                Ok(())
            });
        empty(reply, res)
    }
}

impl PhiFs {
    /// Replies with a node of the live tree, named by its number and its
    /// generation (which file handles carry, see `Vault::generation`).
    fn entry(&self, reply: ReplyEntry, res: crate::vault::Result<Attr>) {
        self.entry_in(reply, 0, res)
    }

    /// Replies with a node of the tree in `slot`.
    fn entry_in(&self, reply: ReplyEntry, slot: u64, res: crate::vault::Result<Attr>) {
        match res {
            Ok(a) => {
                let generation = Generation(self.vault.generation(a.ino));
                reply.entry(&TTL, &node_attr(slot, &a), generation)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Where node `node` lives (see `snapshots` for the numbering).
    #[inline]
    fn place(&self, node: INodeNo) -> Result<Place<'_>, Errno> {
        match Node::of(node.0) {
            Node::Tree { slot: 0, ino } => Ok(Place::Node {
                tree: match self.at {
                    None => Tree::Live(&self.vault),
                    Some(at) => Tree::Past(self.vault.past(at)),
                },
                ino,
                slot: 0,
            }),
            Node::Tree { slot, ino } => {
                let at = self.slots.instant(slot).ok_or(Errno::ENOENT)?;
                Ok(Place::Node {
                    tree: Tree::Past(self.vault.past(at)),
                    ino,
                    slot,
                })
            }
            Node::Dir if self.offers_snapshots() => Ok(Place::SnapshotsDir),
            Node::Dir => Err(Errno::ENOENT),
        }
    }

    /// Whether `.snapshots` is in this mount's root: not in a view of one
    /// instant, nor in a read-only view of the live tree.
    fn offers_snapshots(&self) -> bool {
        self.at.is_none() && !self.vault.is_read_only()
    }

    /// `node`'s inode number, if it is of the live tree, which alone takes
    /// changes; EROFS for the past.
    #[inline]
    fn live(&self, node: INodeNo) -> Result<u64, Errno> {
        match Node::of(node.0) {
            Node::Tree { slot: 0, ino } if self.at.is_none() => Ok(ino),
            _ => Err(Errno::EROFS),
        }
    }

    /// `parent`'s inode number, for a change of its entry `n`: EROFS in the
    /// past, and for `.snapshots` in the root.
    #[inline]
    fn live_name(&self, parent: INodeNo, n: &OsStr) -> Result<u64, Errno> {
        let parent = self.live(parent)?;
        if parent == ROOT_INO && name(n) == snapshots::DIR_NAME && self.offers_snapshots() {
            return Err(Errno::EROFS);
        }
        Ok(parent)
    }

    /// LOOKUP in directory `parent` of tree `t`, whose nodes carry `slot`.
    fn lookup_in<T: TreeView>(
        &self,
        t: &T,
        slot: u64,
        parent: u64,
        name: &[u8],
        reply: ReplyEntry,
    ) {
        // Only the export operations send "." and ".." (the kernel resolves
        // them in a path itself); a node that is gone must be ENOENT, which
        // the kernel turns into ESTALE, never a cached negative entry.
        let found = match name {
            b"." => t.lookup_id(parent),
            b".." if slot != 0 && parent == ROOT_INO => {
                return reply.entry(&TTL, &file_attr(&self.snapshots_attr()), Generation(0))
            }
            b".." => t.lookup_parent(parent),
            snapshots::DIR_NAME if slot == 0 && parent == ROOT_INO && self.offers_snapshots() => {
                return reply.entry(&TTL, &file_attr(&self.snapshots_attr()), Generation(0))
            }
            _ => match t.lookup(parent, name) {
                // Only this mount adds names to the store, and the kernel
                // drops a cached "no such name" when it creates one: programs
                // that test for a name before creating it (SQLite's journal
                // at every transaction, editors, git, make) ask once. A
                // read-only view of the live tree may run beside the writing
                // daemon, so it does not cache them; the past never changes.
                Err(VaultError::NotFound)
                    if slot != 0 || self.at.is_some() || !self.vault.is_read_only() =>
                {
                    return reply.entry(&TTL, &convert::no_entry(), Generation(0))
                }
                res => res,
            },
        };
        self.entry_in(reply, slot, found)
    }

    /// LOOKUP in `.snapshots`: any well-formed name of a second that has
    /// passed since the store was made, listed or not.
    fn lookup_snapshot(&self, name: &[u8], reply: ReplyEntry) {
        match name {
            b"." => return reply.entry(&TTL, &file_attr(&self.snapshots_attr()), Generation(0)),
            b".." => return self.entry(reply, self.vault.getattr(ROOT_INO)),
            _ => {}
        }
        let Some(sec) = snapshots::second_of(name).filter(|&s| snapshots::has_passed(s)) else {
            return reply.error(Errno::ENOENT);
        };
        let at = snapshots::instant_of(sec);
        // Before the store existed, its root did not either: ENOENT.
        let root = match self.vault.past(at).getattr(ROOT_INO) {
            Ok(root) => root,
            Err(e) => return reply.error(errno(e)),
        };
        match self.slots.slot_of(at) {
            Some(slot) => self.entry_in(reply, slot, Ok(root)),
            None => reply.error(Errno::ENOSPC),
        }
    }

    /// The attributes of `.snapshots` (see `snapshots::dir_attr`).
    fn snapshots_attr(&self) -> Attr {
        let born = self.vault.getattr(ROOT_INO).map_or(0, |a| a.btime);
        snapshots::dir_attr(born)
    }

    /// The node number of entry `e` of directory `dir` in the tree of
    /// `slot`; the ".." of a snapshot's root is `.snapshots`.
    #[inline]
    fn entry_node(&self, slot: u64, dir: u64, e: &crate::vault::DirEntry) -> u64 {
        if slot != 0 && dir == ROOT_INO && e.name == b".." {
            return snapshots::DIR_NODE;
        }
        node_id(slot, e.ino)
    }

    /// Feeds the entries of `.snapshots` after `offset` to `add` (node,
    /// next offset, name, attributes) until it reports the reply buffer
    /// full (true) or the listing ends.
    fn walk_snapshots(
        &self,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(INodeNo, u64, &OsStr, &Attr) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        let seconds = self.listings.seconds(fh, offset, || {
            let tz = jiff::tz::TimeZone::system();
            self.vault
                .snapshot_instants(jiff::Timestamp::now(), &tz)
                .map_err(errno)
        })?;
        let mut dir = self.snapshots_attr();
        if offset < 1 && add(INodeNo(dir.ino), 1, OsStr::new("."), &dir)? {
            return Ok(());
        }
        if offset < 2 {
            let root = self.vault.getattr(ROOT_INO).map_err(errno)?;
            if add(INodeNo(ROOT_INO), 2, OsStr::new(".."), &root)? {
                return Ok(());
            }
        }
        for (i, &sec) in seconds
            .iter()
            .enumerate()
            .skip(offset.saturating_sub(2) as usize)
        {
            let at = snapshots::instant_of(sec);
            let (Some(name), Ok(root)) = (
                snapshots::name_of(sec),
                self.vault.past(at).getattr(ROOT_INO),
            ) else {
                continue;
            };
            let Some(slot) = self.slots.slot_of(at) else {
                break;
            };
            dir = root;
            dir.ino = node_id(slot, ROOT_INO);
            if add(INodeNo(dir.ino), i as u64 + 3, OsStr::new(&name), &dir)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Clears set-id bits where the kernel leaves it to us (see
    /// `SetAttr::drop_set_id`), and has it forget the mode it cached: the
    /// replies to WRITE, OPEN and FALLOCATE carry no attributes.
    fn drop_set_id(&self, req: &Request, ino: INodeNo) -> crate::vault::Result<()> {
        let set = SetAttr {
            drop_set_id: true,
            ..SetAttr::default()
        };
        self.vault.setattr(&caller(req), ino.0, &set)?;
        self.kernel.attributes_changed(ino);
        Ok(())
    }

    /// Whether `ino` has set-id bits that a change by this caller clears:
    /// it lacks CAP_FSETID. Asks /proc only for such files.
    fn set_id_to_drop(&self, req: &Request, ino: INodeNo) -> bool {
        // A file that cannot be read fails the request itself next.
        self.vault.has_set_id_to_drop(ino.0).unwrap_or(false)
            && !caller(req).has_cap(Capability::Fsetid)
    }

    /// Feeds directory entries of `ino` in tree `t` after `offset` to `add`
    /// until it reports the reply buffer full (true) or the directory ends.
    fn walk_dir<T: TreeView>(
        &self,
        t: &T,
        ino: u64,
        fh: FileHandle,
        offset: u64,
        batch: usize,
        mut add: impl FnMut(&crate::vault::DirEntry) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        let horizon = match self.dirs.horizon(fh) {
            Some(h) if offset != 0 => h,
            _ => {
                let now = t.listing_horizon().map_err(errno)?;
                self.dirs.start(fh, now);
                now
            }
        };
        let mut pos = offset;
        loop {
            let entries = t.readdir(ino, pos, horizon, batch).map_err(errno)?;
            if entries.is_empty() {
                return Ok(());
            }
            for e in &entries {
                if add(e)? {
                    return Ok(());
                }
                pos = e.next;
            }
        }
    }
}

/// The kernel's view of `a`, a node of the tree in `slot`.
#[inline]
fn node_attr(slot: u64, a: &Attr) -> fuser::FileAttr {
    let mut attr = file_attr(a);
    attr.ino = INodeNo(node_id(slot, a.ino));
    attr
}

fn empty(reply: ReplyEmpty, res: crate::vault::Result<()>) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

/// The kernel's read-ahead for this mount, in KiB (its default is 128).
/// Over io_uring, a READ is served on the reader's CPU; with 8 MiB ahead,
/// enough READs are in flight to keep both cores decrypting, and 8 MiB read
/// 1 GiB 20-25% faster than 1 MiB in interleaved runs.
const READ_AHEAD_KIB: u32 = 8192;

/// Raises the read-ahead window of the mount whose device is `device`
/// ("major:minor", from mountinfo). Call it once the FUSE handshake is done
/// (`fuser::Session::new` returns after it), which would otherwise cap it
/// again. Needs root to write to sysfs; anyone else keeps the kernel
/// default, and the engine decrypts ahead itself. It never touches the
/// mount: a daemon thread waiting on its own mount when the daemon is
/// killed keeps the process, and so the mount, from ever dying.
pub fn raise_read_ahead(device: &str, vault: &Vault) {
    let knob = format!("/sys/class/bdi/{device}/read_ahead_kb");
    match std::fs::write(&knob, READ_AHEAD_KIB.to_string()) {
        // The kernel's READs now cover 8 MiB ahead: reads decrypt
        // straight into its buffers instead (see `vault::read`).
        Ok(()) => vault.set_decrypt_ahead(false),
        Err(e) => tracing::debug!("read-ahead left at the kernel default ({knob}: {e})"),
    }
}
