//! The history of a path and of a file, a directory as it was, and what
//! was deleted under a directory: the engine side of `log`, `ls --at` and
//! `ls --deleted`. Read-only. Names come back in plaintext to the caller
//! and are never logged here.
//!
//! The history of a path is the history of its name: every inode that was
//! at that name over time, each with its versions while it was there. So a
//! save that writes a temporary file and renames it over the name (editors,
//! office programs) continues the one history. The directories above the
//! last component are those at their names now, or, for a name that no
//! longer exists, the last directory that had it: a deleted folder's files
//! keep their histories. (Resolving the parents at each instant instead
//! would split one history in two wherever a parent folder was renamed
//! away and another took its name; a user asking about a path means the
//! folder called that now.)

use std::collections::{HashMap, HashSet};

use super::{Attr, Result, Vault, VaultError};
use crate::catalog::{Catalog, EntrySpan, Ino, Kind, VersionReason, VersionRow, ROOT_INO};

/// One version in the history of a path (or of a file, `--follow`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathVersion {
    /// Its number in this history, from 1, oldest first: `vN` as `log`
    /// prints it and TIME arguments take it.
    pub number: u64,
    /// The inode it is a version of.
    pub ino: Ino,
    /// That inode's own version number.
    pub version: u64,
    /// When the path came to show it: when it was recorded, or for a
    /// version that arrived by a rename (an editor's save), the rename.
    pub time: i64,
    /// When it was recorded.
    pub written: i64,
    pub size: u64,
    pub reason: VersionReason,
    /// Who made it; None for versions from before uids were kept.
    pub uid: Option<u32>,
    /// Whether it came to the path by a rename rather than being made there.
    pub arrived: bool,
}

impl PathVersion {
    /// The instant whose tree shows this version at the path: for a
    /// deletion or a replacement (a tombstone, holding the content the
    /// file had when it went), the instant just before it went.
    pub fn instant(&self) -> i64 {
        match self.reason {
            VersionReason::Deleted | VersionReason::Replaced => self.time - 1,
            _ => self.time,
        }
    }
}

/// One entry of a directory as it was (`ls --at`).
#[derive(Clone, Debug)]
pub struct PastEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
}

/// Something removed under a directory (`ls --deleted`).
#[derive(Clone, Debug)]
pub struct Deletion {
    /// Its path relative to the directory asked about, '/'-separated.
    pub path: Vec<u8>,
    pub ino: Ino,
    pub kind: Kind,
    /// When it was removed.
    pub time: i64,
    /// Its size then (files).
    pub size: u64,
    /// Who removed it, when known (files only: their deletion is a version).
    pub uid: Option<u32>,
    /// The instant to restore it from: just before it went, or for a
    /// directory, just before the removals that emptied it (`rm -r`).
    pub restore_at: i64,
}

/// What `deleted_under` gathers about a directory's subtree.
#[derive(Default)]
struct Subtree {
    last_change: i64,
    removals: Vec<i64>,
}

impl Vault {
    /// Every version the name `path` showed, oldest first (see the module
    /// doc). NotFound if nothing was ever at that path.
    pub fn path_history(&self, path: &[u8]) -> Result<Vec<PathVersion>> {
        let spans = self.name_spans(path)?;
        let cat = self.catalog_to_read()?;
        let mut cache: HashMap<Ino, Vec<VersionRow>> = HashMap::new();
        let mut seen: HashSet<(Ino, u64)> = HashSet::new();
        let mut out = Vec::new();
        for span in &spans {
            if span.kind != Kind::File {
                continue;
            }
            let versions = match cache.entry(span.ino) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(cat.versions(span.ino)?),
            };
            // What it brought with it: its content when it got the name.
            let brought = versions.iter().rev().find(|v| v.time <= span.from);
            if let Some(v) = brought {
                let tombstone =
                    matches!(v.reason, VersionReason::Deleted | VersionReason::Replaced);
                if !tombstone && seen.insert((v.ino, v.version)) {
                    out.push(entry(v, span.from.max(v.time), true));
                }
            }
            for v in versions
                .iter()
                .filter(|v| v.time > span.from && span.until.is_none_or(|until| v.time <= until))
            {
                if seen.insert((v.ino, v.version)) {
                    out.push(entry(v, v.time, false));
                }
            }
        }
        out.sort_by_key(|v| (v.time, v.ino, v.version));
        for (i, v) in out.iter_mut().enumerate() {
            v.number = i as u64 + 1;
        }
        Ok(out)
    }

    /// Every version of `ino`, oldest first, numbered by its own numbers.
    pub fn inode_history(&self, ino: Ino) -> Result<Vec<PathVersion>> {
        let rows = self.catalog_to_read()?.versions(ino)?;
        Ok(rows
            .iter()
            .map(|v| PathVersion {
                number: v.version,
                ..entry(v, v.time, false)
            })
            .collect())
    }

    /// The file at `path` now, or the last one that was (for `--follow`
    /// of a deleted path).
    pub fn file_at_or_last(&self, path: &[u8]) -> Result<Ino> {
        match self.resolve(path) {
            Ok(ino) => Ok(ino),
            Err(VaultError::NotFound) => self
                .name_spans(path)?
                .last()
                .map(|s| s.ino)
                .ok_or(VaultError::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Version `number` of `path`'s history (see `path_history`).
    pub fn path_version(&self, path: &[u8], number: u64) -> Result<Option<PathVersion>> {
        Ok(self
            .path_history(path)?
            .into_iter()
            .find(|v| v.number == number))
    }

    /// Whether `path`'s history was ever a directory's: versions number
    /// files, not folders.
    pub fn was_dir(&self, path: &[u8]) -> Result<bool> {
        Ok(self.name_spans(path)?.iter().any(|s| s.kind == Kind::Dir))
    }

    /// The entries of directory `path` as they were at `at`, with their
    /// attributes then, in listing order: a few queries for the whole
    /// directory, not several per entry.
    pub fn list_at(&self, path: &[u8], at: i64) -> Result<Vec<PastEntry>> {
        let past = self.past(at);
        let dir = past.resolve(path)?;
        if past.getattr(dir)?.kind != Kind::Dir {
            return Err(VaultError::NotDir);
        }
        let cat = self.catalog_to_read()?;
        let rows = cat.list_dir_attrs_at(dir, at)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(a) = row.attrs else {
                continue;
            };
            let size = match row.kind {
                Kind::File => row.version_size.unwrap_or(0),
                Kind::Symlink => row.inode_size,
                _ => 0,
            };
            let nlink = match row.kind {
                Kind::Dir => 2 + cat.subdirs_at(row.ino, at)?,
                _ => row.links.max(1),
            };
            out.push(PastEntry {
                name: self.open_name(dir, &row.sealed_name)?,
                attr: Attr {
                    ino: row.ino,
                    kind: row.kind,
                    perm: a.mode & 0o7777,
                    uid: a.uid,
                    gid: a.gid,
                    nlink,
                    size,
                    allocated: 0,
                    rdev: row.rdev,
                    atime: a.atime,
                    mtime: a.mtime,
                    ctime: a.ctime,
                    btime: row.btime,
                },
            });
        }
        Ok(out)
    }

    /// What was removed under directory `path`, at any depth (inside
    /// removed folders too), newest removal first. Renames away are not
    /// removals, nor is a file replaced by a rename over it (its name still
    /// shows a file: `log` has it), nor dropping one of several hard links.
    pub fn deleted_under(&self, path: &[u8]) -> Result<Vec<Deletion>> {
        let top = self.dir_at_name(path)?;
        let cat = self.catalog_to_read()?;
        let mut out = Vec::new();
        let mut visited = HashSet::from([top]);
        self.removals_in(&cat, top, &[], &mut visited, &mut out)?;
        out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.path.cmp(&b.path)));
        Ok(out)
    }

    /// The removals under `dir` (into `out`), and what restoring a removed
    /// directory needs: the last change under it other than a removal, and
    /// the times of the removals under it.
    fn removals_in(
        &self,
        cat: &Catalog,
        dir: Ino,
        prefix: &[u8],
        visited: &mut HashSet<Ino>,
        out: &mut Vec<Deletion>,
    ) -> Result<Subtree> {
        let mut here = Subtree::default();
        for span in cat.entries_ever(dir)? {
            let name = self.open_name(dir, &span.sealed_name)?;
            let rel = if prefix.is_empty() {
                name
            } else {
                [prefix, b"/", &name].concat()
            };
            here.last_change = here.last_change.max(span.from);
            if span.kind == Kind::File {
                let made = cat.versions(span.ino)?.into_iter().rev().find(|v| {
                    !matches!(v.reason, VersionReason::Deleted | VersionReason::Replaced)
                });
                if let Some(v) = made {
                    here.last_change = here.last_change.max(v.time);
                }
            }
            let inner = if span.kind == Kind::Dir && visited.insert(span.ino) {
                Some(self.removals_in(cat, span.ino, &rel, visited, out)?)
            } else {
                None
            };
            if let Some(mut d) = removal(cat, &span, rel)? {
                if let Some(inner) = &inner {
                    // `rm -r` empties a folder before it removes it: give
                    // it back as it was before the run of removals that
                    // ended with it (those after the last other change).
                    let first = inner
                        .removals
                        .iter()
                        .filter(|t| **t > inner.last_change && **t <= d.time)
                        .min();
                    if let Some(first) = first {
                        d.restore_at = first - 1;
                    }
                }
                here.removals.push(d.time);
                out.push(d);
            }
            if let Some(inner) = inner {
                here.last_change = here.last_change.max(inner.last_change);
                here.removals.extend(inner.removals);
            }
        }
        Ok(here)
    }

    /// Every entry that was ever at `path`'s last component, oldest first,
    /// under the directories at their names now (or last).
    fn name_spans(&self, path: &[u8]) -> Result<Vec<EntrySpan>> {
        let parts = components(path);
        let Some((last, dirs)) = parts.split_last() else {
            return Err(VaultError::Invalid);
        };
        let mut parent = ROOT_INO;
        for part in dirs {
            parent = self.latest_at_name(parent, part)?;
        }
        let hash = self.name_hash(parent, last)?;
        let spans = self.catalog_to_read()?.entries_named(parent, &hash)?;
        if spans.is_empty() {
            return Err(VaultError::NotFound);
        }
        Ok(spans)
    }

    /// The directory at `path` now, or the last one that was there.
    fn dir_at_name(&self, path: &[u8]) -> Result<Ino> {
        let mut dir = ROOT_INO;
        for part in components(path) {
            dir = self.latest_at_name(dir, part)?;
        }
        Ok(dir)
    }

    /// The inode at (parent, name) now, else the last one that was.
    fn latest_at_name(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let hash = self.name_hash(parent, name)?;
        let spans = self.catalog_to_read()?.entries_named(parent, &hash)?;
        spans
            .iter()
            .find(|s| s.until.is_none())
            .or(spans.last())
            .map(|s| s.ino)
            .ok_or(VaultError::NotFound)
    }
}

fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect()
}

fn entry(v: &VersionRow, time: i64, arrived: bool) -> PathVersion {
    PathVersion {
        number: 0,
        ino: v.ino,
        version: v.version,
        time,
        written: v.time,
        size: v.size,
        reason: v.reason,
        uid: v.uid,
        arrived,
    }
}

/// `span` as a removal, if it ended in one.
fn removal(cat: &Catalog, span: &EntrySpan, path: Vec<u8>) -> Result<Option<Deletion>> {
    let Some(until) = span.until else {
        return Ok(None);
    };
    if span.moved {
        return Ok(None);
    }
    let (size, uid) = match span.kind {
        Kind::File => match cat.version_at(span.ino, until)? {
            Some(v) if v.time == until && v.reason == VersionReason::Deleted => (v.size, v.uid),
            _ => return Ok(None),
        },
        _ => (0, None),
    };
    Ok(Some(Deletion {
        path,
        ino: span.ino,
        kind: span.kind,
        time: until,
        size,
        uid,
        restore_at: until - 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{new_file, open_vault};
    use super::super::{now_ns, Caller, RenameMode};
    use super::*;

    fn save(v: &Vault, name: &str, body: &[u8]) {
        let ino = new_file(v, name);
        v.write(ino, 0, body).unwrap();
        v.release_file(ino).unwrap();
    }

    #[test]
    fn an_editor_save_continues_the_history_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        save(&v, "chart.txt", b"one");
        save(&v, ".chart.txt.swp", b"two!");
        v.rename(
            &Caller::root(),
            ROOT_INO,
            b".chart.txt.swp",
            ROOT_INO,
            b"chart.txt",
            RenameMode::Replace,
        )
        .unwrap();
        let h = v.path_history(b"/chart.txt").unwrap();
        let got: Vec<_> = h
            .iter()
            .map(|p| (p.number, p.size, p.reason, p.arrived))
            .collect();
        assert_eq!(
            got,
            [
                (1, 3, VersionReason::Write, false),
                (2, 3, VersionReason::Replaced, false),
                (3, 4, VersionReason::Write, true),
            ]
        );
        // Each version's instant shows it at the path.
        let mut buf = [0u8; 16];
        for p in &h {
            let past = v.past(p.instant());
            let ino = past.resolve(b"/chart.txt").unwrap();
            assert_eq!(ino, p.ino);
            assert_eq!(past.read_into(ino, 0, &mut buf).unwrap() as u64, p.size);
        }
        // The file alone: one version.
        let now = v.resolve(b"/chart.txt").unwrap();
        assert_eq!(v.inode_history(now).unwrap().len(), 1);
    }

    #[test]
    fn a_deleted_file_is_found_with_its_time_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let sub = v
            .create_node(
                &Caller::root(),
                ROOT_INO,
                b"sub",
                super::super::NodeSpec {
                    kind: Kind::Dir,
                    mode: 0o755,
                    umask: 0,
                    rdev: 0,
                },
            )
            .unwrap()
            .ino;
        let ino = v
            .create_node(
                &Caller::root(),
                sub,
                b"x",
                super::super::NodeSpec::file(0o600),
            )
            .unwrap()
            .ino;
        v.open_file(ino, false).unwrap();
        v.write(ino, 0, b"12345").unwrap();
        v.release_file(ino).unwrap();
        let before = now_ns();
        v.unlink(&Caller::root(), sub, b"x").unwrap();
        let gone = v.deleted_under(b"/").unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].path, b"sub/x");
        assert_eq!((gone[0].size, gone[0].uid), (5, Some(0)));
        assert!(gone[0].time > before);
        let past = v.past(gone[0].restore_at);
        assert_eq!(past.resolve(b"/sub/x").unwrap(), ino);
        assert_eq!(v.path_history(b"/sub/x").unwrap().len(), 2);
        let listed = v.list_at(b"/sub", gone[0].restore_at).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].attr.size, listed[0].attr.perm), (5, 0o600));
    }
}
