use crate::catalog::{Ino, Inode, Kind};

/// What `stat` shows for an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// Allocated bytes (what `du` counts), before compression.
    pub allocated: u64,
    pub rdev: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub btime: i64,
}

impl Attr {
    pub(crate) fn from_inode(i: &Inode, allocated: u64) -> Self {
        Self {
            ino: i.ino,
            kind: i.kind,
            perm: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
            nlink: i.nlink,
            size: i.size,
            allocated,
            rdev: i.rdev,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            btime: i.btime,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(i64),
}

/// The fields a setattr call changes; None leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<i64>,
    /// Clear set-user-ID, and set-group-ID where group execute is set, on a
    /// non-directory: the kernel leaves this to us on chown, on a truncate
    /// or write by an unprivileged caller (FUSE_HANDLE_KILLPRIV_V2).
    pub drop_set_id: bool,
}

/// How a rename treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    Replace,
    NoReplace,
    Exchange,
}

/// One directory entry as listed.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Opaque position: pass back to continue after this entry.
    pub next: u64,
    pub ino: Ino,
    pub kind: Kind,
    pub name: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
}

/// What to create: the type, the requested mode and umask, and for device
/// nodes the device number.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    pub kind: Kind,
    pub mode: u32,
    pub umask: u32,
    pub rdev: u32,
}

impl NodeSpec {
    /// A regular file with exactly `mode` (no umask).
    pub fn file(mode: u32) -> Self {
        Self {
            kind: Kind::File,
            mode,
            umask: 0,
            rdev: 0,
        }
    }
}
