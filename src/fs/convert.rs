//! Conversions between kernel-facing types and engine types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Config, FileAttr, FileType, INodeNo, MountOption, Request, SessionACL};

use crate::vault::{Attr, Caller, Kind};

pub fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

pub fn kind_from_mode(mode: u32) -> Option<Kind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFCHR => Kind::CharDev,
        libc::S_IFBLK => Kind::BlockDev,
        _ => return None,
    })
}

pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub fn time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

/// A time the kernel sent. fuser 0.18 builds pre-1970 times as
/// `EPOCH - (secs + nsec)` although the kernel means `secs + nsec` with
/// negative `secs` (its own TODO in time.rs); undo that here.
pub fn kernel_time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(_) => time_ns(t),
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) * 1_000_000_000 + d.subsec_nanos() as i64
        }
    }
}

pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.allocated.div_ceil(512),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.btime),
        kind: file_type(a.kind),
        perm: a.perm as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 65536,
        flags: 0,
    }
}

/// A LOOKUP answer meaning "no such name" that the kernel may cache for
/// the entry TTL: node id 0 (an ENOENT error is never cached).
pub fn no_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 65536,
        flags: 0,
    }
}

/// The caller of request `req`; its groups and capabilities are read
/// from /proc when a decision first needs them.
pub fn caller(req: &Request) -> Caller {
    Caller::new(req.uid(), req.gid(), req.pid())
}

pub struct MountSettings<'a> {
    pub source: &'a str,
    pub allow_other: bool,
    pub read_only: bool,
    pub threads: usize,
    /// Generic mount flags (noexec, noatime, suid, ...), ro/rw aside.
    pub flags: &'a [MountOption],
}

pub fn mount_config(s: &MountSettings<'_>) -> Config {
    let mut opts = vec![
        MountOption::FSName(s.source.to_string()),
        MountOption::Subtype("phivault".into()),
        if s.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    opts.extend_from_slice(s.flags);
    let mut cfg = Config::default();
    cfg.mount_options = opts;
    cfg.acl = if s.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(s.threads);
    cfg.clone_fd = true;
    cfg
}
