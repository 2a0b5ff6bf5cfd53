//! Engine benchmarks: block sealing/opening and the vault's write and read
//! paths, without a mount. Run: `cargo bench --bench engine`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phivault::crypto::{KdfParams, Keys, MasterKey, Passphrase};
use phivault::store::StoreDir;
use phivault::vault::{
    create_store, read_config, unlock_master, Caller, InitOptions, NodeSpec, OpenOptions, Vault,
    ROOT_INO,
};

const BLOCK: usize = 64 * 1024;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text(len: usize) -> Vec<u8> {
    b"Patient 0042, visit 2026-11-23: blood pressure 120/80, HbA1c 5.9%. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Mean size of a file in the Linux source tree.
const SMALL: usize = 11 * 1024;

fn blocks(c: &mut Criterion) {
    let keys = Keys::derive(&MasterKey::generate());
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    for (name, data) in [("random", random(BLOCK, 7)), ("text", text(BLOCK))] {
        g.bench_with_input(BenchmarkId::new("seal", name), &data, |b, d| {
            b.iter(|| keys.blocks.seal(black_box(d)))
        });
        let sealed = keys.blocks.seal(&data);
        g.bench_with_input(BenchmarkId::new("open", name), &sealed, |b, s| {
            b.iter(|| {
                keys.blocks
                    .open(&s.id, &s.nonce, black_box(s.ciphertext.clone()), BLOCK)
                    .unwrap()
            })
        });
    }
    g.finish();

    // The typical source file: what closing one small file costs to seal.
    let mut g = c.benchmark_group("small_block");
    let small = text(SMALL);
    g.throughput(Throughput::Bytes(SMALL as u64));
    g.bench_with_input(BenchmarkId::new("seal", "text_11KiB"), &small, |b, d| {
        b.iter(|| keys.blocks.seal(black_box(d)))
    });
    g.finish();
}

fn open_vault() -> (tempfile::TempDir, std::sync::Arc<Vault>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StoreDir::new(tmp.path().join("store"));
    let pass = Passphrase::new(b"benchmark passphrase, not secret".to_vec());
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    create_store(&dir, &pass, &opts).unwrap();
    let (master, _) = unlock_master(&read_config(&dir).unwrap(), &pass).unwrap();
    let vault = Vault::open(&dir, &master, &OpenOptions::default()).unwrap();
    (tmp, vault)
}

fn new_file(v: &Vault, name: &str) -> u64 {
    let a = v
        .create_node(
            &Caller::default(),
            ROOT_INO,
            name.as_bytes(),
            NodeSpec::file(0o644),
        )
        .unwrap();
    v.open_file(a.ino, false).unwrap();
    a.ino
}

fn vault_paths(c: &mut Criterion) {
    let (_tmp, v) = open_vault();
    let chunk = random(1 << 20, 11);
    let mut g = c.benchmark_group("vault");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(16 << 20));
    let mut n = 0;
    g.bench_function("sequential_write_16MiB", |b| {
        b.iter(|| {
            n += 1;
            let ino = new_file(&v, &format!("seq{n}"));
            let mut data = chunk.clone();
            for i in 0..16u64 {
                // Every block unique, so dedup does not shortcut the work.
                for (b, block) in data.chunks_mut(BLOCK).enumerate() {
                    block[..8].copy_from_slice(&(n << 32 | i << 8 | b as u64).to_le_bytes());
                }
                v.write(ino, i << 20, &data).unwrap();
            }
            v.release_file(ino).unwrap();
        })
    });
    let ino = new_file(&v, "readme");
    for i in 0..16u64 {
        let mut d = chunk.clone();
        d[0] = i as u8;
        v.write(ino, i << 20, &d).unwrap();
    }
    v.release_file(ino).unwrap();
    g.bench_function("sequential_read_16MiB_warm_cache", |b| {
        b.iter(|| {
            for i in 0..16u64 {
                black_box(v.read(ino, i << 20, 1 << 20).unwrap());
            }
        })
    });
    g.throughput(Throughput::Elements(1000));
    let ino = new_file(&v, "random4k");
    v.write(ino, 0, &random(16 << 20, 3)).unwrap();
    let mut x = 99u64;
    g.bench_function("random_4k_writes_x1000_then_fsync", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let off = (x >> 33) % ((16 << 20) / 4096) * 4096;
                v.write(ino, off, &chunk[..4096]).unwrap();
            }
            v.fsync(ino).unwrap();
        })
    });
    g.throughput(Throughput::Elements(1000));
    let mut round = 0;
    g.bench_function("create_write_close_1000_small_files", |b| {
        b.iter(|| {
            round += 1;
            for i in 0..1000 {
                let ino = new_file(&v, &format!("small-{round}-{i}"));
                v.write(ino, 0, &chunk[i * 97..i * 97 + 3000]).unwrap();
                v.release_file(ino).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, blocks, vault_paths);
criterion_main!(benches);
