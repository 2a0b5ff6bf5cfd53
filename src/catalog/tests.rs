use super::*;

fn new_inode(target: Vec<u8>) -> NewInode {
    NewInode {
        kind: Kind::Symlink,
        mode: 0o777,
        uid: 0,
        gid: 0,
        nlink: 1,
        size: target.len() as u64,
        rdev: 0,
        time: 0,
        at: 0,
        target: Some(target),
    }
}

#[test]
fn a_read_group_takes_writes_and_ends_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let reader = Catalog::open_readonly(&path).unwrap();

    cat.begin_read().unwrap();
    assert!(cat.inode(ROOT_INO + 1000).unwrap().is_none());
    // A write inside the read group upgrades it; nothing is visible
    // to another connection before the commit, everything after.
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    assert!(reader.inode(ino).unwrap().is_none());
    cat.commit().unwrap();
    assert!(reader.inode(ino).unwrap().is_some());
    assert!(cat.conn.is_autocommit(), "the commit ended the group");

    // A read group that saw no write ends as old groups do.
    cat.begin_read().unwrap();
    std::thread::sleep(GROUP_MAX_AGE);
    cat.commit_if_old().unwrap();
    assert!(cat.conn.is_autocommit(), "the flusher's check ended it");
}

/// Without a savepoint, a failed statement must still leave the group
/// open with the changes made before it, and nothing of its own.
#[test]
fn a_one_row_operation_that_fails_keeps_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let reader = Catalog::open_readonly(&path).unwrap();
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    let hash: NameHash = [5; crate::crypto::names::LOOKUP_LEN];
    let entry = NewEntry {
        parent: ROOT_INO,
        hash: &hash,
        sealed_name: b"sealed",
        ino,
        kind: Kind::Symlink,
        time: 1,
    };
    cat.tx_one_row(|c| c.insert_entry(&entry)).unwrap();
    let dup = cat.tx_one_row(|c| c.insert_entry(&entry));
    assert!(dup.is_err(), "the same live name twice");
    assert!(!cat.conn.is_autocommit(), "the group is still open");

    cat.commit().unwrap();
    assert!(reader.inode(ino).unwrap().is_some());
    assert_eq!(
        reader.lookup(ROOT_INO, &hash).unwrap().map(|e| e.0),
        Some(ino)
    );
    let live: i64 = reader
        .conn
        .query_row("SELECT count(*) FROM dentries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(live, 1, "the failed insert left no row");
}

/// A new file's first extent skips the lookups for one to replace; the
/// counts kept must stay what SQLite counts, through every path.
#[test]
fn block_counts_kept_match_the_extents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let reader = Catalog::open_readonly(&path).unwrap();
    let loc = BlockLocation {
        pack: crate::store::PackId(1),
        offset: 0,
        len: 10,
    };
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    let steps: [(u64, u8, u64); 5] = [(0, 1, 1), (0, 2, 1), (1, 3, 1), (0, 4, 2), (2, 5, 2)];
    for (idx, content, version) in steps {
        cat.tx(|c| {
            let block = c.insert_block(&[content; 32], &loc, 10)?;
            c.put_extent(ino, idx, block, version)
        })
        .unwrap();
        cat.commit().unwrap();
        assert_eq!(
            cat.allocated_blocks(ino).unwrap(),
            reader.allocated_blocks(ino).unwrap(),
            "after block {content} at {idx}"
        );
    }
    assert_eq!(reader.allocated_blocks(ino).unwrap(), 3);

    // Emptied (a truncate to 0), counted again as 0, then written.
    cat.tx(|c| c.drop_extents(ino, 0, u64::MAX, 3)).unwrap();
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
    let undone: Result<()> = cat.tx(|c| {
        let block = c.insert_block(&[6; 32], &loc, 10)?;
        c.put_extent(ino, 4, block, 3)?;
        assert_eq!(c.allocated_blocks(ino)?, 1);
        Err(CatalogError::Integrity("this operation fails".into()))
    });
    assert!(undone.is_err());
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 0, "the undone extent");
    cat.tx(|c| {
        let block = c.insert_block(&[7; 32], &loc, 10)?;
        c.put_extent(ino, 1, block, 3)
    })
    .unwrap();
    cat.commit().unwrap();
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
    assert_eq!(reader.allocated_blocks(ino).unwrap(), 1);
    let versions: i64 = reader
        .conn
        .query_row(
            "SELECT count(*) FROM extents WHERE ino=?1",
            [ino as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(versions, 5, "block 0 of version 1 is kept as history");
}

/// A new inode is known to have no extended attributes until one is
/// set, and an undone set leaves it without again.
#[test]
fn a_new_inode_has_no_xattrs_until_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let reader = Catalog::open_readonly(&path).unwrap();
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    let (a, b): (NameHash, NameHash) = ([1; 16], [2; 16]);
    assert_eq!(cat.xattr_get(ino, &a).unwrap(), None);
    assert!(cat.xattr_names(ino).unwrap().is_empty());

    let undone: Result<()> = cat.tx(|c| {
        c.xattr_set(ino, &a, b"name a", b"undone", 1)?;
        assert_eq!(c.xattr_get(ino, &a)?.as_deref(), Some(&b"undone"[..]));
        Err(CatalogError::Integrity("this operation fails".into()))
    });
    assert!(undone.is_err());
    assert_eq!(cat.xattr_get(ino, &a).unwrap(), None);

    cat.tx(|c| c.xattr_set(ino, &b, b"name b", b"kept", 1))
        .unwrap();
    assert_eq!(
        cat.xattr_get(ino, &b).unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(cat.xattr_names(ino).unwrap(), vec![b"name b".to_vec()]);
    cat.commit().unwrap();
    assert_eq!(
        reader.xattr_get(ino, &b).unwrap().as_deref(),
        Some(&b"kept"[..])
    );
}

#[test]
fn cached_rows_follow_what_sqlite_keeps_and_undoes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    cat.commit().unwrap();
    let before = cat.inode(ino).unwrap().expect("inserted");
    let fail = |c: &Catalog, mode: u32| -> Result<()> {
        let mut i = c.inode(ino)?.expect("inserted");
        i.mode = mode;
        c.update_inode(&i, 1)?;
        assert_eq!(
            c.inode(ino)?.unwrap().mode,
            mode,
            "a write is read back at once"
        );
        Err(CatalogError::Integrity("this operation fails".into()))
    };

    // A failed operation's savepoint is undone, and so is the row it wrote.
    assert!(cat.tx(|c| fail(c, 0o700)).is_err());
    assert_eq!(cat.inode(ino).unwrap().unwrap(), before);

    // Live blocks: counted again once an extent changes, and the count
    // of an undone extent is forgotten too.
    let loc = BlockLocation {
        pack: crate::store::PackId(1),
        offset: 0,
        len: 10,
    };
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
    cat.tx(|c| {
        let block = c.insert_block(&[1; 32], &loc, 10)?;
        c.put_extent(ino, 0, block, 1)
    })
    .unwrap();
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
    let failed: Result<()> = cat.tx(|c| {
        let block = c.insert_block(&[2; 32], &loc, 10)?;
        c.put_extent(ino, 1, block, 1)?;
        assert_eq!(c.allocated_blocks(ino)?, 2);
        Err(CatalogError::Integrity("this operation fails".into()))
    });
    assert!(failed.is_err());
    assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
    cat.commit().unwrap();

    // A read-only catalog keeps no rows: it sees every later commit.
    let reader = Catalog::open_readonly(&path).unwrap();
    assert_eq!(reader.inode(ino).unwrap().unwrap().mode, before.mode);
    cat.tx(|c| {
        let mut i = c.inode(ino)?.unwrap();
        i.mode = 0o640;
        c.update_inode(&i, 1)
    })
    .unwrap();
    cat.commit().unwrap();
    assert_eq!(reader.inode(ino).unwrap().unwrap().mode, 0o640);
}

#[test]
fn a_block_indexed_twice_keeps_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
    let at = |offset| BlockLocation {
        pack: crate::store::PackId(1),
        offset,
        len: 10,
    };
    let first = cat.insert_block(&[1; 32], &at(0), 10).unwrap();
    let other = cat.insert_block(&[2; 32], &at(10), 10).unwrap();
    assert_ne!(first, other);
    assert_eq!(cat.insert_block(&[1; 32], &at(20), 10).unwrap(), first);
    assert_eq!(cat.block_by_hash(&[1; 32]).unwrap(), Some(first));
    let offset: i64 = cat
        .conn
        .query_row("SELECT offset FROM blocks WHERE id=?1", [first], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(offset, 0, "the first location stays");
}

#[test]
fn background_copies_let_the_writer_rewind_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let commit_rows = |n: usize| {
        for _ in 0..n {
            cat.tx(|c| c.insert_inode(&new_inode(vec![7; 100])))
                .unwrap();
            cat.commit().unwrap();
        }
    };
    commit_rows(200);
    let background = Checkpointer::open(&path).unwrap();
    let (frames, copied) = background.copy_back().unwrap();
    assert!(frames > 200, "one frame or more per commit, got {frames}");
    assert_eq!(
        copied, frames,
        "a passive copy with the writer idle copies all"
    );

    // All copied: the writer's next transaction starts the WAL over.
    commit_rows(1);
    let (after, _) = background.copy_back().unwrap();
    assert!(
        after < 20,
        "the WAL was not rewound: {after} frames after {frames}"
    );
}

#[test]
fn new_catalogs_use_small_pages_and_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = Catalog::open(&path, true).unwrap();
    let page_size: u32 = cat
        .conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, NEW_CATALOG_PAGE_SIZE);

    // Twice the checkpoint size through the WAL, one commit at a time:
    // the file stays within the checkpoint size, a commit and the zeros
    // kept ahead of the frames.
    let row = vec![0x5a; 64 << 10];
    let commits = 2 * WAL_CHECKPOINT_BYTES as usize / row.len();
    for _ in 0..commits {
        cat.tx(|c| c.insert_inode(&new_inode(row.clone()))).unwrap();
        cat.commit().unwrap();
    }
    let wal = std::fs::metadata(&cat.wal_path).unwrap().len();
    assert!(
        wal <= WAL_CHECKPOINT_BYTES as u64 + (6 << 20),
        "the WAL grew to {wal} bytes after {commits} commits of 64 KiB"
    );
}

/// Sets `ino`'s mode at instant `at`, in a group of its own when `commit`.
fn chmod(cat: &Catalog, ino: Ino, mode: u32, at: i64, commit: bool) {
    cat.tx(|c| {
        let mut i = c.inode(ino)?.unwrap();
        i.mode = mode;
        i.ctime = at;
        c.update_inode(&i, at)
    })
    .unwrap();
    if commit {
        cat.commit().unwrap();
    }
}

#[test]
fn past_attributes_are_kept_per_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
    let mut n = new_inode(vec![1; 10]);
    n.at = 100;
    let ino = cat.tx(|c| c.insert_inode(&n)).unwrap();
    cat.commit().unwrap();
    chmod(&cat, ino, 0o600, 200, true);
    chmod(&cat, ino, 0o640, 300, true);
    let mode_at = |at| cat.attrs_at(ino, at).unwrap().map(|a| a.mode);
    assert_eq!(mode_at(99), None, "before its creation");
    assert_eq!(mode_at(100), Some(0o777));
    assert_eq!(mode_at(199), Some(0o777));
    assert_eq!(mode_at(200), Some(0o600));
    assert_eq!(mode_at(299), Some(0o600));
    assert_eq!(mode_at(300), Some(0o640));
    assert_eq!(mode_at(i64::MAX), Some(0o640));
    assert_eq!(cat.attrs_at(ino, 250).unwrap().unwrap().ctime, 200);
}

#[test]
fn changes_within_one_group_replace_each_other_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
    let mut n = new_inode(vec![1; 10]);
    n.at = 100;
    let ino = cat.tx(|c| c.insert_inode(&n)).unwrap();
    // Created, chmod'ed twice before the group commits: one state, from
    // the creation on, as untar leaves a file.
    chmod(&cat, ino, 0o600, 110, false);
    chmod(&cat, ino, 0o640, 120, true);
    let rows: i64 = cat
        .conn
        .query_row("SELECT count(*) FROM inode_history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    assert_eq!(cat.attrs_at(ino, 105).unwrap().unwrap().mode, 0o640);
    // A committed state is kept when it changes.
    chmod(&cat, ino, 0o400, 200, false);
    chmod(&cat, ino, 0o444, 210, true);
    assert_eq!(cat.attrs_at(ino, 150).unwrap().unwrap().mode, 0o640);
    assert_eq!(cat.attrs_at(ino, 205).unwrap().unwrap().mode, 0o444);
}

#[test]
fn an_undone_change_leaves_the_history_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
    let mut n = new_inode(vec![1; 10]);
    n.at = 100;
    let ino = cat.tx(|c| c.insert_inode(&n)).unwrap();
    cat.commit().unwrap();
    let failed: Result<()> = cat.tx(|c| {
        let mut i = c.inode(ino)?.unwrap();
        i.mode = 0o600;
        c.update_inode(&i, 200)?;
        Err(CatalogError::Integrity("this operation fails".into()))
    });
    assert!(failed.is_err());
    // The undone change took its history row with it; the next change
    // writes it again instead of taking the state for one of this group.
    chmod(&cat, ino, 0o640, 300, true);
    assert_eq!(cat.attrs_at(ino, 250).unwrap().unwrap().mode, 0o777);
    assert_eq!(cat.attrs_at(ino, 300).unwrap().unwrap().mode, 0o640);
}

#[test]
fn past_extended_attributes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
    let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
    let (a, b): (NameHash, NameHash) = ([1; 16], [2; 16]);
    cat.tx(|c| c.xattr_set(ino, &a, b"a", b"one", 100)).unwrap();
    cat.commit().unwrap();
    cat.tx(|c| c.xattr_set(ino, &a, b"a", b"two", 200)).unwrap();
    cat.tx(|c| c.xattr_set(ino, &b, b"b", b"bee", 200)).unwrap();
    cat.commit().unwrap();
    cat.tx(|c| c.xattr_remove(ino, &a, 300)).unwrap();
    cat.commit().unwrap();
    let at = |t| cat.xattrs_at(ino, t).unwrap();
    assert_eq!(at(99), vec![]);
    assert_eq!(at(150), vec![(b"a".to_vec(), b"one".to_vec())]);
    assert_eq!(
        at(250),
        vec![
            (b"a".to_vec(), b"two".to_vec()),
            (b"b".to_vec(), b"bee".to_vec())
        ]
    );
    assert_eq!(at(300), vec![(b"b".to_vec(), b"bee".to_vec())]);
}

#[test]
fn an_older_catalog_is_read_through_an_upgraded_copy_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-f35037b/catalog.db");
    std::fs::copy(&src, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let scratch_dir = {
        let cat = Catalog::open_readonly(&path).unwrap();
        // Queries of the current schema work on it.
        let root = cat.inode(ROOT_INO).unwrap().unwrap();
        assert_eq!(root.since, 0);
        assert!(cat.attrs_at(ROOT_INO, 1).unwrap().is_some());
        let dir = cat.scratch.as_ref().expect("a copy").dir().to_path_buf();
        assert!(dir.join("catalog.db").exists());
        dir
    };
    assert!(!scratch_dir.exists(), "the copy goes with the catalog");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the original is unchanged"
    );
}
