//! A directory as a place: another disk, a NAS mount, a USB drive.
//!
//! Objects live at `ROOT/<key>` (folders 0700, files 0600). A put writes
//! `ROOT/tmp/<random>`, fsyncs it and publishes it under its name without
//! ever replacing what is there: `renameat2(RENAME_NOREPLACE)`, or where the
//! filesystem refuses that (NFS, exFAT, some FUSE mounts) `link()` then
//! `unlink()`, or where it refuses links too, `O_CREAT|O_EXCL` on the final
//! name and the bytes written in place. Only that last way can leave a torn
//! object behind a crash; since a name fixes the size of its bytes, an
//! object of the wrong size proves itself torn and is the one thing a put
//! replaces. Leftovers in `ROOT/tmp/` from a crash are removed at open.
//!
//! One `DirPlace` per root at a time is the intended use; a second one
//! opening the same root leaves the first one's in-flight files alone (they
//! are `flock`ed).

use std::ffi::CString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use super::{NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome};

/// A place in a local directory.
pub struct DirPlace {
    root: PathBuf,
    /// The `Strategy` in use, as a u8: it only ever moves down the list,
    /// the first time the filesystem refuses one.
    strategy: AtomicU8,
}

/// How a put publishes an object under its name without replacing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Strategy {
    /// Temp file, `renameat2(RENAME_NOREPLACE)`: atomic, never torn.
    RenameNoReplace = 0,
    /// Temp file, `link()` to the name (fails if it exists), `unlink()`.
    Link = 1,
    /// `O_CREAT|O_EXCL` on the name, bytes written in place: torn by a crash.
    CreateExclusive = 2,
}

impl Strategy {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Strategy::RenameNoReplace,
            1 => Strategy::Link,
            _ => Strategy::CreateExclusive,
        }
    }

    /// Whether `e` says the filesystem cannot do this at all.
    fn refused_by(self, e: &io::Error) -> bool {
        let codes: &[i32] = match self {
            Strategy::RenameNoReplace => &[libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP],
            Strategy::Link => &[libc::EPERM, libc::ENOSYS, libc::EOPNOTSUPP],
            Strategy::CreateExclusive => &[],
        };
        e.raw_os_error().is_some_and(|c| codes.contains(&c))
    }
}

/// What is already at an object's path.
enum Existing {
    Absent,
    /// A file of the object's size: the object (its name fixes its bytes).
    Same,
    /// Anything else: a torn object, to be replaced.
    Wrong,
}

trait IoAt<T> {
    fn at(self, path: &Path) -> Result<T, PlaceError>;
}

impl<T> IoAt<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, PlaceError> {
        self.map_err(|source| PlaceError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

const TMP: &str = "tmp";

impl DirPlace {
    /// Makes the directory `root` (0700, with its parents) if it is missing,
    /// and opens it as a place: for adding a remote, never for using one.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, PlaceError> {
        let root = root.into();
        if !root.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .at(&root)?;
        }
        Self::open(root)
    }

    /// Opens the existing directory `root` as a place; fails if it is
    /// missing (a drive that is not mounted must not be filled in the
    /// empty folder it is mounted on), not a directory, or cannot be
    /// written. Removes what a crash left in `ROOT/tmp/`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, PlaceError> {
        let place = Self::open_read_only(root)?;
        let tmp = place.root.join(TMP);
        place.make_dir(&tmp).map_err(|e| place.not_writable(e))?;
        place.remove_leftovers(&tmp)?;
        place.probe().map_err(|e| place.not_writable(e))?;
        Ok(place)
    }

    /// Opens the existing directory `root` to read it only (a recovery
    /// from a drive mounted read-only): writes nothing, not even `tmp/`.
    pub fn open_read_only(root: impl Into<PathBuf>) -> Result<Self, PlaceError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(PlaceError::Io {
                    path: root,
                    source: io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "not a directory: a directory remote needs a directory",
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PlaceError::Io {
                    path: root,
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "no such directory: is the drive or share that holds it mounted?",
                    ),
                })
            }
            Err(e) => return Err(e).at(&root),
        }
        Ok(DirPlace {
            root,
            strategy: AtomicU8::new(Strategy::RenameNoReplace as u8),
        })
    }

    /// The directory this place is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `name` lives.
    pub fn path_of(&self, name: &ObjectName) -> PathBuf {
        self.root.join(name.key())
    }

    fn not_writable(&self, e: PlaceError) -> PlaceError {
        match e {
            PlaceError::Io { path, source } => PlaceError::Io {
                path: self.root.clone(),
                source: io::Error::new(
                    source.kind(),
                    format!(
                        "cannot write in this directory ({}: {source}): a directory remote \
                         must be writable",
                        path.display()
                    ),
                ),
            },
            e => e,
        }
    }

    fn strategy(&self) -> Strategy {
        Strategy::from_u8(self.strategy.load(Ordering::Relaxed))
    }

    /// Moves to the next strategy after `from` was refused (once, whichever
    /// thread sees it first).
    fn fall_back(&self, from: Strategy, e: &io::Error) {
        let to = from as u8 + 1;
        if self
            .strategy
            .compare_exchange(from as u8, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                place = %self.describe(),
                "the filesystem refuses {from:?} ({e}); using {:?}",
                Strategy::from_u8(to)
            );
        }
    }

    #[cfg(test)]
    fn force_strategy(&self, s: Strategy) {
        self.strategy.store(s as u8, Ordering::Relaxed);
    }

    /// Creates `dir` (0700) under the root if missing, and makes its entry
    /// durable.
    fn make_dir(&self, dir: &Path) -> Result<(), PlaceError> {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => sync_dir(dir.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).at(dir),
        }
    }

    /// Makes the folders an object's path needs.
    fn make_parents(&self, name: &ObjectName) -> Result<(), PlaceError> {
        let folder = self.root.join(name.kind.folder());
        self.make_dir(&folder)?;
        if name.kind == ObjectKind::Data {
            self.make_dir(&folder.join(&name.hex()[..2]))?;
        }
        Ok(())
    }

    /// Removes files in `tmp` that no live put holds: a crash's leftovers.
    fn remove_leftovers(&self, tmp: &Path) -> Result<(), PlaceError> {
        for entry in fs::read_dir(tmp).at(tmp)? {
            let path = entry.at(tmp)?.path();
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&path),
            };
            if !f.metadata().at(&path)?.is_file() {
                tracing::warn!("{}: not a file of ours, left alone", path.display());
                continue;
            }
            if try_lock(&f).is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock) {
                continue; // a put in flight in another process
            }
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!("{}: removed, left by a crash", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        Ok(())
    }

    /// Creates and removes a file in `tmp`, to fail at open, not at the
    /// first put, when the place is read-only.
    fn probe(&self) -> Result<(), PlaceError> {
        let (path, f) = self.new_tmp()?;
        drop(f);
        fs::remove_file(&path).at(&path)
    }

    /// A new, empty, locked file in `ROOT/tmp/`.
    fn new_tmp(&self) -> Result<(PathBuf, File), PlaceError> {
        let path = self
            .root
            .join(TMP)
            .join(format!("{:016x}", rand::random::<u64>()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        // Keeps another opener's leftover sweep off it; a filesystem without
        // locks only loses that protection.
        let _ = try_lock(&f);
        Ok((path, f))
    }

    /// `bytes` in a new temp file, fsynced; on failure the file is removed.
    fn write_tmp(&self, bytes: &[u8]) -> Result<(PathBuf, File), PlaceError> {
        let (path, mut f) = self.new_tmp()?;
        match f.write_all(bytes).and_then(|()| f.sync_all()) {
            Ok(()) => Ok((path, f)),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e).at(&path)
            }
        }
    }

    fn existing(&self, path: &Path, len: usize) -> Result<Existing, PlaceError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() && m.len() == len as u64 => Ok(Existing::Same),
            Ok(_) => Ok(Existing::Wrong),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Absent),
            Err(e) => Err(e).at(path),
        }
    }

    /// Writes `bytes` at `path`, in place, only if nothing is there; on a
    /// failure after creating it, removes what it wrote.
    fn create_exclusive(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .inspect_err(|_| {
                // Only if the name is still this file (a concurrent put may
                // have replaced it, seeing it short, with the whole object).
                let ours = f.metadata().ok().map(|m| (m.dev(), m.ino()));
                let there = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
                if ours.is_some() && ours == there {
                    let _ = fs::remove_file(path);
                }
            })
    }

    /// Publishes the temp file `tmp` as `path` unless `path` exists.
    fn publish(tmp: &Path, path: &Path, s: Strategy) -> io::Result<()> {
        match s {
            Strategy::RenameNoReplace => rename_noreplace(tmp, path),
            Strategy::Link => fs::hard_link(tmp, path),
            Strategy::CreateExclusive => unreachable!("no temp file in that strategy"),
        }
    }

    /// `AlreadyThere`, once what is there is durable: the put that created
    /// it may not have synced it yet, and the caller takes the answer for
    /// "stored".
    fn already_there(&self, path: &Path) -> Result<PutOutcome, PlaceError> {
        if self.strategy() == Strategy::CreateExclusive {
            // Written in place: its bytes may still be only in the cache.
            File::open(path).and_then(|f| f.sync_all()).at(path)?;
        }
        sync_dir(path.parent().unwrap_or(&self.root))?;
        Ok(PutOutcome::AlreadyThere)
    }

    /// Replaces a torn object by the whole one, atomically (plain rename).
    fn replace_torn(&self, name: &ObjectName, bytes: &[u8]) -> Result<PutOutcome, PlaceError> {
        let path = self.path_of(name);
        tracing::warn!(
            "{}: wrong size for its name, torn: replacing it",
            path.display()
        );
        let (tmp, _f) = self.write_tmp(bytes)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e).at(&path);
        }
        sync_dir(path.parent().unwrap_or(&self.root))?;
        Ok(PutOutcome::Created)
    }
}

impl ObjectPlace for DirPlace {
    fn put_new(&self, object: NamedBytes<'_>, o: &PutOptions) -> Result<PutOutcome, PlaceError> {
        let (name, bytes) = (object.name(), object.bytes());
        if o.retain_until.is_some() {
            return Err(PlaceError::Refused {
                place: self.describe(),
                status: 0,
                message: "a directory cannot lock an object against deletion: use an S3 \
                          remote with Object Lock for that"
                    .to_string(),
            });
        }
        let path = self.path_of(name);
        let dir = path.parent().unwrap_or(&self.root);
        // A rerun after a kill mostly finds its objects there: no write then.
        match self.existing(&path, bytes.len())? {
            Existing::Same => return self.already_there(&path),
            Existing::Wrong => return self.replace_torn(name, bytes),
            Existing::Absent => {}
        }
        self.make_parents(name)?;
        // Bounded: each turn either falls back a strategy or met an object
        // deleted between the refusal and the look.
        for _ in 0..8 {
            let s = self.strategy();
            let placed = match s {
                Strategy::CreateExclusive => Self::create_exclusive(&path, bytes),
                s => {
                    let (tmp, _locked) = self.write_tmp(bytes)?;
                    let r = Self::publish(&tmp, &path, s);
                    if s != Strategy::RenameNoReplace || r.is_err() {
                        let _ = fs::remove_file(&tmp);
                    }
                    r
                }
            };
            match placed {
                Ok(()) => {
                    sync_dir(dir)?;
                    return Ok(PutOutcome::Created);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match self.existing(&path, bytes.len())? {
                        Existing::Same => return self.already_there(&path),
                        Existing::Wrong => return self.replace_torn(name, bytes),
                        Existing::Absent => continue,
                    }
                }
                Err(e) if s.refused_by(&e) => self.fall_back(s, &e),
                Err(e) => return Err(e).at(&path),
            }
        }
        Err(io::Error::other(
            "the object keeps appearing and disappearing",
        ))
        .at(&path)
    }

    fn get(&self, name: &ObjectName) -> Result<Vec<u8>, PlaceError> {
        let path = self.path_of(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PlaceError::NotFound(*name))
            }
            Err(e) => return Err(e).at(&path),
        };
        if !name.matches(&bytes) {
            return Err(PlaceError::Damaged {
                name: *name,
                what: "the stored bytes do not hash to the name",
            });
        }
        Ok(bytes)
    }

    fn get_range(&self, name: &ObjectName, r: std::ops::Range<u64>) -> Result<Vec<u8>, PlaceError> {
        if r.start > r.end {
            return Err(PlaceError::Refused {
                place: self.describe(),
                status: 0,
                message: format!("{name}: range {}..{} runs backward", r.start, r.end),
            });
        }
        let path = self.path_of(name);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PlaceError::NotFound(*name))
            }
            Err(e) => return Err(e).at(&path),
        };
        let short = PlaceError::Damaged {
            name: *name,
            what: "shorter than the range read",
        };
        if f.metadata().at(&path)?.len() < r.end {
            return Err(short);
        }
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        match f.read_exact_at(&mut buf, r.start) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short),
            Err(e) => Err(e).at(&path),
        }
    }

    fn size(&self, name: &ObjectName) -> Result<Option<u64>, PlaceError> {
        let path = self.path_of(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>, PlaceError> {
        let folder = self.root.join(kind.folder());
        let mut out = Vec::new();
        let dirs = match kind {
            ObjectKind::Data => read_dir_or_empty(&folder)?
                .into_iter()
                .filter_map(|(p, t)| {
                    if !t.is_dir() {
                        tracing::warn!("{}: not a folder of objects, skipped", p.display());
                    }
                    t.is_dir().then_some(p)
                })
                .collect(),
            _ => vec![folder],
        };
        for dir in dirs {
            for (path, file_type) in read_dir_or_empty(&dir)? {
                let key = path.strip_prefix(&self.root).unwrap_or(&path);
                let name = key.to_str().and_then(|k| ObjectName::from_key(k).ok());
                match name {
                    Some(name) if file_type.is_file() => {
                        out.push((name, fs::metadata(&path).at(&path)?.len()))
                    }
                    _ => tracing::warn!("{}: not an object, skipped", path.display()),
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn delete(&self, name: &ObjectName) -> Result<(), PlaceError> {
        let path = self.path_of(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at(&path),
        }
    }

    fn retain_until(&self, name: &ObjectName) -> Result<Option<jiff::Timestamp>, PlaceError> {
        match self.size(name)? {
            Some(_) => Ok(None),
            None => Err(PlaceError::NotFound(*name)),
        }
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

/// The entries of `dir` with their types; none if `dir` does not exist.
fn read_dir_or_empty(dir: &Path) -> Result<Vec<(PathBuf, fs::FileType)>, PlaceError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(dir),
    };
    entries
        .map(|e| {
            let e = e.at(dir)?;
            Ok((e.path(), e.file_type().at(&e.path())?))
        })
        .collect()
}

fn sync_dir(dir: &Path) -> Result<(), PlaceError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

fn try_lock(f: &File) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    fn obj(kind: ObjectKind, len: usize, seed: u8) -> (ObjectName, Vec<u8>) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        (ObjectName::of(kind, &bytes), bytes)
    }

    fn put(p: &DirPlace, n: &ObjectName, b: &[u8]) -> Result<PutOutcome, PlaceError> {
        p.put_new(NamedBytes::new(n.kind, b), &PutOptions::default())
    }

    fn tmp_files(p: &DirPlace) -> Vec<PathBuf> {
        fs::read_dir(p.root().join(TMP))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    const ALL: [Strategy; 3] = [
        Strategy::RenameNoReplace,
        Strategy::Link,
        Strategy::CreateExclusive,
    ];

    #[test]
    fn dir_place_round_trip_in_every_strategy() {
        for s in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = DirPlace::create(d.path().join("remote")).unwrap();
            p.force_strategy(s);
            let objs: Vec<_> = ObjectKind::ALL
                .iter()
                .enumerate()
                .map(|(i, &k)| obj(k, 1000 + i, i as u8))
                .collect();
            for (n, b) in &objs {
                assert_eq!(put(&p, n, b).unwrap(), PutOutcome::Created, "{s:?}");
                assert_eq!(put(&p, n, b).unwrap(), PutOutcome::AlreadyThere, "{s:?}");
                assert_eq!(&p.get(n).unwrap(), b);
                assert_eq!(p.get_range(n, 10..20).unwrap(), b[10..20]);
                assert_eq!(p.size(n).unwrap(), Some(b.len() as u64));
                assert_eq!(p.retain_until(n).unwrap(), None);
                assert_eq!(p.list(n.kind).unwrap(), vec![(*n, b.len() as u64)]);
                assert!(p.path_of(n).ends_with(n.key()));
            }
            assert_eq!(p.strategy(), s, "fell back on a filesystem that can do it");
            assert!(tmp_files(&p).is_empty(), "{s:?} left temp files");
            for (n, _) in &objs {
                p.delete(n).unwrap();
                p.delete(n).unwrap();
                assert!(matches!(p.get(n), Err(PlaceError::NotFound(_))));
                assert!(matches!(p.retain_until(n), Err(PlaceError::NotFound(_))));
                assert_eq!(p.size(n).unwrap(), None);
                assert!(p.list(n.kind).unwrap().is_empty());
            }
        }
    }

    #[test]
    fn list_is_sorted_and_skips_what_is_not_an_object() {
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        let mut names: Vec<_> = (0..20u8)
            .map(|i| {
                let (n, b) = obj(ObjectKind::Data, 100, i);
                put(&p, &n, &b).unwrap();
                (n, 100)
            })
            .collect();
        names.sort();
        let (n0, _) = names[0];
        fs::write(p.root().join("data/zz"), b"stray").unwrap();
        fs::write(
            p.root().join(format!("data/{}/notes.txt", &n0.hex()[..2])),
            b"x",
        )
        .unwrap();
        fs::create_dir(p.root().join("keys")).unwrap();
        fs::write(p.root().join("keys/README"), b"x").unwrap();
        assert_eq!(p.list(ObjectKind::Data).unwrap(), names);
        assert!(p.list(ObjectKind::Keys).unwrap().is_empty());
        assert!(p.list(ObjectKind::Head).unwrap().is_empty());
    }

    #[test]
    fn put_twice_leaves_the_file_alone() {
        for s in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = DirPlace::open(d.path()).unwrap();
            p.force_strategy(s);
            let (n, b) = obj(ObjectKind::Data, 4096, 1);
            put(&p, &n, &b).unwrap();
            let before = fs::metadata(p.path_of(&n)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(put(&p, &n, &b).unwrap(), PutOutcome::AlreadyThere);
            let after = fs::metadata(p.path_of(&n)).unwrap();
            assert_eq!(before.ino(), after.ino(), "{s:?}");
            assert_eq!(
                before.modified().unwrap(),
                after.modified().unwrap(),
                "{s:?}"
            );
            assert_eq!(before.ctime_nsec(), after.ctime_nsec(), "{s:?}");
        }
    }

    #[test]
    fn a_flipped_byte_on_disk_reads_as_damaged() {
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        let (n, b) = obj(ObjectKind::Data, 10_000, 3);
        put(&p, &n, &b).unwrap();
        let path = p.path_of(&n);
        let mut on_disk = fs::read(&path).unwrap();
        on_disk[5000] ^= 0x10;
        fs::write(&path, &on_disk).unwrap();
        let e = p.get(&n).unwrap_err();
        assert!(matches!(e, PlaceError::Damaged { .. }), "{e}");
        assert!(!e.is_transient());
        // Same size: a put takes it for the object (verify finds it, not put).
        assert_eq!(put(&p, &n, &b).unwrap(), PutOutcome::AlreadyThere);
    }

    #[test]
    fn a_range_past_the_end_is_damaged_and_a_backward_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        let (n, b) = obj(ObjectKind::Data, 100, 4);
        put(&p, &n, &b).unwrap();
        assert_eq!(p.get_range(&n, 90..100).unwrap(), b[90..]);
        assert_eq!(p.get_range(&n, 100..100).unwrap(), b"");
        assert!(matches!(
            p.get_range(&n, 90..101),
            Err(PlaceError::Damaged { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let backward = 20..10;
        assert!(matches!(
            p.get_range(&n, backward),
            Err(PlaceError::Refused { .. })
        ));
        let (missing, _) = obj(ObjectKind::Data, 100, 5);
        assert!(matches!(
            p.get_range(&missing, 0..1),
            Err(PlaceError::NotFound(_))
        ));
    }

    #[test]
    fn a_torn_object_is_replaced_by_the_whole_one() {
        for s in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = DirPlace::open(d.path()).unwrap();
            p.force_strategy(s);
            let (n, b) = obj(ObjectKind::Data, 8192, 6);
            let path = p.path_of(&n);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &b[..4096]).unwrap();
            assert_eq!(put(&p, &n, &b).unwrap(), PutOutcome::Created, "{s:?}");
            assert_eq!(p.get(&n).unwrap(), b);
            assert!(tmp_files(&p).is_empty());
        }
    }

    #[test]
    fn concurrent_puts_of_one_object_create_it_once() {
        for s in ALL {
            let d = tempfile::tempdir().unwrap();
            let p = Arc::new(DirPlace::open(d.path()).unwrap());
            p.force_strategy(s);
            let (n, b) = obj(ObjectKind::Data, 1 << 20, 7);
            let b = Arc::new(b);
            let start = Arc::new(Barrier::new(8));
            let outcomes: Vec<PutOutcome> = (0..8)
                .map(|_| {
                    let (p, b, start) = (p.clone(), b.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        put(&p, &n, &b).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            let created = outcomes
                .iter()
                .filter(|o| **o == PutOutcome::Created)
                .count();
            if s == Strategy::CreateExclusive {
                // A put meeting another one's half-written file takes it
                // for torn and writes the whole object again.
                assert!(created >= 1, "{s:?}: {outcomes:?}");
            } else {
                assert_eq!(created, 1, "{s:?}: {outcomes:?}");
            }
            assert_eq!(p.get(&n).unwrap(), *b, "{s:?}");
            assert!(tmp_files(&p).is_empty(), "{s:?}");
        }
    }

    #[test]
    fn crash_leftovers_in_tmp_are_removed_at_open_but_not_a_live_put() {
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        let (n, b) = obj(ObjectKind::Data, 100, 8);
        put(&p, &n, &b).unwrap();
        let leftover = p.root().join(TMP).join("00112233aabbccdd");
        fs::write(&leftover, b"half an object").unwrap();
        let (live, live_file) = p.new_tmp().unwrap();
        drop(p);
        let p = DirPlace::open(d.path()).unwrap();
        assert!(!leftover.exists(), "a crash's leftover survived open");
        assert!(live.exists(), "open removed a file a put holds");
        drop(live_file);
        drop(p);
        let p = DirPlace::open(d.path()).unwrap();
        assert!(tmp_files(&p).is_empty());
        assert_eq!(p.get(&n).unwrap(), b, "an object was touched");
    }

    #[test]
    fn folders_are_0700_and_objects_0600() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b/remote");
        let p = DirPlace::create(&root).unwrap();
        let (n, b) = obj(ObjectKind::Data, 100, 9);
        put(&p, &n, &b).unwrap();
        let (k, kb) = obj(ObjectKind::Keys, 100, 9);
        put(&p, &k, &kb).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        let path = p.path_of(&n);
        for dir in [
            root.clone(),
            root.join(TMP),
            root.join("data"),
            path.parent().unwrap().to_path_buf(),
            root.join("keys"),
        ] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&p.path_of(&k)), 0o600);
    }

    /// A missing root is an unmounted drive until shown otherwise: only
    /// `create` (adding a remote) makes it.
    #[test]
    fn a_missing_root_is_not_made_by_open() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("usb-drive");
        let e = DirPlace::open(&root).err().expect("opened a missing root");
        assert!(e.to_string().contains("mounted"), "{e}");
        assert!(!root.exists(), "open made the root");
        DirPlace::create(&root).unwrap();
        DirPlace::open(&root).unwrap();
    }

    #[test]
    fn a_root_that_is_a_file_is_refused_clearly() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("remote");
        fs::write(&file, b"x").unwrap();
        let e = DirPlace::open(&file)
            .err()
            .expect("opened a file as a place");
        let msg = e.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("not a directory"), "{msg}");
        let under = file.join("sub");
        let e = DirPlace::open(&under).err().expect("opened under a file");
        assert!(e.to_string().contains("remote"), "{e}");
    }

    #[test]
    fn a_directory_cannot_promise_a_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        let (n, b) = obj(ObjectKind::Data, 100, 10);
        let o = PutOptions {
            retain_until: Some(jiff::Timestamp::now()),
        };
        let e = p.put_new(NamedBytes::new(n.kind, &b), &o).unwrap_err();
        assert!(matches!(e, PlaceError::Refused { .. }), "{e}");
        assert_eq!(p.size(&n).unwrap(), None);
    }

    /// A tmpfs of `size`, mounted for one test and unmounted when dropped.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn new(options: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let st = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("{options},mode=0700"),
                    "tmpfs",
                ])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "cannot mount a tmpfs (tests run as root)");
            Tmpfs(dir)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let ok = Command::new("umount")
                .arg(self.0.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
            }
        }
    }

    #[test]
    fn a_full_disk_leaves_no_partial_object_and_a_later_put_works() {
        for s in ALL {
            let fs_ = Tmpfs::new("size=64k");
            let p = DirPlace::create(fs_.0.path().join("remote")).unwrap();
            p.force_strategy(s);
            let (a, ab) = obj(ObjectKind::Data, 40 << 10, 11);
            let (b, bb) = obj(ObjectKind::Data, 40 << 10, 12);
            assert_eq!(put(&p, &a, &ab).unwrap(), PutOutcome::Created);
            let e = put(&p, &b, &bb).unwrap_err();
            match &e {
                PlaceError::Io { path, source } => {
                    assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{s:?}: {e}");
                    assert!(path.starts_with(p.root()), "{e}");
                }
                e => panic!("{s:?}: {e}"),
            }
            assert!(!e.is_transient());
            assert_eq!(p.size(&b).unwrap(), None, "{s:?}: partial object");
            assert!(tmp_files(&p).is_empty(), "{s:?}: partial temp file");
            assert_eq!(p.get(&a).unwrap(), ab);
            p.delete(&a).unwrap();
            // tmpfs counts its blocks per CPU and may see the freed ones a
            // moment late this close to its limit.
            let mut later = put(&p, &b, &bb);
            for _ in 0..20 {
                match &later {
                    Err(PlaceError::Io { source, .. })
                        if source.raw_os_error() == Some(libc::ENOSPC) =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        later = put(&p, &b, &bb);
                    }
                    _ => break,
                }
            }
            assert_eq!(later.unwrap(), PutOutcome::Created, "{s:?}");
            assert_eq!(p.get(&b).unwrap(), bb);
        }
    }

    #[test]
    fn a_read_only_root_is_refused_at_open() {
        let ro = Tmpfs::new("size=64k,ro");
        let e = DirPlace::open(ro.0.path())
            .err()
            .expect("opened a read-only place");
        let msg = e.to_string();
        assert!(msg.contains("must be writable"), "{msg}");
        assert!(msg.contains(&ro.0.path().display().to_string()), "{msg}");
    }

    #[test]
    fn refusals_that_mean_unsupported_are_told_apart() {
        let e = |c| io::Error::from_raw_os_error(c);
        assert!(Strategy::RenameNoReplace.refused_by(&e(libc::EINVAL)));
        assert!(Strategy::RenameNoReplace.refused_by(&e(libc::ENOSYS)));
        assert!(!Strategy::RenameNoReplace.refused_by(&e(libc::EEXIST)));
        assert!(!Strategy::RenameNoReplace.refused_by(&e(libc::ENOSPC)));
        assert!(Strategy::Link.refused_by(&e(libc::EPERM)));
        assert!(!Strategy::Link.refused_by(&e(libc::EEXIST)));
        assert!(!Strategy::CreateExclusive.refused_by(&e(libc::EINVAL)));
        let d = tempfile::tempdir().unwrap();
        let p = DirPlace::open(d.path()).unwrap();
        p.fall_back(Strategy::RenameNoReplace, &e(libc::EINVAL));
        assert_eq!(p.strategy(), Strategy::Link);
        p.fall_back(Strategy::RenameNoReplace, &e(libc::EINVAL));
        assert_eq!(
            p.strategy(),
            Strategy::Link,
            "a stale refusal moved it twice"
        );
        p.fall_back(Strategy::Link, &e(libc::EPERM));
        assert_eq!(p.strategy(), Strategy::CreateExclusive);
    }
}
