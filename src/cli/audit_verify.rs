//! `phivault audit verify STORE`: checks the whole chain of the audit trail
//! and names the first bad record; the exit status says what was found.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use crate::audit::{Tamper, VerifyReport};

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
record that was altered, removed, inserted or reordered, or where the trail was cut short. \
Works while the store is mounted.

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
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let (_vault, reader) = super::audit::open(&a.store, a.passphrase_file.as_deref())?;
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
    let report = report.context("verifying the audit trail")?;
    let (code, text) = summary(&report);
    super::util::print(&text)?;
    Ok(code)
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
    (
        code,
        format!(
            "AUDIT TRAIL DAMAGED: {what}\nchecked before it: {span}\n\
             Keep the store as it is (copy it) for investigation.\n"
        ),
    )
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
