//! Set-user-ID and set-group-ID bits go at a write, truncate or fallocate by
//! a caller without CAP_FSETID, as on ext4, and `stat` and exec see it at
//! once, not when the kernel's cached attributes expire a minute later.
//! The kernel leaves clearing them to phivault (FUSE_HANDLE_KILLPRIV_V2).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{ok, require_programs, run, Vault};

/// The mode as the kernel reports it when asked for nothing but the mode
/// (statx with STATX_MODE, as `stat -c %a` asks): it comes from the
/// kernel's cached attributes unless they were invalidated.
fn cached_mode(path: &Path) -> u32 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statx is plain old data filled by the call.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and an out-pointer to a live statx.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MODE, &mut st) };
    assert_eq!(
        rc,
        0,
        "statx {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    u32::from(st.stx_mode) & 0o7777
}

/// Runs a shell command as nobody, or as root without CAP_FSETID.
fn as_user(who: &str, script: &str) {
    let mut cmd = Command::new("setpriv");
    match who {
        "nobody" => cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]),
        "root-without-fsetid" => cmd.args(["--bounding-set=-fsetid", "--inh-caps=-fsetid"]),
        _ => unreachable!(),
    };
    ok(cmd.args(["sh", "-c", script]));
}

fn set_id_file(v: &Vault, name: &str) -> std::path::PathBuf {
    let p = v.path(name);
    fs::write(&p, vec![7u8; 200_000]).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o6777)).unwrap();
    assert_eq!(cached_mode(&p), 0o6777);
    p
}

#[test]
fn an_unprivileged_write_clears_set_id_bits_that_stat_sees_at_once() {
    require_programs(&["setpriv"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    let p = set_id_file(&v, "w");
    as_user("nobody", &format!("echo more >> '{}'", p.display()));
    assert_eq!(
        cached_mode(&p),
        0o0777,
        "the write left set-id bits in stat"
    );
    let out = run(Command::new("stat").args(["-c", "%a"]).arg(&p));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "777");

    // Root keeps them: it has CAP_FSETID.
    fs::set_permissions(&p, fs::Permissions::from_mode(0o6777)).unwrap();
    ok(Command::new("sh").args(["-c", &format!("echo root >> '{}'", p.display())]));
    assert_eq!(cached_mode(&p), 0o6777, "root's write cleared set-id bits");
}

#[test]
fn fallocate_by_a_caller_without_cap_fsetid_clears_set_id_bits() {
    require_programs(&["setpriv", "fallocate"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    for (who, args) in [
        ("nobody", "-p -o 0 -l 65536"),
        ("nobody", "-z -o 4096 -l 8192"),
        ("nobody", "-l 300000"),
        ("root-without-fsetid", "-p -o 65536 -l 65536"),
    ] {
        let p = set_id_file(&v, "f");
        as_user(who, &format!("fallocate {args} '{}'", p.display()));
        assert_eq!(
            cached_mode(&p),
            0o0777,
            "fallocate {args} by {who} left set-id bits"
        );
        fs::remove_file(&p).unwrap();
    }

    // Space reserved beyond the end (KEEP_SIZE) changes no data: the bits stay.
    let p = set_id_file(&v, "keep");
    as_user(
        "nobody",
        &format!("fallocate -n -o 200000 -l 4096 '{}'", p.display()),
    );
    assert_eq!(cached_mode(&p), 0o6777, "fallocate -n cleared set-id bits");
    // And root, with CAP_FSETID, keeps them whatever it does.
    ok(Command::new("fallocate")
        .args(["-p", "-o", "0", "-l", "4096"])
        .arg(&p));
    assert_eq!(
        cached_mode(&p),
        0o6777,
        "root's fallocate cleared set-id bits"
    );
}

#[test]
fn an_unprivileged_truncate_clears_set_id_bits() {
    require_programs(&["setpriv", "truncate"]);
    let v = Vault::mounted_with(&["-o", "allow_other"]);
    let p = set_id_file(&v, "t");
    as_user(
        "root-without-fsetid",
        &format!("truncate -s 10 '{}'", p.display()),
    );
    assert_eq!(
        cached_mode(&p),
        0o0777,
        "truncate by root without CAP_FSETID"
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), 10);
}
