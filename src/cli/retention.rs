//! `phivault retention STORE [set ...]`: show the retention policy, or
//! change it (with a passphrase; the engine authenticates it).

use std::path::PathBuf;

use anyhow::Context;

pub use super::util::OutputFormat;
use super::{passphrase, util};
use crate::store::{RetentionPolicy, StoreDir};
use crate::vault::{
    describe_policy, retention_policy, set_retention, AuditKeep, PolicyChange, PolicyView,
};

/// Show or change how long versions are kept.
#[derive(clap::Args)]
#[command(
    long_about = "Show STORE's retention policy: how long versions are kept, and the lock \
period during which no version can be removed by anyone. Showing needs no passphrase. \
`retention STORE set --keep-daily 90 ...` changes the numbers given and keeps the others; \
it asks for a passphrase, because the policy is authenticated with the store's master key \
(a vault.toml edited by hand is refused at the next unlock). lock-days can be raised, never \
lowered: every version was promised it when written. docs/retention.md gives the exact rules.

The audit trail has its own retention, `audit-keep` (vault.toml's `[audit] keep`, covered by \
the same MAC): prune removes audit records older than it, and version retention never removes \
an audit record. Default 6 years (HIPAA's documentation period), at least 1 year, or \
'forever'."
)]
pub struct Args {
    pub store: PathBuf,
    /// Output format: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Change the policy (asks for a passphrase).
    Set(SetArgs),
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// Read the passphrase from this file.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Keep every version younger than this many days.
    #[arg(long, value_name = "DAYS")]
    pub keep_all_days: Option<u32>,
    /// Beyond that, keep the newest version of each of the last N hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Always keep at least this many of a live file's newest versions (1 or more).
    #[arg(long, value_name = "N")]
    pub min_versions: Option<u32>,
    /// No version younger than this many days can be removed (can be raised, never lowered).
    #[arg(long, value_name = "DAYS")]
    pub lock_days: Option<u32>,
    /// Keep audit records this long: years, months, weeks or days (`6 years`,
    /// `18 months`), at least 1 year; or `forever`.
    #[arg(long, value_name = "DURATION", value_parser = parse_audit_keep)]
    pub audit_keep: Option<AuditKeep>,
}

fn parse_audit_keep(s: &str) -> Result<AuditKeep, String> {
    AuditKeep::parse(s).map_err(|e| e.to_string())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    match a.action {
        None => show(&dir, a.format)
            .with_context(|| format!("cannot read the policy of store {}", store.display())),
        // The engine's errors name the store where it matters.
        Some(Action::Set(s)) => set(&dir, s),
    }
}

fn show(dir: &StoreDir, format: OutputFormat) -> anyhow::Result<()> {
    let view = retention_policy(dir)?;
    let p = &view.policy;
    if format == OutputFormat::Json {
        let mut v = serde_json::to_value(p)?;
        v["authenticated"] = view.has_mac.into();
        v["format"] = view.format.into();
        v["audit-keep"] = view.audit_keep.clone().into();
        v["audit-keep-days"] = AuditKeep::parse(&view.audit_keep)
            .ok()
            .and_then(|k| k.days())
            .into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_policy(p);
    print_audit(&view);
    if view.has_mac {
        println!("authenticated:  yes (policy-mac, checked at every unlock)");
    } else {
        println!(
            "authenticated:  not yet (format {} store; the next unlock adds the MAC)",
            view.format
        );
    }
    print_words(p);
    Ok(())
}

fn print_policy(p: &RetentionPolicy) {
    println!(
        "keep-all-days:  {:>7}  every version younger than this many days",
        p.keep_all_days
    );
    println!(
        "keep-hourly:    {:>7}  then the newest version of each of this many hours",
        p.keep_hourly
    );
    println!("keep-daily:     {:>7}  ... days", p.keep_daily);
    println!("keep-weekly:    {:>7}  ... ISO weeks", p.keep_weekly);
    println!("keep-monthly:   {:>7}  ... months", p.keep_monthly);
    println!("keep-yearly:    {:>7}  ... years", p.keep_yearly);
    println!(
        "min-versions:   {:>7}  newest versions of a live file always kept",
        p.min_versions
    );
    println!(
        "lock-days:      {:>7}  no version younger than this can be removed",
        p.lock_days
    );
}

fn print_audit(view: &PolicyView) {
    let default = if view.audit_set { "" } else { " (default)" };
    println!(
        "audit-keep:     {:>7}  audit records younger than this are never pruned{default}",
        view.audit_keep
    );
}

/// What the policy means, in words (from the retention rules).
fn print_words(p: &RetentionPolicy) {
    println!();
    let words = describe_policy(p, jiff::Timestamp::now(), &jiff::tz::TimeZone::system());
    for line in words.lines() {
        println!("{line}");
    }
}

fn set(dir: &StoreDir, s: SetArgs) -> anyhow::Result<()> {
    let change = PolicyChange {
        keep_all_days: s.keep_all_days,
        keep_hourly: s.keep_hourly,
        keep_daily: s.keep_daily,
        keep_weekly: s.keep_weekly,
        keep_monthly: s.keep_monthly,
        keep_yearly: s.keep_yearly,
        min_versions: s.min_versions,
        lock_days: s.lock_days,
        audit_keep: s.audit_keep,
    };
    anyhow::ensure!(
        !change.is_empty(),
        "nothing to set: give one or more of --keep-all-days, --keep-hourly, --keep-daily, \
         --keep-weekly, --keep-monthly, --keep-yearly, --min-versions, --lock-days, --audit-keep"
    );
    let pass = passphrase::existing(s.passphrase_file.as_deref())?;
    let done = set_retention(dir, &pass, &change)?;
    drop(pass);
    if done.was_unauthenticated {
        println!("The policy on disk was not authenticated; it is now set and authenticated.");
    }
    if done.before == done.after && done.audit_before == done.audit_after {
        println!("The policy already had these values.");
    } else {
        println!("Set the retention policy:");
    }
    print_policy(&done.after);
    println!(
        "audit-keep:     {:>7}  audit records younger than this are never pruned",
        done.audit_after
    );
    print_words(&done.after);
    println!("A mounted store applies the new policy from its next mount.");
    Ok(())
}
