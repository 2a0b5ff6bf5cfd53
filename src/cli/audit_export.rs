//! `phivault audit export STORE`: every record with every field as JSON
//! lines, oldest first, for archival outside the store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::audit_format::record_json;
use super::time_spec::{self, PointInTime};
use super::util::Names;

/// Write audit records as JSON lines (one record per line), for archival.
#[derive(clap::Args)]
#[command(
    long_about = "Write STORE's audit records, oldest first, as JSON lines: one object per \
record with every field (seq, time as RFC 3339 and time_ns, who: uid, user, gid, group, pid, \
comm, exe, login_uid, login_user, session_id; op, path, target, ino, parent, detail, result \
and errno). Paths that are not UTF-8 also come exactly as path_hex. The output is plaintext: \
it names patients' files, so keep it as protected as the store. Works while mounted."
)]
pub struct Args {
    pub store: PathBuf,
    /// Records at or after this time.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub since: Option<PointInTime>,
    /// Records at or before this time.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub until: Option<PointInTime>,
    /// Write to FILE (made 0600, replaced if it exists) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (vault, reader) = super::audit::open(&a.store, a.passphrase_file.as_deref())?;
    let filter = super::audit::Filter {
        since: a.since,
        until: a.until,
        ..Default::default()
    };
    let mut q = super::audit::query(&vault, &filter)?;
    q.newest_first = false;
    let records = reader.query(&q).context("reading the audit trail")?;
    let mut out: Box<dyn Write> = match &a.output {
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Box::new(std::io::BufWriter::new(f))
        }
    };
    let mut names = Names::default();
    for r in &records {
        serde_json::to_writer(&mut out, &record_json(r, &mut names))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = &a.output {
        eprintln!("{} records written to {}", records.len(), path.display());
    }
    Ok(())
}
