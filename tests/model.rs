//! Randomized model test: one random sequence of filesystem operations is
//! applied both to a phivault mount and to a native directory on /tmp (the
//! model). After every step both trees must agree on every name, file type,
//! size, content byte, link count and mode, open handles included, and every
//! operation must succeed or fail the same way (same errno) on both.
//!
//! Reproduce a failure with `PHIVAULT_MODEL_SEED=<seed> cargo test --test model`
//! (`PHIVAULT_MODEL_SEED=random` picks a fresh seed, `PHIVAULT_MODEL_STEPS`
//! changes the number of steps, `PHIVAULT_MODEL_SHRINK=0` skips minimizing the
//! failing sequence).

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::Vault;

const DEFAULT_SEEDS: [u64; 3] = [
    0x5EED_0000_0000_0001,
    0x5EED_0000_0000_0002,
    0x5EED_0000_0000_0003,
];
const DEFAULT_STEPS: usize = 600;
/// Remount (all handles closed) every this many steps, and at the end.
const REMOUNT_EVERY: usize = 50;
const BS: u64 = 64 * 1024;
/// Files stay below 2 MiB.
const MAX_END: u64 = 2 * 1024 * 1024 - 1;
const SLOTS: usize = 4;
/// Replays spent minimizing a failing sequence.
const SHRINK_BUDGET: usize = 150;

// ---------------------------------------------------------------------------
// PRNG

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Operations

#[derive(Clone, Debug)]
enum Op {
    /// open(O_WRONLY|O_CREAT|O_TRUNC), close.
    Create {
        path: String,
    },
    /// open(O_WRONLY), pwrite(pattern(seed, len), off), close.
    Write {
        path: String,
        off: u64,
        len: usize,
        seed: u64,
    },
    /// open(O_WRONLY|O_APPEND), write(pattern(seed, len)), close.
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    /// truncate(path, size).
    Truncate {
        path: String,
        size: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    /// renameat2 with RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2).
    Rename2 {
        from: String,
        to: String,
        flags: u32,
    },
    Unlink {
        path: String,
    },
    Link {
        from: String,
        to: String,
    },
    /// symlink(target, path): target is relative, may dangle.
    Symlink {
        target: String,
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    /// open(O_RDONLY), fsync, close (directories too).
    Fsync {
        path: String,
    },
    /// open(O_RDWR[|O_CREAT]) into a slot (closing what the slot held).
    Open {
        slot: usize,
        path: String,
        create: bool,
    },
    Close {
        slot: usize,
    },
    HWrite {
        slot: usize,
        off: u64,
        len: usize,
        seed: u64,
    },
    HTruncate {
        slot: usize,
        size: u64,
    },
    HFsync {
        slot: usize,
    },
    /// fallocate(2) on the handle: mode 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE[|KEEP_SIZE].
    HFallocate {
        slot: usize,
        mode: i32,
        off: u64,
        len: u64,
    },
    HRead {
        slot: usize,
        off: u64,
        len: usize,
    },
    /// Close all handles, unmount, mount again.
    Remount,
}

/// What an operation returned: data for reads, or the errno.
type Outcome = Result<Vec<u8>, i32>;

fn errno(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn unit(r: io::Result<()>) -> Outcome {
    r.map(|_| Vec::new()).map_err(errno)
}

fn errno_name(e: i32) -> String {
    let s = io::Error::from_raw_os_error(e).to_string();
    format!("errno {e} ({s})")
}

fn show(o: &Outcome) -> String {
    match o {
        Ok(d) if d.is_empty() => "Ok".into(),
        Ok(d) => format!("Ok({} bytes)", d.len()),
        Err(e) => format!("Err({})", errno_name(*e)),
    }
}

// ---------------------------------------------------------------------------
// The two trees

struct Slot {
    native: File,
    mount: File,
}

struct Runner {
    // Declared first: handles close before the vault unmounts.
    slots: Vec<Option<Slot>>,
    vault: Vault,
    native_dir: tempfile::TempDir,
    stats: std::collections::BTreeMap<String, (u32, u32)>,
}

impl Runner {
    fn new() -> Self {
        let native_dir = tempfile::Builder::new()
            .prefix("phivault-model-")
            .tempdir_in("/tmp")
            .expect("native tempdir");
        Runner {
            slots: (0..SLOTS).map(|_| None).collect(),
            vault: Vault::mounted(),
            native_dir,
            stats: Default::default(),
        }
    }

    fn native_root(&self) -> PathBuf {
        self.native_dir.path().join("root")
    }

    fn setup(&self) {
        fs::create_dir(self.native_root()).unwrap();
    }

    fn n(&self, rel: &str) -> PathBuf {
        self.native_root().join(rel)
    }

    fn m(&self, rel: &str) -> PathBuf {
        self.vault.mnt.join(rel)
    }

    /// Applies `op` to both trees. Err: the two disagreed.
    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let both = |f: &dyn Fn(&Path) -> Outcome, rel: &str| (f(&self.n(rel)), f(&self.m(rel)));
        let (native, mount) = match op {
            Op::Create { path } => both(
                &|p| {
                    unit(
                        OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(p)
                            .map(drop),
                    )
                },
                path,
            ),
            Op::Write {
                path,
                off,
                len,
                seed,
            } => {
                let data = common::pattern(*seed, *len);
                both(
                    &|p| {
                        unit(
                            OpenOptions::new()
                                .write(true)
                                .open(p)
                                .and_then(|f| f.write_all_at(&data, *off)),
                        )
                    },
                    path,
                )
            }
            Op::Append { path, len, seed } => {
                let data = common::pattern(*seed, *len);
                both(
                    &|p| {
                        unit(
                            OpenOptions::new()
                                .append(true)
                                .open(p)
                                .and_then(|mut f| f.write_all(&data)),
                        )
                    },
                    path,
                )
            }
            Op::Truncate { path, size } => both(
                &|p| {
                    unit(
                        OpenOptions::new()
                            .write(true)
                            .open(p)
                            .and_then(|f| f.set_len(*size)),
                    )
                },
                path,
            ),
            Op::Rename { from, to } => (
                unit(fs::rename(self.n(from), self.n(to))),
                unit(fs::rename(self.m(from), self.m(to))),
            ),
            Op::Rename2 { from, to, flags } => (
                renameat2(&self.n(from), &self.n(to), *flags),
                renameat2(&self.m(from), &self.m(to), *flags),
            ),
            Op::Unlink { path } => both(&|p| unit(fs::remove_file(p)), path),
            Op::Link { from, to } => (
                unit(fs::hard_link(self.n(from), self.n(to))),
                unit(fs::hard_link(self.m(from), self.m(to))),
            ),
            Op::Symlink { target, path } => {
                both(&|p| unit(std::os::unix::fs::symlink(target, p)), path)
            }
            Op::Mkdir { path } => both(&|p| unit(fs::create_dir(p)), path),
            Op::Rmdir { path } => both(&|p| unit(fs::remove_dir(p)), path),
            Op::Chmod { path, mode } => both(
                &|p| unit(fs::set_permissions(p, fs::Permissions::from_mode(*mode))),
                path,
            ),
            Op::Fsync { path } => both(&|p| unit(File::open(p).and_then(|f| f.sync_all())), path),
            Op::Open { slot, path, create } => {
                self.slots[*slot] = None;
                let open = |p: &Path| {
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(*create)
                        .open(p)
                };
                match (open(&self.n(path)), open(&self.m(path))) {
                    (Ok(native), Ok(mount)) => {
                        self.slots[*slot] = Some(Slot { native, mount });
                        (Ok(Vec::new()), Ok(Vec::new()))
                    }
                    (a, b) => (unit(a.map(drop)), unit(b.map(drop))),
                }
            }
            Op::Close { slot } => {
                self.slots[*slot] = None;
                (Ok(Vec::new()), Ok(Vec::new()))
            }
            Op::HWrite {
                slot,
                off,
                len,
                seed,
            } => {
                let Some(s) = &self.slots[*slot] else {
                    return Ok(());
                };
                let data = common::pattern(*seed, *len);
                (
                    unit(s.native.write_all_at(&data, *off)),
                    unit(s.mount.write_all_at(&data, *off)),
                )
            }
            Op::HTruncate { slot, size } => {
                let Some(s) = &self.slots[*slot] else {
                    return Ok(());
                };
                (unit(s.native.set_len(*size)), unit(s.mount.set_len(*size)))
            }
            Op::HFsync { slot } => {
                let Some(s) = &self.slots[*slot] else {
                    return Ok(());
                };
                (unit(s.native.sync_all()), unit(s.mount.sync_all()))
            }
            Op::HFallocate {
                slot,
                mode,
                off,
                len,
            } => {
                let Some(s) = &self.slots[*slot] else {
                    return Ok(());
                };
                (
                    fallocate(&s.native, *mode, *off, *len),
                    fallocate(&s.mount, *mode, *off, *len),
                )
            }
            Op::HRead { slot, off, len } => {
                let Some(s) = &self.slots[*slot] else {
                    return Ok(());
                };
                (
                    read_at(&s.native, *off, *len),
                    read_at(&s.mount, *off, *len),
                )
            }
            Op::Remount => {
                self.slots.iter_mut().for_each(|s| *s = None);
                let v = &mut self.vault;
                return catch_unwind(AssertUnwindSafe(|| v.remount())).map_err(|p| {
                    format!(
                        "remount failed: {}",
                        p.downcast_ref::<String>().cloned().unwrap_or_default()
                    )
                });
            }
        };
        if native != mount {
            let detail = match (&native, &mount) {
                (Ok(a), Ok(b)) => {
                    format!(" (first differing byte at {:?})", common::first_diff(a, b))
                }
                _ => String::new(),
            };
            return Err(format!(
                "result differs: native {} vs phivault {}{detail}",
                show(&native),
                show(&mount)
            ));
        }
        let k = format!("{op:?}")
            .split([' ', '{'])
            .next()
            .unwrap()
            .to_string();
        let e = self.stats.entry(k).or_insert((0, 0));
        if native.is_ok() {
            e.0 += 1
        } else {
            e.1 += 1
        }
        Ok(())
    }

    /// Compares both trees and all open handles.
    /// With `direct`, file contents in the mount are read once more with
    /// O_DIRECT, which bypasses the kernel's page cache and asks the daemon.
    fn check(&self, direct: bool) -> Result<(), String> {
        compare_dir(&self.native_root(), &self.vault.mnt, "", direct)?;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            let (a, b) = (s.native.metadata(), s.mount.metadata());
            let (a, b) = match (a, b) {
                (Ok(a), Ok(b)) => (a, b),
                (a, b) => {
                    return Err(format!(
                        "fstat of slot {i}: native {:?} vs phivault {:?}",
                        a.err(),
                        b.err()
                    ))
                }
            };
            if a.len() != b.len() || a.nlink() != b.nlink() {
                return Err(format!(
                    "fstat of open slot {i}: native size {} nlink {} vs phivault size {} nlink {}",
                    a.len(),
                    a.nlink(),
                    b.len(),
                    b.nlink()
                ));
            }
            let (x, y) = (
                read_at(&s.native, 0, a.len() as usize),
                read_at(&s.mount, 0, b.len() as usize),
            );
            if x != y {
                let at = match (&x, &y) {
                    (Ok(x), Ok(y)) => {
                        format!("first differing byte at {:?}", common::first_diff(x, y))
                    }
                    _ => format!("native {} vs phivault {}", show(&x), show(&y)),
                };
                return Err(format!("content read through open slot {i} differs: {at}"));
            }
        }
        Ok(())
    }
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> Outcome {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (a, b) = (c(from), c(to));
    // SAFETY: valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(Vec::new())
    } else {
        Err(errno(io::Error::last_os_error()))
    }
}

fn fallocate(f: &File, mode: i32, off: u64, len: u64) -> Outcome {
    // SAFETY: a valid open descriptor; no memory is passed.
    let rc =
        unsafe { libc::fallocate(f.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    if rc == 0 {
        Ok(Vec::new())
    } else {
        Err(errno(io::Error::last_os_error()))
    }
}

/// Reads a file in the mount with O_DIRECT (no page cache).
fn read_direct(p: &Path) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(p)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

fn read_at(f: &File, off: u64, len: usize) -> Outcome {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(errno(e)),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

fn names_of(dir: &Path) -> Result<BTreeSet<String>, String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("readdir {}: {e}", dir.display()))?;
    let mut out = BTreeSet::new();
    for e in rd {
        let e = e.map_err(|e| format!("readdir {}: {e}", dir.display()))?;
        out.insert(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

fn compare_dir(native: &Path, mount: &Path, rel: &str, direct: bool) -> Result<(), String> {
    let shown = if rel.is_empty() {
        "/".to_string()
    } else {
        rel.to_string()
    };
    let (a, b) = (names_of(&native.join(rel))?, names_of(&mount.join(rel))?);
    if a != b {
        let only_n: Vec<_> = a.difference(&b).collect();
        let only_m: Vec<_> = b.difference(&a).collect();
        return Err(format!(
            "names in {shown} differ: only native {only_n:?}, only phivault {only_m:?}"
        ));
    }
    for name in &a {
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let (np, mp) = (native.join(&r), mount.join(&r));
        let nm = fs::symlink_metadata(&np).map_err(|e| format!("lstat native {r}: {e}"))?;
        let mm = fs::symlink_metadata(&mp).map_err(|e| format!("lstat phivault {r}: {e}"))?;
        let facts = |m: &fs::Metadata| {
            let size = if m.is_dir() { 0 } else { m.len() };
            (kind(m), format!("{:o}", m.mode() & 0o7777), m.nlink(), size)
        };
        if facts(&nm) != facts(&mm) {
            return Err(format!(
                "{r}: (type, mode, nlink, size) native {:?} vs phivault {:?}",
                facts(&nm),
                facts(&mm)
            ));
        }
        if nm.is_dir() {
            compare_dir(native, mount, &r, direct)?;
        } else if nm.file_type().is_symlink() {
            let x = fs::read_link(&np).map_err(|e| format!("readlink native {r}: {e}"))?;
            let y = fs::read_link(&mp).map_err(|e| format!("readlink phivault {r}: {e}"))?;
            if x != y {
                return Err(format!(
                    "{r}: symlink target native {x:?} vs phivault {y:?}"
                ));
            }
        } else if nm.is_file() {
            let x = fs::read(&np).map_err(|e| format!("read native {r}: {e}"))?;
            let y = fs::read(&mp).map_err(|e| format!("read phivault {r}: {e}"))?;
            if x != y {
                return Err(format!(
                    "{r}: content differs (native {} bytes, phivault {} bytes, first differing byte at {:?})",
                    x.len(),
                    y.len(),
                    common::first_diff(&x, &y)
                ));
            }
            if direct {
                let z = read_direct(&mp).map_err(|e| format!("O_DIRECT read phivault {r}: {e}"))?;
                if x != z {
                    return Err(format!(
                        "{r}: content read with O_DIRECT differs (native {} bytes, phivault {} bytes, first differing byte at {:?})",
                        x.len(),
                        z.len(),
                        common::first_diff(&x, &z)
                    ));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generating operations from the model's current state

const FILE_NAMES: [&str; 4] = ["a", "b", "c", "d"];
const DIR_NAMES: [&str; 2] = ["x", "y"];

/// Everything in the native tree: (relative path, is_dir, size).
fn inventory(root: &Path) -> Vec<(String, bool, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        let mut entries: Vec<_> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        for name in entries {
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(m) = fs::symlink_metadata(root.join(&r)) else {
                continue;
            };
            if m.is_dir() {
                stack.push(r.clone());
            }
            out.push((r, m.is_dir(), m.len()));
        }
    }
    out.sort();
    out
}

struct Gen<'a> {
    rng: &'a mut Rng,
    inv: Vec<(String, bool, u64)>,
}

impl Gen<'_> {
    /// A path in the namespace, existing or not: up to 3 levels deep.
    fn fresh_path(&mut self, want_dir: bool) -> String {
        let existing_dirs: Vec<String> = self
            .inv
            .iter()
            .filter(|e| e.1)
            .map(|e| e.0.clone())
            .collect();
        let parent = if !existing_dirs.is_empty() && self.rng.chance(70) {
            self.rng.pick(&existing_dirs).clone()
        } else if self.rng.chance(50) {
            String::new()
        } else {
            // Possibly missing or not a directory: errors must match too.
            let a = self.rng.pick(&DIR_NAMES).to_string();
            if self.rng.chance(30) {
                format!("{a}/{}", self.rng.pick(&DIR_NAMES))
            } else {
                a
            }
        };
        let parent = if parent.matches('/').count() >= 2 {
            String::new()
        } else {
            parent
        };
        let name = if want_dir == self.rng.chance(85) {
            self.rng.pick(&DIR_NAMES)
        } else {
            self.rng.pick(&FILE_NAMES)
        };
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        }
    }

    fn existing(&mut self, dirs: Option<bool>) -> Option<(String, u64)> {
        let c: Vec<&(String, bool, u64)> = self
            .inv
            .iter()
            .filter(|e| dirs.is_none_or(|d| e.1 == d))
            .collect();
        if c.is_empty() {
            None
        } else {
            let e = self.rng.pick(&c);
            Some((e.0.clone(), e.2))
        }
    }

    /// Mostly an existing file; sometimes anything.
    fn some_file(&mut self) -> (String, u64) {
        if self.rng.chance(85) {
            if let Some(f) = self.existing(Some(false)) {
                return f;
            }
        }
        if self.rng.chance(50) {
            if let Some(f) = self.existing(None) {
                return f;
            }
        }
        (self.fresh_path(false), 0)
    }

    fn some_dir(&mut self) -> String {
        if self.rng.chance(80) {
            if let Some((d, _)) = self.existing(Some(true)) {
                return d;
            }
        }
        self.fresh_path(true)
    }

    fn offset(&mut self, size: u64) -> u64 {
        match self.rng.below(10) {
            // Small files: most writes land in the first few blocks.
            0..=2 => self.rng.below(4 * BS),
            // Straddling a 64 KiB block boundary.
            3..=5 => {
                (self.rng.range(1, 20) * BS).saturating_sub(self.rng.below(600))
                    + self.rng.below(300)
            }
            // Appending.
            6 => size,
            // Far beyond end of file.
            7 => size + self.rng.range(BS, 12 * BS) + self.rng.below(BS),
            _ => self.rng.below(MAX_END),
        }
    }

    fn len(&mut self) -> usize {
        (match self.rng.below(10) {
            0..=3 => self.rng.range(1, 200),
            4..=6 => self.rng.range(1, 70_000),
            7 => BS,
            _ => self.rng.range(BS, 4 * BS),
        }) as usize
    }

    /// Keeps off + len within MAX_END.
    fn write_span(&mut self, size: u64) -> (u64, usize) {
        let len = self.len();
        let off = self.offset(size).min(MAX_END - len as u64);
        (off, len)
    }

    fn new_size(&mut self, size: u64) -> u64 {
        let s = match self.rng.below(8) {
            0 => 0,
            1 | 2 => self.rng.below(size + 1),     // down
            3 => size + self.rng.range(1, 3 * BS), // up
            4 => self.rng.range(0, 20) * BS,       // exactly on a block edge
            5 => {
                (self.rng.range(1, 20) * BS).saturating_sub(1 + self.rng.below(3))
                    + self.rng.below(3)
            } // around one
            6 => size.saturating_sub(self.rng.range(1, 100)),
            _ => self.rng.below(MAX_END),
        };
        s.min(MAX_END)
    }

    fn op(&mut self, slots: &[bool]) -> Op {
        let open: Vec<usize> = (0..SLOTS).filter(|&i| slots[i]).collect();
        loop {
            let r = self.rng.below(100);
            let op = match r {
                0..=6 => Op::Create {
                    path: self.fresh_path_or_existing_file(),
                },
                7..=8 => {
                    let (path, size) = self.some_file();
                    let room = MAX_END.saturating_sub(size) as usize;
                    if room == 0 {
                        Op::Truncate {
                            path,
                            size: self.new_size(size),
                        }
                    } else {
                        Op::Append {
                            path,
                            len: self.len().min(room),
                            seed: self.rng.next(),
                        }
                    }
                }
                9..=22 => {
                    let (path, size) = self.some_file();
                    let (off, len) = self.write_span(size);
                    Op::Write {
                        path,
                        off,
                        len,
                        seed: self.rng.next(),
                    }
                }
                23..=29 => {
                    let (path, size) = self.some_file();
                    Op::Truncate {
                        path,
                        size: self.new_size(size),
                    }
                }
                30..=38 => {
                    let from = if self.rng.chance(75) {
                        self.some_file().0
                    } else {
                        self.some_dir()
                    };
                    let to = match self.rng.below(3) {
                        0 => self.some_file().0, // often over an existing file
                        1 => self.fresh_path(false),
                        _ => {
                            let dir = self.rng.chance(50);
                            self.fresh_path(dir)
                        }
                    };
                    match self.rng.below(6) {
                        0 => Op::Rename2 {
                            from,
                            to,
                            flags: libc::RENAME_NOREPLACE,
                        },
                        1 => Op::Rename2 {
                            from,
                            to,
                            flags: libc::RENAME_EXCHANGE,
                        },
                        _ => Op::Rename { from, to },
                    }
                }
                39..=43 => Op::Unlink {
                    path: self.some_file().0,
                },
                44..=48 => Op::Link {
                    from: self.some_file().0,
                    to: self.fresh_path(false),
                },
                49..=50 => {
                    let target = match self.rng.below(3) {
                        0 => self.rng.pick(&FILE_NAMES).to_string(),
                        1 => format!("../{}", self.rng.pick(&FILE_NAMES)),
                        _ => self.fresh_path(false),
                    };
                    Op::Symlink {
                        target,
                        path: self.fresh_path(false),
                    }
                }
                51..=53 => Op::Mkdir {
                    path: self.fresh_path(true),
                },
                54..=57 => Op::Rmdir {
                    path: self.some_dir(),
                },
                58..=60 => {
                    let path = if self.rng.chance(80) {
                        self.some_file().0
                    } else {
                        self.some_dir()
                    };
                    Op::Chmod {
                        path,
                        mode: *self
                            .rng
                            .pick(&[0o644, 0o600, 0o755, 0o400, 0o000, 0o4755, 0o2644, 0o1777]),
                    }
                }
                61..=63 => {
                    let path = if self.rng.chance(75) {
                        self.some_file().0
                    } else {
                        self.some_dir()
                    };
                    Op::Fsync { path }
                }
                64..=71 => {
                    let slot = self.rng.below(SLOTS as u64) as usize;
                    let create = self.rng.chance(30);
                    let path = if create {
                        self.fresh_path_or_existing_file()
                    } else {
                        self.some_file().0
                    };
                    Op::Open { slot, path, create }
                }
                72..=75 if !open.is_empty() => Op::Close {
                    slot: *self.rng.pick(&open),
                },
                76..=89 if !open.is_empty() => {
                    let slot = *self.rng.pick(&open);
                    let size = self.rng.below(MAX_END / 4);
                    let (off, len) = self.write_span(size);
                    Op::HWrite {
                        slot,
                        off,
                        len,
                        seed: self.rng.next(),
                    }
                }
                90..=93 if !open.is_empty() => {
                    let slot = *self.rng.pick(&open);
                    let size = self.rng.below(MAX_END / 4);
                    Op::HTruncate {
                        slot,
                        size: self.new_size(size),
                    }
                }
                94..=95 if !open.is_empty() => Op::HFsync {
                    slot: *self.rng.pick(&open),
                },
                96 if !open.is_empty() => {
                    let slot = *self.rng.pick(&open);
                    let mode = *self.rng.pick(&[0, 0x01, 0x03, 0x10, 0x11]);
                    let size = self.rng.below(MAX_END / 4);
                    let (off, len) = self.write_span(size);
                    Op::HFallocate {
                        slot,
                        mode,
                        off,
                        len: len as u64,
                    }
                }
                97..=99 if !open.is_empty() => {
                    let slot = *self.rng.pick(&open);
                    let size = self.rng.below(MAX_END / 4);
                    let (off, len) = self.write_span(size);
                    Op::HRead { slot, off, len }
                }
                _ => continue,
            };
            return op;
        }
    }

    fn fresh_path_or_existing_file(&mut self) -> String {
        if self.rng.chance(25) {
            self.some_file().0
        } else {
            self.fresh_path(false)
        }
    }
}

// ---------------------------------------------------------------------------
// Running, replaying, minimizing

struct Failure {
    step: usize,
    op: Op,
    what: String,
}

fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Every this many steps the check also reads with O_DIRECT.
const DIRECT_EVERY: usize = 4;

fn step(r: &mut Runner, i: usize, op: &Op) -> Result<(), String> {
    guarded(|| r.apply(op)).map_err(|e| format!("operation: {e}"))?;
    guarded(|| r.check(i % DIRECT_EVERY == DIRECT_EVERY - 1))
        .map_err(|e| format!("after the operation the trees differ: {e}"))
}

/// Generates and runs `steps` operations for `seed`; returns all operations
/// run up to and including a failing one.
fn run_seed(seed: u64, steps: usize, at: &mut usize) -> (Vec<Op>, Option<Failure>) {
    let mut rng = Rng::new(seed);
    let mut r = Runner::new();
    r.setup();
    let mut ops = Vec::new();
    for i in 0..=steps {
        *at = i;
        let op = if i == steps || i % REMOUNT_EVERY == REMOUNT_EVERY - 1 {
            Op::Remount
        } else {
            let slots: Vec<bool> = r.slots.iter().map(Option::is_some).collect();
            let inv = inventory(&r.native_root());
            Gen { rng: &mut rng, inv }.op(&slots)
        };
        ops.push(op.clone());
        if let Err(what) = step(&mut r, i, &op) {
            return (ops, Some(Failure { step: i, op, what }));
        }
    }
    eprintln!(
        "model: seed {seed:#x} done; (ok, err) per operation: {:?}",
        r.stats
    );
    (ops, None)
}

/// Replays fixed operations on fresh trees; the first failure, if any.
fn replay(ops: &[Op]) -> Option<Failure> {
    // A replay that cannot even start counts as not failing.
    catch_unwind(AssertUnwindSafe(|| replay_inner(ops))).unwrap_or(None)
}

fn replay_inner(ops: &[Op]) -> Option<Failure> {
    let mut r = Runner::new();
    r.setup();
    for (i, op) in ops.iter().enumerate() {
        if let Err(what) = step(&mut r, i, op) {
            return Some(Failure {
                step: i,
                op: op.clone(),
                what,
            });
        }
    }
    None
}

/// Delta-debugging light: drops chunks of operations while the sequence still
/// fails, within a budget of replays.
fn shrink(mut ops: Vec<Op>) -> (Vec<Op>, Option<Failure>, usize) {
    let mut budget = SHRINK_BUDGET;
    let Some(mut last) = replay(&ops) else {
        return (ops, None, 1);
    };
    ops.truncate(last.step + 1);
    let mut chunk = (ops.len() / 2).max(1);
    loop {
        let mut progress = false;
        let mut start = 0;
        while start < ops.len() && budget > 0 {
            let end = (start + chunk).min(ops.len());
            // Keep the failing (last) operation itself.
            if end == ops.len() && start == 0 {
                start = end;
                continue;
            }
            let mut trial: Vec<Op> = ops[..start].to_vec();
            trial.extend_from_slice(&ops[end..]);
            budget -= 1;
            if let Some(f) = replay(&trial) {
                trial.truncate(f.step + 1);
                ops = trial;
                last = f;
                progress = true;
            } else {
                start = end;
            }
        }
        if budget == 0 || (chunk == 1 && !progress) {
            break;
        }
        if !progress {
            chunk = (chunk / 2).max(1);
        }
    }
    (ops, Some(last), SHRINK_BUDGET - budget + 1)
}

fn listing(ops: &[Op]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("  {i:4}: {op:?}\n"))
        .collect()
}

fn report(seed: u64, ops: Vec<Op>, f: Failure) -> String {
    let mut msg = format!(
        "model test failed: seed {seed:#x} (rerun with PHIVAULT_MODEL_SEED={seed:#x}), step {} ({} operations run), \
         operation {:?}\n  {}\n",
        f.step,
        ops.len(),
        f.op,
        f.what
    );
    let shrink_wanted = std::env::var("PHIVAULT_MODEL_SHRINK")
        .map(|v| v != "0")
        .unwrap_or(true);
    if !shrink_wanted {
        msg.push_str(&format!("operations:\n{}", listing(&ops)));
        return msg;
    }
    let (small, last, replays) = shrink(ops.clone());
    match last {
        None => msg.push_str(&format!(
            "NOTE: replaying the same {} operations on fresh trees did NOT fail; full sequence:\n{}",
            ops.len(),
            listing(&ops)
        )),
        Some(l) => msg.push_str(&format!(
            "minimized ({replays} replays) to {} operations, failing at the last one:\n  {}\n{}",
            small.len(),
            l.what,
            listing(&small)
        )),
    }
    msg
}

fn seeds() -> Vec<u64> {
    match std::env::var("PHIVAULT_MODEL_SEED") {
        Ok(s) if s == "random" => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            vec![t ^ (std::process::id() as u64) << 32]
        }
        Ok(s) => {
            let s = s.trim();
            let v = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            vec![v.unwrap_or_else(|_| panic!("PHIVAULT_MODEL_SEED={s} is not a number"))]
        }
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

#[test]
fn random_ops_match_native_filesystem() {
    common::require_fuse();
    let steps: usize = std::env::var("PHIVAULT_MODEL_STEPS")
        .map(|s| s.parse().expect("PHIVAULT_MODEL_STEPS must be a number"))
        .unwrap_or(DEFAULT_STEPS);
    let seeds = seeds();
    // Seeds run in parallel, each on its own store and mount.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                s.spawn(move || {
                    eprintln!("model: seed {seed:#x}, {steps} steps");
                    let mut at = 0;
                    match guarded(|| Ok(run_seed(seed, steps, &mut at))) {
                        Ok((_, None)) => None,
                        Ok((ops, Some(f))) => Some(report(seed, ops, f)),
                        Err(e) => Some(format!(
                            "model test failed: seed {seed:#x} (rerun with PHIVAULT_MODEL_SEED={seed:#x}), \
                             step {at}: outside an operation (setup, generation or teardown): {e}"
                        )),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some("a seed thread panicked".into()))
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The generator itself must produce every kind of operation, or the model
/// test silently stops covering something.
#[test]
fn generator_covers_every_operation() {
    let native = tempfile::Builder::new()
        .prefix("phivault-model-gen-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = native.path();
    fs::create_dir_all(root.join("x/y")).unwrap();
    fs::write(root.join("a"), vec![1u8; 100_000]).unwrap();
    fs::write(root.join("x/b"), b"b").unwrap();
    let mut rng = Rng::new(1);
    let mut seen = BTreeSet::new();
    let mut beyond_eof = false;
    let mut straddle = false;
    for i in 0..5000 {
        let slots: Vec<bool> = (0..SLOTS).map(|s| (i + s) % 3 != 0).collect();
        let op = Gen {
            rng: &mut rng,
            inv: inventory(root),
        }
        .op(&slots);
        if let Op::Write { off, len, path, .. } = &op {
            if path == "a" && *off > 100_000 + BS {
                beyond_eof = true;
            }
            if off / BS != (off + *len as u64 - 1) / BS {
                straddle = true;
            }
            assert!(
                off + *len as u64 <= MAX_END + 1,
                "write past the 2 MiB cap: {op:?}"
            );
        }
        let name = format!("{op:?}");
        seen.insert(name.split([' ', '{']).next().unwrap().to_string());
    }
    for want in [
        "Create",
        "Write",
        "Truncate",
        "Rename",
        "Rename2",
        "Unlink",
        "Link",
        "Symlink",
        "Mkdir",
        "Rmdir",
        "Chmod",
        "Fsync",
        "Open",
        "Close",
        "HWrite",
        "HTruncate",
        "HFsync",
        "HFallocate",
        "HRead",
        "Append",
    ] {
        assert!(
            seen.contains(want),
            "generator never produced {want}: {seen:?}"
        );
    }
    assert!(beyond_eof, "no write far beyond end of file");
    assert!(straddle, "no write across a 64 KiB block boundary");
}
