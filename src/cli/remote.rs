//! `phivault remote STORE add|list|remove`: where a store replicates to.

use std::path::PathBuf;

use anyhow::Context;

use super::util::{self, OutputFormat};
use crate::replicate::place::ObjectKind;
use crate::replicate::remotes::{self, Remote, RemoteUrl, S3Options};
use crate::replicate::DEFAULT_DELAY;
use crate::store::{StoreDir, VaultConfig};
use crate::vault::read_config;

/// Add, list or remove the places a store replicates to.
#[derive(clap::Args)]
#[command(
    long_about = "Add, list or remove STORE's remotes: second places that hold \
its encrypted blocks, catalog and audit trail, so that a remote alone, with a passphrase, \
gives the whole store back (`phivault recover`).

A remote is a directory on other media (another disk, a NAS mount, a USB drive): \
`dir:/mnt/offsite/clinic`, or just the absolute path; or a bucket of an S3-compatible \
service: `s3://bucket/prefix`. It holds only opaque objects, each named by the BLAKE3 hash \
of its bytes and encrypted (no name, size or time of a file), written create-only: nothing \
there is ever overwritten.

S3 credentials come from the environment only: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
(and AWS_SESSION_TOKEN for temporary ones), in the environment of `phivault mount` as well. \
Services other than AWS (MinIO, Ceph RGW, Garage, Wasabi, Backblaze B2) need --endpoint, \
and self-hosted ones usually --path-style. The bucket must exist, and the prefix hold no \
other store's replica. With --object-lock (a bucket with S3 Object Lock enabled) every \
object is written in COMPLIANCE mode, locked for the retention lock period and a day: \
until then nobody, not the bucket's owner nor root on this server, can delete it.

While STORE is mounted, changes are shipped within --delay seconds of their commit; \
`phivault replicate` ships now, `phivault status` shows the lag. Removing a remote \
forgets it here; its objects stay where they are."
)]
pub struct Args {
    pub store: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

/// The options of an `s3://` remote (shared by `remote add` and `recover`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct S3Flags {
    /// S3 endpoint of a service other than AWS: https://host[:port].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// S3 region [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// Address buckets as https://endpoint/bucket (most self-hosted S3
    /// services) rather than https://bucket.endpoint.
    #[arg(long)]
    pub path_style: bool,
    /// Allow a plain http:// endpoint (a trusted network only).
    #[arg(long)]
    pub allow_http: bool,
}

impl S3Flags {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
            object_lock: false,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Add a remote (needs a passphrase of the store).
    #[command(
        long_about = "Add a remote (needs a passphrase of the store): a directory \
(`dir:/abs/path` or `/abs/path`, made 0700 if missing) or an S3 bucket (`s3://bucket/prefix`, \
which must exist). Refuses a place that holds another store's replica.

S3 credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN in \
the environment, never from the command line; `phivault mount` needs them too to ship in the \
background. For MinIO, Ceph RGW, Garage, Wasabi or Backblaze B2 give --endpoint (and \
usually --path-style for self-hosted ones).

--object-lock needs a bucket with S3 Object Lock enabled (checked now): each object is then \
put in COMPLIANCE mode with a retain-until date of the retention lock period and a day from \
its upload, so that even someone holding this server and its keys cannot erase the \
history before then. Deletes of what pruning removed wait for that date."
    )]
    Add {
        name: String,
        /// `dir:/abs/path`, `/abs/path` or `s3://bucket/prefix`.
        url: String,
        #[command(flatten)]
        s3: S3Flags,
        /// Lock every object on the bucket (S3 Object Lock, COMPLIANCE mode)
        /// for the retention lock period and a day.
        #[arg(long)]
        object_lock: bool,
        /// Seconds from a commit to its shipping while mounted.
        #[arg(long, default_value_t = DEFAULT_DELAY.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86400))]
        delay: u64,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// List the remotes.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Forget a remote (its objects stay on it).
    Remove { name: String },
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let dir = StoreDir::new(&store);
    let config =
        read_config(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    match a.action {
        Action::Add {
            name,
            url,
            s3,
            object_lock,
            delay,
            passphrase_file,
        } => {
            let options = S3Options {
                object_lock,
                ..s3.options()
            };
            let url = RemoteUrl::parse_with(&url, &options)?;
            add(&dir, &config, name, url, delay, passphrase_file)
        }
        Action::List { format } => list(&dir, format),
        Action::Remove { name } => {
            let gone = remotes::remove(&dir, &name)?;
            println!(
                "removed remote {} ({}); its objects stay there",
                gone.name, gone.url
            );
            Ok(())
        }
    }
}

fn add(
    dir: &StoreDir,
    config: &VaultConfig,
    name: String,
    parsed: RemoteUrl,
    delay: u64,
    passphrase_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    remotes::check_new(dir, &name)?;
    if let RemoteUrl::Dir(path) = &parsed {
        if remotes::is_inside(path, dir.root()) {
            anyhow::bail!(
                "{} is inside the store {}: a remote must be another place",
                path.display(),
                dir.root().display()
            );
        }
    }
    util::master_key(dir.root(), config, passphrase_file.as_deref())?;
    let place = parsed
        .open(true)
        .with_context(|| format!("cannot use {parsed} as a remote"))?;
    // A remote holds one store: another's keys there mean another's data.
    for (key, _) in place.list(ObjectKind::Keys)? {
        let other: Option<VaultConfig> =
            toml::from_str(&String::from_utf8_lossy(&place.get(&key)?)).ok();
        if other.is_none_or(|o| o.vault_id != config.vault_id) {
            let empty = match parsed {
                RemoteUrl::Dir(_) => "an empty directory",
                RemoteUrl::S3(_) => "another bucket or prefix",
            };
            anyhow::bail!("{parsed} holds the replica of another store; use {empty}");
        }
    }
    let remote = Remote::new(name, &parsed, delay);
    remotes::add(dir, remote.clone())?;
    println!(
        "added remote {} ({}); a mount ships changes within {} s, `phivault replicate {}` ships now",
        remote.name,
        remote.url,
        remote.delay_secs,
        dir.root().display()
    );
    Ok(())
}

fn list(dir: &StoreDir, format: OutputFormat) -> anyhow::Result<()> {
    let list = remotes::list(dir)?;
    let out = match format {
        OutputFormat::Json => {
            let rows: Vec<_> = list
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name, "url": r.url, "delay_s": r.delay_secs,
                        "endpoint": r.endpoint, "region": r.region,
                        "object_lock": r.object_lock,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({ "remotes": rows }))? + "\n"
        }
        OutputFormat::Text if list.is_empty() => {
            "no remotes (add one with `phivault remote STORE add NAME dir:/path|s3://bucket/prefix`)\n".into()
        }
        OutputFormat::Text => list
            .iter()
            .map(|r| {
                let endpoint = r
                    .endpoint
                    .as_ref()
                    .map(|e| format!(" (endpoint {e})"))
                    .unwrap_or_default();
                let lock = if r.object_lock { "\tobject lock" } else { "" };
                format!(
                    "{}\t{}{endpoint}\tdelay {} s{lock}\n",
                    r.name, r.url, r.delay_secs
                )
            })
            .collect(),
    };
    util::print(&out)
}
