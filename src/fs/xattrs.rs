//! Extended attributes (POSIX ACLs among them): GET, SET, LIST, REMOVE.

use std::ffi::OsStr;

use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request};

use super::{errno, name, on_tree, PhiFs, Place, Tree};
use crate::audit::Op;
use crate::vault::{Caller, VaultError, MAY_READ};

/// The access ACL, which is part of the mode.
const ACCESS_ACL: &[u8] = b"system.posix_acl_access";

impl PhiFs {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _pos: u32,
        reply: ReplyEmpty,
    ) {
        self.change_xattr(req, Op::SetXattr, ino, n, reply, |who, name| {
            self.vault.setxattr(who, ino.0, name, value, flags)
        })
    }

    /// SETXATTR and REMOVEXATTR of attribute `n` of live node `ino`,
    /// recorded as `op`: `change` makes the change once the caller may.
    fn change_xattr(
        &self,
        req: &Request,
        op: Op,
        ino: INodeNo,
        n: &OsStr,
        reply: ReplyEmpty,
        change: impl FnOnce(&Caller, &[u8]) -> crate::vault::Result<()>,
    ) {
        let name = name(n);
        let rec = self.audit.start(req, op, self.subject(ino)).xattr(name);
        let changed = self.changing(req, ino).and_then(|who| {
            self.vault
                .may_setxattr(&who, ino.0, name)
                .and_then(|()| change(&who, name))
                .map_err(errno)
        });
        self.xattr_changed(reply, ino, name, rec.done(changed))
    }

    /// Replies to a SETXATTR or REMOVEXATTR of `name`. An access ACL is
    /// the mode too: the kernel forgets the mode it cached, and the
    /// entries it cached in a directory not everyone may search any more.
    fn xattr_changed(&self, reply: ReplyEmpty, ino: INodeNo, name: &[u8], res: Result<(), Errno>) {
        if let Err(e) = res {
            return reply.error(e);
        }
        if name != ACCESS_ACL {
            return reply.ok();
        }
        let was_searchable = self.searchable.take(ino.0);
        self.kernel.attributes_changed(ino);
        reply.ok();
        self.search_changed(ino.0, was_searchable);
    }

    pub(super) fn do_getxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let admitted = self.admit(req).map_err(|e| {
            let rec = self.audit.start(req, Op::GetXattr, self.subject(ino));
            rec.xattr(name(n)).failed(e)
        });
        let who = match admitted {
            Ok(who) => who,
            Err(e) => return reply.error(e),
        };
        let value = match self.place(ino) {
            Ok(Place::Node {
                tree: Tree::Live(v),
                ino,
                ..
            }) => v
                .may_getxattr(&who, ino, name(n))
                .and_then(|()| v.getxattr(ino, name(n))),
            // xattr_permission: user.* needs read permission.
            Ok(Place::Node {
                tree: Tree::Past(p),
                ino,
                ..
            }) => match name(n).starts_with(b"user.") {
                true => self.past_may(&p, &who, ino, MAY_READ),
                false => Ok(()),
            }
            .and_then(|()| p.getxattr(ino, name(n))),
            Ok(Place::SnapshotsDir) => Err(VaultError::NoAttr),
            Err(e) => return reply.error(e),
        };
        match value {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if let Err(e) = self.admit_as(req, Op::ListXattr, ino) {
            return reply.error(e);
        }
        let names = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.listxattr(ino)),
            Ok(Place::SnapshotsDir) => Ok(Vec::new()),
            Err(e) => return reply.error(e),
        };
        match names {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_removexattr(&self, req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.change_xattr(req, Op::RemoveXattr, ino, n, reply, |_, name| {
            self.vault.removexattr(ino.0, name)
        })
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}
