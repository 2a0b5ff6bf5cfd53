//! The FUSE adapter: translates kernel requests into engine calls and engine
//! errors into errno values. Holds no business logic and never touches SQL.
//!
//! It reads every tree through `vault::TreeView`: the live one, the instant
//! a `mount --at` serves, and the instants under the hidden `.snapshots`
//! directory at the root (see `snapshots`), whose nodes only ever read.

mod attrs;
mod audit;
mod convert;
mod dir_handles;
mod dirs;
mod drop_behind;
mod files;
mod io_uring;
mod kernel_cache;
mod namespace;
mod past;
mod read_ahead;
mod search_cache;
mod snapshots;
mod xattrs;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::vault::{Admitted, Attr, Caller, Past, Vault, VaultError, ROOT_INO};
use convert::file_attr;
use dir_handles::DirHandles;
use search_cache::SearchCache;
use snapshots::{node_id, Listings, Node, Slots};

pub use convert::{mount_config, MountSettings};
use drop_behind::DropBehind;
pub use io_uring::{io_uring_enabled, IoUringMode};
pub use kernel_cache::KernelCache;
pub use read_ahead::raise_read_ahead;

/// Everything below comes from this mount, so the kernel may cache long.
const TTL: Duration = Duration::from_secs(60);
const MAX_WRITE: u32 = 1 << 20;

pub struct PhiFs {
    vault: Arc<Vault>,
    io_uring: IoUringMode,
    /// Whether the vault keeps POSIX ACLs (`-o noacl` not).
    posix_acls: bool,
    /// `--allow-group`: the groups whose members (and root) alone get in;
    /// empty for everyone.
    allowed_groups: Vec<u32>,
    /// Who the kernel lets in at all (`allow_other` or the mounting user).
    admitted: Admitted,
    /// Which directories everyone admitted may search (see `entry_timeout`).
    searchable: SearchCache,
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
    /// The record of each request the audit trail covers.
    audit: audit::Trail,
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
use on_tree;

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
            audit: audit::Trail::new(vault.clone()),
            vault,
            io_uring,
            posix_acls,
            allowed_groups: Vec::new(),
            admitted: Admitted::Everyone,
            searchable: SearchCache::default(),
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

    /// Says who the kernel lets in (see `Admitted`); until told, everyone.
    pub fn admitting(mut self, admitted: Admitted) -> Self {
        self.admitted = admitted;
        self
    }

    /// Lets in only root and the members of `gids` (`--allow-group`).
    pub fn allow_groups(mut self, gids: Vec<u32>) -> Self {
        self.allowed_groups = gids;
        self
    }

    /// For the mount, to attach the session's notifier.
    pub fn kernel_cache(&self) -> Arc<KernelCache> {
        self.kernel.clone()
    }
}

impl PhiFs {
    /// Who sent `req`, built once per request and given to both the
    /// permission check and the operation. EACCES for a caller
    /// `--allow-group` shuts out: its primary group is tried first, so
    /// /proc is read only for callers outside the groups.
    #[inline]
    fn admit(&self, req: &Request) -> Result<Caller, Errno> {
        let who = convert::caller(req);
        if self.allowed_groups.is_empty()
            || who.is_root()
            || self.allowed_groups.iter().any(|&g| who.in_group(g))
        {
            Ok(who)
        } else {
            Err(Errno::EACCES)
        }
    }

    /// How long the kernel may keep an entry of live directory `dir`
    /// without asking again. Without default_permissions it does not check
    /// search permission on a path it walks through cached entries, so an
    /// entry of a directory that not every caller the mount admits may
    /// search must be looked up each time (timeout 0), as must the root's
    /// entries when `--allow-group` shuts some callers out.
    fn entry_timeout(&self, dir: u64) -> Duration {
        self.entry_timeout_of(dir, self.searchable_by_admitted(dir))
    }

    /// `entry_timeout` of `dir`, which every admitted caller may search or
    /// not (`open`).
    fn entry_timeout_of(&self, dir: u64, open: bool) -> Duration {
        match open && (dir != ROOT_INO || self.allowed_groups.is_empty()) {
            true => TTL,
            false => Duration::ZERO,
        }
    }

    /// How long the kernel may keep the attributes of `node`. Not the
    /// root's when `--allow-group` shuts callers out: the kernel would
    /// answer an outsider's stat of the mountpoint from a member's, and
    /// that attempt would be neither refused nor recorded.
    fn attr_timeout(&self, node: INodeNo) -> Duration {
        match node.0 == ROOT_INO && !self.allowed_groups.is_empty() {
            true => Duration::ZERO,
            false => TTL,
        }
    }

    /// Whether every admitted caller may search live directory `dir` (see
    /// `SearchCache`).
    fn searchable_by_admitted(&self, dir: u64) -> bool {
        let generation = self.vault.generation(dir);
        self.searchable.get_or(dir, generation, || {
            self.vault.searchable_by(dir, self.admitted).ok()
        })
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
        // Not FUSE_POSIX_ACL: the kernel would then check permissions
        // itself (it implies default_permissions), and a refused attempt
        // would never reach the audit trail. The engine checks the ACLs
        // the vault keeps (see `vault::acl`); with `-o noacl` the vault
        // refuses them, as ext4 mounted `noacl` does.
        if self.posix_acls {
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

    fn lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        self.do_lookup(req, parent, n, reply)
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.do_getattr(req, ino, fh, reply)
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
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.do_setattr(
            req, ino, mode, uid, gid, size, atime, mtime, ctime, fh, reply,
        )
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.do_readlink(req, ino, reply)
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
        self.do_mknod(req, parent, n, mode, umask, rdev, reply)
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
        self.do_mkdir(req, parent, n, mode, umask, reply)
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.do_unlink(req, parent, n, reply)
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.do_rmdir(req, parent, n, reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.do_symlink(req, parent, link, target, reply)
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
        self.do_rename(req, parent, n, newparent, newname, flags, reply)
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.do_link(req, ino, newparent, newname, reply)
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.do_open(req, ino, flags, reply)
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.do_read(req, ino, fh, offset, size, flags, lock, reply)
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wflags: WriteFlags,
        flags: OpenFlags,
        lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.do_write(req, ino, fh, offset, data, wflags, flags, lock, reply)
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.do_flush(req, ino, fh, lock, reply)
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        lock: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        self.do_release(req, ino, fh, flags, lock, flush, reply)
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.do_fsync(req, ino, fh, datasync, reply)
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.do_opendir(req, ino, flags, reply)
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.do_releasedir(req, ino, fh, flags, reply)
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.do_readdir(req, ino, fh, offset, reply)
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.do_readdirplus(req, ino, fh, offset, reply)
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.do_fsyncdir(req, ino, fh, datasync, reply)
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.do_statfs(req, ino, reply)
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        pos: u32,
        reply: ReplyEmpty,
    ) {
        self.do_setxattr(req, ino, n, value, flags, pos, reply)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        self.do_getxattr(req, ino, n, size, reply)
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.do_listxattr(req, ino, size, reply)
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.do_removexattr(req, ino, n, reply)
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.do_access(req, ino, mask, reply)
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
        self.do_create(req, parent, n, mode, umask, flags, reply)
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.do_fallocate(req, ino, fh, offset, length, mode, reply)
    }
}

impl PhiFs {
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

    /// The attributes of `.snapshots` (see `snapshots::dir_attr`).
    fn snapshots_attr(&self) -> Attr {
        let born = self.vault.getattr(ROOT_INO).map_or(0, |a| a.btime);
        snapshots::dir_attr(born)
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
