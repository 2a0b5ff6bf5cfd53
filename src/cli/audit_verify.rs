//! `phivault audit verify STORE`: checks the whole chain of the audit trail
//! and names the first bad record; the exit status says what was found.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use super::time_spec::format_rfc3339;
use super::util::timestamp;
use crate::audit::{Stamp, Tamper, TamperTime, VerifyReport};

/// Exit statuses of `audit verify` (2 is clap's for a usage error, 1 any
/// other failure, such as a wrong passphrase).
pub const INTACT: i32 = 0;
pub const ALTERED: i32 = 3;
pub const REMOVED: i32 = 4;
pub const INSERTED: i32 = 5;
pub const REORDERED: i32 = 6;
pub const TRUNCATED: i32 = 7;
pub const UNREADABLE: i32 = 8;

const LONG_ABOUT: &str = "\
Check STORE's whole audit trail: each record's MAC, and the chain that links it to the one \
before, from the anchor a prune left (or the first record) to the newest. Reports the first \
record that was altered, removed, inserted or reordered, or where the trail was cut short, \
and when it sits (UTC, RFC 3339): the record's own time when its MAC still holds, else the \
times of the nearest good records before and after it, said as such. Works while the store \
is mounted.

Exit status:
  0  the trail is intact
  1  verify could not run (wrong passphrase, not a store, ...)
  2  usage error
  3  a record was altered (its content no longer matches its MAC)
  4  records were removed
  5  a record was inserted
  6  records were reordered
  7  the trail was truncated (records at its end are missing)
  8  part of the trail cannot be read (a damaged or missing file)";

/// Check that the audit trail is intact; the exit status says what is wrong.
#[derive(clap::Args)]
#[command(long_about = LONG_ABOUT)]
pub struct Args {
    pub store: PathBuf,
    /// Also compare with the trail's head as remote NAME last received it:
    /// records cut off here after they were replicated are found missing
    /// even if the local head was cut too.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let unlocked = super::util::unlock(&a.store, a.passphrase_file.as_deref())?;
    let vault = unlocked.open_read_only()?;
    let super::util::Unlocked {
        store,
        dir,
        config,
        master,
    } = unlocked;
    let reader = vault
        .audit_reader()
        .with_context(|| format!("cannot read the audit trail of {}", store.display()))?;
    let bar = progress_bar();
    let report = reader.verify(&|done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut report = report.context("verifying the audit trail")?;
    if let Some(name) = &a.remote {
        let remote_seq = remote_head_seq(&dir, &master, &config.vault_id, name)?;
        match remote_seq {
            Some(head_seq) if report.problem.is_none() && head_seq > report.last_seq => {
                report.problem = Some(Tamper::Truncated {
                    last_seq: report.last_seq,
                    head_seq,
                });
            }
            Some(head_seq) => {
                eprintln!("remote {name} holds the trail up to seq {head_seq}");
            }
            None => eprintln!("remote {name} holds no audit head yet"),
        }
    }
    let (code, text) = summary(&report);
    super::util::print(&text)?;
    Ok(code)
}

/// The seq of the trail's head as remote `name` last received it.
fn remote_head_seq(
    dir: &crate::store::StoreDir,
    master: &crate::crypto::MasterKey,
    vault_id: &str,
    name: &str,
) -> anyhow::Result<Option<u64>> {
    use crate::replicate::{recover::head_chain, remotes};
    let remote = remotes::find(dir, name)?;
    let place = remote
        .url()?
        .open_for_reading()
        .with_context(|| format!("cannot read remote {name}"))?;
    let chain = head_chain(&*place, &master.envelope_key(vault_id))
        .with_context(|| format!("reading remote {name}"))?;
    let Some(hex) = chain.last().and_then(|(_, h)| h.audit.head.clone()) else {
        return Ok(None);
    };
    let bytes = hex::decode(hex).context("a malformed audit head on the remote")?;
    let head = crate::audit::ship::parse_head_file(&master.audit_keys(), &bytes)
        .context("the remote's audit head does not authenticate with this store's key")?;
    Ok(Some(head.seq))
}

/// The exit status and what to print.
pub fn summary(r: &VerifyReport) -> (i32, String) {
    let span = if r.records == 0 {
        "no records".to_string()
    } else {
        format!(
            "{} records, seq {} to {}",
            r.records, r.first_seq, r.last_seq
        )
    };
    let Some(problem) = &r.problem else {
        return (INTACT, format!("audit trail intact: {span}\n"));
    };
    let (code, what) = match problem {
        Tamper::Altered { seq } => (
            ALTERED,
            format!("record seq {seq} was altered: its content does not match its MAC"),
        ),
        Tamper::Removed { after_seq, missing } => (
            REMOVED,
            format!(
                "{missing} record(s) removed after seq {after_seq}: the first missing is seq {}",
                after_seq + 1
            ),
        ),
        Tamper::Inserted { after_seq } => (
            INSERTED,
            format!("a record was inserted after seq {after_seq}: it is not in the chain"),
        ),
        Tamper::Reordered { seq } => (
            REORDERED,
            format!("record seq {seq} is out of order: the chain does not continue with it"),
        ),
        Tamper::Truncated { last_seq, head_seq } => (
            TRUNCATED,
            format!(
                "the trail was cut short: it ends at seq {last_seq}, but seq {head_seq} was \
                 recorded (the first missing is seq {})",
                last_seq + 1
            ),
        ),
        Tamper::Unreadable { at } => (UNREADABLE, format!("cannot read the trail at {at}")),
    };
    let when = r
        .when
        .as_ref()
        .map_or_else(String::new, |t| when(t, problem));
    (
        code,
        format!(
            "AUDIT TRAIL DAMAGED: {what}\n{when}checked before it: {span}\n\
             Keep the store as it is (copy it) for investigation.\n"
        ),
    )
}

/// The `when:` line: the bad record's own time, or else where the damage
/// sits between its good neighbours.
fn when(t: &TamperTime, problem: &Tamper) -> String {
    if let Some(ns) = t.own_time_ns {
        let whose = match problem {
            Tamper::Inserted { .. } => {
                "its own time: it authenticates, so it copies a genuine record"
            }
            _ => "the record's own time, authenticated by its record MAC",
        };
        return format!("when: {} ({whose})\n", utc(ns));
    }
    let placed = match problem {
        Tamper::Removed { .. } | Tamper::Truncated { .. } => "the missing records were written",
        Tamper::Unreadable { .. } => "the unreadable part sits",
        _ => "its own time cannot be trusted (it does not authenticate); it sits",
    };
    let at = |s: &Stamp, which: &str| {
        format!(
            "{} (seq {}, the nearest good record {which})",
            utc(s.time_ns),
            s.seq
        )
    };
    let span = match (&t.before, &t.after) {
        (Some(b), Some(a)) => format!("between {} and {}", at(b, "before"), at(a, "after")),
        (Some(b), None) => format!("after {}", at(b, "before")),
        (None, Some(a)) => format!("before {}", at(a, "after")),
        (None, None) => "at a time no good record tells".to_string(),
    };
    format!("when: {placed} {span}\n")
}

fn utc(ns: i64) -> String {
    format_rfc3339(timestamp(ns))
}

/// A bar on stderr when it is a terminal; nothing otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {wide_bar} {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
