//! FUSE over io_uring: the kernel queues each request on the CPU that made
//! it, and a daemon worker pinned to that CPU serves it. The mount must use
//! the transport it was asked for, say which in its log, and give programs
//! the same files over either transport. (The rest of the suite runs with
//! `--io-uring auto`; `.ci/run` switches the kernel's io_uring on, and
//! `suites.rs` runs pjdfstest and fsx over both transports.)

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{ok, pattern, require_io_uring, sh, Vault};

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Serialises the tests here that switch io_uring off in the kernel.
static KERNEL_SWITCH: Mutex<()> = Mutex::new(());

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// How many of the daemon's threads are ring workers.
fn ring_workers(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("fuser-ring"))
        .count()
}

/// (over io_uring, through /dev/fuse, FORGETs and INTERRUPTs among the
/// latter) from the count the daemon logs when its session ends.
fn requests_served(log: &str) -> (u64, u64, u64) {
    let line = log
        .lines()
        .rfind(|l| l.contains("requests over io_uring"))
        .unwrap_or_else(|| panic!("the log does not count the requests served:\n{log}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [.., ring, dev, forgets] = numbers[..] else {
        panic!("unexpected count line: {line}")
    };
    (ring, dev, forgets)
}

fn possible_cpus() -> usize {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    list.trim()
        .split(',')
        .map(|r| {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            hi.parse::<usize>().unwrap() - lo.parse::<usize>().unwrap() + 1
        })
        .sum()
}

/// Every file of the store with its contents.
fn snapshot(store: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    common::walk_all(store)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn log_text(v: &Vault) -> String {
    std::fs::read_to_string(&v.log).unwrap_or_default()
}

/// A tree of small files, big files and a SQLite database, written by
/// programs pinned to `cpu` (so its requests land on that CPU's queue).
fn workload_on_cpu(v: &Vault, source: &Path, cpu: usize) {
    let dir = v.path(&format!("cpu{cpu}"));
    std::fs::create_dir(&dir).unwrap();
    sh(&format!(
        "taskset -c {cpu} tar -C {src} -cf - . | taskset -c {cpu} tar -C {dst} -xf -
         diff -r {src} {dst}
         taskset -c {cpu} dd if={src}/big.bin of={dst}/copy.bin bs=1M status=none conv=fsync
         cmp {src}/big.bin {dst}/copy.bin",
        src = q(source),
        dst = q(&dir),
    ));
    let db = dir.join("t.sqlite");
    let mut script = String::from("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);\n");
    for i in 0..200 {
        script.push_str(&format!(
            "BEGIN; INSERT INTO t(v) VALUES (randomblob({})); COMMIT;\n",
            100 + i * 37
        ));
    }
    script.push_str("PRAGMA integrity_check; SELECT count(*) FROM t;\n");
    let out = ok(Command::new("bash").arg("-c").arg(format!(
        "taskset -c {cpu} sqlite3 {} <<'EOF'\n{script}EOF",
        q(&db)
    )));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok\n200",
        "sqlite over the mount from CPU {cpu}"
    );
}

fn source_tree() -> tempfile::TempDir {
    let src = tempfile::Builder::new()
        .prefix("phivault-uring-src-")
        .tempdir()
        .unwrap();
    for d in 0..20 {
        let dir = src.path().join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..25 {
            let len = (d * 25 + f) * 97 % 9000;
            std::fs::write(
                dir.join(format!("f{f:02}.txt")),
                pattern((d * 100 + f) as u64, len),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink(format!("f{:02}.txt", d % 25), dir.join("link")).unwrap();
    }
    std::fs::write(src.path().join("big.bin"), pattern(77, 24 << 20)).unwrap();
    src
}

#[test]
fn io_uring_mount_serves_programs_on_every_cpu_and_matches_dev_fuse() {
    let _switch = KERNEL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    require_io_uring();
    let source = source_tree();
    let mut v = Vault::init();
    v.mount(&["--io-uring", "on"]);
    let pid = v.daemon_pid();
    assert!(
        log_text(&v).contains("kernel requests arrive over io_uring"),
        "the log does not say io_uring:\n{}",
        log_text(&v)
    );
    // The workers start right after the mount reports ready; until they
    // register, the kernel holds requests back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ring_workers(pid) < possible_cpus() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let workers = ring_workers(pid);
    assert!(
        workers >= possible_cpus(),
        "{workers} ring workers for {} CPUs: every per-CPU queue needs one",
        possible_cpus()
    );

    for cpu in 0..possible_cpus() {
        workload_on_cpu(&v, source.path(), cpu);
    }
    v.unmount();
    // The kernel sends FORGET and INTERRUPT through /dev/fuse whatever the
    // transport; every other request must have come over the ring.
    // The workload writes 500 files per CPU, each at least a LOOKUP, CREATE,
    // WRITE, FLUSH and RELEASE.
    let (ring, dev, forgets) = requests_served(&log_text(&v));
    assert!(
        ring >= 5 * 500 * possible_cpus() as u64 && dev == forgets,
        "the ring workers should serve the requests: {ring} over io_uring, {dev} through /dev/fuse of which {forgets} FORGET or INTERRUPT"
    );

    // The same store over /dev/fuse: identical files, an intact database.
    v.mount(&["--io-uring", "off"]);
    let pid = v.daemon_pid();
    assert_eq!(ring_workers(pid), 0, "--io-uring off started ring workers");
    assert!(
        log_text(&v).contains("kernel requests arrive through /dev/fuse"),
        "the log does not say /dev/fuse:\n{}",
        log_text(&v)
    );
    for cpu in 0..possible_cpus() {
        let dir = v.path(&format!("cpu{cpu}"));
        sh(&format!(
            "diff -r --exclude=copy.bin --exclude=t.sqlite {} {}
             cmp {}/big.bin {}/copy.bin",
            q(source.path()),
            q(&dir),
            q(source.path()),
            q(&dir)
        ));
        let out = ok(Command::new("sqlite3")
            .arg(dir.join("t.sqlite"))
            .arg("PRAGMA integrity_check; SELECT count(*) FROM t;"));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok\n200");
    }
}

/// Sets a kernel knob for the length of a test; the old value comes back
/// however the test ends.
struct KernelKnob {
    path: &'static str,
    old: String,
}

impl KernelKnob {
    fn set(path: &'static str, value: &str) -> Self {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value).unwrap_or_else(|e| panic!("cannot set {path}: {e}"));
        KernelKnob { path, old }
    }
}

impl Drop for KernelKnob {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// Runs `phivault mount` with `args`, which must fail with one line
/// containing every one of `expect`.
fn mount_fails(v: &Vault, args: &[&str], expect: &[&str]) {
    let out = common::run(v.mount_cmd(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount {args:?} succeeded");
    assert!(
        expect.iter().all(|e| stderr.contains(e)),
        "unclear error (expected {expect:?}): {stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "not one sentence: {stderr}"
    );
}

#[test]
fn io_uring_on_fails_clearly_when_the_kernel_does_not_offer_it() {
    let _switch = KERNEL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    require_io_uring();
    let mut v = Vault::init();
    let before = snapshot(&v.store);
    let _uring_off = KernelKnob::set(ENABLE_URING, "N");

    mount_fails(
        &v,
        &["--io-uring", "on"],
        &["does not offer FUSE over io_uring", "enable_uring"],
    );
    assert!(
        !common::sh("cat /proc/self/mounts")
            .stdout
            .windows(v.mnt.as_os_str().len())
            .any(|w| w == v.mnt.as_os_str().as_encoded_bytes()),
        "something is mounted after the failed mount"
    );
    assert!(snapshot(&v.store) == before, "the store changed");

    // auto falls back to /dev/fuse.
    v.mount(&["--io-uring", "auto"]);
    std::fs::write(v.path("hello"), b"over /dev/fuse").unwrap();
    assert_eq!(std::fs::read(v.path("hello")).unwrap(), b"over /dev/fuse");
    assert_eq!(ring_workers(v.daemon_pid()), 0);
    assert!(log_text(&v).contains("kernel requests arrive through /dev/fuse"));
}

const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// If the test fails, detaches its mount lazily: a mount whose requests hang
/// would otherwise hang the clean-up of its temp dir as well.
struct DetachOnPanic(std::path::PathBuf);

impl Drop for DetachOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// FUSE offers io_uring but the process may not create rings: asking for
/// the transport anyway would leave the kernel waiting for queues that never
/// register, and every request on the mount would hang.
#[test]
fn io_uring_forbidden_to_the_process_falls_back_instead_of_hanging() {
    let _switch = KERNEL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    require_io_uring();
    let mut v = Vault::init();
    let _forbidden = KernelKnob::set(IO_URING_DISABLED, "2");
    let _detach = DetachOnPanic(v.mnt.clone());

    mount_fails(&v, &["--io-uring", "on"], &["cannot use io_uring"]);

    v.mount(&["--io-uring", "auto"]);
    // In a child under a time limit: on a mount whose kernel waits for
    // queues that never register, this would block forever.
    let out = sh(&format!(
        "timeout 30 sh -c 'echo still served > {f} && cat {f}'",
        f = v.path("hello").display()
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still served\n");
    assert_eq!(ring_workers(v.daemon_pid()), 0);
    assert!(log_text(&v).contains("io_uring is unusable"));
}
