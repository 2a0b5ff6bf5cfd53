//! The path of a node as it is now (or was at an instant), for the audit
//! trail: its names walked up to the root through the catalog. The paths of
//! directories are kept until a directory is renamed or removed, so that an
//! open costs one entry lookup and one name decryption.
//!
//! Never fails for a node that has no name: it names what it can instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Result, Vault};
use crate::catalog::{Catalog, Ino, ROOT_INO};

/// Directory paths kept at most; the cache starts over when full.
const MAX_DIRS: usize = 16_384;
/// Deeper than any path the kernel can hand us (PATH_MAX / 2): a loop.
const MAX_DEPTH: usize = 2048;

/// The paths of directories, valid while no directory has been renamed or
/// removed since they were read (`epoch`).
#[derive(Default)]
pub(super) struct DirPaths {
    epoch: AtomicU64,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    epoch: u64,
    paths: HashMap<Ino, Vec<u8>>,
}

impl DirPaths {
    /// A directory was renamed or removed: every kept path may be wrong.
    /// Call it after the change is in the catalog, so a path read before
    /// it is kept under an epoch that no longer holds.
    pub(super) fn dirs_changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn get(&self, dir: Ino, epoch: u64) -> Option<Vec<u8>> {
        let kept = self.kept.lock();
        (kept.epoch == epoch)
            .then(|| kept.paths.get(&dir).cloned())
            .flatten()
    }

    fn put(&self, dir: Ino, path: &[u8], epoch: u64) {
        let mut kept = self.kept.lock();
        if epoch < kept.epoch {
            return;
        }
        if epoch > kept.epoch || kept.paths.len() >= MAX_DIRS {
            kept.paths.clear();
            kept.epoch = epoch;
        }
        kept.paths.insert(dir, path.to_vec());
    }
}

/// Where a walk up the tree reads names: the live entries, or those of an
/// instant.
#[derive(Clone, Copy)]
enum When {
    Now,
    At(i64),
}

impl Vault {
    /// The path of `ino` from the mount's root, as it is now ("/" for the
    /// root): any one live name of a file with several. A node without a
    /// name any more (an unlinked open file) gets its last name if its
    /// directory still has one, else "<deleted>/INO".
    pub fn path_of(&self, ino: Ino) -> Result<Vec<u8>> {
        if ino == ROOT_INO {
            return Ok(b"/".to_vec());
        }
        let epoch = self.paths.epoch();
        if let Some(p) = self.paths.get(ino, epoch) {
            return Ok(p);
        }
        let cat = self.catalog_to_read()?;
        if let Some(p) = self.walk_up(&cat, ino, When::Now, epoch)? {
            return Ok(p);
        }
        // No live name: the last one it had, in a directory that is alive.
        let last = cat.entries_of_ino(ino)?.pop();
        if let Some(e) = last {
            if let Some(mut p) = self.walk_up(&cat, e.parent, When::Now, epoch)? {
                let name = self.open_name(e.parent, &e.sealed_name)?;
                join(&mut p, &name);
                return Ok(p);
            }
        }
        Ok(deleted(ino))
    }

    /// The path `ino` had at instant `at` (a node of `.snapshots`), or
    /// "<deleted>/INO" if it had none then.
    pub fn path_at(&self, ino: Ino, at: i64) -> Result<Vec<u8>> {
        if ino == ROOT_INO {
            return Ok(b"/".to_vec());
        }
        let cat = self.catalog_to_read()?;
        Ok(self
            .walk_up(&cat, ino, When::At(at), 0)?
            .unwrap_or_else(|| deleted(ino)))
    }

    /// The path of entry `name` of directory `parent`, whether or not it
    /// exists (a refused create has a path too).
    pub fn entry_path(&self, parent: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let mut p = self.path_of(parent)?;
        join(&mut p, name);
        Ok(p)
    }

    /// The node that entry `name` of `parent` names now, if any: for the
    /// record of a removal or a rename, looked up before it.
    pub fn entry_ino(&self, parent: Ino, name: &[u8]) -> Result<Option<Ino>> {
        let Ok(hash) = self.name_hash(parent, name) else {
            return Ok(None);
        };
        Ok(self
            .catalog_to_read()?
            .lookup(parent, &hash)?
            .map(|(i, _)| i))
    }

    /// Walks from `ino` up to the root; None if some node on the way has
    /// no name (then). Keeps the directories' paths found on the way when
    /// reading the live tree.
    fn walk_up(&self, cat: &Catalog, ino: Ino, when: When, epoch: u64) -> Result<Option<Vec<u8>>> {
        // (node, its name), from `ino` upwards.
        let mut names: Vec<(Ino, Vec<u8>)> = Vec::new();
        let mut cur = ino;
        let mut base = None;
        for _ in 0..MAX_DEPTH {
            if cur == ROOT_INO {
                base = Some(b"/".to_vec());
                break;
            }
            if let When::Now = when {
                if let Some(p) = self.paths.get(cur, epoch) {
                    base = Some(p);
                    break;
                }
            }
            let Some((parent, sealed)) = entry_of(cat, cur, when)? else {
                return Ok(None);
            };
            names.push((cur, self.open_name(parent, &sealed)?));
            cur = parent;
        }
        let Some(mut path) = base else {
            return Ok(None);
        };
        for (i, (node, name)) in names.iter().rev().enumerate() {
            join(&mut path, name);
            // All but `ino` itself are directories.
            if matches!(when, When::Now) && i + 1 < names.len() {
                self.paths.put(*node, &path, epoch);
            }
        }
        Ok(Some(path))
    }

    /// A directory was renamed or removed (see `DirPaths`).
    pub(super) fn dirs_changed(&self) {
        self.paths.dirs_changed();
    }
}

/// One (parent, sealed name) of `ino`, live or at an instant.
fn entry_of(cat: &Catalog, ino: Ino, when: When) -> Result<Option<(Ino, Vec<u8>)>> {
    Ok(match when {
        When::Now => cat.entry_of(ino)?,
        When::At(at) => cat
            .entries_of_ino(ino)?
            .into_iter()
            .find(|e| e.from <= at && e.until.is_none_or(|u| u > at))
            .map(|e| (e.parent, e.sealed_name)),
    })
}

fn join(path: &mut Vec<u8>, name: &[u8]) {
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

fn deleted(ino: Ino) -> Vec<u8> {
    format!("<deleted>/{ino}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_support::open_vault;
    use crate::vault::{Caller, Kind, NodeSpec, RenameMode};

    fn mkdir(v: &Vault, parent: Ino, name: &[u8]) -> Ino {
        let spec = NodeSpec {
            kind: Kind::Dir,
            mode: 0o755,
            umask: 0,
            rdev: 0,
        };
        v.create_node(&Caller::root(), parent, name, spec)
            .unwrap()
            .ino
    }

    fn file(v: &Vault, parent: Ino, name: &[u8]) -> Ino {
        let spec = NodeSpec {
            kind: Kind::File,
            mode: 0o644,
            umask: 0,
            rdev: 0,
        };
        v.create_node(&Caller::root(), parent, name, spec)
            .unwrap()
            .ino
    }

    #[test]
    fn paths_follow_renames_of_directories_above() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let a = mkdir(&v, ROOT_INO, b"a");
        let b = mkdir(&v, a, b"b");
        let f = file(&v, b, b"f.txt");
        assert_eq!(v.path_of(ROOT_INO).unwrap(), b"/");
        assert_eq!(v.path_of(f).unwrap(), b"/a/b/f.txt");
        assert_eq!(v.path_of(b).unwrap(), b"/a/b");
        let root = Caller::root();
        v.rename(&root, ROOT_INO, b"a", ROOT_INO, b"z", RenameMode::Replace)
            .unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/z/b/f.txt");
        v.rename(&root, b, b"f.txt", a, b"g.txt", RenameMode::Replace)
            .unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/z/g.txt");
        assert_eq!(v.entry_path(b, b"new").unwrap(), b"/z/b/new");
        assert_eq!(v.entry_ino(a, b"g.txt").unwrap(), Some(f));
        assert_eq!(v.entry_ino(a, b"nope").unwrap(), None);
    }

    #[test]
    fn an_unlinked_file_keeps_its_last_name_while_its_directory_lives() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let a = mkdir(&v, ROOT_INO, b"a");
        let f = file(&v, a, b"f");
        let root = Caller::root();
        v.open_file_as(f, false, None).unwrap();
        v.unlink(&root, a, b"f").unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/a/f");
        let g = file(&v, a, b"g");
        v.unlink(&root, a, b"g").unwrap();
        v.rmdir(&root, ROOT_INO, b"a").unwrap();
        assert_eq!(v.path_of(g).unwrap(), format!("<deleted>/{g}").as_bytes());
        v.release_file(f).unwrap();
    }

    /// What naming a file three directories down costs (run with
    /// --ignored --nocapture).
    #[test]
    #[ignore]
    fn measure_path_of() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let a = mkdir(&v, ROOT_INO, b"a");
        let b = mkdir(&v, a, b"b");
        let c = mkdir(&v, b, b"c");
        let f = file(&v, c, b"f.txt");
        let n = 100_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(v.path_of(f).unwrap());
        }
        println!("path_of: {:?} each", t.elapsed() / n);
    }
}
