//! Samba exporting a phivault mount, the way a clinic shares it with its
//! Windows desktops: a real smbd on loopback serves the mount and a native
//! directory side by side, and smbclient (SMB3) does to both what a Windows
//! client does: copies, a whole tree, DOS attributes, an alternate data
//! stream, an office-style save through temp files and renames, a backup
//! with smbclient's tar. The two shares must answer alike, the files must be
//! the same when seen locally, and what Samba stored in extended attributes
//! must survive an unmount.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_programs, Vault};

/// The Unix account Samba serves the client as: pjdfstest's dummy user,
/// which `.ci/run` creates.
const SMB_USER: &str = "tests";

/// Only used on loopback, for the test's own smbd.
const SMB_PASSWORD: &str = "not-a-real-secret-1";

/// A directory `share` under `parent`, owned by the SMB user, with every
/// directory above it open for the user to walk through.
fn share_dir(parent: &Path, (uid, gid): (u32, u32)) -> PathBuf {
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    let share = parent.join("share");
    fs::create_dir(&share).unwrap();
    std::os::unix::fs::chown(&share, Some(uid), Some(gid)).unwrap();
    share
}

/// A private smbd serving some directories on a loopback port, with its
/// configuration, password database, locks and logs in a temp dir.
struct Smbd {
    state: tempfile::TempDir,
    port: u16,
    child: Child,
}

/// How the shares of `samba_serves_the_mount_as_it_serves_a_native_directory`
/// store what Windows clients send.
const PLAIN_SHARE: &str = "vfs objects = acl_xattr streams_xattr\n";

/// A share offering each file's earlier versions from the mount's hidden
/// `.snapshots` (Explorer's "Previous Versions"), as the README gives it.
const PREVIOUS_VERSIONS_SHARE: &str = "vfs objects = shadow_copy2 acl_xattr streams_xattr\n\
     shadow:snapdir = .snapshots\n\
     shadow:format = @GMT-%Y.%m.%d-%H.%M.%S\n\
     shadow:localtime = no\n\
     shadow:sort = desc\n";

impl Smbd {
    fn start(shares: &[(&str, &Path)]) -> Self {
        Self::start_with(shares, PLAIN_SHARE)
    }

    /// Serves `shares`, each with the lines of `share_conf` besides its path.
    fn start_with(shares: &[(&str, &Path)], share_conf: &str) -> Self {
        let state = tempfile::Builder::new()
            .prefix("phivault-smbd-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let s = state.path().display();
        let mut conf = format!(
            "[global]\n\
             server role = standalone server\n\
             interfaces = lo\n\
             bind interfaces only = yes\n\
             smb ports = {port}\n\
             disable netbios = yes\n\
             server min protocol = SMB3\n\
             private dir = {s}/private\n\
             lock directory = {s}/lock\n\
             state directory = {s}/state\n\
             cache directory = {s}/cache\n\
             pid directory = {s}/pid\n\
             ncalrpc dir = {s}/ncalrpc\n\
             log file = {s}/log.%m\n\
             passdb backend = tdbsam:{s}/private/passdb.tdb\n\
             map to guest = never\n\
             load printers = no\n\
             printcap name = /dev/null\n\
             disable spoolss = yes\n"
        );
        for (name, path) in shares {
            conf.push_str(&format!(
                "[{name}]\n\
                 path = {}\n\
                 read only = no\n\
                 {share_conf}\
                 store dos attributes = yes\n\
                 ea support = yes\n",
                path.display()
            ));
        }
        for dir in ["private", "lock", "state", "cache", "pid", "ncalrpc"] {
            fs::create_dir(state.path().join(dir)).unwrap();
        }
        let conf_path = state.path().join("smb.conf");
        fs::write(&conf_path, conf).unwrap();
        // smbclient reads the password from a file, never from its argv.
        let auth = state.path().join("auth");
        fs::write(
            &auth,
            format!("username = {SMB_USER}\npassword = {SMB_PASSWORD}\n"),
        )
        .unwrap();
        fs::set_permissions(&auth, fs::Permissions::from_mode(0o600)).unwrap();

        let mut add_user = Command::new("smbpasswd")
            .arg("-c")
            .arg(&conf_path)
            .args(["-a", "-s", SMB_USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run smbpasswd");
        use std::io::Write;
        add_user
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{SMB_PASSWORD}\n{SMB_PASSWORD}\n").as_bytes())
            .unwrap();
        let out = add_user.wait_with_output().unwrap();
        common::ok_output(&out, "smbpasswd -a");

        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("smbd")
                .args(["--foreground", "--no-process-group", "--configfile"])
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: the drop ends every child smbd too.
                .process_group(0)
                .spawn()
                .expect("run smbd")
        };
        let mut smbd = Smbd { state, port, child };
        smbd.wait_listening();
        smbd
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("smbd exited with {status}\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "smbd is not listening on port {} after 30 s\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in fs::read_dir(self.state.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("log.")
            {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                all.push_str(&format!("--- {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// Runs smbclient against `share` with `args` (`-c COMMANDS`, `-T...`),
    /// and returns what it printed. Any failure, reported by its exit status
    /// or in its output, fails the test.
    fn client(&self, share: &str, args: &[&str]) -> String {
        self.client_allowing(share, args, &[])
    }

    /// As `client`, but the statuses in `allowed` are expected answers.
    fn client_allowing(&self, share: &str, args: &[&str], allowed: &[&str]) -> String {
        let out = common::run(
            Command::new("smbclient")
                .arg(format!("//127.0.0.1/{share}"))
                .args(["-p", &self.port.to_string(), "-m", "SMB3", "-A"])
                .arg(self.state.path().join("auth"))
                .args(args)
                .stdin(Stdio::null()),
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut unexpected = printed.clone();
        for status in allowed {
            unexpected = unexpected.replace(status, "");
        }
        assert!(
            out.status.success() && !unexpected.contains("NT_STATUS_"),
            "smbclient {share} {args:?} failed with {}:\n{printed}\n{}",
            out.status,
            self.logs()
        );
        printed
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// What smbclient reported that does not depend on when it ran: DOS
/// attributes and streams from `allinfo`, in order, then name, attributes
/// and size of each `ls` entry (its date dropped), sorted, as `ls` lists in
/// the directory's own order.
fn facts(printed: &str) -> Vec<String> {
    let mut info = Vec::new();
    let mut listed = Vec::new();
    for line in printed.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        let ends_in_year = words
            .last()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()));
        if t.starts_with("attributes:") || t.starts_with("stream:") {
            info.push(t.to_string());
        } else if line.starts_with("  ") && words.len() >= 7 && ends_in_year {
            // "  name  ATTRS  SIZE  Wed Dec  2 13:47:11 2026"
            listed.push(words[..words.len() - 5].join(" "));
        }
    }
    listed.sort();
    info.extend(listed);
    info
}

/// Every entry under `root` with what the local view shows of it: kind,
/// mode, owner, size, link count, and the names of its extended attributes.
fn local_view(root: &Path) -> BTreeMap<PathBuf, String> {
    common::walk_all(root)
        .into_iter()
        .map(|path| {
            let m = fs::symlink_metadata(&path).unwrap();
            let what = format!(
                "mode {:o} uid {} gid {} size {} nlink {} xattrs {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.len() },
                m.nlink(),
                common::xattr_names(&path)
            );
            (path.strip_prefix(root).unwrap().to_path_buf(), what)
        })
        .collect()
}

fn diff_r(a: &Path, b: &Path) {
    common::ok(Command::new("diff").arg("-r").arg(a).arg(b));
}

const STREAM: &str = "Zone.Identifier";

#[test]
fn samba_serves_the_mount_as_it_serves_a_native_directory() {
    require_programs(&["smbd", "smbclient", "smbpasswd", "tar", "diff"]);
    let ids = common::user_ids(SMB_USER);
    let mut v = Vault::mounted_with(&["-o", "allow_other"]);
    // The mount's root belongs to root; the share is a directory inside it.
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let phi = share_dir(&v.mnt, ids);
    let native_root = tempfile::Builder::new()
        .prefix("phivault-smb-native-")
        .tempdir()
        .unwrap();
    let native = share_dir(native_root.path(), ids);
    let smbd = Smbd::start(&[("phi", &phi), ("native", &native)]);

    // What the client sends: a scan, two versions of a note, a stream.
    let client = tempfile::Builder::new()
        .prefix("phivault-smb-client-")
        .tempdir()
        .unwrap();
    let work = client.path();
    let scan = common::pattern(7, (3 << 20) + 123);
    let notes_v1 = b"Patient 1024: follow-up in two weeks.\n".repeat(300);
    let notes_v2 = b"Patient 1024: follow-up in ten days.\n".repeat(310);
    let zone = b"[ZoneTransfer]\r\nZoneId=3\r\n";
    fs::write(work.join("scan.dcm"), &scan).unwrap();
    fs::write(work.join("notes-v1.txt"), &notes_v1).unwrap();
    fs::write(work.join("notes-v2.txt"), &notes_v2).unwrap();
    fs::write(work.join("zone.txt"), zone).unwrap();

    // The session of a Windows user: files in, a stream, a hidden file, a
    // save the way office suites do it (new temp file, old file renamed
    // aside, temp renamed into place, old deleted), a directory made and
    // removed, a whole tree copied in.
    let session = format!(
        "lcd {work}; mkdir records; cd records; \
         put scan.dcm; put notes-v1.txt notes.txt; \
         put zone.txt scan.dcm:{STREAM}; setmode scan.dcm +h; \
         put notes-v2.txt ~WRL0001.tmp; rename notes.txt ~WRL0002.tmp; \
         rename ~WRL0001.tmp notes.txt; del ~WRL0002.tmp; \
         mkdir gone; rmdir gone; \
         allinfo scan.dcm; allinfo notes.txt; ls; \
         lcd /usr/include; recurse ON; prompt OFF; mput linux",
        work = work.display()
    );
    let on_native = facts(&smbd.client("native", &["-c", &session]));
    let on_phi = facts(&smbd.client("phi", &["-c", &session]));
    assert_eq!(on_phi, on_native, "the two shares answered differently");
    // Both could be wrong in the same way: check what they must say.
    let expected = [
        "attributes: HA (22)".to_string(),
        format!("stream: [:{STREAM}:$DATA], {} bytes", zone.len()),
        format!("stream: [::$DATA], {} bytes", scan.len()),
        format!("notes.txt A {}", notes_v2.len()),
        format!("scan.dcm AH {}", scan.len()),
    ];
    for fact in &expected {
        assert!(
            on_phi.contains(fact),
            "smbclient did not report `{fact}`: {on_phi:#?}"
        );
    }
    assert!(
        !on_phi.iter().any(|f| f.contains("~WRL")),
        "the save left a temp file: {on_phi:#?}"
    );

    // Seen locally, the two shares hold the same bytes, owners, modes and
    // extended attribute names; phivault holds what was sent.
    // (Not against /usr/include/linux itself: like Windows, Samba treats
    // names case-insensitively, and ip6t_hl.h lands on ip6t_HL.h.)
    diff_r(&native, &phi);
    let copied = common::walk_all(&phi.join("records/linux")).len();
    assert!(
        copied > 500,
        "only {copied} entries of the tree were copied"
    );
    assert_eq!(local_view(&phi), local_view(&native));
    let scan_path = phi.join("records/scan.dcm");
    assert!(fs::read(&scan_path).unwrap() == scan, "scan.dcm differs");
    assert_eq!(fs::read(phi.join("records/notes.txt")).unwrap(), notes_v2);
    let names = common::xattr_names(&scan_path);
    for name in [
        "security.NTACL".to_string(),
        "user.DOSATTRIB".to_string(),
        format!("user.DosStream.{STREAM}:$DATA"),
    ] {
        assert!(names.contains(&name), "scan.dcm lacks {name}: {names:?}");
    }
    let stream_value = common::xattr(&scan_path, &format!("user.DosStream.{STREAM}:$DATA"));
    // streams_xattr stores the stream with a NUL after it.
    assert_eq!(
        stream_value.strip_suffix(&[0]).unwrap_or(&stream_value),
        zone
    );
    let stored_xattrs: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.clone(), common::xattr(&scan_path, n)))
        .collect();

    // A backup of the share through smbclient's tar matches the native share.
    let backup = work.join("records.tar");
    smbd.client("phi", &["-Tc", backup.to_str().unwrap(), "records"]);
    let unpacked = work.join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    common::ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&backup)
            .arg("-C")
            .arg(&unpacked),
    );
    diff_r(&native.join("records"), &unpacked.join("records"));

    // Everything Samba stored is still there after an unmount.
    let check = format!(
        "cd records; lcd {work}; allinfo scan.dcm; allinfo notes.txt; ls; \
         get scan.dcm scan.back; get scan.dcm:{STREAM} zone.back",
        work = work.display()
    );
    let seen = facts(&smbd.client("phi", &["-c", &check]));
    let before = local_view(&phi);
    v.unmount();
    v.mount(&["-o", "allow_other"]);
    assert_eq!(
        local_view(&phi),
        before,
        "the local view changed at remount"
    );
    for (name, value) in &stored_xattrs {
        assert_eq!(
            &common::xattr(&scan_path, name),
            value,
            "{name} changed at remount"
        );
    }
    fs::remove_file(work.join("scan.back")).unwrap();
    fs::remove_file(work.join("zone.back")).unwrap();
    let again = facts(&smbd.client("phi", &["-c", &check]));
    assert_eq!(
        again, seen,
        "smbclient sees something else after the remount"
    );
    for fact in &expected {
        assert!(
            again.contains(fact),
            "after the remount, no `{fact}`: {again:#?}"
        );
    }
    assert!(
        fs::read(work.join("scan.back")).unwrap() == scan,
        "scan.dcm read back differs"
    );
    assert_eq!(fs::read(work.join("zone.back")).unwrap(), zone);
}

/// What Explorer's "Previous Versions" tab does, through smbclient: the
/// snapshots a file appears in (`allinfo`, from FSCTL_GET_SHADOW_COPY_DATA
/// and the share's `.snapshots`), then an earlier one fetched through its
/// @GMT path, byte for byte.
#[test]
fn samba_offers_earlier_versions_from_snapshots() {
    require_programs(&["smbd", "smbclient", "smbpasswd"]);
    let ids = common::user_ids(SMB_USER);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let phi = share_dir(&v.mnt, ids);
    let smbd = Smbd::start_with(&[("phi", &phi)], PREVIOUS_VERSIONS_SHARE);
    let client = tempfile::Builder::new()
        .prefix("phivault-smb-client-")
        .tempdir()
        .unwrap();
    let work = client.path();
    let versions = [common::pattern(1, 200_000), common::pattern(2, 150_001)];
    // The share directory's second is a snapshot without the file.
    std::thread::sleep(Duration::from_millis(1100));
    for (i, content) in versions.iter().enumerate() {
        fs::write(work.join(format!("v{i}")), content).unwrap();
        let put = format!("lcd {}; put v{i} chart.dcm", work.display());
        smbd.client("phi", &["-c", &put]);
        // Each version in a second of its own.
        std::thread::sleep(Duration::from_millis(1100));
    }

    // Snapshots from before the file existed are offered too (the share
    // offers them for the whole volume); allinfo says it is not in them.
    let info = smbd.client_allowing(
        "phi",
        &["-c", "allinfo chart.dcm"],
        &["NT_STATUS_OBJECT_NAME_NOT_FOUND"],
    );
    // "@GMT-2026.12.06-12.37.16" followed by the file's times and size there.
    // Those in which the file is: the token is followed by its times.
    let lines: Vec<&str> = info.lines().map(str::trim).collect();
    let tokens: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("@GMT-") && w[1].starts_with("create_time:"))
        .map(|w| w[0])
        .collect();
    assert!(
        tokens.len() >= 2,
        "allinfo lists fewer than two previous versions:\n{info}"
    );
    let mut fetched = Vec::new();
    for token in &tokens {
        let get = format!(
            "lcd {}; get \"{token}\\chart.dcm\" {token}.out",
            work.display()
        );
        smbd.client("phi", &["-c", &get]);
        fetched.push(fs::read(work.join(format!("{token}.out"))).unwrap());
    }
    for (i, content) in versions.iter().enumerate() {
        assert!(
            fetched.iter().any(|f| f == content),
            "no previous version is version {i} byte for byte (tokens {tokens:?})"
        );
    }
    // The live file is the newest, and nothing was restored over it.
    assert!(fs::read(phi.join("chart.dcm")).unwrap() == versions[1]);
}
