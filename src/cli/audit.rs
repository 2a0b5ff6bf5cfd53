//! `phivault audit STORE [filters]`: the audit trail's records, newest
//! first, or streamed as they come (`--follow`); `audit verify` and
//! `audit export` are in their own files. Parses and prints; the engine
//! finds the records (`AuditReader::query`) and the scope of `--path`
//! (`Vault::audit_scope`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::audit_format::{self as fmt, Format};
use super::time_spec::{self, PointInTime};
use super::util::{self, Names};
use crate::audit::{AuditReader, NodeSpan, Op, Query, Record};
use crate::vault::{AuditScope, Vault};

const LONG_ABOUT: &str = "\
Show STORE's audit trail: every open, create and directory open through the mount \
(read-only ones too) and every change to the tree, granted or refused, with who asked \
(user, login user behind su/sudo, process), what, the path as it was then and the result \
(ok, or the errno such as EACCES). Newest first. Works while the store is mounted.

Filters combine (all must match; a repeated --user or --op matches any of its values):
  --user alice --user 1003   records by these users (uid or login uid)
  --path /patients/4711      that file, or everything at or below that directory, across \
renames: files renamed out count until they left, files renamed in from when they came
  --op open --op unlink      these operations (open, create, opendir, close, search, unlink, \
rmdir, rename, link, symlink, mkdir, mknod, truncate, chmod, chown, utimes, setxattr, \
removexattr)
  --denied                   only refused ones (EACCES, EPERM)
  --since/--until TIME       as `restore` takes them: 2026-11-01, '2 weeks ago', yesterday

Example: who opened anything under /patients/4711 last month, and who was refused:
  phivault audit /srv/phi-store --path /patients/4711 --since '1 month ago' --op open
  phivault audit /srv/phi-store --path /patients/4711 --denied

--follow prints new records as they are recorded (oldest first), until interrupted; with \
--since or --limit it first prints the matching records already there. \
See also `phivault audit verify STORE` (is the trail intact?) and `phivault audit export \
STORE` (JSON lines for archival).";

/// Show the audit trail: who opened or changed what, granted or refused.
#[derive(clap::Args)]
#[command(
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[arg(required = true)]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub filter: Filter,
    /// Output: `table` for people, `json` (an array; JSON lines with
    /// --follow) or `csv` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// At most this many records (the newest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Keep running and print new matching records as they are recorded.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum Action {
    Verify(super::audit_verify::Args),
    Export(super::audit_export::Args),
}

/// The filters of `audit`.
#[derive(clap::Args, Default)]
pub struct Filter {
    /// Records by this user: a name or a uid; matches the caller's uid or
    /// its login uid. Repeat for several.
    #[arg(long, value_name = "NAME|UID")]
    pub user: Vec<String>,
    /// A path inside the store, from its root: that file, or everything at
    /// or below that directory, across renames.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Only this operation; repeat for several.
    #[arg(long, value_name = "OP", value_parser = parse_op)]
    pub op: Vec<Op>,
    /// Only requests that were refused (EACCES or EPERM).
    #[arg(long)]
    pub denied: bool,
    /// Records at or after this time.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub since: Option<PointInTime>,
    /// Records at or before this time.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub until: Option<PointInTime>,
}

fn parse_op(s: &str) -> Result<Op, String> {
    Op::from_name(&s.to_ascii_lowercase()).ok_or_else(|| {
        let all: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        format!("no operation '{s}'; one of {}", all.join(", "))
    })
}

/// The exit status `main` returns, for commands whose result is more than
/// success or failure (`audit verify`).
pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.action {
        Some(Action::Verify(v)) => super::audit_verify::run(v),
        Some(Action::Export(e)) => super::audit_export::run(e).map(|()| 0),
        None => list(a).map(|()| 0),
    }
}

/// Opens STORE read-only (beside a mounting daemon) and its trail.
pub fn open(
    store: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> anyhow::Result<(std::sync::Arc<Vault>, AuditReader)> {
    let store = util::absolute(store)?;
    let vault = util::open_read_only(&store, passphrase_file)?;
    let reader = vault
        .audit_reader()
        .with_context(|| format!("cannot read the audit trail of {}", store.display()))?;
    Ok((vault, reader))
}

/// A TIME argument as ns since the epoch.
pub fn instant_ns(p: Option<PointInTime>, flag: &str) -> anyhow::Result<Option<i64>> {
    match p {
        None => Ok(None),
        Some(PointInTime::Instant(t)) => Ok(Some(
            i64::try_from(t.as_nanosecond()).context("time out of range")?,
        )),
        Some(PointInTime::Version(_)) => {
            bail!("{flag} takes a time (e.g. 2026-11-01, '2 weeks ago'), not a version")
        }
    }
}

fn uid_of(user: &str) -> anyhow::Result<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    uzers::get_user_by_name(user)
        .map(|u| u.uid())
        .with_context(|| format!("no user named '{user}' on this machine; give a uid instead"))
}

/// PATH from the root, "/" for the root; `..` is refused (records carry
/// paths as they were, not resolved against today's tree).
fn normalized(path: &str) -> anyhow::Result<Vec<u8>> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        bail!("--path {path}: give the path from the store's root without '..'");
    }
    Ok(format!("/{}", parts.join("/")).into_bytes())
}

/// The query the filters ask for, the scope of --path resolved in the
/// catalog.
pub fn query(vault: &Vault, f: &Filter) -> anyhow::Result<Query> {
    let uids = f
        .user
        .iter()
        .map(|u| uid_of(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (nodes, path_prefix) = match &f.path {
        None => (None, None),
        Some(p) => {
            let path = normalized(p)?;
            match vault
                .audit_scope(&path)
                .with_context(|| format!("cannot look up {p} in the store's history"))?
            {
                AuditScope::Everything => (None, None),
                AuditScope::Nodes(n) => (Some(n), None),
                AuditScope::NeverExisted => (None, Some(path)),
            }
        }
    };
    let since = instant_ns(f.since, "--since")?;
    let until = instant_ns(f.until, "--until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            bail!("--since is after --until: nothing can match");
        }
    }
    Ok(Query {
        since,
        until,
        uids,
        ops: f.op.clone(),
        denied_only: f.denied,
        nodes,
        path_prefix,
        after_seq: None,
        limit: None,
        newest_first: true,
    })
}

fn list(a: Args) -> anyhow::Result<()> {
    let store = a.store.as_deref().context("no STORE given")?;
    let (vault, reader) = open(store, a.passphrase_file.as_deref())?;
    let mut q = query(&vault, &a.filter)?;
    if a.follow {
        // --path while following: new files below PATH have no span yet;
        // their records carry the path as it is now.
        if q.nodes.is_some() && q.path_prefix.is_none() {
            q.path_prefix = a.filter.path.as_deref().map(normalized).transpose()?;
        }
        return follow(&reader, q, a.format, a.limit, a.filter.since.is_some());
    }
    q.limit = a.limit;
    let records = reader.query(&q).context("reading the audit trail")?;
    let mut names = Names::default();
    let tz = jiff::tz::TimeZone::system();
    let out = match a.format {
        Format::Table => {
            let rows: Vec<_> = records
                .iter()
                .map(|r| fmt::cells(r, &mut names, &tz))
                .collect();
            fmt::table(&rows)
        }
        Format::Json => {
            let all: Vec<_> = records
                .iter()
                .map(|r| fmt::record_json(r, &mut names))
                .collect();
            format!("{}\n", serde_json::to_string_pretty(&all)?)
        }
        Format::Csv => {
            let mut out = fmt::csv_line(&fmt::COLUMNS.map(String::from));
            for r in &records {
                out.push_str(&fmt::csv_line(&fmt::cells(r, &mut names, &tz)));
            }
            out
        }
    };
    util::print(&out)
}

/// Prints what is there (with --since or --limit), then each new matching
/// record as it comes, oldest first, until interrupted or the reader of
/// stdout goes.
fn follow(
    reader: &AuditReader,
    mut q: Query,
    format: Format,
    limit: Option<usize>,
    since: bool,
) -> anyhow::Result<()> {
    let mut printer = Printer::new(format);
    let last = reader
        .query(&Query {
            limit: Some(1),
            newest_first: true,
            ..Query::default()
        })
        .context("reading the audit trail")?
        .first()
        .map_or(0, |r| r.seq);
    if since || limit.is_some() {
        q.limit = limit;
        let mut old = reader.query(&q).context("reading the audit trail")?;
        old.retain(|r| r.seq <= last);
        for r in old.iter().rev() {
            printer.print(r)?;
        }
    }
    let mut failed = None;
    reader
        .follow(last, &mut |r| {
            if !matches(&q, &r) {
                return true;
            }
            match printer.print(&r) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .context("following the audit trail")?;
    failed.map_or(Ok(()), Err)
}

/// Whether `r` is one `q` asks for; for --follow, a record is in the
/// scope by node or by the path it recorded (`Query::matches` wants both).
fn matches(q: &Query, r: &Record) -> bool {
    let filters = Query {
        nodes: None,
        path_prefix: None,
        ..q.clone()
    };
    let by_node = |n: &NodeSpan| {
        (r.ino == n.ino || r.parent == n.ino) && n.from_ns <= r.time_ns && r.time_ns <= n.until_ns
    };
    let by_path = |p: &Vec<u8>| under(&r.path, p) || r.target.as_ref().is_some_and(|t| under(t, p));
    let scope = match (&q.nodes, &q.path_prefix) {
        (None, None) => true,
        (nodes, prefix) => {
            nodes.as_ref().is_some_and(|n| n.iter().any(by_node))
                || prefix.as_ref().is_some_and(by_path)
        }
    };
    filters.matches(r) && scope
}

/// Whether `path` is `dir` or below it.
fn under(path: &[u8], dir: &[u8]) -> bool {
    dir == b"/" || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// Prints records one at a time, flushing each (a tail or a SIEM reads them
/// as they come).
struct Printer {
    format: Format,
    names: Names,
    tz: jiff::tz::TimeZone,
    header_done: bool,
}

impl Printer {
    fn new(format: Format) -> Self {
        Self {
            format,
            names: Names::default(),
            tz: jiff::tz::TimeZone::system(),
            header_done: false,
        }
    }

    fn print(&mut self, r: &Record) -> anyhow::Result<()> {
        // Fixed widths: rows are printed before the next one is known.
        const W: [usize; 8] = [27, 18, 10, 20, 8, 30, 20, 0];
        let mut text = String::new();
        if !self.header_done {
            self.header_done = true;
            match self.format {
                Format::Table => {
                    text.push_str(&fmt::table_line(&fmt::COLUMNS.map(String::from), &W))
                }
                Format::Csv => text.push_str(&fmt::csv_line(&fmt::COLUMNS.map(String::from))),
                Format::Json => {}
            }
        }
        match self.format {
            Format::Table => text.push_str(&fmt::table_line(
                &fmt::cells(r, &mut self.names, &self.tz),
                &W,
            )),
            Format::Csv => text.push_str(&fmt::csv_line(&fmt::cells(r, &mut self.names, &self.tz))),
            Format::Json => {
                text.push_str(&serde_json::to_string(&fmt::record_json(
                    r,
                    &mut self.names,
                ))?);
                text.push('\n');
            }
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_under_itself_and_its_directories_only() {
        assert!(under(b"/a/b", b"/a/b"));
        assert!(under(b"/a/b/c", b"/a/b"));
        assert!(!under(b"/a/bc", b"/a/b"));
        assert!(under(b"/x", b"/"));
        assert_eq!(normalized("a//b/./c/").unwrap(), b"/a/b/c");
        assert!(normalized("/a/../b").is_err());
    }
}
