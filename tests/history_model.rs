//! History against a model, over simulated time: random writes, renames,
//! truncates, chmods, extended attributes and deletes on the engine, with
//! a clock the test moves by seconds to hours between them; the tree
//! expected at each instant is recorded, and afterwards the past view
//! (`Vault::past`) gives back every instant exactly: names, content, mode
//! and extended attributes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use phivault::catalog::{Ino, ROOT_INO};
use phivault::vault::{
    Caller, Kind, ManualClock, NodeSpec, OpenOptions, RenameMode, SetAttr, Vault,
};

use common::Rng;

#[derive(Clone, Debug, PartialEq, Eq)]
struct File {
    content: Vec<u8>,
    mode: u32,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Path (under the root or `dir/`) to what it held.
type Tree = BTreeMap<String, File>;

const NAMES: &[&str] = &["a", "b", "c", "dir/d", "dir/e"];
const HOUR: i64 = 3_600_000_000_000;

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Vault> {
    let opts = OpenOptions {
        clock,
        ..OpenOptions::default()
    };
    common::open_engine_with(dir, true, opts)
}

fn split(path: &str, dir: Ino) -> (Ino, &[u8]) {
    match path.strip_prefix("dir/") {
        Some(name) => (dir, name.as_bytes()),
        None => (ROOT_INO, path.as_bytes()),
    }
}

fn random_content(rng: &mut Rng) -> Vec<u8> {
    let len = [0, 10, 5000, 70_000, 140_000][rng.below(5) as usize];
    let seed = rng.next();
    common::pattern(seed, len)
}

/// Applies one random operation to the engine and to the model.
fn step(v: &Vault, rng: &mut Rng, tree: &mut Tree, dir: Ino) {
    let root = Caller::root();
    let path = NAMES[rng.below(NAMES.len() as u64) as usize].to_string();
    let (parent, name) = split(&path, dir);
    let Some(file) = tree.get(&path).cloned() else {
        // Create and write.
        let content = random_content(rng);
        let ino = v
            .create_node(&root, parent, name, NodeSpec::file(0o644))
            .unwrap()
            .ino;
        v.open_file_as(ino, false, Some(0)).unwrap();
        v.write(ino, 0, &content).unwrap();
        v.release_file(ino).unwrap();
        tree.insert(
            path,
            File {
                content,
                mode: 0o644,
                xattrs: BTreeMap::new(),
            },
        );
        return;
    };
    let ino = v.lookup(parent, name).unwrap().ino;
    match rng.below(7) {
        0 => {
            // Rewrite part of it.
            let mut content = file.content.clone();
            let at = rng.below(content.len() as u64 + 1) as usize;
            let data = common::pattern(rng.next(), 1 + rng.below(80_000) as usize);
            if content.len() < at + data.len() {
                content.resize(at + data.len(), 0);
            }
            content[at..at + data.len()].copy_from_slice(&data);
            v.open_file_as(ino, false, Some(0)).unwrap();
            v.write(ino, at as u64, &data).unwrap();
            v.release_file(ino).unwrap();
            tree.get_mut(&path).unwrap().content = content;
        }
        1 => {
            let size = rng.below(file.content.len() as u64 + 10_000);
            v.truncate(ino, size).unwrap();
            tree.get_mut(&path)
                .unwrap()
                .content
                .resize(size as usize, 0);
        }
        2 => {
            let mode = [0o600, 0o640, 0o644, 0o400, 0o755][rng.below(5) as usize];
            let set = SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            };
            v.setattr(&root, ino, &set).unwrap();
            tree.get_mut(&path).unwrap().mode = mode;
        }
        3 => {
            let key = format!("user.k{}", rng.below(3)).into_bytes();
            let value = format!("value {}", rng.next()).into_bytes();
            v.setxattr(&root, ino, &key, &value, 0).unwrap();
            tree.get_mut(&path).unwrap().xattrs.insert(key, value);
        }
        4 => {
            if let Some(key) = file.xattrs.keys().next().cloned() {
                v.removexattr(ino, &key).unwrap();
                tree.get_mut(&path).unwrap().xattrs.remove(&key);
            }
        }
        5 => {
            // Rename, over whatever is at the target.
            let to = NAMES[rng.below(NAMES.len() as u64) as usize].to_string();
            if to != path {
                let (to_parent, to_name) = split(&to, dir);
                v.rename(&root, parent, name, to_parent, to_name, RenameMode::Replace)
                    .unwrap();
                let moved = tree.remove(&path).unwrap();
                tree.insert(to, moved);
            }
        }
        _ => {
            v.unlink(&root, parent, name).unwrap();
            tree.remove(&path);
        }
    }
}

/// The tree the past view gives for instant `at`.
fn tree_at(v: &Vault, at: i64, dir: Ino) -> Tree {
    let past = v.past(at);
    let mut out = Tree::new();
    for (prefix, d) in [("", ROOT_INO), ("dir/", dir)] {
        for e in past.readdir(d, 0, 1000).unwrap() {
            if e.name == b"." || e.name == b".." || e.kind == Kind::Dir {
                continue;
            }
            let attr = past.getattr(e.ino).unwrap();
            let mut content = vec![0u8; attr.size as usize];
            let n = past.read_into(e.ino, 0, &mut content).unwrap();
            content.truncate(n);
            let xattrs = past.xattrs(e.ino).unwrap().into_iter().collect();
            let name = String::from_utf8(e.name).unwrap();
            out.insert(
                format!("{prefix}{name}"),
                File {
                    content,
                    mode: attr.perm,
                    xattrs,
                },
            );
        }
    }
    out
}

#[test]
fn every_recorded_instant_comes_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    // 2026-01-01T00:00:00Z, moved forward by the test only.
    let clock = Arc::new(ManualClock::starting_at(1_767_225_600_000_000_000));
    let v = open(tmp.path(), clock.clone());
    let dir = v
        .create_node(
            &Caller::root(),
            ROOT_INO,
            b"dir",
            NodeSpec {
                kind: Kind::Dir,
                mode: 0o755,
                umask: 0,
                rdev: 0,
            },
        )
        .unwrap()
        .ino;
    let mut rng = Rng(0x5eed_0f41_570e);
    let mut tree = Tree::new();
    let mut recorded: Vec<(i64, Tree)> = Vec::new();
    for _ in 0..400 {
        step(&v, &mut rng, &mut tree, dir);
        // Commit the group: history keeps committed states.
        v.sync_dir().unwrap();
        clock.advance(1_000_000_000 + rng.below(3 * HOUR as u64) as i64);
        // An instant after this step and before the next.
        recorded.push((clock_now(&clock) - 1, tree.clone()));
    }
    for (i, (at, want)) in recorded.iter().enumerate() {
        let got = tree_at(&v, *at, dir);
        if &got != want {
            let names = |t: &Tree| t.keys().cloned().collect::<Vec<_>>();
            let differ: Vec<_> = want
                .iter()
                .filter(|(k, f)| got.get(*k) != Some(f))
                .map(|(k, f)| {
                    (
                        k.clone(),
                        f.mode,
                        f.content.len(),
                        got.get(k)
                            .map(|g| (g.mode, g.content.len(), g.xattrs.len())),
                    )
                })
                .collect();
            panic!(
                "instant {i} ({at}): expected {:?}, past view has {:?}; differing {differ:?}",
                names(want),
                names(&got)
            );
        }
    }
}

fn clock_now(clock: &ManualClock) -> i64 {
    use phivault::vault::Clock;
    clock.now_ns()
}
