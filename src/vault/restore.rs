//! Giving back a file or a whole subtree as it was at an instant: content
//! byte-exact, mode, owner, group, atime and mtime, extended attributes
//! (POSIX ACLs among them), symlinks, hard links and special files.
//!
//! The past is read from a `Past`; what is written goes to a
//! [`RestoreTarget`]: this engine itself (a store not mounted, see
//! [`EngineTarget`]) or a directory of any filesystem (a new destination,
//! or the mount of this store, where the daemon then records versions as
//! for any program, see [`FsTarget`]). Nothing here overwrites without a
//! version: in place, a file is rewritten (a new version; the one it
//! replaces is a version already, every close is one) and what the subtree
//! did not hold then is deleted (a deletion is a version too).

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Attr, Caller, NodeSpec, Past, SetAttr, TimeSet, Vault, VaultError};
use crate::catalog::{Ino, Kind};

/// How much of a file is read from the past, and written, at a time.
const CHUNK: usize = 8 << 20;
/// How many threads read each chunk, a part each: reading the past is
/// bound by the latency of the store's disk more than by decryption, so
/// more reads in flight than cores pay.
const READERS: usize = 4;

/// What a restore can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path} did not exist at that instant")]
    NotThen { path: String },
    #[error(
        "{} already exists: restore --to writes new files only; \
         remove it or give another destination",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Engine { path: PathBuf, source: VaultError },
    #[error(transparent)]
    Vault(#[from] VaultError),
}

pub type Result<T> = std::result::Result<T, RestoreError>;

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub others: u64,
    pub bytes: u64,
    /// Names removed in place because the subtree did not hold them then.
    pub removed: u64,
    /// Files left as they were in place: their content was the same then
    /// (rewriting them would only have added versions).
    pub unchanged: u64,
    /// What could not be given back and was skipped (an owner without
    /// root, an attribute the destination does not keep).
    pub warnings: Vec<String>,
}

/// What is at a destination path now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    /// Identifies the inode, to recognise a hard link already made.
    pub id: (u64, u64),
}

/// Where a restore writes. Paths are the target's own (absolute paths on
/// a filesystem, store paths in the engine).
pub trait RestoreTarget {
    fn probe(&mut self, path: &Path) -> Result<Option<Found>>;
    /// The names directory `path` holds now.
    fn names(&mut self, path: &Path) -> Result<Vec<Vec<u8>>>;
    /// Removes `path`, and everything under it if it is a directory.
    fn remove(&mut self, path: &Path) -> Result<()>;
    fn mkdir(&mut self, path: &Path) -> Result<()>;
    /// Writes a file whole (creating it, or emptying an existing one) from
    /// `fill`, which fills a buffer and says how much (0: the end).
    fn write_file(
        &mut self,
        path: &Path,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> Result<()>;
    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<()>;
    fn mknod(&mut self, path: &Path, kind: Kind, rdev: u32) -> Result<()>;
    fn link(&mut self, existing: &Path, path: &Path) -> Result<()>;
    /// The size of file `path` now.
    fn size_now(&mut self, path: &Path) -> Result<u64>;
    /// Reads file `path` as it is now, at `offset`; 0 at its end.
    fn read_now(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<usize>;
    /// Gives `path` the owner, extended attributes (exactly these), mode
    /// and times of `attr`, in that order (an ACL sets mode bits, a chown
    /// clears set-id bits). Returns what it could not give back.
    fn set_attrs(
        &mut self,
        path: &Path,
        attr: &Attr,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<String>>;
}

/// Whether a restore may change what is at its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Make the destination what the source was (the source's own place).
    InPlace,
    /// Write new files only: refuse if the destination exists (for the
    /// root, unless it is an empty directory).
    New,
}

/// One node of the subtree to restore, in pre-order.
struct Node {
    /// Relative to the source, '/'-separated; empty for the top.
    rel: Vec<u8>,
    attr: Attr,
}

impl Vault {
    /// The bytes of file content under `src` (a path in the tree of
    /// `past`), for a progress bar.
    pub fn restore_size(&self, past: &Past<'_>, src: &[u8]) -> Result<u64> {
        Ok(self
            .restore_nodes(past, src)?
            .iter()
            .filter(|n| n.attr.kind == Kind::File)
            .map(|n| n.attr.size)
            .sum())
    }

    /// Restores `src` as it was in `past` to `dest` of `target`;
    /// `progress` hears of every chunk of content written.
    pub fn restore(
        &self,
        past: &Past<'_>,
        src: &[u8],
        dest: &Path,
        placement: Placement,
        target: &mut dyn RestoreTarget,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RestoreSummary> {
        let nodes = self.restore_nodes(past, src)?;
        let top_is_root = components_empty(src);
        if placement == Placement::New {
            match target.probe(dest)? {
                Some(f) if top_is_root && f.kind == Kind::Dir && target.names(dest)?.is_empty() => {
                }
                Some(_) => return Err(RestoreError::Exists { path: dest.into() }),
                None => {}
            }
        }
        let mut sum = RestoreSummary::default();
        let mut linked: HashMap<Ino, PathBuf> = HashMap::new();
        for n in &nodes {
            let path = join(dest, &n.rel);
            let a = &n.attr;
            let found = target.probe(&path)?;
            let mut exists = found.is_some();
            if let Some(f) = found {
                let keep = f.kind == a.kind && matches!(a.kind, Kind::Dir | Kind::File);
                let same_link = a.kind == Kind::File
                    && a.nlink > 1
                    && linked.get(&a.ino).is_some_and(|p| {
                        target.probe(p).ok().flatten().map(|g| g.id) == Some(f.id)
                    });
                if same_link {
                    continue;
                }
                if !keep || linked.contains_key(&a.ino) {
                    target.remove(&path)?;
                    exists = false;
                }
            }
            match a.kind {
                Kind::File => {
                    if a.nlink > 1 {
                        if let Some(first) = linked.get(&a.ino) {
                            target.link(first, &path)?;
                            sum.links += 1;
                            continue;
                        }
                        linked.insert(a.ino, path.clone());
                    }
                    if exists
                        && placement == Placement::InPlace
                        && same_content(past, a, &path, target)?
                    {
                        progress(a.size);
                        sum.unchanged += 1;
                        continue;
                    }
                    let written = copy_file(past, a.ino, &path, target, progress)?;
                    sum.files += 1;
                    sum.bytes += written;
                }
                Kind::Dir => {
                    if !exists {
                        target.mkdir(&path)?;
                    } else if placement == Placement::InPlace {
                        let then: HashSet<&[u8]> = nodes
                            .iter()
                            .filter_map(|m| child_of(&m.rel, &n.rel))
                            .collect();
                        for name in target.names(&path)? {
                            if !then.contains(&name[..]) {
                                target.remove(&path.join(OsStr::from_bytes(&name)))?;
                                sum.removed += 1;
                            }
                        }
                    }
                    sum.dirs += 1;
                }
                Kind::Symlink => {
                    target.symlink(&path, &past.readlink(a.ino)?)?;
                    sum.others += 1;
                }
                kind => {
                    target.mknod(&path, kind, a.rdev)?;
                    sum.others += 1;
                }
            }
        }
        // Attributes children first, so that a directory's times and a
        // read-only mode come after what was written into it.
        let mut done: HashSet<Ino> = HashSet::new();
        for n in nodes.iter().rev() {
            if !done.insert(n.attr.ino) {
                continue;
            }
            let path = join(dest, &n.rel);
            let xattrs = past.xattrs(n.attr.ino)?;
            sum.warnings
                .extend(target.set_attrs(&path, &n.attr, &xattrs)?);
        }
        Ok(sum)
    }

    /// The subtree at `src` in `past`, in pre-order.
    fn restore_nodes(&self, past: &Past<'_>, src: &[u8]) -> Result<Vec<Node>> {
        let top = past.resolve(src).map_err(|e| match e {
            VaultError::NotFound => RestoreError::NotThen {
                path: String::from_utf8_lossy(src).into_owned(),
            },
            e => e.into(),
        })?;
        let mut nodes = vec![Node {
            rel: Vec::new(),
            attr: past.getattr(top)?,
        }];
        self.add_children(past, src, Vec::new(), &mut nodes)?;
        Ok(nodes)
    }

    fn add_children(
        &self,
        past: &Past<'_>,
        src: &[u8],
        rel: Vec<u8>,
        nodes: &mut Vec<Node>,
    ) -> Result<()> {
        if nodes.last().is_none_or(|n| n.attr.kind != Kind::Dir) {
            return Ok(());
        }
        let full = [src, b"/", &rel].concat();
        for e in self.list_at(&full, past.instant())? {
            let child = if rel.is_empty() {
                e.name
            } else {
                [&rel[..], b"/", &e.name].concat()
            };
            nodes.push(Node {
                rel: child.clone(),
                attr: e.attr,
            });
            self.add_children(past, src, child, nodes)?;
        }
        Ok(())
    }
}

/// Whether file `path` of `target` holds what `a` held in `past`.
fn same_content(
    past: &Past<'_>,
    a: &Attr,
    path: &Path,
    target: &mut dyn RestoreTarget,
) -> Result<bool> {
    if target.size_now(path)? != a.size {
        return Ok(false);
    }
    let mut then = vec![0u8; CHUNK];
    let mut now = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < a.size {
        let n = past.read_into(a.ino, offset, &mut then)?;
        if n == 0 {
            return Ok(false);
        }
        let mut got = 0;
        while got < n {
            let m = target.read_now(path, offset + got as u64, &mut now[got..n])?;
            if m == 0 {
                return Ok(false);
            }
            got += m;
        }
        if then[..n] != now[..n] {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// Writes `ino`'s content in `past` to `path` of `target`: read ahead on
/// a thread of its own, each chunk by `READERS` threads at once, while
/// the target writes the chunk before. Returns the bytes written.
fn copy_file(
    past: &Past<'_>,
    ino: Ino,
    path: &Path,
    target: &mut dyn RestoreTarget,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(2);
        s.spawn(move || {
            let mut offset = 0u64;
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let parts: Vec<Result<usize>> = std::thread::scope(|p| {
                    let handles: Vec<_> = chunk
                        .chunks_mut(CHUNK / READERS)
                        .enumerate()
                        .map(|(i, part)| {
                            let at = offset + (i * CHUNK / READERS) as u64;
                            p.spawn(move || Ok(past.read_into(ino, at, part)?))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a reader thread panicked"))
                        .collect()
                });
                let mut read = 0;
                for part in parts {
                    match part {
                        Ok(n) => {
                            read += n;
                            if n < CHUNK / READERS {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                chunk.truncate(read);
                offset += read as u64;
                if tx.send(Ok(chunk)).is_err() || read == 0 {
                    return;
                }
            }
        });
        let mut current: Vec<u8> = Vec::new();
        let mut at = 0;
        let mut total = 0u64;
        let mut fill = |out: &mut [u8]| -> Result<usize> {
            if at == current.len() {
                current = match rx.recv() {
                    Ok(chunk) => chunk?,
                    Err(_) => Vec::new(),
                };
                at = 0;
            }
            let n = out.len().min(current.len() - at);
            out[..n].copy_from_slice(&current[at..at + n]);
            at += n;
            total += n as u64;
            progress(n as u64);
            Ok(n)
        };
        let res = target.write_file(path, &mut fill);
        drop(rx);
        res.map(|()| total)
    })
}

fn components_empty(path: &[u8]) -> bool {
    path.split(|b| *b == b'/')
        .all(|p| p.is_empty() || p == b".")
}

fn join(dest: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        dest.to_path_buf()
    } else {
        dest.join(OsStr::from_bytes(rel))
    }
}

/// The name of `rel` within directory `dir`, if it is a child of it.
fn child_of<'a>(rel: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    if rel.is_empty() {
        return None;
    }
    let rest = if dir.is_empty() {
        rel
    } else {
        rel.strip_prefix(dir)?.strip_prefix(b"/")?
    };
    (!rest.contains(&b'/')).then_some(rest)
}

/// A directory of an ordinary filesystem, written with ordinary system
/// calls: a new destination, or a mount of this store.
#[derive(Default)]
pub struct FsTarget {
    /// Whether extended attributes present now and absent then are removed
    /// (in place).
    pub remove_extra_xattrs: bool,
    /// Whether each file is fsync'd before it is closed: on the mount, so
    /// that the restore is durable and its versions recorded when it ends.
    pub fsync_files: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cpath(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn kind_of(ft: std::fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else {
        Kind::File
    }
}

fn mode_type(kind: Kind) -> libc::mode_t {
    match kind {
        Kind::Fifo => libc::S_IFIFO,
        Kind::Socket => libc::S_IFSOCK,
        Kind::CharDev => libc::S_IFCHR,
        Kind::BlockDev => libc::S_IFBLK,
        Kind::Dir => libc::S_IFDIR,
        Kind::Symlink => libc::S_IFLNK,
        Kind::File => libc::S_IFREG,
    }
}

/// The raw xattr names of `path` (not following a symlink).
fn list_xattrs(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let c = cpath(path)?;
    // SAFETY: a NUL-terminated path; a null buffer asks for the size.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; len as usize];
    // SAFETY: buf has room for len bytes.
    let len = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| n.to_vec())
        .collect())
}

impl RestoreTarget for FsTarget {
    fn probe(&mut self, path: &Path) -> Result<Option<Found>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(Found {
                kind: kind_of(m.file_type()),
                id: (m.dev(), m.ino()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    fn names(&mut self, path: &Path) -> Result<Vec<Vec<u8>>> {
        std::fs::read_dir(path)
            .and_then(|d| {
                d.map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                    .collect()
            })
            .map_err(io_err(path))
    }

    fn remove(&mut self, path: &Path) -> Result<()> {
        let m = std::fs::symlink_metadata(path).map_err(io_err(path))?;
        if m.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        }
        .map_err(io_err(path))
    }

    fn mkdir(&mut self, path: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(io_err(path))
    }

    fn write_file(
        &mut self,
        path: &Path,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = fill(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n]).map_err(io_err(path))?;
        }
        if self.fsync_files {
            f.sync_all().map_err(io_err(path))?;
        }
        // The close is where the daemon stores the file and records the
        // version; its error says if that failed.
        use std::os::fd::IntoRawFd;
        let fd = f.into_raw_fd();
        // SAFETY: fd is ours, taken from the File, and closed once.
        check(unsafe { libc::close(fd) }).map_err(io_err(path))
    }

    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<()> {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), path).map_err(io_err(path))
    }

    fn mknod(&mut self, path: &Path, kind: Kind, rdev: u32) -> Result<()> {
        let c = cpath(path).map_err(io_err(path))?;
        // SAFETY: a NUL-terminated path.
        let rc = unsafe {
            libc::mknod(
                c.as_ptr(),
                mode_type(kind) | 0o600,
                libc::makedev(rdev >> 8 & 0xfff, rdev & 0xff | (rdev >> 12) & 0xfff00),
            )
        };
        check(rc).map_err(io_err(path))
    }

    fn link(&mut self, existing: &Path, path: &Path) -> Result<()> {
        std::fs::hard_link(existing, path).map_err(io_err(path))
    }

    fn size_now(&mut self, path: &Path) -> Result<u64> {
        Ok(std::fs::symlink_metadata(path).map_err(io_err(path))?.len())
    }

    fn read_now(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(path).map_err(io_err(path))?;
        f.read_at(out, offset).map_err(io_err(path))
    }

    fn set_attrs(
        &mut self,
        path: &Path,
        attr: &Attr,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let c = cpath(path).map_err(io_err(path))?;
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { libc::lchown(c.as_ptr(), attr.uid, attr.gid) };
        if let Err(e) = check(rc) {
            if e.raw_os_error() == Some(libc::EPERM) {
                warnings.push(format!(
                    "{}: owner {}:{} not given back ({e}; run as root)",
                    path.display(),
                    attr.uid,
                    attr.gid
                ));
            } else {
                return Err(io_err(path)(e));
            }
        }
        if attr.kind != Kind::Symlink {
            if self.remove_extra_xattrs {
                let keep: HashSet<&[u8]> = xattrs.iter().map(|(n, _)| &n[..]).collect();
                for name in list_xattrs(path).unwrap_or_default() {
                    if !keep.contains(&name[..]) && !name.starts_with(b"security.") {
                        let n = CString::new(name).expect("xattr names hold no NUL");
                        // SAFETY: NUL-terminated path and name.
                        let rc = unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) };
                        check(rc).map_err(io_err(path))?;
                    }
                }
            }
            for (name, value) in xattrs {
                let n = CString::new(name.clone()).expect("xattr names hold no NUL");
                // SAFETY: NUL-terminated path and name; value's pointer and length.
                let rc = unsafe {
                    libc::lsetxattr(
                        c.as_ptr(),
                        n.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                };
                if let Err(e) = check(rc) {
                    match e.raw_os_error() {
                        Some(libc::ENOTSUP | libc::EPERM) => warnings.push(format!(
                            "{}: extended attribute {} not given back ({e})",
                            path.display(),
                            String::from_utf8_lossy(name)
                        )),
                        _ => return Err(io_err(path)(e)),
                    }
                }
            }
            // SAFETY: a NUL-terminated path.
            let rc = unsafe { libc::chmod(c.as_ptr(), attr.perm as libc::mode_t) };
            check(rc).map_err(io_err(path))?;
        }
        let ts = |ns: i64| libc::timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        };
        let times = [ts(attr.atime), ts(attr.mtime)];
        // SAFETY: a NUL-terminated path and two timespecs.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(rc).map_err(io_err(path))?;
        Ok(warnings)
    }
}

/// This engine itself, for a store that is not mounted: paths are paths
/// inside the store. Acts as root, recording `writer` as who made the
/// versions it writes.
pub struct EngineTarget<'a> {
    vault: &'a Vault,
    writer: u32,
}

impl<'a> EngineTarget<'a> {
    pub fn new(vault: &'a Vault, writer: u32) -> Self {
        if vault.holds_acls().unwrap_or(false) {
            // The store keeps ACLs (so it mounts only with them enforced):
            // give them back too.
            vault.enable_acls();
        }
        Self { vault, writer }
    }

    fn bytes(path: &Path) -> &[u8] {
        path.as_os_str().as_bytes()
    }

    fn ino(&self, path: &Path) -> Result<Ino> {
        self.vault.resolve(Self::bytes(path)).map_err(eng(path))
    }

    /// The directory holding `path`, and its last name.
    fn parent(&self, path: &Path) -> Result<(Ino, Vec<u8>)> {
        let name = path
            .file_name()
            .ok_or_else(|| eng(path)(VaultError::Invalid))?
            .as_bytes()
            .to_vec();
        let dir = path.parent().unwrap_or(Path::new("/"));
        Ok((self.ino(dir)?, name))
    }

    fn caller(&self) -> Caller {
        Caller::root()
    }

    fn remove_in(&self, dir: Ino, name: &[u8], path: &Path) -> Result<()> {
        let attr = self.vault.lookup(dir, name).map_err(eng(path))?;
        if attr.kind == Kind::Dir {
            loop {
                let horizon = self.vault.listing_horizon().map_err(eng(path))?;
                let batch = self
                    .vault
                    .readdir(attr.ino, 0, horizon, 256)
                    .map_err(eng(path))?;
                let names: Vec<_> = batch
                    .iter()
                    .filter(|e| e.name != b"." && e.name != b"..")
                    .map(|e| e.name.clone())
                    .collect();
                if names.is_empty() {
                    break;
                }
                for n in names {
                    self.remove_in(attr.ino, &n, &path.join(OsStr::from_bytes(&n)))?;
                }
            }
            self.vault
                .rmdir(&self.caller(), dir, name)
                .map_err(eng(path))
        } else {
            self.vault
                .unlink(&self.caller(), dir, name)
                .map_err(eng(path))
        }
    }
}

fn eng(path: &Path) -> impl FnOnce(VaultError) -> RestoreError + '_ {
    move |source| RestoreError::Engine {
        path: path.to_path_buf(),
        source,
    }
}

impl RestoreTarget for EngineTarget<'_> {
    fn probe(&mut self, path: &Path) -> Result<Option<Found>> {
        match self.vault.resolve(Self::bytes(path)) {
            Ok(ino) => {
                let a = self.vault.getattr(ino).map_err(eng(path))?;
                Ok(Some(Found {
                    kind: a.kind,
                    id: (0, ino),
                }))
            }
            Err(VaultError::NotFound) => Ok(None),
            Err(e) => Err(eng(path)(e)),
        }
    }

    fn names(&mut self, path: &Path) -> Result<Vec<Vec<u8>>> {
        let dir = self.ino(path)?;
        let mut out = Vec::new();
        let horizon = self.vault.listing_horizon().map_err(eng(path))?;
        let mut pos = 0;
        loop {
            let batch = self
                .vault
                .readdir(dir, pos, horizon, 1024)
                .map_err(eng(path))?;
            let Some(last) = batch.last() else {
                break;
            };
            pos = last.next;
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.name != b"." && e.name != b"..")
                    .map(|e| e.name),
            );
        }
        Ok(out)
    }

    fn remove(&mut self, path: &Path) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        self.remove_in(dir, &name, path)
    }

    fn mkdir(&mut self, path: &Path) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        let spec = NodeSpec {
            kind: Kind::Dir,
            mode: 0o700,
            umask: 0,
            rdev: 0,
        };
        self.vault
            .create_node(&self.caller(), dir, &name, spec)
            .map_err(eng(path))?;
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &Path,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        let v = self.vault;
        let ino = match v.lookup(dir, &name) {
            Ok(a) => a.ino,
            Err(VaultError::NotFound) => {
                v.create_node(&self.caller(), dir, &name, NodeSpec::file(0o600))
                    .map_err(eng(path))?
                    .ino
            }
            Err(e) => return Err(eng(path)(e)),
        };
        v.open_file_as(ino, true, Some(self.writer))
            .map_err(eng(path))?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        let written = (|| -> Result<()> {
            loop {
                let n = fill(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                let mut done = 0;
                while done < n {
                    done += v
                        .write(ino, offset + done as u64, &buf[done..n])
                        .map_err(eng(path))?;
                }
                offset += n as u64;
            }
        })();
        let released = v.release_file(ino).map_err(eng(path));
        written?;
        released?;
        Ok(())
    }

    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        self.vault
            .symlink(&self.caller(), dir, &name, target)
            .map_err(eng(path))?;
        Ok(())
    }

    fn mknod(&mut self, path: &Path, kind: Kind, rdev: u32) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        let spec = NodeSpec {
            kind,
            mode: 0o600,
            umask: 0,
            rdev,
        };
        self.vault
            .create_node(&self.caller(), dir, &name, spec)
            .map_err(eng(path))?;
        Ok(())
    }

    fn size_now(&mut self, path: &Path) -> Result<u64> {
        let ino = self.ino(path)?;
        Ok(self.vault.getattr(ino).map_err(eng(path))?.size)
    }

    fn read_now(&mut self, path: &Path, offset: u64, out: &mut [u8]) -> Result<usize> {
        let ino = self.ino(path)?;
        self.vault.read_into(ino, offset, out).map_err(eng(path))
    }

    fn link(&mut self, existing: &Path, path: &Path) -> Result<()> {
        let ino = self.ino(existing)?;
        let (dir, name) = self.parent(path)?;
        self.vault.link(ino, dir, &name).map_err(eng(path))?;
        Ok(())
    }

    fn set_attrs(
        &mut self,
        path: &Path,
        attr: &Attr,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<String>> {
        let v = self.vault;
        let ino = self.ino(path)?;
        let root = self.caller();
        let owner = SetAttr {
            uid: Some(attr.uid),
            gid: Some(attr.gid),
            ..SetAttr::default()
        };
        v.setattr(&root, ino, &owner).map_err(eng(path))?;
        if attr.kind != Kind::Symlink {
            let keep: HashSet<&[u8]> = xattrs.iter().map(|(n, _)| &n[..]).collect();
            let now = v.listxattr(ino).map_err(eng(path))?;
            for name in now.split(|b| *b == 0).filter(|n| !n.is_empty()) {
                if !keep.contains(name) {
                    v.removexattr(ino, name).map_err(eng(path))?;
                }
            }
            for (name, value) in xattrs {
                v.setxattr(&root, ino, name, value, 0).map_err(eng(path))?;
            }
            let mode = SetAttr {
                mode: Some(attr.perm),
                ..SetAttr::default()
            };
            v.setattr(&root, ino, &mode).map_err(eng(path))?;
        }
        let times = SetAttr {
            atime: Some(TimeSet::At(attr.atime)),
            mtime: Some(TimeSet::At(attr.mtime)),
            ..SetAttr::default()
        };
        v.setattr(&root, ino, &times).map_err(eng(path))?;
        Ok(Vec::new())
    }
}
