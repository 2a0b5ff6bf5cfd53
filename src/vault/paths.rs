//! The path of a node as it is now (or was at an instant), for the audit
//! trail: its names walked up to the root through the catalog. The paths
//! found are kept: a directory's until a directory is renamed or removed,
//! any other node's until it loses a name. An open of a file named before
//! then costs no catalog read at all.
//!
//! Never fails for a node that has no name: it names what it can instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Result, Vault};
use crate::catalog::{Catalog, Ino, ROOT_INO};

/// Paths kept at most; the cache starts over when full.
const MAX_PATHS: usize = 65_536;
/// Deeper than any path the kernel can hand us (PATH_MAX / 2): a loop.
const MAX_DEPTH: usize = 2048;

/// The paths of nodes as they are now. Every change of a name counts in
/// `changes`; a change of a directory also bumps `dirs_epoch`, which drops
/// every kept path, while a change of another node drops only its own.
///
/// A path read from the catalog is kept only if no change at all happened
/// since the read began (`Seen`), so a path read just before a rename is
/// never kept after it.
#[derive(Default)]
pub(super) struct PathCache {
    dirs_epoch: AtomicU64,
    changes: AtomicU64,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    dirs_epoch: u64,
    paths: HashMap<Ino, Vec<u8>>,
}

/// The cache's counters when a walk through the catalog began.
#[derive(Clone, Copy)]
struct Seen {
    dirs_epoch: u64,
    changes: u64,
}

impl PathCache {
    /// A directory was renamed or removed: every kept path may be wrong.
    /// Call it after the change is in the catalog.
    pub(super) fn dirs_changed(&self) {
        self.dirs_epoch.fetch_add(1, Ordering::AcqRel);
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Node `ino` (not a directory) lost a name: unlinked, renamed or
    /// replaced. Call it after the change is in the catalog.
    pub(super) fn node_changed(&self, ino: Ino) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.kept.lock().paths.remove(&ino);
    }

    fn seen(&self) -> Seen {
        Seen {
            dirs_epoch: self.dirs_epoch.load(Ordering::Acquire),
            changes: self.changes.load(Ordering::Acquire),
        }
    }

    fn get(&self, ino: Ino, seen: Seen) -> Option<Vec<u8>> {
        let kept = self.kept.lock();
        (kept.dirs_epoch == seen.dirs_epoch)
            .then(|| kept.paths.get(&ino).cloned())
            .flatten()
    }

    fn put(&self, ino: Ino, path: &[u8], seen: Seen) {
        let mut kept = self.kept.lock();
        // Checked under the lock that `node_changed` removes under.
        if self.changes.load(Ordering::Acquire) != seen.changes || seen.dirs_epoch < kept.dirs_epoch
        {
            return;
        }
        if seen.dirs_epoch > kept.dirs_epoch || kept.paths.len() >= MAX_PATHS {
            kept.paths.clear();
            kept.dirs_epoch = seen.dirs_epoch;
        }
        kept.paths.insert(ino, path.to_vec());
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
        let seen = self.paths.seen();
        if let Some(p) = self.paths.get(ino, seen) {
            return Ok(p);
        }
        let cat = self.catalog_to_read()?;
        if let Some(p) = self.walk_up(&cat, ino, When::Now, seen)? {
            return Ok(p);
        }
        // No live name: the last one it had, in a directory that is alive.
        let last = cat.entries_of_ino(ino)?.pop();
        if let Some(e) = last {
            if let Some(mut p) = self.walk_up(&cat, e.parent, When::Now, seen)? {
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
            .walk_up(&cat, ino, When::At(at), self.paths.seen())?
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
    /// no name (then). Keeps the paths found on the way when reading the
    /// live tree.
    fn walk_up(&self, cat: &Catalog, ino: Ino, when: When, seen: Seen) -> Result<Option<Vec<u8>>> {
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
                if let Some(p) = self.paths.get(cur, seen) {
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
        for (node, name) in names.iter().rev() {
            join(&mut path, name);
            if let When::Now = when {
                self.paths.put(*node, &path, seen);
            }
        }
        Ok(Some(path))
    }

    /// A directory was renamed or removed (see `PathCache`).
    pub(super) fn dirs_changed(&self) {
        self.paths.dirs_changed();
    }

    /// Node `ino`, not a directory, lost a name (see `PathCache`).
    pub(super) fn node_renamed(&self, ino: Ino) {
        self.paths.node_changed(ino);
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

    /// A file's path is kept after the first walk, and forgotten when the
    /// file loses a name in any of the ways a name goes.
    #[test]
    fn kept_paths_of_files_follow_every_change_of_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let root = Caller::root();
        let a = mkdir(&v, ROOT_INO, b"a");
        let f = file(&v, a, b"f");
        let g = file(&v, a, b"g");
        assert_eq!(v.path_of(f).unwrap(), b"/a/f");
        // Renamed, then replaced by another file.
        v.rename(&root, a, b"f", a, b"f2", RenameMode::Replace)
            .unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/a/f2");
        assert_eq!(v.path_of(g).unwrap(), b"/a/g");
        v.rename(&root, a, b"f2", a, b"g", RenameMode::Replace)
            .unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/a/g");
        // The replaced one is named by its last name (see `path_of`).
        assert_eq!(v.path_of(g).unwrap(), b"/a/g");
        // Exchanged with another.
        let h = file(&v, a, b"h");
        assert_eq!(v.path_of(h).unwrap(), b"/a/h");
        v.rename(&root, a, b"g", a, b"h", RenameMode::Exchange)
            .unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/a/h");
        assert_eq!(v.path_of(h).unwrap(), b"/a/g");
        // A second name, then the first one unlinked: the other is named.
        v.link(f, ROOT_INO, b"top").unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/a/h");
        v.unlink(&root, a, b"h").unwrap();
        assert_eq!(v.path_of(f).unwrap(), b"/top");
        // A directory above renamed: every kept path goes.
        assert_eq!(v.path_of(h).unwrap(), b"/a/g");
        v.rename(&root, ROOT_INO, b"a", ROOT_INO, b"b", RenameMode::Replace)
            .unwrap();
        assert_eq!(v.path_of(h).unwrap(), b"/b/g");
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
