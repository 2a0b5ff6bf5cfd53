//! Who asks, as the kernel's permission checks see them: the filesystem
//! uid and gid the request carries, and, read from /proc only when a
//! decision needs them, the supplementary groups and capabilities (the FUSE
//! protocol carries neither; libfuse reads them the same way).

use std::sync::OnceLock;

/// A capability a permission decision may need, numbered as in
/// linux/capability.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    Chown = 0,
    DacOverride = 1,
    DacReadSearch = 2,
    Fowner = 3,
    Fsetid = 4,
    SysAdmin = 21,
    Mknod = 27,
    Setfcap = 31,
}

/// What /proc says of a caller beyond the request's uid and gid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Credentials {
    groups: Vec<u32>,
    /// CapEff, a bit per `Capability`.
    caps: u64,
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The calling thread's id (FUSE passes the thread's, not the process's).
    pub pid: u32,
    creds: OnceLock<Credentials>,
}

impl Default for Caller {
    fn default() -> Self {
        Self::root()
    }
}

impl Caller {
    /// A caller of the mount: groups and capabilities come from
    /// `/proc/PID/status` when first asked for. A caller that exited
    /// meanwhile has none, the safe side.
    pub fn new(uid: u32, gid: u32, pid: u32) -> Self {
        Self {
            uid,
            gid,
            pid,
            creds: OnceLock::new(),
        }
    }

    /// A caller whose groups and capabilities are given (tests, engine use).
    pub fn with_credentials(uid: u32, gid: u32, pid: u32, groups: Vec<u32>, caps: u64) -> Self {
        Self {
            uid,
            gid,
            pid,
            creds: OnceLock::from(Credentials { groups, caps }),
        }
    }

    /// Root with every capability, as the engine's own callers (the CLI,
    /// tests) act.
    pub fn root() -> Self {
        Self::with_credentials(0, 0, std::process::id(), Vec::new(), u64::MAX)
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The supplementary groups.
    pub fn groups(&self) -> &[u32] {
        &self.creds().groups
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups().contains(&gid)
    }

    /// Whether a chmod or an access ACL set by the caller keeps the
    /// set-group-ID bit of an inode of group `gid` (the kernel's
    /// `in_group_or_capable`).
    pub fn in_group_or_capable(&self, gid: u32) -> bool {
        self.in_group(gid) || self.has_cap(Capability::Fsetid)
    }

    /// Whether the caller's effective capabilities hold `cap`.
    pub fn has_cap(&self, cap: Capability) -> bool {
        self.creds().caps & (1 << cap as u32) != 0
    }

    /// Whether /proc was read for this caller (tests of laziness).
    #[cfg(test)]
    pub(crate) fn credentials_read(&self) -> bool {
        self.creds.get().is_some()
    }

    fn creds(&self) -> &Credentials {
        self.creds.get_or_init(|| read_credentials(self.pid))
    }
}

fn read_credentials(pid: u32) -> Credentials {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Credentials::default();
    };
    let mut creds = Credentials::default();
    for line in status.lines() {
        if let Some(groups) = line.strip_prefix("Groups:") {
            creds.groups = groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
        } else if let Some(caps) = line.strip_prefix("CapEff:") {
            creds.caps = u64::from_str_radix(caps.trim(), 16).unwrap_or(0);
        }
    }
    creds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = Caller::new(0, 0, std::process::id());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups[7..].split_whitespace().count(), me.groups().len());
    }

    #[test]
    fn a_gone_caller_has_nothing() {
        let gone = Caller::new(1000, 1000, u32::MAX - 1);
        assert!(gone.groups().is_empty());
        assert!(!gone.has_cap(Capability::DacOverride));
        assert!(gone.in_group(1000));
    }
}
