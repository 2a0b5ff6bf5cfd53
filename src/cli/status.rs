//! `phivault status STORE`: how far behind each remote is.

use std::path::PathBuf;

use anyhow::Context;

use super::util::{self, timestamp, OutputFormat};
use crate::replicate::lag::lag;
use crate::replicate::remotes::{self, remote_dir};
use crate::replicate::state::StateDir;
use crate::store::StoreDir;
use crate::vault::read_config;

/// Show each remote's lag, last success and last error.
#[derive(clap::Args)]
#[command(
    long_about = "Show, for each remote of STORE: what is not shipped yet (objects, \
bytes, and the age of the oldest unshipped change), the last successful pass and the last \
error. Needs no passphrase; works while STORE is mounted."
)]
pub struct Args {
    pub store: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    read_config(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    let mut rows = Vec::new();
    let mut text = String::new();
    let list = remotes::list(&dir)?;
    if list.is_empty() && a.format == OutputFormat::Text {
        text.push_str("no remotes (add one with `phivault remote STORE add NAME dir:/path|s3://bucket/prefix`)\n");
    }
    for remote in list {
        let (shipped, lag) = lag(&dir, &remote.name)?;
        let status = StateDir::new(remote_dir(&dir, &remote.name)).status();
        let when = |ns: i64| timestamp(ns).to_string();
        // How far back `recover --at` reaches, and the last snapshot.
        let history_from = shipped.heads.first().map(|h| when(h.time_ns));
        let last_snapshot = shipped.heads.iter().rev().find(|h| h.base);
        let last_snapshot = last_snapshot.map(|h| when(h.time_ns));
        rows.push(serde_json::json!({
            "name": remote.name,
            "url": remote.url,
            "delay_s": remote.delay_secs,
            "object_lock": remote.object_lock,
            "remote_seq": shipped.seq,
            "history_from": history_from,
            "last_snapshot": last_snapshot,
            "last_success": status.last_success_ns.map(when),
            "last_error": status.last_error.as_ref().map(|e| serde_json::json!({
                "at": when(e.at_ns), "message": e.message,
            })),
            "pending": {
                "objects": lag.objects,
                "bytes": lag.bytes,
                "oldest_age_s": lag.oldest.map_or(0, |d| d.as_secs()),
            },
            "shipped": { "objects": shipped.objects, "bytes": shipped.bytes },
        }));
        text.push_str(&format!(
            "{} ({})\n  pending:      {} objects, {}{}\n  last success: {}\n  shipped:      {} objects, {} in {} passes\n",
            remote.name,
            remote.url,
            lag.objects,
            util::human_bytes(lag.bytes),
            lag.oldest
                .map(|d| format!(", oldest {} s", d.as_secs()))
                .unwrap_or_default(),
            status.last_success_ns.map_or("never".into(), when),
            shipped.objects,
            util::human_bytes(shipped.bytes),
            shipped.seq,
        ));
        if let (Some(from), Some(snapshot)) = (&history_from, &last_snapshot) {
            text.push_str(&format!(
                "  history:      from {from}, last snapshot {snapshot}{}\n",
                if remote.object_lock {
                    ", objects locked (S3 Object Lock)"
                } else {
                    ""
                }
            ));
        }
        if let Some(e) = &status.last_error {
            text.push_str(&format!(
                "  last error:   {} at {}\n",
                e.message,
                when(e.at_ns)
            ));
        }
    }
    match a.format {
        OutputFormat::Json => util::print(
            &(serde_json::to_string_pretty(&serde_json::json!({ "remotes": rows }))? + "\n"),
        ),
        OutputFormat::Text => util::print(&text),
    }
}
