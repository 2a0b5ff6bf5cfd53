//! `phivault log STORE PATH`: the versions a path showed, newest first.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::time_spec::{format_local_and_utc, format_rfc3339};
use super::util::{self, timestamp, Names, OutputFormat};
use crate::vault::{PathVersion, VaultError, VersionReason};

/// `writeln!` into a String, which cannot fail.
macro_rules! outln {
    ($o:expr, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

/// List the recorded versions of a file.
#[derive(clap::Args)]
#[command(
    long_about = "List every version PATH showed (a path inside the store, such as \
/reports/lab.pdf), newest first: its number (vN, which restore --at takes), when (local time \
and UTC), size, who made it and what made it. The history of a path runs across the saves \
that write a temporary file and rename it over the name (editors, office programs), and a \
deleted path keeps its history. --follow shows one file's own versions instead, across its \
renames. Works while mounted."
)]
pub struct Args {
    pub store: PathBuf,
    /// Path inside the store, from its root.
    pub path: String,
    /// Follow the file now (or last) at PATH across its own renames,
    /// rather than the history of the name; versions then carry the file's
    /// own numbers (restore --at vN takes the numbers shown without it).
    #[arg(long)]
    pub follow: bool,
    /// Output format: `table` (or `text`) for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let vault = util::open_read_only(&store, a.passphrase_file.as_deref())?;
    let path = a.path.as_bytes();
    let not_found = || format!("{} was never in the store", a.path);
    let history = if a.follow {
        let ino = vault.file_at_or_last(path).with_context(not_found)?;
        vault.inode_history(ino)?
    } else {
        match vault.path_history(path) {
            Err(VaultError::NotFound) => anyhow::bail!(not_found()),
            r => r?,
        }
    };
    if history.is_empty() && vault.was_dir(path)? {
        anyhow::bail!("{} is a directory: versions are kept per file", a.path);
    }
    let mut names = Names::default();
    let mut out = String::new();
    match a.format {
        OutputFormat::Json => print_json(&mut out, &a, &history, &mut names),
        OutputFormat::Text => print_table(&mut out, &history, &mut names),
    }
    util::print(&out)
}

fn print_table(out: &mut String, history: &[PathVersion], names: &mut Names) {
    let tz = jiff::tz::TimeZone::system();
    let rows: Vec<[String; 5]> = history
        .iter()
        .rev()
        .map(|v| {
            [
                format!("v{}", v.number),
                format_local_and_utc(timestamp(v.time), &tz),
                v.size.to_string(),
                names.user_label(v.uid),
                what_made_it(v),
            ]
        })
        .collect();
    let header = ["version", "time", "size", "user", "what made it"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..4).map(width).collect();
    outln!(
        out,
        "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
        header[0],
        header[1],
        header[2],
        header[3],
        header[4],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3]
    );
    for r in rows {
        outln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
}

/// What made a version, in words.
fn what_made_it(v: &PathVersion) -> String {
    let why = match v.reason {
        VersionReason::Replaced => "replaced by rename",
        r => r.label(),
    };
    if v.arrived {
        format!("{why}, renamed here")
    } else {
        why.to_string()
    }
}

fn print_json(out: &mut String, a: &Args, history: &[PathVersion], names: &mut Names) {
    let versions: Vec<_> = history
        .iter()
        .rev()
        .map(|v| {
            json!({
                "version": v.number,
                "time": format_rfc3339(timestamp(v.time)),
                "time_ns": v.time,
                "written": format_rfc3339(timestamp(v.written)),
                "written_ns": v.written,
                "size": v.size,
                "uid": v.uid,
                "user": v.uid.and_then(|u| names.user(u)),
                "reason": v.reason.label(),
                "arrived_by_rename": v.arrived,
                "inode": v.ino,
                "inode_version": v.version,
                "restore_at": format_rfc3339(timestamp(v.instant())),
                "restore_at_ns": v.instant(),
            })
        })
        .collect();
    let doc = json!({
        "path": a.path,
        "follow": a.follow,
        "versions": versions,
    });
    outln!(out, "{doc:#}");
}
