//! Extended attributes (POSIX ACLs among them): GET, SET, LIST, REMOVE.

use std::ffi::OsStr;

use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request};

use super::convert::caller;
use super::{empty, errno, name, on_tree, PhiFs, Place, Tree};
use crate::vault::VaultError;

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
        if let Err(e) = self.live(ino) {
            return reply.error(e);
        }
        let name = name(n);
        empty(
            reply,
            self.vault.setxattr(&caller(req), ino.0, name, value, flags),
        )
    }

    pub(super) fn do_getxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        n: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let value = match self.place(ino) {
            Ok(Place::Node { tree, ino, .. }) => on_tree!(tree, |t| t.getxattr(ino, name(n))),
            Ok(Place::SnapshotsDir) => Err(VaultError::NoAttr),
            Err(e) => return reply.error(e),
        };
        match value {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
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

    pub(super) fn do_removexattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        n: &OsStr,
        reply: ReplyEmpty,
    ) {
        match self.live(ino) {
            Ok(ino) => empty(reply, self.vault.removexattr(ino, name(n))),
            Err(e) => reply.error(e),
        }
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
