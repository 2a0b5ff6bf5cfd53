//! NFS export: file handles (`name_to_handle_at`) keep opening the file they
//! were made for after the kernel forgot it, and after a remount; a handle
//! of a file that is gone is stale and never opens another file.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{FileHandle, Vault};

/// The kernel's dentry and inode caches for every filesystem are emptied,
/// so what a handle names must be found through the daemon again.
fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .expect("this test empties the kernel's caches and must run as root");
}

fn read_fd(file: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    file.read_to_end(&mut out).unwrap();
    out
}

/// Opens `name` inside the directory open as `dir`.
fn open_in(dir: &File, name: &str, flags: i32) -> std::io::Result<File> {
    let c = std::ffi::CString::new(name).unwrap();
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn names_in(dir: &File) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Handles {
    file: FileHandle,
    nested_file: FileHandle,
    dir: FileHandle,
}

/// Opens every handle through `mnt` and checks it is the object it was
/// made for: the files' content, the directory's entries and its parents
/// (the kernel finds those by asking the daemon for "..").
fn check_handles(mnt: &Path, h: &Handles, root_ino: u64, a_ino: u64) {
    let mut top = h
        .file
        .open(mnt, libc::O_RDONLY)
        .expect("open the file by its handle");
    assert_eq!(read_fd(&mut top), b"top content");
    let mut nested = h
        .nested_file
        .open(mnt, libc::O_RDONLY)
        .expect("open the nested file by its handle");
    assert_eq!(read_fd(&mut nested), b"nested content");

    let dir = h
        .dir
        .open(mnt, libc::O_RDONLY | libc::O_DIRECTORY)
        .expect("open the directory by its handle");
    assert_eq!(names_in(&dir), ["f", "g"]);
    let mut f = open_in(&dir, "f", libc::O_RDONLY).unwrap();
    assert_eq!(read_fd(&mut f), b"nested content");
    let up = open_in(&dir, "..", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    assert_eq!(
        up.metadata().unwrap().ino(),
        a_ino,
        "the parent of a/b is a"
    );
    let up2 = open_in(&up, "..", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    assert_eq!(
        up2.metadata().unwrap().ino(),
        root_ino,
        "the parent of a is the root"
    );
}

#[test]
fn handles_open_their_files_after_the_caches_are_dropped_and_after_a_remount() {
    let mut v = Vault::mounted();
    std::fs::create_dir_all(v.path("a/b")).unwrap();
    std::fs::write(v.path("top"), "top content").unwrap();
    std::fs::write(v.path("a/b/f"), "nested content").unwrap();
    std::fs::write(v.path("a/b/g"), "").unwrap();
    let root_ino = std::fs::metadata(&v.mnt).unwrap().ino();
    let a_ino = std::fs::metadata(v.path("a")).unwrap().ino();
    let h = Handles {
        file: FileHandle::of(&v.path("top")),
        nested_file: FileHandle::of(&v.path("a/b/f")),
        dir: FileHandle::of(&v.path("a/b")),
    };

    drop_caches();
    check_handles(&v.mnt, &h, root_ino, a_ino);

    v.remount();
    drop_caches();
    check_handles(&v.mnt, &h, root_ino, a_ino);
}

#[test]
fn handle_of_a_deleted_file_is_stale_and_opens_no_other_file() {
    let mut v = Vault::mounted();
    std::fs::write(v.path("gone"), "deleted content").unwrap();
    std::fs::create_dir(v.path("gone-dir")).unwrap();
    let file = FileHandle::of(&v.path("gone"));
    let dir = FileHandle::of(&v.path("gone-dir"));
    std::fs::remove_file(v.path("gone")).unwrap();
    std::fs::remove_dir(v.path("gone-dir")).unwrap();
    // Candidates for the freed inode numbers, were they ever reused.
    for i in 0..20 {
        std::fs::write(v.path(&format!("new{i}")), format!("new {i}")).unwrap();
        std::fs::create_dir(v.path(&format!("newdir{i}"))).unwrap();
    }

    drop_caches();
    file.assert_stale(&v.mnt);
    dir.assert_stale(&v.mnt);

    v.remount();
    drop_caches();
    file.assert_stale(&v.mnt);
    dir.assert_stale(&v.mnt);
}

/// A create that had not reached the disk when the power went (its group
/// was not committed, or its WAL frames not synced) is gone after the
/// restart, and its inode number is handed out again. A handle made before
/// must not open the new node in its place.
#[test]
fn handle_of_a_create_lost_in_a_crash_does_not_open_the_node_that_reuses_its_number() {
    let mut v = Vault::mounted();
    std::fs::create_dir(v.path("lost")).unwrap();
    let lost_ino = std::fs::metadata(v.path("lost")).unwrap().ino();
    let lost = FileHandle::of(&v.path("lost"));
    v.unmount();
    // What the power loss leaves: the catalog without the mkdir. (Killing
    // the daemon at once loses it too, unless the 50 ms group commit
    // comes first, which a busy machine makes likely.)
    {
        let c = rusqlite::Connection::open(v.store.join("catalog.db")).unwrap();
        c.execute_batch(&format!(
            "DELETE FROM dentries WHERE ino = {lost_ino};
             DELETE FROM inodes WHERE ino = {lost_ino};
             UPDATE inodes SET nlink = nlink - 1 WHERE ino = 1;"
        ))
        .unwrap();
    }

    v.mount(&[]);
    assert!(!v.path("lost").exists());
    std::fs::create_dir(v.path("new")).unwrap();
    std::fs::write(v.path("new/inside"), "").unwrap();
    assert_eq!(
        std::fs::metadata(v.path("new")).unwrap().ino(),
        lost_ino,
        "the new directory should take the lost one's inode number"
    );
    drop_caches();
    lost.assert_stale(&v.mnt);
}

/// A store made by the release before generations (catalog schema 1,
/// tests/fixtures/store-f35037b, see tests/upgrade.rs) opens, is upgraded,
/// and its inodes keep generation 0, which the handles that release gave
/// out carry.
#[test]
fn a_schema_1_store_opens_and_its_inodes_keep_generation_0() {
    let store = common::Vault::from_fixture("store-f35037b");
    assert_eq!(store.catalog_version(), 1);
    let v = store.engine();
    let old = v.resolve(b"/charts/scan.bin").unwrap();
    assert_eq!(v.generation(old), 0);
    assert_eq!(v.lookup_id(old).unwrap().ino, old);
    let new = common::engine_file(&v, "new");
    assert_ne!(
        v.generation(new),
        0,
        "a new inode has a generation of its own"
    );
    v.release_file(new).unwrap();
    v.shutdown().unwrap();
    drop(v);
    assert_eq!(store.catalog_version(), phivault::catalog::SCHEMA_VERSION);
}

/// nfs-ganesha serving a directory over NFSv4 on 127.0.0.1 only, through
/// its VFS backend (which opens files by handle, as kernel nfsd does).
/// Stopped on drop.
struct Ganesha {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Ganesha {
    fn serve(path: &Path) -> Self {
        common::require_programs(&["ganesha.nfsd", "nfs-ls", "nfs-cat", "nfs-cp"]);
        let dir = tempfile::Builder::new()
            .prefix("phivault-ganesha-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let conf = dir.path().join("ganesha.conf");
        std::fs::create_dir(dir.path().join("recovery")).unwrap();
        // NFSv4 only: no rpcbind, no NLM, no rquota; no grace period, so
        // it serves at once.
        std::fs::write(
            &conf,
            format!(
                r#"NFS_CORE_PARAM {{
    Protocols = 4;
    Bind_Addr = 127.0.0.1;
    NFS_Port = {port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFS_KRB5 {{ Active_krb5 = false; }}
NFSv4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {recovery};
    Only_Numeric_Owners = true;
}}
EXPORT {{
    Export_Id = 1;
    Path = {path};
    Pseudo = /phi;
    Protocols = 4;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
"#,
                recovery = dir.path().join("recovery").display(),
                path = path.display(),
            ),
        )
        .unwrap();
        let out = std::fs::File::create(dir.path().join("ganesha.out")).unwrap();
        let child = Command::new("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(dir.path().join("ganesha.log"))
            .arg("-p")
            .arg(dir.path().join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start ganesha.nfsd");
        let mut ganesha = Ganesha { child, dir, port };
        ganesha.wait_listening();
        ganesha
    }

    fn wait_listening(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ganesha.nfsd exited with {status}\n{}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ganesha.nfsd does not listen on 127.0.0.1:{} after 30 s\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "ganesha output:\n{}\nganesha log:\n{}",
            read("ganesha.out"),
            read("ganesha.log")
        )
    }

    fn url(&self, rel: &str) -> String {
        format!("nfs://127.0.0.1/phi/{rel}?version=4&nfsport={}", self.port)
    }

    /// Runs a libnfs client tool, failing with ganesha's log if it fails.
    #[track_caller]
    fn client(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = common::run(Command::new("timeout").arg("60").arg(tool).args(args));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed with {}\nstdout: {}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out.stdout
    }

    #[track_caller]
    fn cat(&self, rel: &str) -> Vec<u8> {
        self.client("nfs-cat", &[&self.url(rel)])
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn the_mount_exported_by_nfs_ganesha_reads_and_writes_after_the_caches_are_dropped() {
    let mut v = Vault::mounted();
    std::fs::create_dir(v.path("d")).unwrap();
    std::fs::write(v.path("report.txt"), "patient report\n").unwrap();
    std::fs::write(v.path("d/nested.txt"), "nested\n").unwrap();
    let local = v.dir.path().join("upload.txt");
    std::fs::write(&local, "written over NFS\n").unwrap();

    {
        let nfs = Ganesha::serve(&v.mnt);
        assert_eq!(nfs.cat("report.txt"), b"patient report\n");
        let listing = String::from_utf8(nfs.client("nfs-ls", &[&nfs.url("d")])).unwrap();
        assert!(listing.contains("nested.txt"), "nfs-ls d: {listing}");
        nfs.client(
            "nfs-cp",
            &[local.to_str().unwrap(), &nfs.url("d/from-nfs.txt")],
        );
        assert_eq!(
            std::fs::read(v.path("d/from-nfs.txt")).unwrap(),
            b"written over NFS\n"
        );

        // ganesha keeps its handles; the kernel must find the nodes again.
        drop_caches();
        assert_eq!(nfs.cat("report.txt"), b"patient report\n");
        assert_eq!(nfs.cat("d/nested.txt"), b"nested\n");
        assert_eq!(nfs.cat("d/from-nfs.txt"), b"written over NFS\n");
    }
    // ganesha is gone (it may have held files open): the mount is free.
    v.unmount();
}
