//! One audit record: who did what to which path, when, and how it ended.

use serde::{Deserialize, Serialize};

/// What was asked of the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// OPEN of an existing file (read-only ones too).
    Open,
    /// CREATE: a new file, opened.
    Create,
    /// OPENDIR.
    OpenDir,
    /// RELEASE of a handle that wrote: `Detail::written` says how much.
    Close,
    /// A LOOKUP or ACCESS the permission check refused (granted ones are
    /// not recorded: a path walk is not an access to its directories).
    Search,
    Unlink,
    Rmdir,
    Rename,
    Link,
    Symlink,
    Mkdir,
    Mknod,
    Truncate,
    Chmod,
    Chown,
    Utimes,
    SetXattr,
    RemoveXattr,
    // The requests below are recorded only when `--allow-group` refused
    // them (a member's are not): no other record covers them, and an
    // outsider's every attempt is recorded.
    /// GETATTR (stat).
    Stat,
    /// READDIR or READDIRPLUS.
    ReadDir,
    /// STATFS (df).
    StatFs,
    GetXattr,
    ListXattr,
    ReadLink,
}

impl Op {
    /// In code order: new operations go at the end.
    pub const ALL: [Op; 24] = [
        Op::Open,
        Op::Create,
        Op::OpenDir,
        Op::Close,
        Op::Search,
        Op::Unlink,
        Op::Rmdir,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Mkdir,
        Op::Mknod,
        Op::Truncate,
        Op::Chmod,
        Op::Chown,
        Op::Utimes,
        Op::SetXattr,
        Op::RemoveXattr,
        Op::Stat,
        Op::ReadDir,
        Op::StatFs,
        Op::GetXattr,
        Op::ListXattr,
        Op::ReadLink,
    ];

    /// The name the CLI shows and `--op` takes.
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Create => "create",
            Op::OpenDir => "opendir",
            Op::Close => "close",
            Op::Search => "search",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Symlink => "symlink",
            Op::Mkdir => "mkdir",
            Op::Mknod => "mknod",
            Op::Truncate => "truncate",
            Op::Chmod => "chmod",
            Op::Chown => "chown",
            Op::Utimes => "utimes",
            Op::SetXattr => "setxattr",
            Op::RemoveXattr => "removexattr",
            Op::Stat => "stat",
            Op::ReadDir => "readdir",
            Op::StatFs => "statfs",
            Op::GetXattr => "getxattr",
            Op::ListXattr => "listxattr",
            Op::ReadLink => "readlink",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// A stable number for storage and indexes; never reuse one.
    pub fn code(self) -> u8 {
        Op::ALL.iter().position(|&o| o == self).unwrap() as u8
    }

    pub fn from_code(code: u8) -> Option<Op> {
        Op::ALL.get(code as usize).copied()
    }
}

/// Who asked: what the request carries and what /proc said of the caller
/// at that moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// The filesystem uid and gid the kernel checked with.
    pub uid: u32,
    pub gid: u32,
    /// The calling thread's id.
    pub pid: u32,
    /// `/proc/PID/comm`; empty when the caller had already exited.
    pub comm: String,
    /// `/proc/PID/exe`; empty when unknown.
    pub exe: String,
    /// `/proc/PID/loginuid`: the account that logged in, kept through su
    /// and sudo. None when unset (4294967295) or unknown.
    pub login_uid: Option<u32>,
    /// `/proc/PID/sessionid`; None when unset or unknown.
    pub session_id: Option<u32>,
}

/// What the request asked for or changed; the fields its operation has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// open(2) flags (OPEN, CREATE, OPENDIR).
    pub flags: Option<i32>,
    /// Mode asked for (CHMOD, CREATE, MKDIR, MKNOD).
    pub mode: Option<u32>,
    /// New owner (CHOWN).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// New size (TRUNCATE).
    pub size: Option<u64>,
    /// New times, ns since the epoch (UTIMES).
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
    /// Extended attribute name (SETXATTR, REMOVEXATTR).
    pub xattr: Option<Vec<u8>>,
    /// Bytes written through the handle (CLOSE).
    pub written: Option<u64>,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, assigned by `AuditLog::append`.
    pub seq: u64,
    /// ns since the epoch.
    pub time_ns: i64,
    pub who: Who,
    pub op: Op,
    /// The path as it was at that moment, from the mount's root ("/a/b").
    pub path: Vec<u8>,
    /// The second path: a rename's or link's new path, a symlink's target.
    pub target: Option<Vec<u8>>,
    /// The node acted on; 0 when there is none (a refused create).
    pub ino: u64,
    /// The directory of the entry a namespace change touched; 0 otherwise.
    pub parent: u64,
    pub detail: Detail,
    /// 0 when the operation succeeded, else the errno it returned.
    pub result: i32,
}

impl Record {
    /// Whether a permission check refused it.
    pub fn denied(&self) -> bool {
        matches!(self.result, libc::EACCES | libc::EPERM)
    }
}
