//! Reads through the engine (`vault::read`): a read writes into the
//! caller's buffer, decrypting a stored block it covers whole straight into
//! it and going through the block cache for a block it covers in part. Both
//! ways, and the decryption ahead of sequential readers, must give exactly
//! the bytes a model file holds: across block boundaries, in holes, past
//! short last blocks, over buffered (unstored) blocks, at end of file.

mod common;

use phivault::vault::Vault;

const BS: u64 = 64 << 10;

/// Random writes and truncates into one file, mirrored in a model; returns
/// the file and the model.
fn build_file(v: &Vault, rng: &mut common::Rng, name: &str) -> (u64, Vec<u8>) {
    let ino = common::engine_file(v, name);
    let mut model = Vec::new();
    for step in 0..60 {
        if rng.below(8) == 0 {
            let size = rng.below(12 * BS) as usize;
            v.truncate(ino, size as u64).unwrap();
            model.resize(size, 0);
            continue;
        }
        // Some writes leave holes of whole blocks behind them.
        let off = rng.below(14 * BS) as usize;
        let len = 1 + rng.below(3 * BS) as usize;
        let data = common::pattern(step, len);
        v.write(ino, off as u64, &data).unwrap();
        if model.len() < off + len {
            model.resize(off + len, 0);
        }
        model[off..off + len].copy_from_slice(&data);
    }
    (ino, model)
}

/// Reads of every shape, each compared with the model.
fn check_reads(v: &Vault, rng: &mut common::Rng, ino: u64, model: &[u8], what: &str) {
    let size = model.len() as u64;
    let mut shapes: Vec<(u64, usize)> =
        vec![(0, model.len() + 100), (0, BS as usize), (BS, 1 << 20)];
    for _ in 0..300 {
        let off = rng.below(size + BS);
        let len = match rng.below(4) {
            // Whole, block-aligned spans: decrypted in place.
            0 => (1 + rng.below(16) * BS) as usize,
            1 => 4096,
            2 => 1 + rng.below(BS) as usize,
            _ => 1 + rng.below(4 * BS) as usize,
        };
        let off = if rng.below(2) == 0 {
            off / BS * BS
        } else {
            off
        };
        shapes.push((off, len));
    }
    for (off, len) in shapes {
        let mut out = vec![0xA5u8; len];
        let n = v.read_into(ino, off, &mut out).unwrap();
        let want = if off >= size {
            &[][..]
        } else {
            &model[off as usize..(off as usize + len).min(model.len())]
        };
        assert_eq!(n, want.len(), "{what}: length of a read of {len} at {off}");
        assert!(
            out[..n] == *want,
            "{what}: a read of {len} at {off} differs from the model"
        );
    }
}

#[test]
fn reads_match_the_model_in_place_through_the_cache_and_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng(0x5eed_0042);
    let mut files = Vec::new();
    {
        let v = common::open_engine(dir.path(), true, 0);
        for i in 0..3 {
            let (ino, model) = build_file(&v, &mut rng, &format!("f{i}"));
            // Buffered blocks not stored yet, read before the close.
            check_reads(&v, &mut rng, ino, &model, "open file, decrypting ahead");
            v.release_file(ino).unwrap();
            files.push((ino, model));
        }
        v.shutdown().unwrap();
    }
    // A reopened store: every block comes from the packs, not the cache.
    for decrypt_ahead in [false, true] {
        let v = common::open_engine(dir.path(), false, 0);
        v.set_decrypt_ahead(decrypt_ahead);
        for (ino, model) in &files {
            let what = format!("reopened store, decrypt_ahead={decrypt_ahead}");
            check_reads(&v, &mut rng, *ino, model, &what);
        }
        v.shutdown().unwrap();
    }
}
