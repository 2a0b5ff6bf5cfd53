//! Shared harness for the integration tests: real stores, real FUSE mounts,
//! driven through the real `phivault` binary.
#![allow(dead_code)]

pub mod replica;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "correct horse battery staple 42";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_phivault")
}

/// FUSE tests cannot run without /dev/fuse: fail loudly, never skip.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test mounts a real FUSE filesystem and needs /dev/fuse (load the fuse module, or run in a container with --device /dev/fuse)"
    );
}

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Tests of the io_uring transport need the kernel to offer it. It is off by
/// default; switch it on (root only), or fail saying why. Never skip.
pub fn require_io_uring() {
    require_fuse();
    let state = std::fs::read_to_string(ENABLE_URING).unwrap_or_else(|e| {
        panic!("this test needs FUSE over io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING): cannot read {ENABLE_URING}: {e}")
    });
    if state.trim() != "Y" {
        std::fs::write(ENABLE_URING, "Y").unwrap_or_else(|e| {
            panic!("this test needs FUSE over io_uring: as root, `echo Y > {ENABLE_URING}` ({e})")
        });
    }
}

/// Fails with a clear message when a program the test drives is missing
/// (`.ci/run` installs every one of them).
pub fn require_programs(names: &[&str]) {
    for name in names {
        let found = Command::new("bash")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "this test runs the real program `{name}`, which is not on PATH; install it (.ci/run lists the packages)"
        );
    }
}

/// The uid and gid of a Unix user the test acts as or serves files as;
/// fails saying so if the user does not exist (`.ci/run` creates `tests`).
pub fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").args([flag, user]));
        assert!(
            out.status.success(),
            "this test needs the Unix user `{user}`, which does not exist; create it as .ci/run does"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// Runs `script` with sh as `user`, its login uid set as a login sets it.
pub fn as_user(user: &str, script: &str) -> Output {
    let (uid, gid) = user_ids(user);
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo {uid} > /proc/self/loginuid || exit 97; \
             exec setpriv --reuid={uid} --regid={gid} --init-groups sh -c \"$0\""
        ))
        .arg(script))
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

/// Runs a command and panics with its output if it fails.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    ok_output(&out, &format!("{cmd:?}"));
    out
}

/// Panics with the output of a command (named `what`) that failed.
pub fn ok_output(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh(script: &str) -> Output {
    ok(Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script))
}

/// `phivault umount MNT`, which waits for the daemon to finish.
///
/// Tests run as threads of one process, and a thread that spawns a
/// program forks a child that holds copies of every descriptor open in
/// the process (another test's files included) until it execs. An unmount
/// that lands in that instant sees the mount busy: retry for a moment.
/// A mount that stays busy still fails the test.
/// A mount a test made by hand: unmounted on drop if it still is (a
/// failing test leaves none behind); `unmount` checks that it went.
pub struct MountGuard(pub PathBuf);

impl MountGuard {
    pub fn unmount(self) {
        unmount(&self.0);
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if mounts.contains(&format!(" {} ", self.0.display())) {
            let ok = Command::new(bin())
                .arg("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
}

pub fn unmount(mnt: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = run(Command::new(bin()).arg("umount").arg(mnt));
        let busy = String::from_utf8_lossy(&out.stderr).contains("is busy");
        if !busy || std::time::Instant::now() > deadline {
            ok_output(&out, "phivault umount");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A store plus a mountpoint in a private temp dir. Unmounts on drop.
pub struct Vault {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub mnt: PathBuf,
    pub pwfile: PathBuf,
    /// The daemon's log (kept outside the store, as in production).
    pub log: PathBuf,
    mounted: bool,
}

impl Vault {
    /// Initialised (fast KDF for tests) but not mounted.
    pub fn init() -> Self {
        Self::init_in(
            tempfile::Builder::new()
                .prefix("phivault-test-")
                .tempdir()
                .expect("tempdir"),
        )
    }

    /// A store (and its mountpoint, passphrase file and daemon log) made
    /// in a fresh directory on the tmpfs `fs`.
    pub fn init_on(fs: &Tmpfs) -> Self {
        Self::init_in(
            tempfile::Builder::new()
                .prefix("vault-")
                .tempdir_in(fs.path())
                .unwrap(),
        )
    }

    pub fn init_in(dir: tempfile::TempDir) -> Self {
        require_fuse();
        let store = dir.path().join("store");
        let mnt = dir.path().join("mnt");
        let pwfile = dir.path().join("passphrase");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(&pwfile, format!("{PASSPHRASE}\n")).unwrap();
        ok(Command::new(bin())
            .arg("init")
            .arg(&store)
            .arg("--passphrase-file")
            .arg(&pwfile)
            .args(["--kdf-memory-mib", "8", "--kdf-iterations", "1"]));
        let log = dir.path().join("daemon.log");
        Vault {
            dir,
            store,
            mnt,
            pwfile,
            log,
            mounted: false,
        }
    }

    /// A copy of the store `tests/fixtures/NAME`, made by an earlier
    /// release with `PASSPHRASE` (each fixture's test says how), not
    /// mounted.
    pub fn from_fixture(name: &str) -> Self {
        require_fuse();
        let dir = tempfile::Builder::new()
            .prefix("phivault-test-")
            .tempdir()
            .expect("tempdir");
        let store = dir.path().join("store");
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        ok(Command::new("cp").arg("-a").arg(&src).arg(&store));
        ok(Command::new("chmod").args(["-R", "go-rwx"]).arg(&store));
        let mnt = dir.path().join("mnt");
        let pwfile = dir.path().join("passphrase");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(&pwfile, format!("{PASSPHRASE}\n")).unwrap();
        let log = dir.path().join("daemon.log");
        Vault {
            dir,
            store,
            mnt,
            pwfile,
            log,
            mounted: false,
        }
    }

    /// A store that already exists at `dir`/store (made by `recover`,
    /// say), opened with `PASSPHRASE`; not mounted.
    pub fn existing_in(dir: tempfile::TempDir) -> Self {
        require_fuse();
        let store = dir.path().join("store");
        assert!(store.is_dir(), "no store at {}", store.display());
        let mnt = dir.path().join("mnt");
        let pwfile = dir.path().join("passphrase");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(&pwfile, format!("{PASSPHRASE}\n")).unwrap();
        let log = dir.path().join("daemon.log");
        Vault {
            dir,
            store,
            mnt,
            pwfile,
            log,
            mounted: false,
        }
    }

    /// The engine of this store, opened read-write (not while mounted).
    pub fn engine(&self) -> std::sync::Arc<phivault::vault::Vault> {
        use phivault::crypto::Passphrase;
        use phivault::store::StoreDir;
        use phivault::vault::{read_config, unlock_master, OpenOptions};
        let store = StoreDir::new(&self.store);
        let pass = Passphrase::new(PASSPHRASE.as_bytes().to_vec());
        let (master, _) = unlock_master(&read_config(&store).unwrap(), &pass).unwrap();
        phivault::vault::Vault::open(&store, &master, &OpenOptions::default()).unwrap()
    }

    /// The catalog's schema version (`PRAGMA user_version`).
    pub fn catalog_version(&self) -> i64 {
        let db = rusqlite::Connection::open(self.store.join("catalog.db")).unwrap();
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// Initialised and mounted.
    pub fn mounted() -> Self {
        let mut v = Self::init();
        v.mount(&[]);
        v
    }

    pub fn mounted_with(opts: &[&str]) -> Self {
        let mut v = Self::init();
        v.mount(opts);
        v
    }

    pub fn mount(&mut self, extra: &[&str]) {
        ok(self.mount_cmd(extra));
        self.mounted = true;
    }

    /// `mount` with the daemon's log filter set (PHIVAULT_LOG syntax).
    pub fn mount_logging(&mut self, filter: &str) {
        ok(self.mount_cmd(&[]).env("PHIVAULT_LOG", filter));
        self.mounted = true;
    }

    /// `phivault mount` for this store, under a time limit: a mount that
    /// hangs fails its test instead of stalling the whole run.
    pub fn mount_cmd(&self, extra: &[&str]) -> &mut Command {
        let cmd = Box::leak(Box::new(Command::new("timeout")));
        cmd.args(["--kill-after=5", "120"])
            .arg(bin())
            .arg("mount")
            .arg(&self.store)
            .arg(&self.mnt)
            .arg("--passphrase-file")
            .arg(&self.pwfile);
        cmd.arg("--log-file").arg(&self.log).args(extra);
        cmd
    }

    /// Unmounts and waits for the daemon to finish (see `unmount`).
    pub fn unmount(&mut self) {
        unmount(&self.mnt);
        self.mounted = false;
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount(&[]);
    }

    /// Marks the mount as gone (after a test killed the daemon itself).
    pub fn forget_mount(&mut self) {
        self.mounted = false;
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn phivault(&self, args: &[&str]) -> Output {
        run(Command::new(bin()).args(args))
    }

    /// `phivault audit verify` of this store, as it ran.
    pub fn audit_verify(&self) -> Output {
        run(Command::new(bin())
            .args(["audit", "verify"])
            .arg(&self.store)
            .arg("--passphrase-file")
            .arg(&self.pwfile))
    }

    /// `phivault audit verify` finds the trail intact (exit status 0);
    /// `when` names the moment in a failure.
    pub fn assert_audit_verifies(&self, when: &str) {
        let out = self.audit_verify();
        assert_eq!(
            out.status.code(),
            Some(0),
            "audit verify {when}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// PID of the daemon serving this store (from the store lock file).
    pub fn daemon_pid(&self) -> i32 {
        std::fs::read_to_string(self.store.join("lock"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        if self.mounted {
            let done = Command::new(bin())
                .arg("umount")
                .arg(&self.mnt)
                .output()
                .map(|o| o.status.success());
            if !matches!(done, Ok(true)) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
    }
}

/// A deterministic pseudo-random byte pattern (xorshift), distinct per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where two byte strings first differ (a length difference counts).
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or(if a.len() != b.len() {
            Some(a.len().min(b.len()))
        } else {
            None
        })
}

/// Every path under `root` (directories included, `root` too), symlinks not followed.
pub fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// A tmpfs of a fixed size, unmounted on drop (after everything inside).
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    pub fn new(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phivault-tmpfs-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot mount a tmpfs on {}",
            dir.path().display()
        );
        Tmpfs { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = self.path().to_path_buf();
        if !Command::new("umount")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
        drop(self.dir.take());
    }
}

const ENGINE_PASSPHRASE: &[u8] = b"test passphrase, not secret";

/// Opens an engine (no mount) on the store in `dir`/store, creating it first
/// with `create`, and keeping `space_reserve` bytes free for the catalog.
pub fn open_engine(
    dir: &Path,
    create: bool,
    space_reserve: u64,
) -> std::sync::Arc<phivault::vault::Vault> {
    let opts = phivault::vault::OpenOptions {
        space_reserve,
        ..phivault::vault::OpenOptions::default()
    };
    open_engine_with(dir, create, opts)
}

/// `open_engine` with options of the test's own (a clock, say).
pub fn open_engine_with(
    dir: &Path,
    create: bool,
    opts: phivault::vault::OpenOptions,
) -> std::sync::Arc<phivault::vault::Vault> {
    use phivault::crypto::{KdfParams, Passphrase};
    use phivault::store::StoreDir;
    use phivault::vault::{create_store, read_config, unlock_master, InitOptions};
    let store = StoreDir::new(dir.join("store"));
    let pass = Passphrase::new(ENGINE_PASSPHRASE.to_vec());
    if create {
        let init = InitOptions {
            kdf: KdfParams {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        create_store(&store, &pass, &init).unwrap();
    }
    let (master, _) = unlock_master(&read_config(&store).unwrap(), &pass).unwrap();
    phivault::vault::Vault::open(&store, &master, &opts).unwrap()
}

/// xorshift64*: a fixed seed gives the same run everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Creates a regular file in the root of an engine (no mount) and opens it.
pub fn engine_file(v: &phivault::vault::Vault, name: &str) -> u64 {
    use phivault::vault::{Caller, NodeSpec, ROOT_INO};
    let ino = v
        .create_node(
            &Caller::default(),
            ROOT_INO,
            name.as_bytes(),
            NodeSpec::file(0o644),
        )
        .unwrap()
        .ino;
    v.open_file(ino, false).unwrap();
    ino
}

/// Kills `pid` with SIGKILL and waits until it has exited.
pub fn sigkill(pid: i32) {
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
    wait_dead(pid);
}

/// Waits (bounded) until `pid` has exited (gone, or a zombie nobody reaps).
pub fn wait_dead(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(s) => {
                let state = s
                    .rsplit_once(") ")
                    .map(|(_, r)| r.chars().next())
                    .unwrap_or(None);
                if matches!(state, Some('Z') | Some('X')) {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} still alive 30 s after SIGKILL"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn c_path(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL")
}

/// The names of a file's extended attributes, sorted (links followed).
pub fn xattr_names(path: &Path) -> Vec<String> {
    let c = c_path(path);
    let mut buf = vec![0u8; 64 * 1024];
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        n >= 0,
        "listxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    let mut names: Vec<String> = buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    names
}

/// The value of one extended attribute (links followed); fails the test
/// if there is none.
pub fn xattr(path: &Path, name: &str) -> Vec<u8> {
    let c = c_path(path);
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name} of {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    buf
}

/// A SQLite database at `path` opened as the catalog opens its own: through
/// the WAL write gathering VFS, with small pages, WAL, no sync at commit,
/// and SQLite's own checkpoints off so the test decides when they run.
pub fn wal_gathering_catalog(path: &Path) -> rusqlite::Connection {
    let vfs = phivault::catalog::wal_writes::vfs_name().expect("the default VFS can be wrapped");
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
    let conn = rusqlite::Connection::open_with_flags_and_vfs(path, flags, vfs).expect("open");
    conn.execute_batch(
        "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         PRAGMA cache_size=500; PRAGMA wal_autocheckpoint=0; PRAGMA busy_timeout=10000;",
    )
    .expect("pragmas");
    conn
}

/// A file handle from `name_to_handle_at`, as an NFS server keeps one.
pub struct FileHandle {
    /// `struct file_handle` (handle_bytes, handle_type, then the handle),
    /// in words for its alignment.
    raw: Vec<u32>,
}

const HANDLE_HEADER: usize = std::mem::size_of::<libc::file_handle>();

impl FileHandle {
    /// The handle of `path` (not following a final symlink).
    pub fn of(path: &Path) -> Self {
        let c = c_path(path);
        let mut raw = vec![0u32; (HANDLE_HEADER + libc::MAX_HANDLE_SZ as usize) / 4];
        let fh = raw.as_mut_ptr().cast::<libc::file_handle>();
        let mut mount_id = 0;
        let rc = unsafe {
            (*fh).handle_bytes = libc::MAX_HANDLE_SZ as u32;
            libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), fh, &mut mount_id, 0)
        };
        assert_eq!(
            rc,
            0,
            "name_to_handle_at {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        let len = unsafe { (*fh).handle_bytes } as usize;
        raw.truncate((HANDLE_HEADER + len).div_ceil(4));
        FileHandle { raw }
    }

    /// Opens the handle on the filesystem mounted at `mnt` (needs
    /// CAP_DAC_READ_SEARCH, i.e. root).
    pub fn open(&self, mnt: &Path, flags: i32) -> std::io::Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        let mount = std::fs::File::open(mnt)?;
        let mut raw = self.raw.clone();
        let fd = unsafe {
            libc::open_by_handle_at(
                mount.as_raw_fd(),
                raw.as_mut_ptr().cast(),
                flags | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    /// Fails unless opening the handle on `mnt` fails with ESTALE.
    pub fn assert_stale(&self, mnt: &Path) {
        match self.open(mnt, libc::O_RDONLY) {
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) => {}
            Err(e) => panic!("a handle of a file that is gone should be stale (ESTALE), not {e}"),
            Ok(f) => panic!(
                "a handle of a file that is gone opened a file ({:?})",
                f.metadata()
            ),
        }
    }
}

/// Every regular file under `root`, recursively, sorted (symlinks not followed).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk_all(root)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    out.sort();
    out
}

/// Reads every byte of every file under `root` and panics naming the file
/// and offset if any of `needles` is in it (the marker search of the
/// security tests). Returns the bytes scanned and the files seen.
pub fn assert_absent(root: &Path, needles: &[&[u8]], when: &str) -> (u64, Vec<PathBuf>) {
    let files = files_under(root);
    let mut total = 0u64;
    for f in &files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            // A file may vanish while a daemon runs (-shm, temporaries).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {}: {e}", f.display()),
        };
        total += bytes.len() as u64;
        for n in needles {
            if let Some(at) = bytes.windows(n.len()).position(|w| w == *n) {
                panic!(
                    "{when}: {:?} found in plaintext in {} at byte {at} (file is {} bytes)",
                    String::from_utf8_lossy(n),
                    f.display(),
                    bytes.len()
                );
            }
        }
    }
    (total, files)
}
