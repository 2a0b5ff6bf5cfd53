//! `phivault audit export STORE`: every record with every field as JSON
//! lines, oldest first, for archival outside the store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::audit_format::record_json;
use super::time_spec::{self, PointInTime};
use super::util::Names;
use crate::audit::{AuditReader, Query};

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
    let q = super::audit::query(&vault, &filter)?;
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
    let written = write_records(&reader, &q, PAGE, &mut out)?;
    out.flush()?;
    if let Some(path) = &a.output {
        eprintln!("{written} records written to {}", path.display());
    }
    Ok(())
}

/// Records read from the trail at a time: an export of millions holds
/// only this many.
const PAGE: usize = 10_000;

/// Writes the records `q` matches, oldest first, as JSON lines, `page` at
/// a time; returns how many.
fn write_records(
    reader: &AuditReader,
    q: &Query,
    page: usize,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut names = Names::default();
    let mut written = 0u64;
    reader
        .for_each(q, page, |r| -> anyhow::Result<()> {
            serde_json::to_writer(&mut *out, &record_json(&r, &mut names))?;
            out.write_all(b"\n")?;
            written += 1;
            Ok(())
        })
        .context("reading the audit trail")?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Detail, Op, Record, Who, WriterOptions};
    use crate::crypto::MasterKey;

    fn record(i: u64) -> Record {
        Record {
            seq: 0,
            time_ns: 1_750_000_000_000_000_000 + i as i64 * 1_000_000,
            who: Who {
                uid: 1000 + (i % 3) as u32,
                gid: 100,
                pid: i as u32,
                comm: "cat".into(),
                exe: "/usr/bin/cat".into(),
                login_uid: i.is_multiple_of(5).then_some(0),
                session_id: Some(2),
            },
            op: if i.is_multiple_of(4) {
                Op::Rename
            } else {
                Op::Open
            },
            path: format!("/patients/{}/n\u{e9}{i}", i % 7).into_bytes(),
            target: i.is_multiple_of(4).then(|| b"/elsewhere/\xff".to_vec()),
            ino: 100 + i,
            parent: 10,
            detail: Detail {
                flags: Some(libc::O_RDONLY),
                ..Detail::default()
            },
            result: if i.is_multiple_of(9) { libc::EACCES } else { 0 },
        }
    }

    /// What `export` wrote before it streamed: every match in one query.
    fn all_at_once(reader: &AuditReader, q: &Query) -> Vec<u8> {
        let mut names = Names::default();
        let mut out = Vec::new();
        let whole = Query {
            newest_first: false,
            ..q.clone()
        };
        for r in reader.query(&whole).unwrap() {
            serde_json::to_writer(&mut out, &record_json(&r, &mut names)).unwrap();
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn a_paged_export_writes_what_one_query_did() {
        let d = tempfile::tempdir().unwrap();
        let keys = MasterKey::from_bytes([3; 32]).audit_keys();
        let opts = WriterOptions {
            index_interval: None,
            ..WriterOptions::default()
        };
        let log = AuditLog::open(d.path(), keys.clone(), opts).unwrap();
        for i in 1..=4000 {
            log.append(record(i)).unwrap();
        }
        log.sync().unwrap();
        let reader = AuditReader::open(d.path(), keys);
        let since = Query {
            since: Some(record(1234).time_ns),
            until: Some(record(3210).time_ns),
            ..Query::default()
        };
        for q in [Query::default(), since] {
            let want = all_at_once(&reader, &q);
            for page in [13, PAGE] {
                let mut got = Vec::new();
                let n = write_records(&reader, &q, page, &mut got).unwrap();
                assert_eq!(n as usize, want.iter().filter(|&&b| b == b'\n').count());
                assert!(got == want, "pages of {page} differ");
            }
        }
    }
}
