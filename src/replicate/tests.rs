//! Passes and recoveries of real vaults, against places in memory.

use std::path::Path;
use std::sync::Arc;

use super::place::{FaultyPlace, MemPlace, ObjectKind, ObjectPlace};
use super::recover::{head_chain, recover};
use super::state::StateDir;
use super::{Pass, PassReport, ReplicateError};
use crate::crypto::{MasterKey, Passphrase};
use crate::store::StoreDir;
use crate::vault::test_support::{new_file, open_vault};
use crate::vault::{read_config, unlock_master, Clock, Vault};

const PASSPHRASE: &[u8] = b"a vault for unit tests";

fn master(v: &Vault) -> MasterKey {
    let pass = Passphrase::new(PASSPHRASE.to_vec());
    unlock_master(&read_config(v.store_dir()).unwrap(), &pass)
        .unwrap()
        .0
}

fn write_file(v: &Vault, name: &str, content: &[u8]) {
    let ino = new_file(v, name);
    v.write(ino, 0, content).unwrap();
    v.release_file(ino).unwrap();
}

fn pass(v: &Vault, place: &dyn ObjectPlace, state: &Path) -> Result<PassReport, ReplicateError> {
    std::fs::create_dir_all(state).unwrap();
    let key = master(v).envelope_key(&v.config().vault_id);
    Pass {
        vault: v,
        key: &key,
        place,
        state: &StateDir::new(state.to_path_buf()),
        progress: &|_| {},
        stop: None,
    }
    .run()
}

fn catalog_bytes(store: &StoreDir) -> Vec<u8> {
    crate::catalog::CatalogSnapshot::begin(&store.catalog_path())
        .unwrap()
        .image()
        .unwrap()
        .bytes()
        .unwrap()
}

/// Recovers `place` into `dir` and checks it against `v`: the same catalog
/// and, byte for byte, the same packs.
fn assert_recovers_to(v: &Vault, place: &dyn ObjectPlace, dir: &Path) {
    let dest = StoreDir::new(dir);
    let pass = Passphrase::new(PASSPHRASE.to_vec());
    recover(place, &pass, &dest, None, &|_| {}).unwrap();
    let cut = v.replication_cut().unwrap();
    assert!(
        catalog_bytes(&dest) == cut.bytes().unwrap(),
        "the recovered catalog is the replicated one"
    );
    for (id, _) in &cut.sealed_packs {
        let ours = std::fs::read(v.pack_file(*id)).unwrap();
        let theirs = std::fs::read(crate::store::pack_path_in(
            &dest.packs_dir(),
            crate::store::PackId::from_i64(*id),
        ))
        .unwrap();
        assert!(ours == theirs, "pack {id}");
    }
}

#[test]
fn a_pass_and_a_recovery_give_back_the_catalog_and_every_pack() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    for i in 0..20 {
        write_file(&v, &format!("f{i}"), &vec![i as u8 + 1; 70_000 + i * 1000]);
    }
    let place = MemPlace::new();
    let first = pass(&v, &place, &d.path().join("state")).unwrap();
    assert_eq!(first.head, Some(1));
    let first_catalog = v.replication_cut().unwrap().bytes().unwrap();
    let between = crate::vault::now_ns();
    write_file(&v, "later", b"a second pass");
    let second = pass(&v, &place, &d.path().join("state")).unwrap();
    assert_eq!(second.head, Some(2));
    assert_eq!(
        pass(&v, &place, &d.path().join("state")).unwrap(),
        PassReport::default(),
        "nothing changed: nothing shipped, no head"
    );
    let key = master(&v).envelope_key(&v.config().vault_id);
    assert_eq!(head_chain(&place, &key).unwrap().len(), 2);
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
    let earlier = StoreDir::new(d.path().join("recovered-earlier"));
    let pass = Passphrase::new(PASSPHRASE.to_vec());
    recover(&place, &pass, &earlier, Some(between), &|_| {}).unwrap();
    assert!(
        catalog_bytes(&earlier) == first_catalog,
        "--at between the passes gives the first pass's catalog"
    );
    let too_early = StoreDir::new(d.path().join("recovered-too-early"));
    assert!(recover(&place, &pass, &too_early, Some(0), &|_| {}).is_err());
}

#[test]
fn a_recovery_needs_a_passphrase_of_the_store() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    write_file(&v, "f", b"content");
    let place = MemPlace::new();
    pass(&v, &place, &d.path().join("state")).unwrap();
    let dest = StoreDir::new(d.path().join("recovered"));
    let wrong = Passphrase::new(b"not the passphrase".to_vec());
    assert!(matches!(
        recover(&place, &wrong, &dest, None, &|_| {}),
        Err(ReplicateError::Crypto(_))
    ));
    assert!(!dest.root().exists(), "nothing made");
    let empty = MemPlace::new();
    let pass = Passphrase::new(PASSPHRASE.to_vec());
    let e = recover(&empty, &pass, &dest, None, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("no phivault replica"), "{e}");
}

/// A pass cut short after each of its calls to the place, then run again,
/// leaves the same complete remote as one that never failed: one chain of
/// heads, nothing missing, nothing stored twice.
#[test]
fn a_pass_cut_short_anywhere_reruns_to_a_complete_remote() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    for i in 0..5 {
        write_file(&v, &format!("f{i}"), &vec![i as u8 + 1; 100_000]);
    }
    let clean = Arc::new(MemPlace::new());
    pass(&v, &*clean, &d.path().join("clean")).unwrap();
    let calls = {
        let counted = FaultyPlace::builder(MemPlace::new()).build();
        pass(&v, &counted, &d.path().join("counted")).unwrap();
        counted.calls()
    };
    assert!(calls >= 4, "keys, pack, pages and head: {calls}");
    for n in 0..calls {
        let place = FaultyPlace::builder(MemPlace::new()).fail_after(n).build();
        let state = d.path().join(format!("cut-{n}"));
        let e = pass(&v, &place, &state).expect_err("the place fails");
        assert!(e.is_transient(), "{e}");
        place.heal();
        pass(&v, &place, &state).unwrap();
        let key = master(&v).envelope_key(&v.config().vault_id);
        let chain = head_chain(&place, &key).unwrap();
        assert_eq!(chain.len(), 1, "cut after call {n}: one head");
        for kind in [ObjectKind::Keys, ObjectKind::Data] {
            assert_eq!(
                place.inner().list(kind).unwrap(),
                clean.list(kind).unwrap(),
                "cut after call {n}: the same {kind:?} objects as a clean pass"
            );
        }
        assert_recovers_to(&v, &place, &d.path().join(format!("recovered-{n}")));
    }
}

#[test]
fn one_changed_file_ships_a_few_pages() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    for i in 0..3000 {
        write_file(
            &v,
            &format!("file-{i:05}"),
            format!("content {i}").as_bytes(),
        );
    }
    let place = MemPlace::new();
    let state = d.path().join("state");
    let first = pass(&v, &place, &state).unwrap();
    let ino = v.lookup(crate::vault::ROOT_INO, b"file-01234").unwrap().ino;
    v.open_file(ino, false).unwrap();
    v.write(ino, 0, b"changed").unwrap();
    v.release_file(ino).unwrap();
    let second = pass(&v, &place, &state).unwrap();
    // The changed pages (the file's inode, its extent, its version, the
    // block index, their index pages) and a small pack and head, each
    // padded to at least 4 KiB.
    assert!(
        second.bytes < 64 << 10,
        "{} bytes shipped for one change (the first pass shipped {})",
        second.bytes,
        first.bytes
    );
}

/// Killed after its head reached the remote but before its state was
/// renamed into place: the next pass keeps that state, ships nothing twice
/// and writes no second head of the same seq.
#[test]
fn a_pass_killed_after_its_head_landed_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    write_file(&v, "a", b"first");
    let place = MemPlace::new();
    let state = d.path().join("state");
    pass(&v, &place, &state).unwrap();
    let before = std::fs::read(state.join("state")).unwrap();
    write_file(&v, "b", b"second");
    assert_eq!(pass(&v, &place, &state).unwrap().head, Some(2));
    // As the kill left it: the new state prepared, the old one in place.
    std::fs::rename(state.join("state"), state.join("state.next")).unwrap();
    std::fs::write(state.join("state"), before).unwrap();
    let objects = place.len();
    assert_eq!(pass(&v, &place, &state).unwrap(), PassReport::default());
    assert_eq!(place.len(), objects, "nothing shipped again");
    let key = master(&v).envelope_key(&v.config().vault_id);
    assert_eq!(head_chain(&place, &key).unwrap().len(), 2);
}

/// Records cut off the local trail after they were shipped stop the next
/// pass: the remote's copy stays whole and names the cut.
#[test]
fn a_trail_cut_after_it_was_shipped_stops_replication() {
    use crate::audit::ship::TrailFiles;
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    let log = v.audit().expect("a read-write vault holds the trail");
    for i in 0..10 {
        log.append(crate::audit::Record {
            seq: 0,
            time_ns: 1_000 + i,
            who: Default::default(),
            op: crate::audit::Op::Open,
            path: format!("/chart-{i}").into_bytes(),
            target: None,
            ino: 2,
            parent: 1,
            detail: Default::default(),
            result: 0,
        })
        .unwrap();
    }
    log.sync().unwrap();
    let place = MemPlace::new();
    let state = d.path().join("state");
    pass(&v, &place, &state).unwrap();
    let trail = TrailFiles::new(v.audit_dir());
    let segments = trail.segments().unwrap();
    let last = trail.segment_path(*segments.last().expect("the trail has a segment"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(3)
        .unwrap();
    let e = pass(&v, &place, &state).unwrap_err();
    assert!(e.to_string().contains("the audit trail was cut"), "{e}");
}

/// A store on a manual clock whose file "old" went to `place` and was then
/// unlinked and pruned away: its pack is in the cut's removed packs.
fn store_with_a_pruned_pack(
    dir: &Path,
    place: &dyn ObjectPlace,
    state: &Path,
) -> (Arc<Vault>, Arc<crate::vault::ManualClock>) {
    use crate::vault::{Caller, ManualClock, OpenOptions, PruneClock, PruneOptions, ROOT_INO};
    let clock = Arc::new(ManualClock::starting_at(crate::vault::now_ns()));
    let v = crate::vault::test_support::open_vault_with(
        dir,
        &OpenOptions {
            clock: clock.clone(),
            ..OpenOptions::default()
        },
    );
    write_file(&v, "old", &vec![7; 300_000]);
    pass(&v, place, state).unwrap();
    write_file(&v, "kept", b"still here");
    v.unlink(&Caller::default(), ROOT_INO, b"old").unwrap();
    let prune = PruneOptions {
        clock: PruneClock::Shifted(jiff::SignedDuration::from_hours(24 * 3650)),
        grace: std::time::Duration::ZERO,
        ..PruneOptions::default()
    };
    v.prune(&prune, &|_, _, _| {}).unwrap();
    v.prune(&prune, &|_, _, _| {}).unwrap();
    assert!(
        !v.replication_cut().unwrap().removed_packs.is_empty(),
        "the prune removed the old file's pack"
    );
    (v, clock)
}

const DAY_NS: i64 = 86_400_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;

/// A pack pruning removed leaves the remote only once the retention lock
/// (and a day) has passed since a pass saw it gone; the store recovers
/// from the remote before and after.
#[test]
fn packs_pruning_removed_leave_the_remote_after_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let place = MemPlace::new();
    let state = d.path().join("state");
    let (v, clock) = store_with_a_pruned_pack(d.path(), &place, &state);
    let objects = place.len();
    let seen = pass(&v, &place, &state).unwrap();
    assert_eq!(seen.deleted, 0, "not before the lock has passed");
    let lock_days = v.config().retention.lock_days as i64;
    clock.advance((lock_days + 1) * DAY_NS - MINUTE_NS);
    assert_eq!(
        pass(&v, &place, &state).unwrap().deleted,
        0,
        "a minute early"
    );
    clock.advance(2 * MINUTE_NS);
    let after = pass(&v, &place, &state).unwrap();
    assert_eq!(after.deleted, 1, "the old pack's object goes");
    assert!(place.len() > objects, "the rest stays");
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
}

/// On a remote with Object Lock every object is locked for the lock period
/// and a day; a delete the remote still refuses (its clock an hour behind)
/// leaves the pass whole and is retried by a later one.
#[test]
fn on_a_locking_remote_objects_are_locked_and_deletes_wait_for_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let remote_clock: Arc<parking_lot::Mutex<Option<Arc<crate::vault::ManualClock>>>> =
        Arc::default();
    let behind = remote_clock.clone();
    let place = MemPlace::locking(Arc::new(move || {
        let now = behind.lock().as_ref().map_or(0, |c| c.now_ns()) - 60 * MINUTE_NS;
        jiff::Timestamp::from_nanosecond(now as i128).unwrap()
    }));
    let state = d.path().join("state");
    let first = crate::vault::now_ns();
    let (v, clock) = store_with_a_pruned_pack(d.path(), &place, &state);
    *remote_clock.lock() = Some(clock.clone());
    let hold = v.replica_hold_ns();
    assert!(hold > v.config().retention.lock_days as i64 * DAY_NS);
    for kind in ObjectKind::ALL {
        for (name, _) in place.list(kind).unwrap() {
            let until = place.retain_until(&name).unwrap().expect("locked");
            assert!(
                until.as_nanosecond() >= (first + hold) as i128,
                "{name} locked until {until} only"
            );
        }
    }
    pass(&v, &place, &state).unwrap();
    clock.advance(hold + MINUTE_NS);
    let early = pass(&v, &place, &state).unwrap();
    assert_eq!(early.deleted, 0, "the remote's clock says locked");
    clock.advance(60 * MINUTE_NS);
    assert_eq!(pass(&v, &place, &state).unwrap().deleted, 1);
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
}

/// A store whose replication state is lost, or one recovered from the
/// remote, continues the remote's chain: one chain, and the remote
/// recovers to the store as it is now.
#[test]
fn a_store_that_lost_its_state_continues_the_remote_chain() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    write_file(&v, "a", &vec![1; 200_000]);
    let place = MemPlace::new();
    let state = d.path().join("state");
    pass(&v, &place, &state).unwrap();
    write_file(&v, "b", b"second");
    pass(&v, &place, &state).unwrap();
    std::fs::remove_dir_all(&state).unwrap();
    write_file(&v, "c", b"third");
    let again = pass(&v, &place, &state).unwrap();
    assert_eq!(again.head, Some(3), "the chain goes on");
    let key = master(&v).envelope_key(&v.config().vault_id);
    assert_eq!(head_chain(&place, &key).unwrap().len(), 3);
    assert_eq!(place.list(ObjectKind::Head).unwrap().len(), 3, "no fork");
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
}

/// A pass told to stop (an unmount) ends before its next pack and records
/// nothing; the next pass completes the remote.
#[test]
fn a_stopped_pass_records_nothing_and_the_next_completes() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    write_file(&v, "a", &vec![3; 100_000]);
    let place = MemPlace::new();
    let state = d.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let key = master(&v).envelope_key(&v.config().vault_id);
    let stop = std::sync::atomic::AtomicBool::new(true);
    let stopped = Pass {
        vault: &v,
        key: &key,
        place: &place,
        state: &StateDir::new(state.clone()),
        progress: &|_| {},
        stop: Some(&stop),
    }
    .run();
    assert!(
        matches!(stopped, Err(ReplicateError::Stopped)),
        "{stopped:?}"
    );
    assert!(place.list(ObjectKind::Head).unwrap().is_empty(), "no head");
    assert_eq!(pass(&v, &place, &state).unwrap().head, Some(1));
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
}

/// Snapshots come as the shipped pages add up to the catalog's size; once
/// one is a replica hold old, the heads and pages before it leave the
/// remote. Recovery starts at the last snapshot and gives the same store;
/// a time before the oldest kept snapshot is refused with what is kept.
#[test]
fn snapshots_bound_recovery_and_let_old_heads_go() {
    use crate::vault::{ManualClock, OpenOptions};
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_at(crate::vault::now_ns()));
    let v = crate::vault::test_support::open_vault_with(
        d.path(),
        &OpenOptions {
            clock: clock.clone(),
            ..OpenOptions::default()
        },
    );
    let place = MemPlace::new();
    let state = d.path().join("state");
    let heads = || StateDir::new(state.clone()).load().unwrap().heads;
    write_file(&v, "first", &vec![1; 100_000]);
    pass(&v, &place, &state).unwrap();
    assert!(heads()[0].base, "the first head is a snapshot");
    let mut i = 0;
    while !heads().last().unwrap().base || heads().len() == 1 {
        i += 1;
        assert!(i < 500, "no second snapshot after {i} passes");
        clock.advance(MINUTE_NS);
        write_file(&v, &format!("f{i}"), format!("file {i}").as_bytes());
        pass(&v, &place, &state).unwrap();
    }
    let second = heads().last().unwrap().clone();
    assert!(second.seq > 2, "snapshots are not every pass");
    clock.advance(MINUTE_NS);
    write_file(&v, "after", b"after the snapshot");
    pass(&v, &place, &state).unwrap();
    let before = place.list(ObjectKind::Head).unwrap().len();
    assert_eq!(before as u64, second.seq + 1);

    clock.advance(v.replica_hold_ns() + MINUTE_NS);
    write_file(&v, "later", b"a hold later");
    pass(&v, &place, &state).unwrap();
    let kept = heads();
    assert_eq!(
        kept[0].seq, second.seq,
        "the heads before the snapshot went"
    );
    assert_eq!(
        place.list(ObjectKind::Head).unwrap().len(),
        kept.len(),
        "and left the remote"
    );
    let key = master(&v).envelope_key(&v.config().vault_id);
    let chain = head_chain(&place, &key).unwrap();
    assert!(chain[0].1.base && chain[0].1.seq == second.seq);
    assert_recovers_to(&v, &place, &d.path().join("recovered"));

    let pass_phrase = Passphrase::new(PASSPHRASE.to_vec());
    let too_old = second.time_ns - MINUTE_NS;
    let e = recover(
        &place,
        &pass_phrase,
        &StoreDir::new(d.path().join("too-old")),
        Some(too_old),
        &|_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("the oldest it keeps"), "{e}");
    let dest = StoreDir::new(d.path().join("at-snapshot"));
    let got = recover(&place, &pass_phrase, &dest, Some(second.time_ns), &|_| {}).unwrap();
    assert_eq!(got.heads, 1, "replayed from the snapshot alone");
}

/// A state written before snapshots (no heads, no audit parts) learns them
/// from the remote's chain once, and goes on as if it had always had them.
#[test]
fn a_state_from_before_snapshots_learns_the_remote_history() {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    let place = MemPlace::new();
    let state = d.path().join("state");
    for i in 0..3 {
        write_file(&v, &format!("f{i}"), &vec![i as u8; 50_000]);
        pass(&v, &place, &state).unwrap();
    }
    let dir = StateDir::new(state.clone());
    let full = dir.load().unwrap();
    assert_eq!(full.heads.len(), 3);
    let old = super::state::Shipped {
        heads: Vec::new(),
        audit_parts: Vec::new(),
        history_known: false,
        ..full.clone()
    };
    dir.save(&old).unwrap();
    write_file(&v, "f3", b"after the upgrade");
    pass(&v, &place, &state).unwrap();
    let learned = dir.load().unwrap();
    assert!(learned.history_known);
    assert_eq!(
        learned.heads[..3],
        full.heads[..3]
            .iter()
            .cloned()
            .map(|mut h| {
                h.pages = 0;
                h
            })
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(learned.heads.len(), 4);
    assert_eq!(
        learned.audit_parts[..full.audit_parts.len()],
        full.audit_parts[..]
    );
    assert_recovers_to(&v, &place, &d.path().join("recovered"));
}

/// A sealed pack of a real vault, with the vault's envelope key.
fn a_sealed_pack() -> (tempfile::TempDir, crate::crypto::EnvelopeKey, i64, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let v = open_vault(d.path());
    let mut noise = vec![0; 700_000];
    blake3::Hasher::new()
        .update(b"incompressible")
        .finalize_xof()
        .fill(&mut noise);
    write_file(&v, "a", &noise);
    write_file(&v, "b", &b"compressible text ".repeat(20_000));
    let cut = v.replication_cut().unwrap();
    let (id, _) = cut.sealed_packs[0];
    let pack = std::fs::read(v.pack_file(id)).unwrap();
    let key = master(&v).envelope_key(&v.config().vault_id);
    (d, key, id, pack)
}

/// A pack object gives the pack back byte for byte, comes out the same
/// each time, is padded, and shows none of the record headers or the
/// pack's own framing in clear.
#[test]
fn a_pack_object_decodes_to_its_pack_and_hides_its_headers() {
    use super::pack_object::{decode, decodes_to, encode};
    let (_d, key, id, pack) = a_sealed_pack();
    let object = encode(&key, id, &pack).unwrap();
    assert_eq!(object, encode(&key, id, &pack).unwrap(), "deterministic");
    assert!(decodes_to(&key, &object, id, &pack).unwrap());
    assert!(
        !decodes_to(&key, &object, id + 1, &pack).unwrap(),
        "another id"
    );
    assert!(!decodes_to(&key, &object, id, &pack[..pack.len() - 1]).unwrap());
    let mut longer = pack.clone();
    longer.push(0);
    assert!(!decodes_to(&key, &object, id, &longer).unwrap());
    let layout = crate::store::sealed_layout(crate::store::PackId::from_i64(id), &pack).unwrap();
    let body = &pack[layout.records[1].start + crate::store::RECORD_HEADER_LEN..][..32];
    let at = object.windows(32).position(|w| w == body).unwrap();
    let mut body_flipped = object.clone();
    body_flipped[at] ^= 1;
    assert!(
        !decodes_to(&key, &body_flipped, id, &pack).unwrap(),
        "a flipped body byte"
    );
    assert_eq!(object.len(), crate::crypto::padme(object.len()));
    assert!(object.len() >= pack.len());
    let (got, back) = decode(&key, &object).unwrap();
    assert_eq!(got, id);
    assert!(back == pack, "byte for byte");
    assert!(layout.records.len() > 2);
    let found = |needle: &[u8]| object.windows(needle.len()).any(|w| w == needle);
    for r in &layout.records {
        let block_id = &pack[r.start + 8..r.start + 40];
        assert!(!found(block_id), "a block id in clear");
    }
    assert!(
        !found(b"PHIPACK1") && !found(b"PHIPEND1"),
        "the pack's framing"
    );
    assert!(!found(&pack[layout.tail.clone()][..32]), "the pack's index");
}

/// Objects of the first release (the pack whole in an envelope) still
/// decode; damage to a new one is an error, never a wrong pack.
#[test]
fn old_pack_objects_decode_and_damaged_ones_are_refused() {
    use super::objects::{encode_pack, KIND_PACK};
    use super::pack_object::{decode, encode};
    let (_d, key, id, pack) = a_sealed_pack();
    let old = key.seal(
        KIND_PACK,
        &encode_pack(id, &pack),
        crate::crypto::Compress::No,
    );
    let (got, back) = decode(&key, &old).unwrap();
    assert_eq!(got, id);
    assert!(back == pack);
    let object = encode(&key, id, &pack).unwrap();
    let mut hurt = object.clone();
    hurt[20] ^= 1;
    assert!(decode(&key, &hurt).is_err(), "a flipped index byte");
    assert!(
        decode(&key, &object[..object.len() / 3]).is_err(),
        "cut short"
    );
    assert!(
        encode(&key, id, &pack[..pack.len() - 1]).is_err(),
        "not a sealed pack"
    );
}
