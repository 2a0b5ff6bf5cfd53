//! The binary against an S3 remote (tests/replicate_s3.rs,
//! tests/replicate_object_lock.rs): commands with the test server's keys in
//! their environment, and `FLAGS` its `--endpoint ...` options.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::common::replica::{assert_same_tree, stdout, tree, without_mtimes, Tree};
use super::common::{self, bin, ok_output, MountGuard, Vault};
use super::s3server::S3Server;

/// A fresh folder under the temporary directory.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("phivault-s3-")
        .tempdir()
        .unwrap()
}

pub fn phivault(server_env: bool) -> Command {
    let mut c = Command::new(bin());
    c.stdin(Stdio::null());
    if server_env {
        S3Server::env(&mut c);
    } else {
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    c
}

pub fn remote_add(v: &Vault, flags: &[String], name: &str, url: &str, extra: &[&str]) -> Output {
    common::run(
        phivault(true)
            .arg("remote")
            .arg(&v.store)
            .args(["add", name, url])
            .args(flags)
            .args(extra)
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    )
}

pub fn replicate(v: &Vault) -> String {
    let out = common::run(
        phivault(true)
            .arg("replicate")
            .arg(&v.store)
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    ok_output(&out, "phivault replicate");
    stdout(&out)
}

/// `phivault CMD... STORE REST... --passphrase-file F` with the server's
/// keys, checked to succeed; its output.
pub fn on_store(v: &Vault, cmd: &[&str], rest: &[&str]) -> Output {
    let out = common::run(
        phivault(true)
            .args(cmd)
            .arg(&v.store)
            .args(rest)
            .arg("--passphrase-file")
            .arg(&v.pwfile),
    );
    ok_output(
        &out,
        &format!("phivault {} {}", cmd.join(" "), rest.join(" ")),
    );
    out
}

/// `recover URL HOME/store` with the server's flags; the new store, not
/// mounted.
pub fn recovered(flags: &[String], url: &str, pwfile: &Path) -> Vault {
    let home = scratch();
    let out = common::run(
        phivault(true)
            .arg("recover")
            .arg(url)
            .arg(home.path().join("store"))
            .args(flags)
            .arg("--passphrase-file")
            .arg(pwfile),
    );
    ok_output(&out, &format!("phivault recover {url}"));
    println!("recover: {}", stdout(&out).trim());
    Vault::existing_in(home)
}

pub fn mount_with_keys(v: &Vault) -> MountGuard {
    common::ok(S3Server::env(v.mount_cmd(&[])));
    MountGuard(v.mnt.clone())
}

/// `recovered`, mounted, and checked to hold the tree `want` (mtimes
/// aside): the caller reads on, then unmounts it.
pub fn recovered_tree(
    flags: &[String],
    url: &str,
    pwfile: &Path,
    want: &Tree,
    what: &str,
) -> Vault {
    let mut new = recovered(flags, url, pwfile);
    new.mount(&[]);
    assert_same_tree(want, &without_mtimes(tree(&new.mnt)), what);
    new
}
