//! Permission checks in the past (`.snapshots`, `mount --at`), which only
//! ever reads: the engine decides on the attributes and ACL the node had
//! then, read through the past's `TreeView`.

use std::time::Duration;

use super::{PhiFs, TTL};
use crate::vault::{Attr, Caller, Past, Result, Vault, VaultError, ROOT_INO};

const ACCESS_ACL: &[u8] = b"system.posix_acl_access";

impl PhiFs {
    /// Whether `who` may `mask` (read and search only) node `ino` of `t`.
    pub(super) fn past_may(&self, t: &Past<'_>, who: &Caller, ino: u64, mask: u32) -> Result<()> {
        let a = t.getattr(ino)?;
        // The owner's bits decide for the owner: no ACL to read.
        let acl = match who.uid == a.uid {
            true => None,
            false => access_acl(t, &a)?,
        };
        self.vault.past_permission(who, &a, acl.as_deref(), mask)
    }

    /// `entry_timeout` for directory `dir` of `t`.
    pub(super) fn past_entry_timeout(&self, t: &Past<'_>, dir: u64) -> Duration {
        // The root of a `mount --at` view, as the live root (a snapshot's
        // root is reached through `.snapshots`, which is asked each time).
        if dir == ROOT_INO && !self.allowed_groups.is_empty() {
            return Duration::ZERO;
        }
        let open = t.getattr(dir).and_then(|a| {
            let acl = access_acl(t, &a)?;
            Vault::past_searchable_by(&a, acl.as_deref(), self.admitted)
        });
        match open {
            Ok(true) => TTL,
            _ => Duration::ZERO,
        }
    }
}

/// The bytes of `a`'s access ACL in `t`, if it has one.
fn access_acl(t: &Past<'_>, a: &Attr) -> Result<Option<Vec<u8>>> {
    // Without group bits there is no ACL to consult (acl_permission_check).
    if a.perm & 0o070 == 0 {
        return Ok(None);
    }
    match t.getxattr(a.ino, ACCESS_ACL) {
        Ok(v) => Ok(Some(v)),
        Err(VaultError::NoAttr) => Ok(None),
        Err(e) => Err(e),
    }
}
