//! The remotes a store replicates to: `STORE/replica/remotes.toml`.
//!
//! Kept out of vault.toml on purpose: releases before replication neither
//! read nor rewrite this file, so a store with remotes still opens with
//! them, and no format change was needed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::place::{DirPlace, ObjectPlace, PlaceError, S3Place, S3Spec, DEFAULT_REGION};
use super::ReplicateError;
use crate::store::{make_private_dir, write_atomic, StoreDir};

/// Default time from a commit to its shipping while mounted.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(60);

/// Where a remote is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// A directory: another disk, a NAS mount, a USB drive.
    Dir(PathBuf),
    /// A bucket of an S3-compatible service.
    S3(S3Spec),
}

/// The options of an S3 remote that its URL does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    /// `https://host[:port]`; none for AWS.
    pub endpoint: Option<String>,
    /// None for `us-east-1`.
    pub region: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    /// Put objects with a COMPLIANCE-mode retain-until date (`--object-lock`).
    pub object_lock: bool,
}

impl S3Options {
    fn any(&self) -> bool {
        *self != S3Options::default()
    }
}

impl RemoteUrl {
    /// `dir:/abs/path`, `/abs/path` or `s3://bucket[/prefix]` (an S3 remote
    /// with the default options: AWS, us-east-1).
    pub fn parse(s: &str) -> Result<Self, ReplicateError> {
        Self::parse_with(s, &S3Options::default())
    }

    /// As `parse`, with the options of an `s3://` URL; a directory takes
    /// none.
    pub fn parse_with(s: &str, o: &S3Options) -> Result<Self, ReplicateError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            return parse_s3(s, rest, o).map(RemoteUrl::S3);
        }
        if o.any() {
            return Err(ReplicateError::BadUrl(format!(
                "{s}: --endpoint, --region, --path-style, --allow-http and --object-lock are \
                 options of s3:// remotes, not of a directory"
            )));
        }
        let path = s.strip_prefix("dir:").unwrap_or(s);
        if !path.starts_with('/') {
            return Err(ReplicateError::BadUrl(format!(
                "{s}: a remote is a directory given by its absolute path (dir:/mnt/offsite/clinic) \
                 or a bucket (s3://bucket/prefix)"
            )));
        }
        Ok(RemoteUrl::Dir(PathBuf::from(path)))
    }

    /// Opens the place to read it only (`recover`): writes nothing there.
    pub fn open_for_reading(&self) -> Result<Box<dyn ObjectPlace>, PlaceError> {
        match self {
            RemoteUrl::Dir(p) => Ok(Box::new(DirPlace::open_read_only(p)?)),
            RemoteUrl::S3(spec) => Ok(Box::new(S3Place::open_for_reading(spec)?)),
        }
    }

    /// Opens the place; `create` makes a missing directory, or checks that
    /// a bucket answers (buckets are never made).
    pub fn open(&self, create: bool) -> Result<Box<dyn ObjectPlace>, PlaceError> {
        match self {
            RemoteUrl::Dir(p) if create => Ok(Box::new(DirPlace::create(p)?)),
            RemoteUrl::Dir(p) => Ok(Box::new(DirPlace::open(p)?)),
            RemoteUrl::S3(spec) if create => Ok(Box::new(S3Place::create(spec)?)),
            RemoteUrl::S3(spec) => Ok(Box::new(S3Place::open(spec)?)),
        }
    }
}

/// `s3://BUCKET[/PREFIX]` with its options; `rest` is what follows `s3://`.
fn parse_s3(s: &str, rest: &str, o: &S3Options) -> Result<S3Spec, ReplicateError> {
    let bad = |why: &str| ReplicateError::BadUrl(format!("{s}: {why}"));
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(bad(
            "not a bucket name: 3 to 63 lowercase letters, digits, '.', '-' or '_' (s3://bucket/prefix)",
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix_ok = prefix.is_empty()
        || prefix.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if !prefix_ok {
        return Err(bad(
            "the prefix is folders of letters, digits, '.', '-' and '_' separated by '/'",
        ));
    }
    if let Some(endpoint) = &o.endpoint {
        check_endpoint(s, endpoint, o.allow_http)?;
    }
    let region = o.region.as_deref().unwrap_or(DEFAULT_REGION);
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad(&format!(
            "{region:?} is not a region (us-east-1, eu-west-3 ...)"
        )));
    }
    Ok(S3Spec {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        endpoint: o.endpoint.clone(),
        region: region.to_string(),
        path_style: o.path_style,
        allow_http: o.allow_http,
        object_lock: o.object_lock,
    })
}

/// An endpoint is `https://host[:port][/path]`, or `http://` with
/// `allow_http`; no user or password in it (it is stored and shown).
fn check_endpoint(s: &str, endpoint: &str, allow_http: bool) -> Result<(), ReplicateError> {
    let bad = |why: String| ReplicateError::BadUrl(format!("{s}: endpoint {endpoint:?}: {why}"));
    let rest = match endpoint.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) if allow_http => rest,
        Some(("http", _)) => {
            return Err(bad(
                "plain http needs --allow-http (the objects are encrypted, but requests and \
                 listings are not; use it on a trusted network only)"
                    .into(),
            ))
        }
        _ => return Err(bad("expected https://host[:port]".into())),
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(bad(
            "expected https://host[:port], without user or password (credentials come from \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                .into(),
        ));
    }
    Ok(())
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::Dir(p) => write!(f, "dir:{}", p.display()),
            RemoteUrl::S3(spec) => f.write_str(&spec.url()),
        }
    }
}

/// One remote as configured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// Seconds from a commit to its shipping while mounted.
    pub delay_secs: u64,
    // The options of an S3 remote; absent from a directory's entry, and
    // from files written before S3 remotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_style: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_http: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub object_lock: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Remote {
    /// The remote `name` at `url`, with the options an S3 URL has.
    pub fn new(name: String, url: &RemoteUrl, delay_secs: u64) -> Self {
        let mut remote = Remote {
            name,
            url: url.to_string(),
            delay_secs,
            ..Remote::default()
        };
        if let RemoteUrl::S3(spec) = url {
            remote.endpoint = spec.endpoint.clone();
            remote.region = Some(spec.region.clone());
            remote.path_style = spec.path_style;
            remote.allow_http = spec.allow_http;
            remote.object_lock = spec.object_lock;
        }
        remote
    }

    pub fn url(&self) -> Result<RemoteUrl, ReplicateError> {
        RemoteUrl::parse_with(
            &self.url,
            &S3Options {
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                path_style: self.path_style,
                allow_http: self.allow_http,
                object_lock: self.object_lock,
            },
        )
    }

    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.delay_secs)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RemotesFile {
    #[serde(default, rename = "remote")]
    remotes: Vec<Remote>,
}

/// `STORE/replica/`.
pub fn replica_dir(dir: &StoreDir) -> PathBuf {
    dir.root().join("replica")
}

fn remotes_path(dir: &StoreDir) -> PathBuf {
    replica_dir(dir).join("remotes.toml")
}

/// The per-remote state folder, `STORE/replica/NAME/`.
pub fn remote_dir(dir: &StoreDir, name: &str) -> PathBuf {
    replica_dir(dir).join(name)
}

/// The configured remotes, none if the store never had one.
pub fn list(dir: &StoreDir) -> Result<Vec<Remote>, ReplicateError> {
    let path = remotes_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReplicateError::io(&path, e)),
    };
    let file: RemotesFile = toml::from_str(&text)
        .map_err(|e| ReplicateError::State(format!("{}: {e}", path.display())))?;
    Ok(file.remotes)
}

/// The remote called `name`.
pub fn find(dir: &StoreDir, name: &str) -> Result<Remote, ReplicateError> {
    list(dir)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ReplicateError::NoSuchRemote(name.to_string()))
}

/// Fails unless `name` is a valid name no remote of the store has.
pub fn check_new(dir: &StoreDir, name: &str) -> Result<(), ReplicateError> {
    check_name(name)?;
    if list(dir)?.iter().any(|r| r.name == name) {
        return Err(ReplicateError::BadUrl(format!(
            "a remote named {name} exists already (`remote list`)"
        )));
    }
    Ok(())
}

/// Records a new remote (its name must be new) and makes its state folder.
pub fn add(dir: &StoreDir, remote: Remote) -> Result<(), ReplicateError> {
    check_new(dir, &remote.name)?;
    let mut remotes = list(dir)?;
    let replica = replica_dir(dir);
    make_private_dir(&replica).map_err(ReplicateError::Store)?;
    make_private_dir(&remote_dir(dir, &remote.name)).map_err(ReplicateError::Store)?;
    remotes.push(remote);
    save(dir, remotes)
}

/// Forgets a remote and its local state; its objects stay where they are.
pub fn remove(dir: &StoreDir, name: &str) -> Result<Remote, ReplicateError> {
    let mut remotes = list(dir)?;
    let Some(i) = remotes.iter().position(|r| r.name == name) else {
        return Err(ReplicateError::NoSuchRemote(name.to_string()));
    };
    let gone = remotes.remove(i);
    save(dir, remotes)?;
    let state = remote_dir(dir, name);
    match std::fs::remove_dir_all(&state) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ReplicateError::io(&state, e))
        }
        _ => {}
    }
    Ok(gone)
}

fn save(dir: &StoreDir, remotes: Vec<Remote>) -> Result<(), ReplicateError> {
    let text = toml::to_string(&RemotesFile { remotes })
        .map_err(|e| ReplicateError::State(e.to_string()))?;
    write_atomic(&remotes_path(dir), text.as_bytes()).map_err(ReplicateError::Store)
}

/// Names become folder names: letters, digits, `-`, `_`, `.` (not first).
fn check_name(name: &str) -> Result<(), ReplicateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ReplicateError::BadUrl(format!(
            "{name:?} is not a remote name: use letters, digits, '-', '_' and '.' (at most 64)"
        )))
    }
}

/// Whether `path` is a phivault store's own directory or inside it.
pub fn is_inside(path: &Path, store: &Path) -> bool {
    path.starts_with(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str, o: &S3Options) -> S3Spec {
        match RemoteUrl::parse_with(url, o) {
            Ok(RemoteUrl::S3(spec)) => spec,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn s3_urls_parse_with_their_options() {
        let spec = s3("s3://clinic-backup", &S3Options::default());
        assert_eq!(spec.bucket, "clinic-backup");
        assert_eq!(spec.prefix, "");
        assert_eq!(spec.region, DEFAULT_REGION);
        assert_eq!(spec.endpoint, None);
        assert!(!spec.path_style && !spec.allow_http);
        let o = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-3".into()),
            path_style: true,
            allow_http: true,
            object_lock: true,
        };
        let spec = s3("s3://b.1/site/a-b_c/", &o);
        assert_eq!(
            (spec.bucket.as_str(), spec.prefix.as_str()),
            ("b.1", "site/a-b_c")
        );
        assert_eq!(spec.region, "eu-west-3");
        assert!(spec.path_style && spec.allow_http && spec.object_lock);
        assert_eq!(RemoteUrl::S3(spec).to_string(), "s3://b.1/site/a-b_c");
    }

    #[test]
    fn bad_s3_urls_and_options_are_refused() {
        let none = S3Options::default();
        for url in [
            "s3://",
            "s3://ab",
            "s3://UPPER",
            "s3://-bucket",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/a b",
        ] {
            assert!(RemoteUrl::parse_with(url, &none).is_err(), "accepted {url}");
        }
        let http = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..S3Options::default()
        };
        let e = RemoteUrl::parse_with("s3://bucket", &http).unwrap_err();
        assert!(e.to_string().contains("--allow-http"), "{e}");
        let with_user = S3Options {
            endpoint: Some("https://key:secret@host".into()),
            ..S3Options::default()
        };
        assert!(RemoteUrl::parse_with("s3://bucket", &with_user).is_err());
        let e = RemoteUrl::parse_with("/mnt/offsite", &http).unwrap_err();
        assert!(e.to_string().contains("s3://"), "{e}");
        let lock = S3Options {
            object_lock: true,
            ..S3Options::default()
        };
        let e = RemoteUrl::parse_with("dir:/mnt/offsite", &lock).unwrap_err();
        assert!(e.to_string().contains("--object-lock"), "{e}");
    }

    #[test]
    fn a_remote_keeps_its_s3_options_and_old_files_still_parse() {
        let o = S3Options {
            endpoint: Some("https://minio.lan:9000".into()),
            region: None,
            path_style: true,
            allow_http: false,
            object_lock: true,
        };
        let url = RemoteUrl::parse_with("s3://bucket/x", &o).unwrap();
        let remote = Remote::new("off".into(), &url, 30);
        let text = toml::to_string(&RemotesFile {
            remotes: vec![remote.clone()],
        })
        .unwrap();
        let back: RemotesFile = toml::from_str(&text).unwrap();
        assert_eq!(back.remotes, vec![remote.clone()]);
        assert_eq!(back.remotes[0].url().unwrap(), url);
        // A file written before S3 remotes: a directory, no options.
        let old = "[[remote]]\nname = \"usb\"\nurl = \"dir:/mnt/usb\"\ndelay-secs = 60\n";
        let old: RemotesFile = toml::from_str(old).unwrap();
        assert_eq!(
            old.remotes[0].url().unwrap(),
            RemoteUrl::Dir("/mnt/usb".into())
        );
        let dir = Remote::new("usb".into(), &RemoteUrl::Dir("/mnt/usb".into()), 60);
        let text = toml::to_string(&RemotesFile { remotes: vec![dir] }).unwrap();
        assert!(
            !text.contains("path-style") && !text.contains("region"),
            "{text}"
        );
    }
}
