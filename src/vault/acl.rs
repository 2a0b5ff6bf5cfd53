//! POSIX access control lists, in the form the kernel hands them over as
//! `system.posix_acl_access` and `system.posix_acl_default`.
//!
//! The engine checks them (`permits`, for `Vault::permission`) and keeps
//! them as the kernel's own filesystems do (fs/posix_acl.c): an access ACL
//! is checked when set as the kernel would (`from_xattr`), sets the mode's
//! permission bits (and is dropped when the mode says all it says), a chmod
//! rewrites the ACL's owner, mask and other entries, and a new inode in a
//! directory with a default ACL gets that ACL, masked by the mode asked
//! for, instead of the umask.

use super::{Caller, Result, VaultError};

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// The version the kernel writes and accepts (`POSIX_ACL_XATTR_VERSION`).
const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

const RWX: u32 = 0o7;

/// Whether an extended attribute's name is one of the two ACLs.
pub fn is_acl(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// An ACL, entries in the kernel's order (owner, named users, owning group,
/// named groups, mask, other), as `from_xattr` admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

/// What an access ACL means for an inode: the permission bits it gives the
/// mode, and whether it must be kept (it names users or groups, or has a
/// mask) or says no more than those bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeBits {
    pub perm: u32,
    pub extended: bool,
}

impl Acl {
    /// An ACL as setxattr(2) hands it over, checked as the kernel checks
    /// one (`posix_acl_from_xattr`, then `posix_acl_valid`): another
    /// version is EOPNOTSUPP; a size that is not whole entries, an unknown
    /// tag or permission bit, an unmapped id, or entries out of the order
    /// owner, users, owning group, groups, mask, other (the mask required
    /// when users or groups are named) EINVAL. Ids need not be sorted or
    /// unique: the kernel does not ask that either. None is the empty ACL
    /// (a bare header), which the kernel takes as removing the ACL.
    pub fn from_xattr(value: &[u8]) -> Result<Option<Acl>> {
        let header = value.get(..HEADER).ok_or(VaultError::Invalid)?;
        if u32::from_le_bytes(header.try_into().unwrap()) != VERSION {
            return Err(VaultError::NotSupported);
        }
        let body = &value[HEADER..];
        if !body.len().is_multiple_of(ENTRY) {
            return Err(VaultError::Invalid);
        }
        if body.is_empty() {
            return Ok(None);
        }
        let entries: Vec<Entry> = body
            .chunks_exact(ENTRY)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let acl = Acl { entries };
        acl.check()?;
        Ok(Some(acl))
    }

    /// An ACL as stored (it was checked when it was set).
    pub fn parse(value: &[u8]) -> Result<Acl> {
        Acl::from_xattr(value)?.ok_or(VaultError::Invalid)
    }

    /// `posix_acl_valid`, and `posix_acl_from_xattr`'s refusal of an id
    /// that maps to no one (-1).
    fn check(&self) -> Result<()> {
        #[derive(PartialEq)]
        enum State {
            Owner,
            Users,
            Groups,
            Other,
            Done,
        }
        let mut state = State::Owner;
        let mut needs_mask = false;
        for e in &self.entries {
            if u32::from(e.perm) & !RWX != 0 {
                return Err(VaultError::Invalid);
            }
            state = match (e.tag, state) {
                (USER_OBJ, State::Owner) => State::Users,
                (USER, State::Users) if e.id != u32::MAX => {
                    needs_mask = true;
                    State::Users
                }
                (GROUP_OBJ, State::Users) => State::Groups,
                (GROUP, State::Groups) if e.id != u32::MAX => {
                    needs_mask = true;
                    State::Groups
                }
                (MASK, State::Groups) => State::Other,
                (OTHER, State::Other) => State::Done,
                (OTHER, State::Groups) if !needs_mask => State::Done,
                _ => return Err(VaultError::Invalid),
            };
        }
        if state == State::Done {
            Ok(())
        } else {
            Err(VaultError::Invalid)
        }
    }

    /// `posix_acl_permission` for a caller who does not own the inode
    /// (`acl_permission_check` answered for the owner already): the first
    /// named user entry that is the caller, limited by the mask; else
    /// every group entry the caller is in, of which one must grant all of
    /// `want` (limited by the mask, the owning group's too); else, if the
    /// caller is in none of them, the other entry.
    pub fn permits(&self, caller: &Caller, owner: u32, group: u32, want: u32) -> bool {
        let want = want & RWX;
        let grants = |e: &Entry| u32::from(e.perm) & want == want;
        let mask = self.entries.iter().find(|e| e.tag == MASK);
        let masked = |e: &Entry| match mask {
            Some(m) => u32::from(e.perm & m.perm) & want == want,
            None => grants(e),
        };
        let mut found = false;
        for e in &self.entries {
            match e.tag {
                USER_OBJ if caller.uid == owner => return grants(e),
                USER if caller.uid == e.id => return masked(e),
                GROUP_OBJ | GROUP => {
                    let gid = if e.tag == GROUP_OBJ { group } else { e.id };
                    if caller.in_group(gid) {
                        found = true;
                        if grants(e) {
                            return masked(e);
                        }
                    }
                }
                OTHER => return !found && grants(e),
                _ => {}
            }
        }
        false
    }

    /// Whether every entry a caller can match grants `want`, through the
    /// mask where it applies.
    pub fn grants_everyone(&self, want: u32) -> bool {
        let mask = self.entries.iter().find(|e| e.tag == MASK);
        self.entries.iter().all(|e| {
            let perm = match (e.tag, mask) {
                (USER | GROUP_OBJ | GROUP, Some(m)) => e.perm & m.perm,
                _ => e.perm,
            };
            u32::from(perm) & want == want
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// `posix_acl_equiv_mode`: the group bits come from the mask when
    /// there is one.
    pub fn mode_bits(&self) -> ModeBits {
        let mut perm = 0;
        let mut extended = false;
        for e in &self.entries {
            let p = u32::from(e.perm) & RWX;
            match e.tag {
                USER_OBJ => perm |= p << 6,
                GROUP_OBJ => perm |= p << 3,
                OTHER => perm |= p,
                MASK => {
                    perm = (perm & !0o070) | p << 3;
                    extended = true;
                }
                _ => extended = true,
            }
        }
        ModeBits { perm, extended }
    }

    /// The entries the mode's three permission triads stand for, each with
    /// its triad's shift: the owner, the mask (or, without one, the owning
    /// group), and others.
    fn mode_entries(&mut self) -> impl Iterator<Item = (&mut Entry, u32)> {
        let has_mask = self.entries.iter().any(|e| e.tag == MASK);
        self.entries.iter_mut().filter_map(move |e| {
            let shift = match e.tag {
                USER_OBJ => 6,
                MASK => 3,
                GROUP_OBJ if !has_mask => 3,
                OTHER => 0,
                _ => return None,
            };
            Some((e, shift))
        })
    }

    /// `posix_acl_chmod`: those entries get the new mode's bits.
    pub fn chmod(&mut self, mode: u32) {
        for (e, shift) in self.mode_entries() {
            e.perm = ((mode >> shift) & RWX) as u16;
        }
    }

    /// `posix_acl_create_masq`: a parent's default ACL applied to a new
    /// inode's `mode` (no umask): those entries keep only what the mode
    /// grants, and the mode only what they grant. Returns the mode the
    /// inode gets, and its access ACL unless that would say no more than
    /// the mode.
    pub fn inherit(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        for (e, shift) in acl.mode_entries() {
            e.perm &= ((mode >> shift) & RWX) as u16;
        }
        let bits = acl.mode_bits();
        ((mode & !0o777) | bits.perm, bits.extended.then_some(acl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
    }

    /// `setfacl -m u:1000:rw,m:r` of a 0640 file, as the kernel sends it.
    fn with_user_and_mask() -> Acl {
        acl(&[
            (USER_OBJ, 6, u32::MAX),
            (USER, 6, 1000),
            (GROUP_OBJ, 4, u32::MAX),
            (MASK, 4, u32::MAX),
            (OTHER, 0, u32::MAX),
        ])
    }

    #[test]
    fn bytes_round_trip_and_bad_ones_are_refused() {
        let a = with_user_and_mask();
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), 4 + 5 * 8);
        assert_eq!(Acl::parse(&bytes).unwrap(), a);
        assert!(Acl::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(Acl::parse(&bytes[..4]).is_err());
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert!(Acl::parse(&v1).is_err());
        let no_other = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0)]).to_bytes();
        assert!(Acl::parse(&no_other).is_err());
    }

    /// What ext4 answered for each (setxattr of system.posix_acl_access).
    #[test]
    fn acls_are_admitted_and_refused_as_the_kernel_does() {
        const X: u32 = u32::MAX;
        let check = |entries: &[(u16, u16, u32)]| {
            Acl::from_xattr(&acl(entries).to_bytes()).map(|a| a.is_some())
        };
        let named = [
            (USER_OBJ, 6, X),
            (USER, 6, 1000),
            (GROUP_OBJ, 4, X),
            (MASK, 6, X),
            (OTHER, 0, X),
        ];
        assert!(check(&named).unwrap());
        // Neither sorted nor unique ids are asked for.
        let dup = [
            (USER_OBJ, 6, X),
            (USER, 6, 1001),
            (USER, 4, 1000),
            (USER, 4, 1000),
            (GROUP_OBJ, 4, X),
            (MASK, 6, X),
            (OTHER, 0, X),
        ];
        assert!(check(&dup).unwrap());
        assert!(check(&[
            (USER_OBJ, 6, X),
            (GROUP_OBJ, 4, X),
            (MASK, 6, X),
            (OTHER, 0, X)
        ])
        .unwrap());
        for bad in [
            &[
                (USER_OBJ, 6, X),
                (USER, 6, 1000),
                (GROUP_OBJ, 4, X),
                (OTHER, 0, X),
            ][..],
            &[(USER_OBJ, 8, X), (GROUP_OBJ, 4, X), (OTHER, 0, X)],
            &[
                (USER_OBJ, 6, X),
                (USER, 6, X),
                (GROUP_OBJ, 4, X),
                (MASK, 6, X),
                (OTHER, 0, X),
            ],
            &[(GROUP_OBJ, 4, X), (USER_OBJ, 6, X), (OTHER, 0, X)],
            &[
                (USER_OBJ, 6, X),
                (GROUP_OBJ, 4, X),
                (OTHER, 0, X),
                (OTHER, 0, X),
            ],
            &[
                (USER_OBJ, 6, X),
                (GROUP_OBJ, 4, X),
                (0x40, 0, X),
                (OTHER, 0, X),
            ],
        ] {
            assert!(matches!(check(bad), Err(VaultError::Invalid)), "{bad:?}");
        }
        assert!(!check(&[]).unwrap(), "a bare header removes the ACL");
        let mut v1 = acl(&named).to_bytes();
        v1[0] = 1;
        assert!(matches!(
            Acl::from_xattr(&v1),
            Err(VaultError::NotSupported)
        ));
        assert!(matches!(
            Acl::from_xattr(&v1[..5]),
            Err(VaultError::NotSupported)
        ));
        let odd = &acl(&named).to_bytes()[..13];
        assert!(matches!(Acl::from_xattr(odd), Err(VaultError::Invalid)));
    }

    #[test]
    fn the_mask_gives_the_group_bits_and_named_entries_make_it_extended() {
        assert_eq!(
            with_user_and_mask().mode_bits(),
            ModeBits {
                perm: 0o640,
                extended: true
            }
        );
        let minimal = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 1, 0)]);
        assert_eq!(
            minimal.mode_bits(),
            ModeBits {
                perm: 0o751,
                extended: false
            }
        );
    }

    #[test]
    fn chmod_sets_owner_mask_and_other_but_not_the_named_user() {
        let mut a = with_user_and_mask();
        a.chmod(0o751);
        assert_eq!(
            a,
            acl(&[
                (USER_OBJ, 7, u32::MAX),
                (USER, 6, 1000),
                (GROUP_OBJ, 4, u32::MAX),
                (MASK, 5, u32::MAX),
                (OTHER, 1, u32::MAX),
            ])
        );
        let mut minimal = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 1, 0)]);
        minimal.chmod(0o604);
        assert_eq!(minimal.mode_bits().perm, 0o604);
    }

    #[test]
    fn inheriting_masks_the_default_acl_with_the_requested_mode() {
        let default = acl(&[
            (USER_OBJ, 7, u32::MAX),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, u32::MAX),
            (MASK, 7, u32::MAX),
            (OTHER, 5, u32::MAX),
        ]);
        // open(O_CREAT, 0666): the x bits go, the named user keeps rwx,
        // the mask limits it to rw-.
        let (mode, access) = default.inherit(0o100666);
        assert_eq!(mode, 0o100664);
        let access = access.expect("a named user keeps the ACL");
        assert_eq!(access.mode_bits().perm, 0o664);
        assert_eq!(
            access.entries[1],
            Entry {
                tag: USER,
                perm: 7,
                id: 1000
            }
        );
        // Without named entries or a mask, the mode says it all.
        let plain = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 0, 0), (OTHER, 0, 0)]);
        assert_eq!(plain.inherit(0o040755), (0o040700, None));
    }
}
