//! `phivault mount -o`: the comma-separated option strings, parsed once into
//! a validated `MountOptions`. Generic options (noexec, noatime, ro, ...)
//! become mount flags, as for any filesystem in fstab; an option phivault
//! does not know is an error naming it, before anything is mounted.

use anyhow::bail;

/// When reads update access times (mount(8)'s atime options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Atime {
    /// relatime, the kernel's default (also what `atime` asks for).
    Relative,
    /// noatime.
    Never,
    /// strictatime.
    Always,
}

/// The generic flags of one mount, as mountinfo shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub atime: Atime,
    pub nodiratime: bool,
    pub nosymfollow: bool,
    // The superblock's flags; the others belong to the mount.
    pub sync: bool,
    pub dirsync: bool,
    pub lazytime: bool,
}

/// A share holds other people's files: set-user-id bits and device nodes
/// in it are not honoured unless `suid` or `dev` asks for them.
impl Default for Flags {
    fn default() -> Self {
        Flags {
            read_only: false,
            nosuid: true,
            nodev: true,
            noexec: false,
            atime: Atime::Relative,
            nodiratime: false,
            nosymfollow: false,
            sync: false,
            dirsync: false,
            lazytime: false,
        }
    }
}

/// One generic option as asked for; applied in order, so the last one wins,
/// as with mount(8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    ReadOnly(bool),
    NoSuid(bool),
    NoDev(bool),
    NoExec(bool),
    Atime(Atime),
    NoDirAtime(bool),
    NoSymFollow(bool),
    Sync(bool),
    DirSync(bool),
    LazyTime(bool),
}

impl Flag {
    fn parse(opt: &str) -> Option<Flag> {
        Some(match opt {
            "ro" => Flag::ReadOnly(true),
            "rw" => Flag::ReadOnly(false),
            "nosuid" => Flag::NoSuid(true),
            "suid" => Flag::NoSuid(false),
            "nodev" => Flag::NoDev(true),
            "dev" => Flag::NoDev(false),
            "noexec" => Flag::NoExec(true),
            "exec" => Flag::NoExec(false),
            "noatime" => Flag::Atime(Atime::Never),
            "strictatime" => Flag::Atime(Atime::Always),
            "atime" | "relatime" | "norelatime" | "nostrictatime" => Flag::Atime(Atime::Relative),
            "nodiratime" => Flag::NoDirAtime(true),
            "diratime" => Flag::NoDirAtime(false),
            "nosymfollow" => Flag::NoSymFollow(true),
            "symfollow" => Flag::NoSymFollow(false),
            "sync" => Flag::Sync(true),
            "async" => Flag::Sync(false),
            "dirsync" => Flag::DirSync(true),
            "lazytime" => Flag::LazyTime(true),
            "nolazytime" => Flag::LazyTime(false),
            _ => return None,
        })
    }
}

impl Flags {
    fn with(mut self, f: Flag) -> Self {
        match f {
            Flag::ReadOnly(on) => self.read_only = on,
            Flag::NoSuid(on) => self.nosuid = on,
            Flag::NoDev(on) => self.nodev = on,
            Flag::NoExec(on) => self.noexec = on,
            Flag::Atime(a) => self.atime = a,
            Flag::NoDirAtime(on) => self.nodiratime = on,
            Flag::NoSymFollow(on) => self.nosymfollow = on,
            Flag::Sync(on) => self.sync = on,
            Flag::DirSync(on) => self.dirsync = on,
            Flag::LazyTime(on) => self.lazytime = on,
        }
        self
    }

    /// The flags of a mount as /proc/self/mountinfo lists them: its own
    /// options (`vfs`) and its superblock's (`sb`).
    pub fn from_mountinfo(vfs: &str, sb: &str) -> Flags {
        let has = |list: &str, word: &str| list.split(',').any(|w| w == word);
        Flags {
            read_only: has(vfs, "ro"),
            nosuid: has(vfs, "nosuid"),
            nodev: has(vfs, "nodev"),
            noexec: has(vfs, "noexec"),
            atime: if has(vfs, "noatime") {
                Atime::Never
            } else if has(vfs, "relatime") {
                Atime::Relative
            } else {
                Atime::Always
            },
            nodiratime: has(vfs, "nodiratime"),
            nosymfollow: has(vfs, "nosymfollow"),
            sync: has(sb, "sync"),
            dirsync: has(sb, "dirsync"),
            lazytime: has(sb, "lazytime"),
        }
    }

    /// The mount's own flags for mount(2) (with `MS_REMOUNT | MS_BIND` they
    /// replace all of them, so every one is given).
    pub fn mount_bits(&self) -> libc::c_ulong {
        let bit = |on: bool, b: libc::c_ulong| if on { b } else { 0 };
        bit(self.read_only, libc::MS_RDONLY)
            | bit(self.nosuid, libc::MS_NOSUID)
            | bit(self.nodev, libc::MS_NODEV)
            | bit(self.noexec, libc::MS_NOEXEC)
            | bit(self.nodiratime, libc::MS_NODIRATIME)
            | bit(self.nosymfollow, MS_NOSYMFOLLOW)
            | match self.atime {
                Atime::Relative => libc::MS_RELATIME,
                Atime::Never => libc::MS_NOATIME,
                Atime::Always => libc::MS_STRICTATIME,
            }
    }

    /// The options asked for that only a mount by root can give. For other
    /// users fusermount3 mounts: it mounts every FUSE filesystem
    /// nosuid,nodev (and only warns about `suid` and `dev`), and version
    /// 3.14 knows none of the other four.
    pub fn root_only(&self) -> Vec<&'static str> {
        [
            (!self.nosuid, "suid"),
            (!self.nodev, "dev"),
            (self.atime == Atime::Always, "strictatime"),
            (self.nodiratime, "nodiratime"),
            (self.nosymfollow, "nosymfollow"),
            (self.lazytime, "lazytime"),
        ]
        .into_iter()
        .filter_map(|(asked, name)| asked.then_some(name))
        .collect()
    }

    /// Whether the superblock's flags (sync, dirsync, lazytime) differ.
    pub fn superblock_differs(&self, other: &Flags) -> bool {
        (self.sync, self.dirsync, self.lazytime) != (other.sync, other.dirsync, other.lazytime)
    }

    /// The options fuser mounts with (ro/rw aside, which it takes apart).
    /// Without `Suid`/`Dev` it mounts nosuid,nodev, as fusermount3 does.
    pub fn to_fuser(self) -> Vec<fuser::MountOption> {
        use fuser::MountOption as M;
        let pairs = [
            (!self.nosuid, M::Suid),
            (!self.nodev, M::Dev),
            (self.noexec, M::NoExec),
            (self.atime == Atime::Never, M::NoAtime),
            (self.atime == Atime::Always, M::StrictAtime),
            (self.nodiratime, M::NoDirAtime),
            (self.nosymfollow, M::NoSymFollow),
            (self.sync, M::Sync),
            (self.dirsync, M::DirSync),
            (self.lazytime, M::LazyTime),
        ];
        pairs
            .into_iter()
            .filter_map(|(on, o)| on.then_some(o))
            .collect()
    }
}

/// Linux 5.10's MS_NOSYMFOLLOW, which the libc crate does not name.
const MS_NOSYMFOLLOW: libc::c_ulong = 256;

/// `-o` of `phivault mount`, validated.
#[derive(Debug, Default)]
pub struct MountOptions {
    pub allow_other: bool,
    /// `allow_group=GROUP`: the gids whose members (and root) alone get
    /// in; empty for everyone the mount lets in.
    pub allow_groups: Vec<u32>,
    pub posix_acls: bool,
    /// `remount`: change the flags of the mount already there.
    pub remount: bool,
    /// Whether the options name allow_group at all: a remount may only
    /// repeat the groups the mount was made with.
    pub names_allow_group: bool,
    /// The options are mount(8)'s rendering of the mount's line in
    /// mountinfo (they carry the FUSE options only mountinfo shows).
    from_mountinfo: bool,
    flags: Vec<Flag>,
}

impl MountOptions {
    pub fn parse(raw: &[String]) -> anyhow::Result<MountOptions> {
        let mut o = MountOptions {
            posix_acls: true,
            ..MountOptions::default()
        };
        let words: Vec<&str> = raw
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        o.remount = words.contains(&"remount");
        for opt in words {
            o.take(opt)?;
        }
        // A remount can only repeat the groups the mount was made with
        // (see `mount::refuse_other_groups`).
        if !o.remount && !o.allow_groups.is_empty() && !o.allow_other {
            bail!(
                "allow_group (--allow-group) admits a group's members among the other users \
                 that allow_other lets in; add allow_other (-o allow_other), or leave \
                 allow_group out: without allow_other only you get in anyway"
            );
        }
        Ok(o)
    }

    fn take(&mut self, opt: &str) -> anyhow::Result<()> {
        if let Some(f) = Flag::parse(opt) {
            self.flags.push(f);
            return Ok(());
        }
        let key = opt.split_once('=').map_or(opt, |(k, _)| k);
        if let Some(group) = opt.strip_prefix("allow_group=") {
            self.names_allow_group = true;
            self.allow_groups.push(gid_of(group)?);
            return Ok(());
        }
        match opt {
            "allow_other" => self.allow_other = true,
            "acl" => self.posix_acls = true,
            "noacl" => self.posix_acls = false,
            "remount" | "default_permissions" => {}
            // Read by mount(8), systemd or mount.phivault, not by the mount.
            "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "owner" | "group"
            | "_netdev" | "nofail" => {}
            _ if key == "passphrase_file" || key == "comment" || key.starts_with("x-") => {}
            // The kernel's FUSE options, which phivault sets itself and
            // mount(8) repeats from mountinfo on a remount.
            _ if self.remount && FUSE_SET_BY_PHIVAULT.contains(&key) => self.from_mountinfo = true,
            _ if FUSE_SET_BY_PHIVAULT.contains(&key) => {
                bail!("mount option '{opt}' is set by phivault itself; leave it out")
            }
            "allow_root" | "auto_unmount" => {
                bail!("mount option '{opt}' is not supported; use allow_other")
            }
            _ => bail!(
                "unknown mount option '{opt}'; phivault takes allow_other, allow_group=GROUP, \
                 noacl, ro/rw, \
                 remount and the generic flags nosuid/suid, nodev/dev, noexec/exec, noatime, \
                 relatime, strictatime, atime, nodiratime, nosymfollow, sync/async, dirsync \
                 and lazytime (see `phivault mount --help`); nothing was mounted"
            ),
        }
        Ok(())
    }

    /// The flags a new mount gets: the share's defaults, then the options.
    pub fn flags(&self) -> Flags {
        self.flags.iter().fold(Flags::default(), |f, &o| f.with(o))
    }

    /// The flags a remount of a mount with flags `current` asks for. The
    /// options name the flags as a whole, the way mount(8) passes them:
    /// for `mount -o remount,exec MNT` it hands over the mount's options
    /// from mountinfo with `noexec` taken out, not `exec` added, so a flag
    /// left out is off. Read-only and the superblock's flags stay as they
    /// are unless named. So do nosuid and nodev, except in mountinfo's
    /// list: an fstab line does not name them, as they are the defaults.
    /// And so does strictatime, which mountinfo shows as no atime word.
    pub fn remount_flags(&self, current: Flags) -> Flags {
        let base = Flags {
            read_only: current.read_only,
            nosuid: current.nosuid && !self.from_mountinfo,
            nodev: current.nodev && !self.from_mountinfo,
            noexec: false,
            atime: match current.atime {
                Atime::Always => Atime::Always,
                _ => Atime::Relative,
            },
            nodiratime: false,
            nosymfollow: false,
            ..current
        };
        self.flags.iter().fold(base, |f, &o| f.with(o))
    }
}

/// The gid of group `name` (or a number), resolved once at mount.
fn gid_of(name: &str) -> anyhow::Result<u32> {
    if let Some(g) = uzers::get_group_by_name(name) {
        return Ok(g.gid());
    }
    match name.parse::<u32>() {
        Ok(gid) if uzers::get_group_by_gid(gid).is_some() => Ok(gid),
        _ => bail!(
            "allow_group={name}: there is no group {name:?} on this system (see getent group); \
             nothing was mounted"
        ),
    }
}

const FUSE_SET_BY_PHIVAULT: &[&str] = &[
    "user_id", "group_id", "rootmode", "fd", "max_read", "blksize", "fsname", "subtype",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<MountOptions> {
        MountOptions::parse(&[s.to_string()])
    }

    #[test]
    fn defaults_are_nosuid_nodev_relatime_rw() {
        let f = parse("").unwrap().flags();
        assert_eq!(f, Flags::default());
        assert!(f.nosuid && f.nodev && !f.read_only && f.atime == Atime::Relative);
        assert!(f.to_fuser().is_empty());
    }

    #[test]
    fn generic_flags_become_flags_and_the_last_one_wins() {
        let f = parse("noatime,noexec,suid,dev,ro,sync,dirsync,lazytime,nodiratime")
            .unwrap()
            .flags();
        assert!(f.noexec && !f.nosuid && !f.nodev && f.read_only);
        assert!(f.sync && f.dirsync && f.lazytime && f.nodiratime);
        assert_eq!(f.atime, Atime::Never);
        let f = parse("noatime,strictatime,ro,rw,noexec,exec")
            .unwrap()
            .flags();
        assert_eq!(f.atime, Atime::Always);
        assert!(!f.read_only && !f.noexec);
    }

    #[test]
    fn unknown_options_are_named() {
        let err = parse("noatime,noexc").unwrap_err().to_string();
        assert!(err.contains("'noexc'"), "{err}");
        let err = parse("user_id=5").unwrap_err().to_string();
        assert!(err.contains("set by phivault"), "{err}");
    }

    #[test]
    fn fstab_words_are_accepted() {
        let o = parse("defaults,_netdev,nofail,x-systemd.automount,passphrase_file=/k,allow_other")
            .unwrap();
        assert!(o.allow_other && !o.remount);
        assert_eq!(o.flags(), Flags::default());
    }

    #[test]
    fn remount_takes_the_options_as_mount_8_merged_them() {
        // What mount(8) hands the helper for `mount -o remount,exec,atime
        // MNT` of a mount that was nosuid,nodev,noexec,noatime,sync.
        let o = parse("rw,nosuid,nodev,remount,user_id=0,group_id=0,default_permissions").unwrap();
        assert!(o.remount);
        let current = Flags::from_mountinfo("ro,nosuid,nodev,noexec,noatime", "rw,sync");
        let f = o.remount_flags(current);
        assert!(!f.read_only && f.nosuid && f.nodev && !f.noexec && f.sync);
        assert_eq!(f.atime, Atime::Relative);
        assert!(!f.superblock_differs(&current));
        // Without ro or rw, it stays as it is.
        let f = parse("remount,noexec").unwrap().remount_flags(current);
        assert!(f.read_only && f.noexec);
        // mount(8) takes nosuid out of mountinfo's list for `suid`; an
        // fstab line never named it.
        let f = parse("rw,remount,user_id=0")
            .unwrap()
            .remount_flags(current);
        assert!(!f.nosuid && !f.nodev);
        let f = parse("remount,rw,passphrase_file=/k")
            .unwrap()
            .remount_flags(current);
        assert!(f.nosuid && f.nodev);
        let f = parse("remount,async").unwrap().remount_flags(current);
        assert!(f.superblock_differs(&current));
        let strict = Flags::from_mountinfo("rw,nosuid,nodev", "rw");
        let f = parse("ro,nosuid,nodev,remount,user_id=0").unwrap();
        assert_eq!(f.remount_flags(strict).atime, Atime::Always);
    }

    #[test]
    fn allow_group_needs_allow_other_and_a_real_group() {
        let o = parse("allow_other,allow_group=root,allow_group=0").unwrap();
        assert_eq!(o.allow_groups, vec![0, 0]);
        let err = parse("allow_group=root").unwrap_err().to_string();
        assert!(err.contains("allow_other"), "{err}");
        let err = parse("allow_other,allow_group=no-such-group-here")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no group \"no-such-group-here\""), "{err}");
    }

    #[test]
    fn a_remount_names_its_groups_for_the_check_against_the_mount() {
        // mount(8) repeats an fstab line's allow_group on a remount.
        let o = parse("remount,ro,allow_group=root,allow_other").unwrap();
        assert!(o.remount && o.names_allow_group);
        assert_eq!(o.allow_groups, vec![0]);
        let o = parse("remount,ro,nosuid,nodev,user_id=0").unwrap();
        assert!(!o.names_allow_group && o.allow_groups.is_empty());
        // Without allow_other, as mountinfo lists a mount made without it.
        assert!(parse("remount,allow_group=root").unwrap().names_allow_group);
        let err = parse("remount,allow_group=no-such-group-here")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no group"), "{err}");
    }

    #[test]
    fn mountinfo_without_an_atime_word_is_strictatime() {
        let f = Flags::from_mountinfo("rw,nosuid", "rw");
        assert_eq!(f.atime, Atime::Always);
        assert!(!f.nodev);
        assert_eq!(f.mount_bits(), libc::MS_NOSUID | libc::MS_STRICTATIME);
    }
}
