use std::path::{Path, PathBuf};

use anyhow::Context;

/// "cause: detail" chain in one line, as users read it.
pub fn describe(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

pub fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p))
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn ratio(num: u64, den: u64) -> String {
    if den == 0 {
        "-".into()
    } else {
        format!("{:.2}x", num as f64 / den as f64)
    }
}

/// Parses "64K", "1M", "65536" into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let mul = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return Err(format!("unknown size unit in '{s}' (use K, M or G)")),
            };
            (&s[..i], mul)
        }
        None => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("'{s}' is not a size"))
}

/// The source (store path) of the phivault mount at `mountpoint`, if any.
pub fn mounted_store(mountpoint: &Path) -> Option<String> {
    mount_at(mountpoint).map(|m| m.source)
}

/// The device ("major:minor") of the mount at `mountpoint`, if any, read
/// without touching the mount itself (a daemon that stats its own mount can
/// deadlock with its own death).
pub fn mount_device(mountpoint: &Path) -> Option<String> {
    mount_at(mountpoint).map(|m| m.device)
}

/// Where `store` is mounted, if it is.
pub fn mount_of_store(store: &Path) -> Option<String> {
    mounts_of_store(store).into_iter().next()
}

/// Every mountpoint of `store`.
pub fn mounts_of_store(store: &Path) -> Vec<String> {
    let s = store.to_string_lossy();
    // The kernel lists FUSE mounts as fstype "fuse" (or "fuse.SUBTYPE").
    mounts()
        .into_iter()
        .filter(|m| m.fstype.starts_with("fuse") && m.source == s)
        .map(|m| m.mountpoint)
        .collect()
}

/// Whether the FUSE mount at `mp` has lost its daemon (killed, out of
/// memory): the kernel then answers everything with ENOTCONN, "Transport
/// endpoint is not connected", with ECONNABORTED once the connection was
/// aborted, or with ECANCELED while it tears down the daemon's io_uring
/// queues. phivault itself answers none of these. statfs always asks the
/// daemon.
pub fn is_dead_mount(mp: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(mp.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and room for the result.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    rc != 0
        && matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
        )
}

pub fn is_mountpoint(path: &Path) -> bool {
    mount_at(path).is_some()
}

pub fn mount_at(mountpoint: &Path) -> Option<Mount> {
    mounts()
        .into_iter()
        .find(|m| Path::new(&m.mountpoint) == mountpoint)
}

/// One line of /proc/self/mountinfo.
pub struct Mount {
    /// "major:minor" of the mounted filesystem.
    pub device: String,
    pub mountpoint: String,
    /// The mount's own options ("rw,nosuid,nodev,relatime").
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// The superblock's options ("rw,user_id=0,...").
    pub super_options: String,
}

fn mounts() -> Vec<Mount> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut fields = left.split(' ');
            let device = fields.nth(2)?.to_string();
            let mountpoint = unescape(fields.nth(1)?);
            let options = fields.next()?.to_string();
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = unescape(r.next()?);
            let super_options = r.next()?.to_string();
            Some(Mount {
                device,
                mountpoint,
                options,
                fstype,
                source,
                super_options,
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a command prints what it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people (also spelled `table`).
    #[value(alias = "table")]
    Text,
    /// For scripts: one JSON document on stdout.
    Json,
}

/// The user name of `uid` from the system's user database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned())
}

/// The group name of `gid` from the system's group database, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    uzers::get_group_by_gid(gid).map(|g| g.name().to_string_lossy().into_owned())
}

/// Names of uids and gids, each looked up once.
#[derive(Default)]
pub struct Names {
    users: std::collections::HashMap<u32, Option<String>>,
    groups: std::collections::HashMap<u32, Option<String>>,
}

impl Names {
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| group_name(gid))
            .clone()
    }

    /// `name (uid)`, the uid alone if it has no name, "unknown" if None.
    pub fn user_label(&mut self, uid: Option<u32>) -> String {
        match uid {
            None => "unknown".into(),
            Some(u) => match self.user(u) {
                Some(n) => format!("{n} ({u})"),
                None => u.to_string(),
            },
        }
    }
}

/// Opens `store` read-only (works beside a mounting daemon), asking for
/// its passphrase.
pub fn open_read_only(
    store: &Path,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<std::sync::Arc<crate::vault::Vault>> {
    unlock(store, passphrase_file)?.open_read_only()
}

/// An instant in ns since the epoch as a jiff timestamp.
pub fn timestamp(ns: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(ns as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Writes `text` to stdout; an error (a closed pipe) is returned, not a panic.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A bar over `total` bytes on a terminal, for work of 64 MiB and more.
pub fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || total < 64 << 20 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// A store unlocked by the CLI: where it is, its settings and master key.
pub struct Unlocked {
    pub store: std::path::PathBuf,
    pub dir: crate::store::StoreDir,
    pub config: crate::store::VaultConfig,
    pub master: crate::crypto::MasterKey,
}

/// Reads `store`'s settings and unlocks its master key with a passphrase
/// (from `passphrase_file`, or asked for).
pub fn unlock(store: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<Unlocked> {
    let store = absolute(store)?;
    let dir = crate::store::StoreDir::new(&store);
    let config = crate::vault::read_config(&dir)
        .with_context(|| format!("cannot open store {}", store.display()))?;
    let master = master_key(&store, &config, passphrase_file)?;
    Ok(Unlocked {
        store,
        dir,
        config,
        master,
    })
}

impl Unlocked {
    /// The store opened read-only (works beside a mounting daemon).
    pub fn open_read_only(&self) -> anyhow::Result<std::sync::Arc<crate::vault::Vault>> {
        let read_only = crate::vault::OpenOptions {
            read_only: true,
            ..crate::vault::OpenOptions::default()
        };
        Ok(crate::vault::Vault::open(
            &self.dir,
            &self.master,
            &read_only,
        )?)
    }
}

/// The master key of the store at `store`, whose settings are `config`,
/// unlocked with a passphrase (from `passphrase_file`, or asked for).
pub fn master_key(
    store: &Path,
    config: &crate::store::VaultConfig,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<crate::crypto::MasterKey> {
    let pass = super::passphrase::existing(passphrase_file)?;
    let (master, _) = crate::vault::unlock_master(config, &pass)
        .map_err(|_| anyhow::anyhow!("wrong passphrase for store {}", store.display()))?;
    Ok(master)
}

/// Lets freed pack-sized buffers stay in the process for the next pack.
/// glibc serves allocations above its mmap threshold (32 MiB at most)
/// with fresh mappings and unmaps them when freed, so every 32 MiB pack
/// that a replication, recovery or check reads, encodes or fetches paid a
/// page fault per 4 KiB page: measured, 60% of a replication's time. Only
/// these batch commands ask for it; the daemon keeps glibc's leaner
/// default.
pub fn keep_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; called before
    // the command's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
