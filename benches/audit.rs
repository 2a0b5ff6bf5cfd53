//! Audit trail benchmarks: appends per second (one thread, two appending
//! at once as two FUSE workers would, and two writers of one trail as a
//! read-write daemon and a read-only mount of the same store are), and
//! records indexed per second. The issue asks for at least 20,000 audited
//! opens per second, of which the append is one part.
//! Run: `cargo bench --bench audit`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phivault::audit::{AuditLog, AuditReader, Detail, Op, Query, Record, Who, WriterOptions};
use phivault::crypto::MasterKey;

fn record(i: u64) -> Record {
    Record {
        seq: 0,
        time_ns: 1_750_000_000_000_000_000 + i as i64,
        who: Who {
            uid: 1000,
            gid: 1000,
            pid: 4242,
            comm: "soffice.bin".into(),
            exe: "/usr/lib/libreoffice/program/soffice.bin".into(),
            login_uid: Some(1000),
            session_id: Some(3),
        },
        op: Op::Open,
        path: format!("/patients/4711/visits/2026-11-{:02}.odt", i % 30).into_bytes(),
        target: None,
        ino: 1000 + i % 5000,
        parent: 77,
        detail: Detail {
            flags: Some(libc::O_RDWR),
            ..Detail::default()
        },
        result: 0,
    }
}

fn open(dir: &std::path::Path) -> AuditLog {
    let keys = MasterKey::from_bytes([9; 32]).audit_keys();
    // The indexer runs as it does under a mount: it shares the cores.
    AuditLog::open(dir, keys, WriterOptions::default()).unwrap()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut i = 0u64;
    g.bench_function("append", |b| {
        b.iter(|| {
            i += 1;
            black_box(log.append(record(i)).unwrap())
        })
    });
    drop(log);

    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    g.bench_function("append, two threads (per record)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let log = log.clone();
                    s.spawn(move || {
                        for i in 0..iters / 2 {
                            black_box(log.append(record(t << 40 | i)).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });

    // Two writers, each with its own lock file description, as two
    // processes: every append follows the other's records.
    let dir = tempfile::tempdir().unwrap();
    let logs = [open(dir.path()), open(dir.path())];
    g.bench_function("append, two writers of one trail (per record)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for (t, log) in logs.iter().enumerate() {
                    s.spawn(move || {
                        for i in 0..iters / 2 {
                            black_box(log.append(record((t as u64) << 40 | i)).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

/// Indexing: records per second the index takes in, rebuilt from nothing
/// (a new or deleted index.db) and caught up after a burst onto an index
/// of 200,000. A query indexes what it finds missing.
fn index(c: &mut Criterion) {
    const TRAIL: u64 = 200_000;
    const BURST: u64 = 50_000;
    let mut g = c.benchmark_group("audit index");
    g.sample_size(10);
    let keys = MasterKey::from_bytes([9; 32]).audit_keys();
    let quiet = WriterOptions {
        index_interval: None,
        ..WriterOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), keys.clone(), quiet).unwrap();
    for i in 0..TRAIL {
        log.append(record(i)).unwrap();
    }
    log.sync().unwrap();
    let newest = Query {
        limit: Some(1),
        newest_first: true,
        ..Query::default()
    };
    g.throughput(Throughput::Elements(TRAIL));
    g.bench_function("from nothing", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                for f in ["index.db", "index.db-wal", "index.db-shm"] {
                    let _ = std::fs::remove_file(dir.path().join(f));
                }
                let reader = AuditReader::open(dir.path(), keys.clone());
                let start = Instant::now();
                black_box(reader.query(&newest).unwrap());
                took += start.elapsed();
            }
            took
        })
    });
    g.throughput(Throughput::Elements(BURST));
    let reader = AuditReader::open(dir.path(), keys.clone());
    reader.query(&newest).unwrap();
    let mut i = TRAIL;
    g.bench_function("a burst onto an index", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..BURST {
                    i += 1;
                    log.append(record(i)).unwrap();
                }
                let start = Instant::now();
                black_box(reader.query(&newest).unwrap());
                took += start.elapsed();
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, append, index);
criterion_main!(benches);
