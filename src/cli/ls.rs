//! `phivault ls STORE DIR --at TIME [-l]`: a directory as it was; and
//! `--deleted`: what was removed under it, and the TIME to get it back.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::time_spec::{self, format_local_and_utc, format_rfc3339, PointInTime};
use super::util::{self, timestamp, Names, OutputFormat};
use crate::vault::{Attr, Deletion, Kind, PastEntry, Vault, VaultError};

/// `writeln!` into a String, which cannot fail.
macro_rules! outln {
    ($o:expr, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

/// List a directory as it was, or what was deleted under it.
#[derive(clap::Args)]
#[command(
    long_about = "List DIR (a path inside the store, such as /charts) as it was at TIME: \
its names, and with -l what `ls -l` showed then (mode, links, owner, group, size, modification \
time). --deleted lists instead what was deleted under DIR, at any depth, newest first: its path, \
when, its size, who deleted it, and the TIME to give `restore --at` to get it back (the instant \
just before it went). DIR may itself be deleted. Works while mounted.

TIME: RFC 3339 (2026-11-20T14:03:00Z), a local date-time (2026-11-20 14:03), relative \
(2h ago, yesterday 17:00, last monday), or @UNIXSECONDS. A version number (v12) names one \
file's version, not an instant of a directory: it is refused here."
)]
pub struct Args {
    pub store: PathBuf,
    /// Directory inside the store, from its root.
    #[arg(default_value = "/")]
    pub dir: String,
    /// The instant to list DIR as it was.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg,
          required_unless_present = "deleted")]
    pub at: Option<PointInTime>,
    /// Long listing: mode, links, owner, group, size and time, as `ls -l`.
    #[arg(short = 'l')]
    pub long: bool,
    /// List what was deleted under DIR (at any depth) and when.
    #[arg(long, conflicts_with_all = ["at", "long"])]
    pub deleted: bool,
    /// Output format: `table` (or `text`) for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let at = match a.at {
        Some(PointInTime::Version(n)) => anyhow::bail!(
            "ls --at takes an instant, not a version: v{n} numbers the versions of one file \
             (`phivault log STORE PATH` lists them with their times)"
        ),
        Some(PointInTime::Instant(t)) => Some(t.as_nanosecond() as i64),
        None => None,
    };
    let vault = util::open_read_only(&store, a.passphrase_file.as_deref())?;
    let mut names = Names::default();
    let mut out = String::new();
    if a.deleted {
        let gone = match vault.deleted_under(a.dir.as_bytes()) {
            Err(VaultError::NotFound) => anyhow::bail!("{} was never in the store", a.dir),
            r => r?,
        };
        match a.format {
            OutputFormat::Json => deleted_json(&mut out, &a.dir, &gone, &mut names),
            OutputFormat::Text => deleted_table(&mut out, &a.dir, &gone, &mut names),
        }
        return util::print(&out);
    }
    let at = at.context("--at TIME is required")?;
    let entries = match vault.list_at(a.dir.as_bytes(), at) {
        Err(VaultError::NotFound) => anyhow::bail!(
            "{} did not exist at {}",
            a.dir,
            format_rfc3339(timestamp(at))
        ),
        Err(VaultError::NotDir) => anyhow::bail!("{} was not a directory then", a.dir),
        r => r?,
    };
    let mut entries = entries;
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    match a.format {
        OutputFormat::Json => listing_json(&mut out, &vault, &a.dir, at, &entries, &mut names)?,
        OutputFormat::Text if a.long => listing_long(&mut out, &vault, at, &entries, &mut names)?,
        OutputFormat::Text => {
            for e in &entries {
                outln!(out, "{}", String::from_utf8_lossy(&e.name));
            }
        }
    }
    util::print(&out)
}

fn kind_char(k: Kind) -> char {
    match k {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
        Kind::CharDev => 'c',
        Kind::BlockDev => 'b',
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::CharDev => "char-device",
        Kind::BlockDev => "block-device",
    }
}

/// `drwxr-xr-x` as `ls -l` prints it, set-id and sticky bits included.
pub fn mode_string(kind: Kind, perm: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind_char(kind));
    let bit = |m: u32, c: char| if perm & m != 0 { c } else { '-' };
    let special = |x: u32, set: u32, on: char, off: char| match (perm & x != 0, perm & set != 0) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

fn size_field(a: &Attr) -> String {
    match a.kind {
        Kind::CharDev | Kind::BlockDev => format!(
            "{}, {}",
            (a.rdev >> 8) & 0xfff,
            (a.rdev & 0xff) | ((a.rdev >> 12) & 0xfff00)
        ),
        _ => a.size.to_string(),
    }
}

fn listing_long(
    out: &mut String,
    vault: &Vault,
    at: i64,
    entries: &[PastEntry],
    names: &mut Names,
) -> anyhow::Result<()> {
    let tz = jiff::tz::TimeZone::system();
    let half_year_before = at - 182 * 86_400 * 1_000_000_000;
    let past = vault.past(at);
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let a = &e.attr;
        let user = names.user(a.uid).unwrap_or_else(|| a.uid.to_string());
        let group = names.group(a.gid).unwrap_or_else(|| a.gid.to_string());
        let when = timestamp(a.mtime).to_zoned_datetime(tz.clone());
        let time = if a.mtime < half_year_before || a.mtime > at {
            when.strftime("%b %e  %Y").to_string()
        } else {
            when.strftime("%b %e %H:%M").to_string()
        };
        let mut name = String::from_utf8_lossy(&e.name).into_owned();
        if a.kind == Kind::Symlink {
            let target = past.readlink(a.ino)?;
            name = format!("{name} -> {}", String::from_utf8_lossy(&target));
        }
        rows.push([
            mode_string(a.kind, a.perm),
            a.nlink.to_string(),
            user,
            group,
            size_field(a),
            time,
            name,
        ]);
    }
    let w = |i: usize| {
        rows.iter()
            .map(|r: &[String; 7]| r[i].len())
            .max()
            .unwrap_or(0)
    };
    let (w1, w2, w3, w4) = (w(1), w(2), w(3), w(4));
    for r in &rows {
        out.push_str(&format!(
            "{} {:>w1$} {:<w2$} {:<w3$} {:>w4$} {} {}\n",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        ));
    }

    Ok(())
}

/// One entry of `ls --at --format json`: field names are stable.
#[derive(serde::Serialize)]
struct JsonEntry {
    name: String,
    kind: &'static str,
    mode: u32,
    mode_string: String,
    nlink: u32,
    uid: u32,
    user: Option<String>,
    gid: u32,
    group: Option<String>,
    size: u64,
    rdev: u32,
    mtime: String,
    mtime_ns: i64,
    atime_ns: i64,
    ctime_ns: i64,
    symlink_target: Option<String>,
}

#[derive(serde::Serialize)]
struct JsonListing<'a> {
    dir: &'a str,
    at: String,
    at_ns: i64,
    entries: Vec<JsonEntry>,
}

fn listing_json(
    out: &mut String,
    vault: &Vault,
    dir: &str,
    at: i64,
    entries: &[PastEntry],
    names: &mut Names,
) -> anyhow::Result<()> {
    let past = vault.past(at);
    let mut list = Vec::with_capacity(entries.len());
    for e in entries {
        let a = &e.attr;
        let symlink_target = match a.kind {
            Kind::Symlink => Some(String::from_utf8_lossy(&past.readlink(a.ino)?).into_owned()),
            _ => None,
        };
        list.push(JsonEntry {
            name: String::from_utf8_lossy(&e.name).into_owned(),
            kind: kind_name(a.kind),
            mode: a.perm,
            mode_string: mode_string(a.kind, a.perm),
            nlink: a.nlink,
            uid: a.uid,
            user: names.user(a.uid),
            gid: a.gid,
            group: names.group(a.gid),
            size: a.size,
            rdev: a.rdev,
            mtime: format_rfc3339(timestamp(a.mtime)),
            mtime_ns: a.mtime,
            atime_ns: a.atime,
            ctime_ns: a.ctime,
            symlink_target,
        });
    }
    let doc = JsonListing {
        dir,
        at: format_rfc3339(timestamp(at)),
        at_ns: at,
        entries: list,
    };
    out.push_str(&serde_json::to_string_pretty(&doc)?);
    out.push('\n');
    Ok(())
}

fn deleted_table(out: &mut String, dir: &str, gone: &[Deletion], names: &mut Names) {
    let tz = jiff::tz::TimeZone::system();
    let rows: Vec<[String; 5]> = gone
        .iter()
        .map(|d| {
            let mut path = store_path(dir, &d.path);
            if d.kind == Kind::Dir {
                path.push('/');
            }
            [
                format_local_and_utc(timestamp(d.time), &tz),
                d.size.to_string(),
                names.user_label(d.uid),
                path,
                format_rfc3339(timestamp(d.restore_at)),
            ]
        })
        .collect();
    let header = ["deleted", "size", "by", "path", "restore with --at"];
    let w = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (w(0), w(1), w(2), w(3));
    outln!(
        out,
        "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
        header[0],
        header[1],
        header[2],
        header[3],
        header[4]
    );
    for r in rows {
        outln!(
            out,
            "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4]
        );
    }
}

fn deleted_json(out: &mut String, dir: &str, gone: &[Deletion], names: &mut Names) {
    let list: Vec<_> = gone
        .iter()
        .map(|d| {
            json!({
                "path": store_path(dir, &d.path),
                "kind": kind_name(d.kind),
                "deleted_at": format_rfc3339(timestamp(d.time)),
                "deleted_at_ns": d.time,
                "size": d.size,
                "uid": d.uid,
                "user": d.uid.and_then(|u| names.user(u)),
                "restore_at": format_rfc3339(timestamp(d.restore_at)),
                "restore_at_ns": d.restore_at,
            })
        })
        .collect();
    outln!(out, "{:#}", json!({ "dir": dir, "deleted": list }));
}

/// `rel` under `dir`, as a path from the store's root.
fn store_path(dir: &str, rel: &[u8]) -> String {
    let rel = String::from_utf8_lossy(rel);
    match dir.trim_matches('/') {
        "" => format!("/{rel}"),
        dir => format!("/{dir}/{rel}"),
    }
}
