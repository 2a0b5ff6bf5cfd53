//! `phivault mount`: unlock, then run the filesystem in a detached daemon
//! (or in the foreground), returning once the mount is ready.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;
use zeroize::Zeroizing;

use super::mount_options::{Flags, MountOptions};
use super::time_spec::{self, PointInTime};
use super::{init, passphrase, util};
use crate::crypto::{KdfParams, MasterKey};
use crate::fs::{io_uring_enabled, mount_config, IoUringMode, MountSettings, PhiFs};
use crate::store::{StoreDir, StoreError, StoreLock};
use crate::vault::{read_config, unlock_store, Admitted, OpenOptions, UnlockFor, Unlocked, Vault};

/// Unlock a store and mount it.
#[derive(clap::Args)]
#[command(
    long_about = "Unlock STORE and mount it at MOUNTPOINT. Returns once the mount is ready; \
the filesystem keeps running in the background until `phivault umount MOUNTPOINT`, `umount` or \
`fusermount3 -u`, which flush everything first. If STORE does not exist yet, phivault offers to \
create it (or does so with --create). Daemon messages go to --log-file (default \
/var/log/phivault/VAULT-ID.log for root, ~/.local/state/phivault/VAULT-ID.log otherwise), never \
into the store: they may name files."
)]
pub struct Args {
    /// The store directory.
    pub store: PathBuf,
    /// An existing, empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Read the passphrase from this file instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Stay attached and log to stderr; Ctrl-C or SIGTERM unmounts.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma-separated, as in fstab. phivault's own:
    /// allow_other; allow_group=GROUP (see --allow-group); noacl (no POSIX
    /// ACLs: setfacl fails, as on ext4 mounted noacl; refused for a store
    /// that holds ACLs). Generic flags: ro/rw,
    /// nosuid/suid, nodev/dev, noexec/exec, noatime, relatime, strictatime,
    /// atime, nodiratime, nosymfollow, sync/async, dirsync, lazytime. The
    /// default is rw,nosuid,nodev,relatime: a share's set-user-id bits and
    /// device nodes are not honoured unless suid or dev asks (root only).
    /// remount changes the flags of the running mount (root only). Reads
    /// never update access times, whatever the atime option; only programs
    /// that set them do (touch -a). An unknown option is an error.
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
    /// Let in only root and the members of GROUP (a name or gid;
    /// repeatable; fstab: allow_group=GROUP). Everyone else's requests are
    /// refused (EACCES) and recorded in the audit trail. Only with
    /// allow_other, which lets other users in at all.
    #[arg(long = "allow-group", value_name = "GROUP")]
    pub allow_group: Vec<String>,
    /// Create the store without asking if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Where the detached daemon writes its messages (never inside the store).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Mount the whole tree as it was at TIME, read-only (e.g. `2026-11-20
    /// 14:03`, `2h ago`, `yesterday 17:00`). Works while the store is
    /// mounted elsewhere too.
    #[arg(long, value_name = "TIME", value_parser = time_spec::from_arg)]
    pub at: Option<PointInTime>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// How the daemon serves the kernel; passed on to the detached daemon as is.
#[derive(clap::Args, Clone, Copy)]
pub struct Tuning {
    /// Memory for decrypted blocks (e.g. 64M).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = util::parse_size)]
    pub cache_size: u64,
    /// Worker threads serving the kernel (with io_uring: spread over the
    /// per-CPU queues).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Take requests from the kernel over io_uring, one queue per CPU (Linux
    /// 6.14+, when /sys/module/fuse/parameters/enable_uring is Y). Much faster
    /// for many small operations. auto: when the kernel offers it; on: fail if
    /// it does not; off: classic /dev/fuse reads and writes.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = IoUringMode::Auto)]
    pub io_uring: IoUringMode,
    /// Free space kept on the store's disk for the catalog (e.g. 16M). Once
    /// less is free, writes and new files fail with ENOSPC while deletes,
    /// renames and closes still work, so a full disk loses nothing and can
    /// be cleaned up through the mount. 0 turns the reserve off.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = util::parse_size)]
    pub space_reserve: u64,
    /// How often the mount prunes the store in the background by its
    /// retention policy (as `phivault prune` does): e.g. 1d, 12h, 30m, 90s
    /// (a bare number is seconds). The first prune runs 10 minutes after
    /// the mount, or one interval if that is shorter. 0: never.
    #[arg(long, value_name = "INTERVAL", default_value = "1d", value_parser = parse_interval)]
    pub prune_interval: u64,
}

/// "1d", "12h", "30m", "90s" or "90" into seconds.
fn parse_interval(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m, h or d, such as 1d"))?;
    let mul = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Internal: the detached daemon. Reads the master key from stdin and reports
/// readiness on stdout.
#[derive(clap::Args)]
pub struct DaemonArgs {
    store: PathBuf,
    mountpoint: PathBuf,
    #[arg(long)]
    options: Vec<String>,
    /// The instant to serve (ns since the epoch), for `mount --at`.
    #[arg(long)]
    at_ns: Option<i64>,
    #[command(flatten)]
    tuning: Tuning,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    let store = util::absolute(&a.store)?;
    let mountpoint = util::absolute(&a.mountpoint)?;
    let at = past_instant(a.at)?;
    if at.is_some() {
        // The past only reads.
        a.options.push("ro".into());
    }
    // The daemon reads them from the options, as from an fstab line.
    let groups = std::mem::take(&mut a.allow_group);
    a.options
        .extend(groups.into_iter().map(|g| format!("allow_group={g}")));
    let opts = MountOptions::parse(&a.options)?;
    if opts.remount && at.is_some() {
        bail!("--at mounts a new read-only view; it cannot remount one");
    }
    if opts.remount {
        return remount(&store, &mountpoint, &opts);
    }
    refuse_what_fusermount_drops(&opts.flags())?;
    let dir = StoreDir::new(&store);
    clear_dead_mounts(&dir, &mountpoint)?;
    check_mountpoint(&mountpoint)?;
    if a.tuning.io_uring == IoUringMode::On && !io_uring_enabled() {
        bail!(
            "--io-uring on: this kernel does not offer FUSE over io_uring; it needs Linux 6.14 \
             or later and, as root, `echo Y > /sys/module/fuse/parameters/enable_uring` \
             (or fuse.enable_uring=1 on the kernel command line)"
        );
    }
    // A view of the past reads beside the daemon of a live mount.
    if let Some(mounted) = util::mount_of_store(&store).filter(|_| at.is_none()) {
        bail!("store {} is already mounted at {mounted}", store.display());
    }
    // First use: the passphrase just chosen also unlocks, without asking again.
    let mut chosen = None;
    if !dir.exists() && at.is_some() {
        bail!(
            "{} is not a phivault store; it has no past to mount",
            store.display()
        );
    }
    if !dir.exists() {
        if !(a.create || confirm_create(&store)?) {
            bail!(
                "{} is not a phivault store; nothing was created",
                store.display()
            );
        }
        chosen = Some(init::create(
            &store,
            a.passphrase_file.as_deref(),
            65536,
            KdfParams::default(),
        )?);
        eprintln!("Created store {}", store.display());
    }
    read_config(&dir).with_context(|| format!("cannot open store {}", store.display()))?;
    let pass = match chosen {
        Some(p) => p,
        None => passphrase::existing(a.passphrase_file.as_deref())?,
    };
    // Also checks the retention policy's MAC (and upgrades a format-1 store).
    let purpose = match opts.flags().read_only {
        true => UnlockFor::Reading,
        false => UnlockFor::Writing,
    };
    let Unlocked { config, master, .. } = unlock_store(&dir, &pass, purpose)?;
    drop(pass);
    if a.foreground {
        return serve(&dir, &mountpoint, &opts, &a.tuning, &master, at, None);
    }
    let log = match &a.log_file {
        Some(p) => util::absolute(p)?,
        None => default_log_path(&config.vault_id)?,
    };
    spawn_daemon(&store, &mountpoint, &a, at, &master, &log)
}

/// The instant `--at` asks for, in ns since the epoch: one that has come.
fn past_instant(at: Option<PointInTime>) -> anyhow::Result<Option<i64>> {
    let t = match at {
        None => return Ok(None),
        Some(PointInTime::Instant(t)) => t,
        Some(PointInTime::Version(v)) => bail!(
            "--at v{v}: a version number belongs to one file, and a mount shows the whole \
             tree; give a time instead (`phivault log STORE PATH` shows when each version \
             was made)"
        ),
    };
    if t > jiff::Timestamp::now() {
        bail!(
            "--at {}: that time has not come yet; nothing was mounted",
            time_spec::format_rfc3339(t)
        );
    }
    Ok(Some(i64::try_from(t.as_nanosecond()).unwrap_or(i64::MIN)))
}

/// Without root, fusermount3 mounts, and it cannot give every flag; refuse
/// those here rather than mount without them.
fn refuse_what_fusermount_drops(f: &Flags) -> anyhow::Result<()> {
    let root_only = f.root_only();
    if root_only.is_empty() || unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    bail!(
        "mount option {} needs root: other users mount through fusermount3, which mounts \
         every FUSE filesystem nosuid,nodev and does not know strictatime, nodiratime, \
         nosymfollow or lazytime; nothing was mounted",
        root_only.join(", ")
    )
}

/// `-o remount,...`: sets the flags of the mount of `store` at `mp` in
/// place, as `mount -o remount,ro MNT` asks through mount.phivault; the
/// daemon serves on. Only the mount's own flags change (a bind remount),
/// so its superblock keeps saying whether the daemon opened the store
/// read-only.
fn remount(store: &Path, mp: &Path, opts: &MountOptions) -> anyhow::Result<()> {
    let m = util::mount_at(mp)
        .with_context(|| format!("nothing is mounted on {}; nothing to remount", mp.display()))?;
    if !m.fstype.starts_with("fuse") || Path::new(&m.source) != store {
        bail!(
            "{} is not a mount of {} (it holds {}, type {}); nothing was changed",
            mp.display(),
            store.display(),
            m.source,
            m.fstype
        );
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "only root can remount; unmount and mount {} again instead",
            mp.display()
        );
    }
    let current = Flags::from_mountinfo(&m.options, &m.super_options);
    let wanted = opts.remount_flags(current);
    refuse_what_remount_cannot_change(&m, &current, &wanted, opts)?;
    refuse_other_groups(store, mp, opts)?;
    remount_flags(mp, &wanted)
        .with_context(|| format!("cannot remount {}; nothing was changed", mp.display()))
}

/// The superblock's flags, allow_other and the store's read-only opening
/// are fixed when mounting; a remount asking to change them is refused.
fn refuse_what_remount_cannot_change(
    m: &util::Mount,
    current: &Flags,
    wanted: &Flags,
    opts: &MountOptions,
) -> anyhow::Result<()> {
    let has = |word: &str| m.super_options.split(',').any(|w| w == word);
    let mp = &m.mountpoint;
    if wanted.superblock_differs(current) {
        bail!(
            "sync, dirsync and lazytime are fixed when mounting; unmount {mp} and mount it with \
             the ones wanted"
        );
    }
    if !wanted.read_only && has("ro") {
        bail!(
            "{mp} is read-only in its superblock: it was mounted ro, so phivault opened its \
             store read-only (or mount(8) remounted it without mount.phivault); unmount it and \
             mount it without ro to write"
        );
    }
    if opts.allow_other && !has("allow_other") {
        bail!("allow_other is fixed when mounting; unmount {mp} and mount it with allow_other");
    }
    Ok(())
}

/// allow_group is the daemon's, which a remount cannot reach: it only
/// changes the mount's flags (mount(2)). A remount may repeat the groups
/// the mount was made with, as mount(8) does from the fstab line, and
/// refuses any other; without allow_group they stay as mounted.
fn refuse_other_groups(store: &Path, mp: &Path, opts: &MountOptions) -> anyhow::Result<()> {
    if !opts.names_allow_group {
        return Ok(());
    }
    let Some(running) = groups_served(store, mp) else {
        bail!(
            "allow_group is fixed when mounting, and no phivault process serving {} from {} \
             says which groups it lets in; leave allow_group out of the remount, or unmount \
             {} and mount it with the groups wanted",
            mp.display(),
            store.display(),
            mp.display()
        );
    };
    if same_groups(&running, &opts.allow_groups) {
        return Ok(());
    }
    let names = |gids: &[u32]| match gids {
        [] => "everyone allow_other lets in".to_string(),
        _ => gids
            .iter()
            .map(|&g| {
                uzers::get_group_by_gid(g)
                    .map_or(g.to_string(), |g| g.name().to_string_lossy().into_owned())
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    bail!(
        "allow_group is fixed when mounting: {} lets in {}, not {}; unmount it and mount it with \
         the groups wanted",
        mp.display(),
        names(&running),
        names(&opts.allow_groups)
    )
}

fn same_groups(a: &[u32], b: &[u32]) -> bool {
    let set = |g: &[u32]| {
        g.iter()
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
    };
    set(a) == set(b)
}

/// The command lines of the processes that serve a mount.
#[derive(clap::Parser)]
struct Served {
    #[command(subcommand)]
    by: ServedBy,
}

#[derive(clap::Subcommand)]
enum ServedBy {
    /// `phivault mount --foreground`.
    Mount(Args),
    Daemon(DaemonArgs),
}

/// The groups the phivault process serving `store` at `mp` lets in, read
/// from its command line; None if there is no such process.
fn groups_served(store: &Path, mp: &Path) -> Option<Vec<u32>> {
    use clap::Parser;
    use std::os::unix::ffi::OsStrExt;
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        if !pid.as_bytes().iter().all(u8::is_ascii_digit) || pid == me.as_str() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&std::ffi::OsStr> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(std::ffi::OsStr::from_bytes)
            .collect();
        if !matches!(
            argv.get(1).map(|a| a.as_bytes()),
            Some(b"mount" | b"daemon")
        ) {
            continue;
        }
        let Ok(served) = Served::try_parse_from(&argv) else {
            continue;
        };
        let (s, m, options) = match served.by {
            ServedBy::Daemon(d) => (d.store, d.mountpoint, d.options),
            ServedBy::Mount(a) if a.foreground => {
                let groups = a.allow_group.iter().map(|g| format!("allow_group={g}"));
                let options = a.options.iter().cloned().chain(groups).collect();
                (a.store, a.mountpoint, options)
            }
            ServedBy::Mount(_) => continue,
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.join(&s) != store || cwd.join(&m) != mp {
            continue;
        }
        match MountOptions::parse(&options) {
            Ok(o) if !o.remount => return Some(o.allow_groups),
            _ => continue,
        }
    }
    None
}

fn remount_flags(mp: &Path, f: &Flags) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(mp.as_os_str().as_bytes())?;
    let bits = libc::MS_REMOUNT | libc::MS_BIND | f.mount_bits();
    // SAFETY: a NUL-terminated path; no source, type or data.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            bits,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) && f.read_only {
        bail!("files on it are open for writing; close them and remount read-only again");
    }
    Err(e.into())
}

/// Logs can name files, so they live outside the store (which may be
/// replicated): /var/log/phivault for root, the XDG state dir otherwise.
fn default_log_path(vault_id: &str) -> anyhow::Result<PathBuf> {
    let base = if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/log/phivault")
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        PathBuf::from(state).join("phivault")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; pass --log-file")?;
        PathBuf::from(home).join(".local/state/phivault")
    };
    Ok(base.join(format!("{vault_id}.log")))
}

fn confirm_create(store: &Path) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} is not a phivault store; pass --create to create one, or run `phivault init`",
            store.display()
        );
    }
    eprint!(
        "{} is not a phivault store yet. Create it? [y/N] ",
        store.display()
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A mount whose daemon died answers every access with ENOTCONN, and
/// nothing of it is left to flush. This store's such mounts are detached
/// (once no daemon holds the store), so that mounting again, by hand or by
/// systemd's `Restart=`, works; the store then recovers as after any crash.
/// Another dead mount on the mountpoint is left to its owner, with a
/// sentence saying how to clear it.
fn clear_dead_mounts(dir: &StoreDir, mp: &Path) -> anyhow::Result<()> {
    let dead: Vec<String> = util::mounts_of_store(dir.root())
        .into_iter()
        .filter(|at| util::is_dead_mount(Path::new(at)))
        .collect();
    // Held while the dead mounts are detached, so that two mounts racing
    // here cannot detach each other's fresh one.
    let held = match dead.is_empty() {
        true => None,
        false => lock_after_dead_daemon(dir),
    };
    if held.is_some() {
        for at in &dead {
            unmount_path(Path::new(at), Unmount::Detach)
                .with_context(|| format!("cannot clear the dead mount at {at}"))?;
            eprintln!("Cleared the mount at {at}: its daemon had stopped without unmounting");
        }
    }
    if util::is_mountpoint(mp) && util::is_dead_mount(mp) {
        bail!(
            "mountpoint {} holds a mount whose daemon is gone (Transport endpoint is not \
             connected); clear it with `phivault umount {}` or `fusermount3 -u {}`",
            mp.display(),
            mp.display(),
            mp.display()
        );
    }
    Ok(())
}

/// The store lock once a killed daemon has let go of it, or None if a live
/// process keeps it (or it cannot be had at all). A killed process's main
/// thread shows as a zombie while its other threads, io_uring workers
/// included, are still exiting, and the lock's file is released only with
/// the last of them: that, and only that, is waited for.
fn lock_after_dead_daemon(dir: &StoreDir) -> Option<StoreLock> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match StoreLock::acquire(dir) {
            Ok(lock) => return Some(lock),
            Err(StoreError::Locked { pid }) if Instant::now() < deadline && is_exiting(&pid) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => return None,
        }
    }
}

/// Whether process `pid` is gone or a zombie whose threads are still
/// exiting.
fn is_exiting(pid: &str) -> bool {
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| matches!(state.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => true,
    }
}

fn check_mountpoint(mp: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(mp).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "mountpoint {} does not exist; create it with mkdir",
            mp.display()
        ),
        _ => anyhow::anyhow!("cannot use mountpoint {}: {e}", mp.display()),
    })?;
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", mp.display());
    }
    if util::is_mountpoint(mp) {
        bail!(
            "mountpoint {} is busy: something is already mounted there",
            mp.display()
        );
    }
    if std::fs::read_dir(mp)?.next().is_some() {
        bail!(
            "mountpoint {} is not empty; mount on an empty directory so no files are hidden",
            mp.display()
        );
    }
    Ok(())
}

fn spawn_daemon(
    store: &Path,
    mountpoint: &Path,
    a: &Args,
    at: Option<i64>,
    master: &MasterKey,
    log_path: &Path,
) -> anyhow::Result<()> {
    if let Some(parent) = log_path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create log directory {}", parent.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .with_context(|| format!("cannot open log file {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the phivault executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon").arg(store).arg(mountpoint);
    for o in &a.options {
        cmd.arg("--options").arg(o);
    }
    if let Some(at) = at {
        cmd.arg(format!("--at-ns={at}"));
    }
    let t = &a.tuning;
    cmd.arg("--cache-size")
        .arg(t.cache_size.to_string())
        .arg("--threads")
        .arg(t.threads.to_string())
        .arg("--space-reserve")
        .arg(t.space_reserve.to_string())
        .arg("--prune-interval")
        .arg(t.prune_interval.to_string())
        .arg("--io-uring")
        .arg(
            t.io_uring
                .to_possible_value()
                .expect("no skipped variants")
                .get_name(),
        );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    // SAFETY: setsid is async-signal-safe; detaches the daemon from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the phivault daemon")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        let key = Zeroizing::new(hex::encode(master.as_bytes()));
        stdin
            .write_all(key.as_bytes())
            .context("cannot hand the key to the daemon")?;
    }
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    out.read_line(&mut line).ok();
    match line.trim_end() {
        "READY" => Ok(()),
        msg => {
            let mut rest = String::new();
            out.read_to_string(&mut rest).ok();
            let _ = child.wait();
            let msg = msg.strip_prefix("ERROR ").unwrap_or(msg);
            if msg.is_empty() {
                bail!(
                    "the daemon exited before the mount was ready; see {}",
                    log_path.display()
                );
            }
            bail!("{msg}")
        }
    }
}

pub fn run_daemon(a: DaemonArgs) -> anyhow::Result<()> {
    init_logging();
    let mut hexkey = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut hexkey)
        .context("reading the key")?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hexkey.trim(), &mut bytes[..]).context("malformed key from parent")?;
    let master = MasterKey::from_bytes(*bytes);
    let opts = MountOptions::parse(&a.options)?;
    let dir = StoreDir::new(&a.store);
    let mut ready = std::io::stdout();
    let res = serve(
        &dir,
        &a.mountpoint,
        &opts,
        &a.tuning,
        &master,
        a.at_ns,
        Some(&mut ready),
    );
    if let Err(e) = &res {
        let _ = writeln!(ready, "ERROR {}", util::describe(e));
        tracing::error!("{}", util::describe(e));
    }
    res
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHIVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fuser=error"));
    // A log line that cannot be written (the log's disk is full) is lost,
    // and nothing more: by default the subscriber reports the failure with
    // eprintln!, which panics when stderr (the log file) cannot be written,
    // and a panic in the FUSE worker's own error report ended the thread,
    // leaving the requests queued to it unanswered for good.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .log_internal_errors(false)
        .try_init();
}

/// glibc gives threads that allocate arenas of their own, up to eight per
/// CPU, and each keeps what its threads freed. The daemon's threads (ring
/// workers, block pool, flusher, and a block sealer when this was
/// measured) made that a third of its memory: a 1 GiB write peaked at
/// 186 MiB, and at 103 MiB with one arena per CPU, at the same speed. A
/// `MALLOC_ARENA_MAX` set by the user wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none_or(|v| v.is_empty()) {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        // SAFETY: only tunes the allocator; any value is valid.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, cpus as libc::c_int) };
    }
}

/// Opens the engine, mounts, reports readiness, and serves until unmounted
/// or signalled; then flushes everything.
fn serve(
    dir: &StoreDir,
    mountpoint: &Path,
    opts: &MountOptions,
    tuning: &Tuning,
    master: &MasterKey,
    at: Option<i64>,
    ready: Option<&mut std::io::Stdout>,
) -> anyhow::Result<()> {
    init_logging();
    limit_malloc_arenas();
    // Everything the daemon creates is private to its user.
    unsafe { libc::umask(0o077) };
    let flags = opts.flags();
    let open_opts = OpenOptions {
        read_only: flags.read_only,
        record_requests: true,
        cache_bytes: tuning.cache_size as usize,
        space_reserve: tuning.space_reserve,
        ..OpenOptions::default()
    };
    // Start the thread pool that seals and decrypts blocks now, from this
    // unpinned thread: started lazily by an io_uring worker, its threads
    // would inherit that worker's pinning to one CPU. (An error means the
    // pool already runs, started by this thread.)
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("phivault-pool-{i}"))
        .build_global();
    let vault = open_when_free(dir, master, &open_opts)?;
    if !opts.posix_acls && vault.holds_acls()? {
        bail!(
            "{} holds POSIX ACLs, which -o noacl would ignore (the owning group would get what each ACL's mask allows); mount it without noacl",
            dir.root().display()
        );
    }
    if let Some(at) = at {
        if vault.past(at).getattr(crate::vault::ROOT_INO).is_err() {
            bail!(
                "{} did not exist yet at {}; nothing was mounted",
                dir.root().display(),
                crate::vault::format_utc(at.div_euclid(1_000_000_000))
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = vault.spawn_flusher(stop.clone());
    let stop_pruning = Arc::new(AtomicBool::new(false));
    let pruner = (tuning.prune_interval > 0 && !flags.read_only).then(|| {
        let every = Duration::from_secs(tuning.prune_interval);
        vault.spawn_pruner(
            stop_pruning.clone(),
            every.min(Duration::from_secs(600)),
            every,
        )
    });
    let stop_replicating = Arc::new(AtomicBool::new(false));
    let replicator = (!flags.read_only && at.is_none())
        .then(|| crate::replicate::worker::spawn(vault.clone(), master, stop_replicating.clone()));
    let mut source = dir.root().to_string_lossy().into_owned();
    if let Some(at) = at {
        // A view of the past is not a mount of the store: `umount` has no
        // flush to wait for, and the store can be mounted live meanwhile.
        let t = jiff::Timestamp::from_nanosecond(at.into()).unwrap_or_default();
        source = format!("{source}@{}", time_spec::format_rfc3339(t));
    }
    let cfg = mount_config(&MountSettings {
        source: &source,
        allow_other: opts.allow_other,
        read_only: flags.read_only,
        threads: tuning.threads as usize,
        flags: &flags.to_fuser(),
    });
    // The kernel names the mounting user as the daemon's real uid
    // (`user_id=`), and lets only that user in without allow_other.
    let admitted = match opts.allow_other {
        true => Admitted::Everyone,
        // SAFETY: getuid cannot fail.
        false => Admitted::User(unsafe { libc::getuid() }),
    };
    let mut fs = PhiFs::new(vault.clone(), tuning.io_uring, opts.posix_acls)
        .admitting(admitted)
        .allow_groups(opts.allow_groups.clone());
    if let Some(at) = at {
        fs = fs.at_instant(at);
    }
    let kernel_cache = fs.kernel_cache();
    let session = fuser::Session::new(fs, mountpoint, &cfg)
        .with_context(|| format!("cannot mount on {}", mountpoint.display()))?;
    kernel_cache.attach(session.notifier());
    tracing::info!(
        "mounted {} on {}; {} KiB of its disk kept free for the catalog",
        dir.root().display(),
        mountpoint.display(),
        tuning.space_reserve >> 10
    );
    if let Some(out) = ready {
        writeln!(out, "READY")?;
        out.flush()?;
    }
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
    let sig_handle = signals.handle();
    let mp = mountpoint.to_path_buf();
    let signal_thread = std::thread::spawn(move || {
        // After the first signal, keep trying: a busy mount (open files)
        // unmounts as soon as the last program lets go.
        let Some(sig) = signals.forever().next() else {
            return;
        };
        tracing::info!("signal {sig}: flushing and unmounting {}", mp.display());
        let mut warned = false;
        loop {
            match unmount_path(&mp, Unmount::WhenIdle) {
                Ok(()) => return,
                Err(e) if !warned => {
                    tracing::warn!(
                        "unmount of {} deferred: {e}; retrying until files are closed",
                        mp.display()
                    );
                    warned = true;
                }
                Err(_) => {}
            }
            if signals.pending().next().is_none() {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
    match util::mount_device(mountpoint) {
        Some(device) => crate::fs::raise_read_ahead(&device, &vault),
        None => tracing::warn!("{} is not in mountinfo", mountpoint.display()),
    }
    let served = session.served();
    let result = session.run();
    log_requests_served(&served);
    sig_handle.close();
    let _ = signal_thread.join();
    stop_pruning.store(true, Ordering::Relaxed);
    stop_replicating.store(true, Ordering::Relaxed);
    if let Some(pruner) = pruner {
        let _ = pruner.join();
    }
    if let Some(replicator) = replicator {
        let _ = replicator.join();
    }
    vault.shutdown().context("flushing the store")?;
    stop.store(true, Ordering::Relaxed);
    let _ = flusher.join();
    tracing::info!("unmounted {}", mountpoint.display());
    result.context("filesystem session")
}

/// Over io_uring, a request that came through /dev/fuse (other than the
/// FORGETs and INTERRUPTs the kernel always sends there) bypassed the
/// per-CPU queues; the count shows whether that happened.
fn log_requests_served(served: &fuser::ServedCounts) {
    let dev = served.through_dev_fuse();
    match served.over_io_uring() {
        0 => tracing::info!("served {dev} requests through /dev/fuse"),
        ring => tracing::info!(
            "served {ring} requests over io_uring and {dev} through /dev/fuse ({} of them FORGET or INTERRUPT)",
            served.dev_fuse_forgets_and_interrupts()
        ),
    }
}

/// How `unmount_path` lets go of a mount.
#[derive(Clone, Copy, PartialEq)]
enum Unmount {
    /// Fails while programs use the mount (EBUSY).
    WhenIdle,
    /// At once, for programs too (a dead mount's files fail anyway).
    Detach,
}

/// Asks the kernel to detach the mount; its session then ends by itself.
fn unmount_path(mp: &Path, how: Unmount) -> std::io::Result<()> {
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(mp.as_os_str().as_bytes())?;
        let flags = match how {
            Unmount::WhenIdle => 0,
            Unmount::Detach => libc::MNT_DETACH,
        };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error());
    }
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u");
    if how == Unmount::Detach {
        cmd.arg("-z");
    }
    let out = cmd.arg(mp).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// A daemon that is still flushing after an unmount holds the store lock for
/// a moment: wait for it rather than fail.
fn open_when_free(
    dir: &StoreDir,
    master: &MasterKey,
    opts: &OpenOptions,
) -> anyhow::Result<Arc<Vault>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Vault::open(dir, master, opts) {
            Ok(v) => return Ok(v),
            Err(crate::vault::VaultError::Store(crate::store::StoreError::Locked { .. }))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open store {}", dir.root().display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Only a gone or zombie holder of the store lock is waited for.
    #[test]
    fn only_a_gone_or_zombie_process_is_exiting() {
        assert!(
            !is_exiting(&std::process::id().to_string()),
            "this one runs"
        );
        assert!(!is_exiting("unknown"));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_exiting(&pid) {
            assert!(Instant::now() < deadline, "`true` still running after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("State:\tZ"),
            "not reaped yet, so a zombie:\n{status}"
        );
        child.wait().unwrap();
        assert!(is_exiting(&pid), "reaped: gone");
    }

    /// What `groups_served` finds in the command lines of a daemon that
    /// `mount` started and of a `mount --foreground` (systemd's unit).
    #[test]
    fn serving_command_lines_name_their_groups() {
        let daemon = ["phivault", "daemon", "/s", "/m", "--options", "allow_other"];
        let daemon = daemon
            .into_iter()
            .chain(["--options", "allow_group=root", "--threads", "8"]);
        let Ok(Served {
            by: ServedBy::Daemon(d),
        }) = Served::try_parse_from(daemon)
        else {
            panic!("a daemon's command line does not parse");
        };
        assert_eq!(d.options, ["allow_other", "allow_group=root"]);
        assert_eq!((d.store, d.mountpoint), ("/s".into(), "/m".into()));
        let fg = [
            "phivault",
            "mount",
            "s",
            "/m",
            "-o",
            "allow_other",
            "--allow-group=0",
        ];
        let Ok(Served {
            by: ServedBy::Mount(a),
        }) = Served::try_parse_from(fg.into_iter().chain(["--foreground"]))
        else {
            panic!("a foreground mount's command line does not parse");
        };
        assert!(a.foreground);
        assert_eq!(
            (a.options, a.allow_group),
            (vec!["allow_other".into()], vec!["0".into()])
        );
    }

    #[test]
    fn groups_are_the_same_in_any_order() {
        assert!(same_groups(&[5, 7], &[7, 5, 5]));
        assert!(same_groups(&[], &[]));
        assert!(!same_groups(&[5], &[5, 7]));
        assert!(!same_groups(&[], &[0]));
    }
}
