//! The engine's permission decisions against the kernel's own: the same
//! random trees (owners, modes with sticky and set-group-ID directories,
//! directories nobody may search, POSIX ACLs with named users, groups and
//! masks) built natively on the host filesystem and in a vault, then the
//! same random operations by several users, each run as a real syscall in
//! a child switched to that user on the native side and through the
//! engine's `may_*` and the operation on the vault side: the same errno,
//! and after every operation the same tree. Then the same through a mount.
//!
//! A run prints nothing when it passes; a failure names its seed, which
//! `PERM_SEED=N` replays.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use phivault::vault::{
    Caller, Capability, Kind, NodeSpec, RenameMode, SetAttr, TimeSet, Vault, VaultError, ROOT_INO,
};

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";

// ---------------------------------------------------------------- callers

/// A caller of both sides: a real account (or root, with or without its
/// capabilities), and a process of it that lives for the test, whose
/// /proc status the engine's `Caller` reads as it would a FUSE caller's.
struct Who {
    name: &'static str,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    drop_caps: bool,
    process: Child,
}

impl Who {
    fn spawn(name: &'static str) -> Who {
        let (account, drop_caps) = match name {
            "root-nocaps" => ("root", true),
            n => (n, false),
        };
        let (uid, gid) = common::user_ids(account);
        let out = common::ok(Command::new("id").args(["-G", account]));
        let groups = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut cmd = Command::new("setpriv");
        if drop_caps {
            cmd.args(["--inh-caps=-all", "--bounding-set=-all"]);
        } else {
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--init-groups".to_string(),
            ]);
        }
        let process = cmd
            .args(["sleep", "3600"])
            .spawn()
            .expect("setpriv (util-linux) runs the callers' processes");
        // Until it execs, /proc shows setpriv's credentials, not the caller's.
        let comm = format!("/proc/{}/comm", process.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
            assert!(
                std::time::Instant::now() < deadline,
                "setpriv did not start {name}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Who {
            name,
            uid,
            gid,
            groups,
            drop_caps,
            process,
        }
    }

    /// A caller as the mount makes one per request: groups and
    /// capabilities read from /proc only if a decision asks.
    fn caller(&self) -> Caller {
        Caller::new(self.uid, self.gid, self.process.id())
    }
}

impl Drop for Who {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn callers() -> Vec<Who> {
    common::require_programs(&["setpriv", "id"]);
    [
        "phi-alice",
        "phi-bob",
        "phi-carol",
        "nobody",
        "root-nocaps",
        "root",
    ]
    .into_iter()
    .map(Who::spawn)
    .collect()
}

struct Ids {
    users: Vec<u32>,
    groups: Vec<u32>,
}

fn ids() -> Ids {
    let user = |n| common::user_ids(n).0;
    let group = |n: &str| -> u32 {
        let out = common::ok(Command::new("getent").args(["group", n]));
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    Ids {
        users: vec![
            0,
            user("phi-alice"),
            user("phi-bob"),
            user("phi-carol"),
            user("nobody"),
        ],
        groups: vec![
            0,
            group("phi-staff"),
            group("phi-lab"),
            common::user_ids("phi-alice").1,
            common::user_ids("nobody").1,
        ],
    }
}

// ------------------------------------------------------------- operations

#[derive(Clone, Copy, Debug, PartialEq)]
enum Times {
    /// utimes(NULL): "now", which write permission allows.
    Touch,
    /// Both given: the owner's (or CAP_FOWNER's) alone.
    Explicit,
    /// UTIME_NOW beside UTIME_OMIT: an explicit setting too.
    NowOmit,
}

/// Paths are relative to the tree's root ("" is the root).
#[derive(Clone, Debug)]
enum Op {
    Stat(String),
    Open(String, i32),
    Exec(String),
    Access(String, u32),
    Create(String, u32),
    Mkdir(String, u32),
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Link(String, String),
    Chmod(String, u32),
    Chown(String, Option<u32>, Option<u32>),
    Utimes(String, Times),
    Truncate(String),
    GetXattr(String, &'static str),
    SetXattr(String, &'static str, Vec<u8>),
    RemoveXattr(String, &'static str),
}

// ------------------------------------------------------------ native side

/// What a child runs, prepared before the fork: the child allocates
/// nothing (another test thread may hold the allocator's lock).
enum Call {
    Stat(CString),
    Open(CString, i32),
    Exec(CString),
    Access(CString, i32),
    Create(CString, u32),
    Mkdir(CString, u32),
    Unlink(CString),
    Rmdir(CString),
    Rename(CString, CString),
    Link(CString, CString),
    Chmod(CString, u32),
    Chown(CString, u32, u32),
    Utimes(CString, Times),
    Truncate(CString),
    GetXattr(CString, CString),
    SetXattr(CString, CString, Vec<u8>),
    RemoveXattr(CString, CString),
}

fn cpath(root: &Path, rel: &str) -> CString {
    CString::new(root.join(rel).as_os_str().as_bytes()).unwrap()
}

fn call_of(root: &Path, op: &Op) -> Call {
    let p = |rel: &str| cpath(root, rel);
    let name = |n: &str| CString::new(n).unwrap();
    match op {
        Op::Stat(a) => Call::Stat(p(a)),
        Op::Open(a, f) => Call::Open(p(a), *f),
        Op::Exec(a) => Call::Exec(p(a)),
        Op::Access(a, m) => Call::Access(p(a), *m as i32),
        Op::Create(a, m) => Call::Create(p(a), *m),
        Op::Mkdir(a, m) => Call::Mkdir(p(a), *m),
        Op::Unlink(a) => Call::Unlink(p(a)),
        Op::Rmdir(a) => Call::Rmdir(p(a)),
        Op::Rename(a, b) => Call::Rename(p(a), p(b)),
        Op::Link(a, b) => Call::Link(p(a), p(b)),
        Op::Chmod(a, m) => Call::Chmod(p(a), *m),
        Op::Chown(a, u, g) => Call::Chown(p(a), u.unwrap_or(u32::MAX), g.unwrap_or(u32::MAX)),
        Op::Utimes(a, t) => Call::Utimes(p(a), *t),
        Op::Truncate(a) => Call::Truncate(p(a)),
        Op::GetXattr(a, n) => Call::GetXattr(p(a), name(n)),
        Op::SetXattr(a, n, v) => Call::SetXattr(p(a), name(n), v.clone()),
        Op::RemoveXattr(a, n) => Call::RemoveXattr(p(a), name(n)),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Runs `call` as `who` in a forked child: 0 or the errno it failed with.
fn native(who: &Who, call: &Call) -> i32 {
    let groups: Vec<libc::gid_t> = who.groups.clone();
    let exec_argv: [*const libc::c_char; 2] = match call {
        Call::Exec(p) => [p.as_ptr(), std::ptr::null()],
        _ => [std::ptr::null(); 2],
    };
    let exec_envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let (uid, gid, drop_caps) = (who.uid, who.gid, who.drop_caps);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(200);
            }
            if drop_caps {
                let mut header = CapHeader {
                    version: 0x2008_0522,
                    pid: 0,
                };
                let data = [CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                }; 2];
                if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                    libc::_exit(201);
                }
            }
            libc::umask(0);
            let r = run_call(call, &exec_argv, &exec_envp);
            libc::_exit(r);
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "the child for {} died", who.name);
    let code = libc::WEXITSTATUS(status);
    assert!(
        code < 200,
        "the child could not become {} ({code})",
        who.name
    );
    code
}

/// In the forked child: no allocation.
unsafe fn run_call(
    call: &Call,
    argv: &[*const libc::c_char; 2],
    envp: &[*const libc::c_char; 1],
) -> i32 {
    let errno = || *libc::__errno_location();
    let done = |r: libc::c_int| if r < 0 { errno() } else { 0 };
    match call {
        Call::Stat(p) => {
            let mut st: libc::stat = std::mem::zeroed();
            done(libc::lstat(p.as_ptr(), &mut st))
        }
        Call::Open(p, flags) => {
            let fd = libc::open(p.as_ptr(), *flags, 0);
            if fd >= 0 {
                libc::close(fd);
            }
            done(fd)
        }
        Call::Exec(p) => {
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
            // An empty file that may be executed: no format knows it.
            match errno() {
                libc::ENOEXEC => 0,
                e => e,
            }
        }
        Call::Access(p, mode) => done(libc::access(p.as_ptr(), *mode)),
        Call::Create(p, mode) => {
            let fd = libc::open(
                p.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                *mode,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            done(fd)
        }
        Call::Mkdir(p, mode) => done(libc::mkdir(p.as_ptr(), *mode)),
        Call::Unlink(p) => done(libc::unlink(p.as_ptr())),
        Call::Rmdir(p) => done(libc::rmdir(p.as_ptr())),
        Call::Rename(a, b) => done(libc::rename(a.as_ptr(), b.as_ptr())),
        Call::Link(a, b) => done(libc::link(a.as_ptr(), b.as_ptr())),
        Call::Chmod(p, mode) => done(libc::chmod(p.as_ptr(), *mode)),
        Call::Chown(p, u, g) => done(libc::chown(p.as_ptr(), *u, *g)),
        Call::Utimes(p, t) => {
            let at = |nsec| libc::timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: nsec,
            };
            let times = match t {
                Times::Touch => None,
                Times::Explicit => Some([at(0), at(0)]),
                Times::NowOmit => Some([at(libc::UTIME_NOW), at(libc::UTIME_OMIT)]),
            };
            let ptr = times.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
            done(libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ptr, 0))
        }
        Call::Truncate(p) => done(libc::truncate(p.as_ptr(), 0)),
        Call::GetXattr(p, n) => {
            let mut buf = [0u8; 512];
            let r = libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len());
            done(r as libc::c_int)
        }
        Call::SetXattr(p, n, v) => done(libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )),
        Call::RemoveXattr(p, n) => done(libc::lremovexattr(p.as_ptr(), n.as_ptr())),
    }
}

// ------------------------------------------------------------ engine side

fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// The path walk the kernel makes before it asks the filesystem: search
/// permission in every directory on the way (`may_lookup`).
fn walk(v: &Vault, c: &Caller, rel: &str) -> Result<u64, VaultError> {
    let mut ino = ROOT_INO;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        v.may_lookup(c, ino)?;
        ino = v.lookup(ino, part.as_bytes())?.ino;
    }
    Ok(ino)
}

/// The walk to the parent of `rel`'s last name, search permission in it
/// included, as `link_path_walk` leaves it for an operation on a name.
fn walk_parent<'a>(v: &Vault, c: &Caller, rel: &'a str) -> Result<(u64, &'a str), VaultError> {
    let (dir, name) = split(rel);
    let ino = walk(v, c, dir)?;
    v.may_lookup(c, ino)?;
    Ok((ino, name))
}

fn exists(v: &Vault, dir: u64, name: &str) -> Result<bool, VaultError> {
    match v.lookup(dir, name.as_bytes()) {
        Ok(_) => Ok(true),
        Err(VaultError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `op` as the mount would run it: the kernel's own steps (the walk, and
/// EEXIST for a name that is there), the engine's `may_*`, then the
/// operation itself.
fn engine_op(v: &Vault, c: &Caller, op: &Op) -> Result<(), VaultError> {
    match op {
        Op::Stat(p) => walk(v, c, p).map(drop),
        Op::Open(p, flags) => {
            let ino = walk(v, c, p)?;
            v.may_open(c, ino, *flags)?;
            if flags & libc::O_TRUNC != 0 && v.getattr(ino)?.kind == Kind::File {
                // The kernel truncates through the new handle, asking the
                // filesystem to drop set-id bits for an unprivileged caller.
                let set = SetAttr {
                    size: Some(0),
                    drop_set_id: !c.has_cap(Capability::Fsetid),
                    ..SetAttr::default()
                };
                v.may_setattr(c, ino, &set, true)?;
                v.setattr(c, ino, &set)?;
            }
            Ok(())
        }
        Op::Exec(p) => v.may_open(c, walk(v, c, p)?, libc::O_RDONLY | 0x20),
        Op::Access(p, mask) => v.may_access(c, walk(v, c, p)?, *mask),
        Op::Create(p, mode) | Op::Mkdir(p, mode) => {
            let (dir, name) = walk_parent(v, c, p)?;
            if exists(v, dir, name)? {
                return Err(VaultError::Exists);
            }
            v.may_create(c, dir)?;
            let kind = match op {
                Op::Create(..) => Kind::File,
                _ => Kind::Dir,
            };
            let spec = NodeSpec {
                kind,
                mode: *mode,
                umask: 0,
                rdev: 0,
            };
            v.create_node(c, dir, name.as_bytes(), spec).map(drop)
        }
        Op::Unlink(p) | Op::Rmdir(p) => {
            let (dir, name) = walk_parent(v, c, p)?;
            v.may_delete(c, dir, name.as_bytes())?;
            match op {
                Op::Unlink(_) => v.unlink(c, dir, name.as_bytes()),
                _ => v.rmdir(c, dir, name.as_bytes()),
            }
        }
        Op::Rename(a, b) => {
            let (dir, name) = walk_parent(v, c, a)?;
            let (new_dir, new_name) = walk_parent(v, c, b)?;
            let (name, new_name) = (name.as_bytes(), new_name.as_bytes());
            v.may_rename(c, dir, name, new_dir, new_name, RenameMode::Replace)?;
            v.rename(c, dir, name, new_dir, new_name, RenameMode::Replace)
        }
        Op::Link(a, b) => {
            let ino = walk(v, c, a)?;
            let (dir, name) = walk_parent(v, c, b)?;
            if exists(v, dir, name)? {
                return Err(VaultError::Exists);
            }
            v.may_link(c, ino, dir)?;
            v.link(ino, dir, name.as_bytes()).map(drop)
        }
        Op::Chmod(p, _) | Op::Chown(p, _, _) | Op::Utimes(p, _) | Op::Truncate(p) => {
            let ino = walk(v, c, p)?;
            let set = match op {
                Op::Chmod(_, mode) => SetAttr {
                    mode: Some(*mode),
                    ..SetAttr::default()
                },
                // A chown drops set-user-ID and executable set-group-ID
                // of a non-directory (FUSE asks the filesystem to).
                Op::Chown(_, uid, gid) => SetAttr {
                    uid: *uid,
                    gid: *gid,
                    drop_set_id: v.getattr(ino)?.kind != Kind::Dir,
                    ..SetAttr::default()
                },
                Op::Utimes(_, t) => {
                    let at = TimeSet::At(1_000_000_000_000_000_000);
                    let (atime, mtime) = match t {
                        Times::Touch => (TimeSet::Now, Some(TimeSet::Now)),
                        Times::Explicit => (at, Some(at)),
                        Times::NowOmit => (TimeSet::Now, None),
                    };
                    SetAttr {
                        atime: Some(atime),
                        mtime,
                        ..SetAttr::default()
                    }
                }
                _ => SetAttr {
                    size: Some(0),
                    drop_set_id: !c.has_cap(Capability::Fsetid),
                    ..SetAttr::default()
                },
            };
            v.may_setattr(c, ino, &set, false)?;
            v.setattr(c, ino, &set).map(drop)
        }
        Op::GetXattr(p, name) => {
            let ino = walk(v, c, p)?;
            v.may_getxattr(c, ino, name.as_bytes())?;
            v.getxattr(ino, name.as_bytes()).map(drop)
        }
        Op::SetXattr(p, name, value) => {
            let ino = walk(v, c, p)?;
            v.may_setxattr(c, ino, name.as_bytes())?;
            v.setxattr(c, ino, name.as_bytes(), value, 0)
        }
        Op::RemoveXattr(p, name) => {
            let ino = walk(v, c, p)?;
            v.may_setxattr(c, ino, name.as_bytes())?;
            v.removexattr(ino, name.as_bytes())
        }
    }
}

fn errno(r: Result<(), VaultError>) -> i32 {
    r.map_or_else(|e| e.errno(), |()| 0)
}

// ------------------------------------------------------------------ trees

/// What both sides must agree on after every operation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    path: String,
    dir: bool,
    uid: u32,
    gid: u32,
    mode: u32,
    access_acl: Option<Vec<(u16, u16, u32)>>,
    default_acl: Option<Vec<(u16, u16, u32)>>,
}

/// An ACL's entries, the ids of the owner, owning group, mask and other
/// entries (which mean nothing) left out.
fn acl_entries(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
    bytes[4..]
        .chunks_exact(8)
        .map(|e| {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u16::from_le_bytes([e[2], e[3]]);
            let id = match tag {
                0x02 | 0x08 => u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                _ => 0,
            };
            (tag, perm, id)
        })
        .collect()
}

fn native_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENODATA),
            "getxattr {name} of {path:?}: {e}"
        );
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// The tree under `root` as the kernel shows it (this process is root).
fn native_tree(root: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let md = std::fs::symlink_metadata(&path).unwrap();
        let dir = md.is_dir();
        out.push(Node {
            path: rel.clone(),
            dir,
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o7777,
            access_acl: native_xattr(&path, ACL_ACCESS).map(|b| acl_entries(&b)),
            default_acl: native_xattr(&path, ACL_DEFAULT).map(|b| acl_entries(&b)),
        });
        if dir {
            for e in std::fs::read_dir(&path).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                todo.push(join(&rel, &name));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn engine_tree(v: &Vault) -> Vec<Node> {
    let acl = |ino, name: &str| match v.getxattr(ino, name.as_bytes()) {
        Ok(b) => Some(acl_entries(&b)),
        Err(VaultError::NoAttr) => None,
        Err(e) => panic!("getxattr {name}: {e}"),
    };
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), ROOT_INO)];
    while let Some((rel, ino)) = todo.pop() {
        let a = v.getattr(ino).unwrap();
        let dir = a.kind == Kind::Dir;
        out.push(Node {
            path: rel.clone(),
            dir,
            uid: a.uid,
            gid: a.gid,
            mode: a.perm,
            access_acl: acl(ino, ACL_ACCESS),
            default_acl: acl(ino, ACL_DEFAULT),
        });
        if dir {
            let horizon = v.listing_horizon().unwrap();
            let mut pos = 0;
            loop {
                let entries = v.readdir(ino, pos, horizon, 64).unwrap();
                let Some(last) = entries.last() else { break };
                pos = last.next;
                for e in entries {
                    if e.name != b"." && e.name != b".." {
                        let name = String::from_utf8(e.name).unwrap();
                        todo.push((join(&rel, &name), e.ino));
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

// ------------------------------------------------------------- generation

const DIR_MODES: &[u32] = &[
    0o755, 0o700, 0o711, 0o770, 0o775, 0o777, 0o1777, 0o1770, 0o1733, 0o2775, 0o2770, 0o750, 0o705,
    0o751, 0o733, 0o300, 0o000, 0o555, 0o707, 0o3777,
];
const FILE_MODES: &[u32] = &[
    0o644, 0o600, 0o640, 0o660, 0o666, 0o604, 0o755, 0o700, 0o400, 0o200, 0o464, 0o000, 0o046,
    0o707, 0o611, 0o001, 0o070, 0o066, 0o4755, 0o2755, 0o6711, 0o4644,
];
const XATTRS: &[&str] = &["user.note", "user.other", "trusted.x", "security.x"];

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

/// A valid access or default ACL: the owner, some named users (ascending,
/// as setfacl sends them), the owning group, some named groups, a mask
/// (always when something is named), other.
fn random_acl(rng: &mut StdRng, ids: &Ids) -> Vec<u8> {
    let mut entries = vec![(0x01u16, rng.random_range(0..8u16), u32::MAX)];
    let mut named = false;
    for (tag, pool) in [(0x02u16, &ids.users), (0x08, &ids.groups)] {
        let mut chosen: Vec<u32> = pool
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        chosen.sort();
        if tag == 0x08 {
            entries.push((0x04, rng.random_range(0..8), u32::MAX));
        }
        for id in chosen {
            named = true;
            entries.push((tag, rng.random_range(0..8), id));
        }
    }
    if named || rng.random_bool(0.2) {
        entries.push((0x10, rng.random_range(0..8), u32::MAX));
    }
    entries.push((0x20, rng.random_range(0..8), u32::MAX));
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
    }
    out
}

/// The setup done by root on both sides: a node with its owner, mode and
/// maybe an ACL.
fn setup_ops(rng: &mut StdRng, ids: &Ids, nodes: usize) -> Vec<Op> {
    let mut dirs = vec![String::new()];
    let mut ops = Vec::new();
    for n in 0..nodes {
        let parent = dirs[rng.random_range(0..dirs.len())].clone();
        let is_dir = rng.random_bool(0.4);
        let path = join(&parent, &format!("{}{n}", if is_dir { "d" } else { "f" }));
        if is_dir {
            ops.push(Op::Mkdir(path.clone(), 0o755));
            dirs.push(path.clone());
        } else {
            ops.push(Op::Create(path.clone(), 0o644));
        }
        ops.push(Op::Chown(
            path.clone(),
            Some(pick(rng, &ids.users)),
            Some(pick(rng, &ids.groups)),
        ));
        let modes = if is_dir { DIR_MODES } else { FILE_MODES };
        ops.push(Op::Chmod(path.clone(), pick(rng, modes)));
        if rng.random_bool(0.3) {
            ops.push(Op::SetXattr(path.clone(), ACL_ACCESS, random_acl(rng, ids)));
        }
        if is_dir && rng.random_bool(0.15) {
            ops.push(Op::SetXattr(
                path.clone(),
                ACL_DEFAULT,
                random_acl(rng, ids),
            ));
        }
        if rng.random_bool(0.2) {
            ops.push(Op::SetXattr(path, "user.note", b"set up".to_vec()));
        }
    }
    ops
}

/// A random operation on the current tree: mostly on paths that exist,
/// sometimes on new names, names below files, or names that are not there.
fn random_op(rng: &mut StdRng, ids: &Ids, tree: &[Node], fresh: &mut u32) -> Op {
    loop {
        let node = &tree[rng.random_range(0..tree.len())];
        let dirs: Vec<&Node> = tree.iter().filter(|n| n.dir).collect();
        let dir = dirs[rng.random_range(0..dirs.len())];
        *fresh += 1;
        let new = match rng.random_range(0..10) {
            0 => join(&tree[rng.random_range(0..tree.len())].path, "below"),
            1 => join(&dir.path, "gone/x"),
            _ => join(&dir.path, &format!("n{fresh}")),
        };
        let other = &tree[rng.random_range(0..tree.len())].path;
        let p = node.path.clone();
        let modes = if node.dir { DIR_MODES } else { FILE_MODES };
        let op = match rng.random_range(0..100) {
            0..=9 => Op::Stat(if rng.random_bool(0.8) { p } else { new }),
            10..=21 => Op::Open(
                p,
                pick(
                    rng,
                    &[
                        libc::O_RDONLY,
                        libc::O_WRONLY,
                        libc::O_RDWR,
                        libc::O_RDONLY | libc::O_TRUNC,
                        libc::O_WRONLY | libc::O_TRUNC,
                        libc::O_RDONLY | libc::O_NOATIME,
                        libc::O_RDONLY | libc::O_DIRECTORY,
                    ],
                ),
            ),
            22..=24 if !node.dir => Op::Exec(p),
            25..=33 => Op::Access(p, rng.random_range(0..8)),
            34..=39 => Op::Create(new, pick(rng, &[0o644, 0o600, 0o666, 0o755])),
            40..=43 => Op::Mkdir(new, pick(rng, &[0o755, 0o700, 0o777, 0o750])),
            44..=48 if !p.is_empty() => Op::Unlink(p),
            49..=51 if !p.is_empty() => Op::Rmdir(p),
            52..=58 if !p.is_empty() => {
                let to = if rng.random_bool(0.6) {
                    new
                } else {
                    other.clone()
                };
                // The kernel refuses a move into itself before it asks
                // anyone (EINVAL, ENOTEMPTY): not a permission matter.
                let inside = |a: &str, b: &str| a.is_empty() || b.starts_with(&format!("{a}/"));
                if to.is_empty() || inside(&p, &to) || inside(&to, &p) {
                    continue;
                }
                Op::Rename(p, to)
            }
            59..=61 => Op::Link(p, new),
            62..=67 => Op::Chmod(p, pick(rng, modes)),
            68..=71 => Op::Chown(
                p,
                rng.random_bool(0.5).then(|| pick(rng, &ids.users)),
                // Never both -1: that chown still drops set-id bits.
                Some(pick(rng, &ids.groups)),
            ),
            72..=76 => Op::Utimes(
                p,
                pick(rng, &[Times::Touch, Times::Explicit, Times::NowOmit]),
            ),
            77..=79 => Op::Truncate(p),
            80..=84 => Op::GetXattr(p, pick(rng, &[XATTRS, &[ACL_ACCESS, ACL_DEFAULT]].concat())),
            85..=88 => Op::SetXattr(p, pick(rng, XATTRS), b"v".to_vec()),
            89..=90 => {
                Op::RemoveXattr(p, pick(rng, &[XATTRS, &[ACL_ACCESS, ACL_DEFAULT]].concat()))
            }
            91..=96 => Op::SetXattr(p, ACL_ACCESS, random_acl(rng, ids)),
            97..=99 => Op::SetXattr(p, ACL_DEFAULT, random_acl(rng, ids)),
            _ => continue,
        };
        return op;
    }
}

fn seed() -> u64 {
    match std::env::var("PERM_SEED") {
        Ok(s) => s.parse().expect("PERM_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn tree_diff(a: &[Node], b: &[Node]) -> String {
    let mut out = String::new();
    for n in a {
        match b.iter().find(|m| m.path == n.path) {
            Some(m) if m == n => {}
            Some(m) => out += &format!("  {n:?}\n  {m:?}\n"),
            None => out += &format!("  only on the first side: {n:?}\n"),
        }
    }
    for m in b {
        if !a.iter().any(|n| n.path == m.path) {
            out += &format!("  only on the second side: {m:?}\n");
        }
    }
    out
}

/// FUSE's limit, not the engine's: a truncate or chown (a write too) by a
/// caller neither in the file's group nor holding CAP_FSETID drops a
/// set-group-ID bit without group execute on a native filesystem
/// (`setattr_should_drop_sgid`), but FUSE asks the filesystem to drop it
/// only with group execute (FATTR_KILL_SUIDGID), which phivault follows.
/// Where that is the only difference, the engine's node is brought in line
/// (as root) and true returned.
fn kept_sgid(v: &Vault, native: &[Node], engine: &[Node]) -> bool {
    let mut fixed = false;
    for (n, e) in native.iter().zip(engine) {
        let gap = n.path == e.path
            && !n.dir
            && e.mode == n.mode | 0o2000
            && e.mode & 0o2010 == 0o2000
            && Node {
                mode: n.mode,
                ..e.clone()
            } == *n;
        if gap {
            let ino = walk(v, &Caller::root(), &n.path).unwrap();
            let set = SetAttr {
                mode: Some(n.mode),
                ..SetAttr::default()
            };
            v.setattr(&Caller::root(), ino, &set).unwrap();
            fixed = true;
        }
    }
    fixed && native.len() == engine.len()
}

// ------------------------------------------------------------------ tests

const ROUNDS: usize = 4;
const OPS_PER_ROUND: usize = 400;

/// The engine's decisions, and the tree they leave, against the kernel's
/// on the host's filesystem.
#[test]
fn the_engine_decides_as_the_kernel_does() {
    let seed = seed();
    let who = callers();
    let ids = ids();
    let root = Caller::root();
    let mut seen = std::collections::BTreeMap::<i32, usize>::new();
    for round in 0..ROUNDS {
        let round_seed = seed.wrapping_add(round as u64);
        let mut rng = StdRng::seed_from_u64(round_seed);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let native_root = tmp.path().join("native");
        std::fs::create_dir(&native_root).unwrap();
        std::fs::set_permissions(&native_root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(tmp.path().join("engine")).unwrap();
        let v = common::open_engine(&tmp.path().join("engine"), true, 0);
        v.enable_acls();
        v.setattr(
            &root,
            ROOT_INO,
            &SetAttr {
                mode: Some(0o755),
                uid: Some(0),
                gid: Some(0),
                ..SetAttr::default()
            },
        )
        .unwrap();

        let root_who = who.iter().find(|w| w.name == "root").unwrap();
        for op in setup_ops(&mut rng, &ids, 30) {
            let n = native(root_who, &call_of(&native_root, &op));
            let e = errno(engine_op(&v, &root, &op));
            assert!(
                n == 0 && e == 0,
                "seed {seed} round {round}: setting up {op:?}: native {n}, engine {e}"
            );
        }
        let mut tree = native_tree(&native_root);
        assert_eq!(
            tree,
            engine_tree(&v),
            "seed {seed} round {round}: the trees as set up"
        );

        let mut fresh = 0;
        let mut log: Vec<String> = Vec::new();
        for i in 0..OPS_PER_ROUND {
            let op = random_op(&mut rng, &ids, &tree, &mut fresh);
            let w = &who[rng.random_range(0..who.len())];
            let n = native(w, &call_of(&native_root, &op));
            let e = errno(engine_op(&v, &w.caller(), &op));
            log.push(format!("{i}: {} {op:?} -> {n}", w.name));
            *seen.entry(n).or_default() += 1;
            assert_eq!(
                n,
                e,
                "PERM_SEED={seed} (round {round}, op {i}): {} {op:?}: the kernel says {}, the engine {}\nthe ops before:\n{}",
                w.name,
                std::io::Error::from_raw_os_error(n),
                std::io::Error::from_raw_os_error(e),
                log[log.len().saturating_sub(12)..].join("\n")
            );
            tree = native_tree(&native_root);
            let mut engine = engine_tree(&v);
            if n == 0 && kept_sgid(&v, &tree, &engine) {
                engine = engine_tree(&v);
            }
            assert!(
                tree == engine,
                "PERM_SEED={seed} (round {round}, op {i}): after {} {op:?} (errno {n}) the trees differ (native, engine):\n{}",
                w.name,
                tree_diff(&tree, &engine)
            );
        }
    }
    // A run that compared only successes, or only refusals, proves little.
    for e in [0, libc::EACCES, libc::EPERM, libc::ENOENT] {
        assert!(
            seen.get(&e).is_some_and(|&n| n >= 10),
            "PERM_SEED={seed}: too few outcomes {e} to compare: {seen:?}"
        );
    }
}

/// The same through a mount: real syscalls by each caller on a native
/// directory and on a mounted phivault, the same errno, entries the kernel
/// cached included (after a directory's mode changes, every path below it
/// is walked again by several callers).
#[test]
fn the_mount_decides_as_the_kernel_does() {
    common::require_fuse();
    let seed = seed();
    let who = callers();
    let ids = ids();
    let root_who = who.iter().find(|w| w.name == "root").unwrap();
    let mut vault = common::Vault::mounted_with(&["-o", "allow_other"]);
    let mnt = vault.mnt.clone();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let native_root = tmp.path().join("native");
    std::fs::create_dir(&native_root).unwrap();
    for root in [&native_root, &mnt] {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(root, Some(0), Some(0)).unwrap();
    }
    // The callers must reach the mount point to reach the mount.
    std::fs::set_permissions(vault.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut rng = StdRng::seed_from_u64(seed);
    for op in setup_ops(&mut rng, &ids, 30) {
        for root in [&native_root, &mnt] {
            let r = native(root_who, &call_of(root, &op));
            assert_eq!(r, 0, "seed {seed}: setting up {op:?} in {root:?}");
        }
    }
    let mut tree = native_tree(&native_root);
    assert_eq!(tree, native_tree(&mnt), "seed {seed}: the trees as set up");

    let mut fresh = 0;
    let mut log: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeMap::<i32, usize>::new();
    let mut i = 0;
    while i < 2 * OPS_PER_ROUND {
        let op = random_op(&mut rng, &ids, &tree, &mut fresh);
        let mut batch = vec![(rng.random_range(0..who.len()), op.clone())];
        // After a directory's mode changes, walk again below it (entries
        // the kernel cached must not be taken on trust).
        if let Op::Chmod(dir, _) = &op {
            if tree.iter().any(|n| n.dir && &n.path == dir) {
                for n in tree
                    .iter()
                    .filter(|n| n.path.starts_with(&format!("{dir}/")))
                {
                    for _ in 0..2 {
                        batch.push((rng.random_range(0..who.len()), Op::Stat(n.path.clone())));
                    }
                }
            }
        }
        for (w, op) in batch {
            let w = &who[w];
            let n = native(w, &call_of(&native_root, &op));
            let m = native(w, &call_of(&mnt, &op));
            log.push(format!("{i}: {} {op:?} -> {n}", w.name));
            *seen.entry(n).or_default() += 1;
            i += 1;
            if vfs_answers_first(&tree, w, &op, n, m)
                || unsearched_source(w, &op, n, m, &native_root)
            {
                continue;
            }
            assert_eq!(
                n,
                m,
                "PERM_SEED={seed} (op {i}): {} {op:?}: natively {}, through the mount {}\n{}the ops before:\n{}",
                w.name,
                std::io::Error::from_raw_os_error(n),
                std::io::Error::from_raw_os_error(m),
                involved(&tree, &op),
                log[log.len().saturating_sub(12)..].join("\n")
            );
        }
        tree = native_tree(&native_root);
        let mounted = native_tree(&mnt);
        assert!(
            tree == mounted,
            "PERM_SEED={seed} (op {i}): the trees differ (native, mount):\n{}",
            tree_diff(&tree, &mounted)
        );
    }
    for e in [0, libc::EACCES, libc::EPERM] {
        assert!(
            seen.get(&e).is_some_and(|&n| n >= 10),
            "PERM_SEED={seed}: too few outcomes {e} to compare: {seen:?}"
        );
    }
    vault.unmount();
}

/// The kernel's limit, not phivault's: without default_permissions,
/// `fuse_permission` lets every check but exec and access(2) through, and
/// the VFS goes on to checks of its own that a native filesystem reaches
/// only once the caller passed the permission checks. So where a native
/// filesystem refuses (EACCES, or EPERM from the sticky rule), the mount
/// answers, before phivault is asked, with the next check's errno:
/// - `may_delete` (unlink, rmdir, both ends of a rename): ENOTDIR for
///   rmdir of a non-directory or a directory renamed over one, EISDIR for
///   unlink of a directory or the reverse. (The VFS does not apply the
///   sticky rule itself: FUSE hides S_ISVTX from it, `fuse_change_attributes_common`
///   clears it from i_mode without default_permissions, so phivault
///   applies that rule, with the native errno.)
/// - `vfs_link` after `may_create`: EPERM for a directory;
/// - `may_open`: EPERM for O_NOATIME by anyone but the owner (or
///   CAP_FOWNER), where the native refusal is EACCES.
///
/// Both refuse; only the errno differs, and only in exactly these cases.
fn vfs_answers_first(tree: &[Node], w: &Who, op: &Op, native_errno: i32, mount_errno: i32) -> bool {
    let node = |p: &str| tree.iter().find(|n| n.path == p);
    let capable = w.uid == 0 && !w.drop_caps;
    let is_dir = |p: &str| node(p).is_some_and(|n| n.dir);
    let exists = |p: &str| node(p).is_some();
    let refused = matches!(native_errno, libc::EACCES | libc::EPERM);
    match (op, mount_errno) {
        (Op::Unlink(p), libc::EISDIR) => refused && is_dir(p),
        (Op::Rmdir(p), libc::ENOTDIR) => refused && exists(p) && !is_dir(p),
        (Op::Rename(a, b), libc::ENOTDIR) => refused && is_dir(a) && exists(b) && !is_dir(b),
        (Op::Rename(a, b), libc::EISDIR) => refused && !is_dir(a) && is_dir(b),
        (Op::Link(a, _), libc::EPERM) => native_errno == libc::EACCES && is_dir(a),
        (Op::Open(p, flags), libc::EPERM) => {
            native_errno == libc::EACCES
                && flags & libc::O_NOATIME != 0
                && !capable
                && node(p).is_some_and(|n| n.uid != w.uid)
        }
        _ => false,
    }
}

/// The other limit: the VFS never asks the filesystem for search
/// permission in the last directory of a path it walks to a parent
/// (`filename_parentat`: its `may_lookup` is a `fuse_permission` that lets
/// it through). phivault checks it when the kernel looks the last name up
/// (LOOKUP), which for a rename comes only after the walk of the second
/// path. So a rename whose source directory the caller may reach but not
/// search (natively EACCES) fails through the mount with the error of the
/// walk to the target's directory, if that walk fails (ENOENT, ENOTDIR).
fn unsearched_source(w: &Who, op: &Op, native_errno: i32, mount_errno: i32, root: &Path) -> bool {
    let Op::Rename(a, b) = op else { return false };
    let (from, to) = (split(a).0, split(b).0);
    native_errno == libc::EACCES
        && matches!(mount_errno, libc::ENOENT | libc::ENOTDIR)
        && native(w, &call_of(root, &Op::Access(from.to_string(), 1))) == libc::EACCES
        && native(w, &call_of(root, &Op::Stat(join(from, ".")))) == libc::EACCES
        && native(w, &call_of(root, &Op::Stat(join(to, ".")))) == mount_errno
}

/// The nodes an operation names and their parents, for a failure message.
fn involved(tree: &[Node], op: &Op) -> String {
    let paths: Vec<&String> = match op {
        Op::Rename(a, b) | Op::Link(a, b) => vec![a, b],
        Op::Stat(p)
        | Op::Open(p, _)
        | Op::Exec(p)
        | Op::Access(p, _)
        | Op::Create(p, _)
        | Op::Mkdir(p, _)
        | Op::Unlink(p)
        | Op::Rmdir(p)
        | Op::Chmod(p, _)
        | Op::Chown(p, _, _)
        | Op::Utimes(p, _)
        | Op::Truncate(p)
        | Op::GetXattr(p, _)
        | Op::SetXattr(p, _, _)
        | Op::RemoveXattr(p, _) => vec![p],
    };
    let mut out = String::new();
    for p in paths {
        let mut at = p.as_str();
        loop {
            if let Some(n) = tree.iter().find(|n| n.path == at) {
                out += &format!(
                    "  {:?} {} {}:{} {:o} acl {:?}\n",
                    n.path,
                    if n.dir { "dir" } else { "file" },
                    n.uid,
                    n.gid,
                    n.mode,
                    n.access_acl
                );
            }
            if at.is_empty() {
                break;
            }
            at = split(at).0;
        }
    }
    out
}
