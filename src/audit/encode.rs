//! The stored form of a `Record` before encryption: hand-written, so that
//! the format a six-year trail is kept in is fixed here and in
//! docs, not by a serializer's version. seq and time travel in the frame.
//!
//! Version 1, little-endian: version u8, op u8, result i32, uid gid pid u32,
//! ino parent u64, a u16 of the optional fields present (bit order below),
//! the present fixed-size ones, then the byte strings comm, exe, path,
//! [target], [xattr], each as a LEB128 length and its bytes. The op is
//! `Op::code`, its place in `Op::ALL`: operations are only ever added at
//! the end, so every record written before keeps its meaning (a build
//! older than an op it meets reads that record as of a newer format).

use super::record::{Detail, Op, Record, Who};

const VERSION: u8 = 1;

const LOGIN_UID: u16 = 1 << 0;
const SESSION_ID: u16 = 1 << 1;
const TARGET: u16 = 1 << 2;
const FLAGS: u16 = 1 << 3;
const MODE: u16 = 1 << 4;
const NEW_UID: u16 = 1 << 5;
const NEW_GID: u16 = 1 << 6;
const SIZE: u16 = 1 << 7;
const ATIME: u16 = 1 << 8;
const MTIME: u16 = 1 << 9;
const XATTR: u16 = 1 << 10;
const WRITTEN: u16 = 1 << 11;
const KNOWN: u16 = (1 << 12) - 1;

pub(super) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let (w, d) = (&rec.who, &rec.detail);
    out.push(VERSION);
    out.push(rec.op.code());
    out.extend_from_slice(&rec.result.to_le_bytes());
    for v in [w.uid, w.gid, w.pid] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&rec.ino.to_le_bytes());
    out.extend_from_slice(&rec.parent.to_le_bytes());
    let mut present = 0u16;
    let mut bit = |on: bool, b: u16| {
        if on {
            present |= b
        }
    };
    bit(w.login_uid.is_some(), LOGIN_UID);
    bit(w.session_id.is_some(), SESSION_ID);
    bit(rec.target.is_some(), TARGET);
    bit(d.flags.is_some(), FLAGS);
    bit(d.mode.is_some(), MODE);
    bit(d.uid.is_some(), NEW_UID);
    bit(d.gid.is_some(), NEW_GID);
    bit(d.size.is_some(), SIZE);
    bit(d.atime.is_some(), ATIME);
    bit(d.mtime.is_some(), MTIME);
    bit(d.xattr.is_some(), XATTR);
    bit(d.written.is_some(), WRITTEN);
    out.extend_from_slice(&present.to_le_bytes());
    let mut put = |b: Option<[u8; 8]>, n: usize| {
        if let Some(b) = b {
            out.extend_from_slice(&b[..n]);
        }
    };
    let u32b = |v: Option<u32>| v.map(|v| u64::from(v).to_le_bytes());
    put(u32b(w.login_uid), 4);
    put(u32b(w.session_id), 4);
    put(d.flags.map(|v| u64::from(v as u32).to_le_bytes()), 4);
    put(u32b(d.mode), 4);
    put(u32b(d.uid), 4);
    put(u32b(d.gid), 4);
    put(d.size.map(u64::to_le_bytes), 8);
    put(d.atime.map(i64::to_le_bytes), 8);
    put(d.mtime.map(i64::to_le_bytes), 8);
    put(d.written.map(u64::to_le_bytes), 8);
    bytes(out, w.comm.as_bytes());
    bytes(out, w.exe.as_bytes());
    bytes(out, &rec.path);
    if let Some(t) = &rec.target {
        bytes(out, t);
    }
    if let Some(x) = &d.xattr {
        bytes(out, x);
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    let mut n = b.len() as u64;
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(b);
}

/// None if `b` is not a version-1 record (it was authenticated, so only a
/// bug or a newer format gets here).
pub(super) fn decode(seq: u64, time_ns: i64, b: &[u8]) -> Option<Record> {
    let mut r = Reader(b);
    if r.u8()? != VERSION {
        return None;
    }
    let op = Op::from_code(r.u8()?)?;
    let result = r.u32()? as i32;
    let (uid, gid, pid) = (r.u32()?, r.u32()?, r.u32()?);
    let ino = r.u64()?;
    let parent = r.u64()?;
    let present = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    if present & !KNOWN != 0 {
        return None;
    }
    let has = |b: u16| present & b != 0;
    let login_uid = r.opt_u32(has(LOGIN_UID))?;
    let session_id = r.opt_u32(has(SESSION_ID))?;
    let flags = r.opt_u32(has(FLAGS))?.map(|v| v as i32);
    let mode = r.opt_u32(has(MODE))?;
    let new_uid = r.opt_u32(has(NEW_UID))?;
    let new_gid = r.opt_u32(has(NEW_GID))?;
    let size = r.opt_u64(has(SIZE))?;
    let atime = r.opt_u64(has(ATIME))?.map(|v| v as i64);
    let mtime = r.opt_u64(has(MTIME))?.map(|v| v as i64);
    let written = r.opt_u64(has(WRITTEN))?;
    let comm = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let exe = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let path = r.bytes()?.to_vec();
    let target = if has(TARGET) {
        Some(r.bytes()?.to_vec())
    } else {
        None
    };
    let xattr = if has(XATTR) {
        Some(r.bytes()?.to_vec())
    } else {
        None
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Record {
        seq,
        time_ns,
        who: Who {
            uid,
            gid,
            pid,
            comm,
            exe,
            login_uid,
            session_id,
        },
        op,
        path,
        target,
        ino,
        parent,
        detail: Detail {
            flags,
            mode,
            uid: new_uid,
            gid: new_gid,
            size,
            atime,
            mtime,
            xattr,
            written,
        },
        result,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// Some(None) when absent, None when malformed.
    fn opt_u32(&mut self, present: bool) -> Option<Option<u32>> {
        if present {
            self.u32().map(Some)
        } else {
            Some(None)
        }
    }
    fn opt_u64(&mut self, present: bool) -> Option<Option<u64>> {
        if present {
            self.u64().map(Some)
        } else {
            Some(None)
        }
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return self.take(usize::try_from(n).ok()?);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips() {
        let full = Record {
            seq: 7,
            time_ns: -5,
            who: Who {
                uid: 1,
                gid: 2,
                pid: 3,
                comm: "cat".into(),
                exe: "/usr/bin/cat".into(),
                login_uid: Some(1000),
                session_id: Some(4),
            },
            op: Op::Rename,
            path: b"/a/\xffb".to_vec(),
            target: Some(vec![b'x'; 300]),
            ino: u64::MAX,
            parent: 9,
            detail: Detail {
                flags: Some(-1),
                mode: Some(0o644),
                uid: Some(5),
                gid: Some(6),
                size: Some(1 << 40),
                atime: Some(-3),
                mtime: Some(i64::MAX),
                xattr: Some(b"user.x".to_vec()),
                written: Some(12),
            },
            result: libc::EACCES,
        };
        let bare = Record {
            who: Who::default(),
            target: None,
            detail: Detail::default(),
            ..full.clone()
        };
        for rec in [full, bare] {
            let mut b = Vec::new();
            encode(&rec, &mut b);
            assert_eq!(decode(rec.seq, rec.time_ns, &b), Some(rec.clone()));
            assert_eq!(decode(rec.seq, rec.time_ns, &b[..b.len() - 1]), None);
        }
    }

    /// Bytes written by the build before the operations of `--allow-group`
    /// refusals (stat, readdir, ...) were added: an open of "/a" by uid
    /// 1001 with login uid 1000, refused EACCES, flags O_RDONLY, and a
    /// removexattr, the last op of that build.
    #[test]
    fn records_written_before_new_ops_still_decode() {
        #[rustfmt::skip]
        let open: &[u8] = &[
            1, 0, 13, 0, 0, 0,                  // version, op open, EACCES
            0xe9, 3, 0, 0, 0xe9, 3, 0, 0, 7, 0, 0, 0, // uid gid pid
            5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // ino parent
            0b1001, 0,                          // login uid, flags
            0xe8, 3, 0, 0, 0, 0, 0, 0,          // login uid 1000, flags 0
            3, b'c', b'a', b't', 0, 2, b'/', b'a', // comm, exe, path
        ];
        let rec = decode(9, 10, open).expect("an old open decodes");
        assert_eq!(rec.op, Op::Open);
        assert_eq!((rec.who.uid, rec.who.gid, rec.who.pid), (1001, 1001, 7));
        assert_eq!((rec.who.login_uid, rec.who.session_id), (Some(1000), None));
        assert_eq!((rec.ino, rec.parent, rec.result), (5, 1, libc::EACCES));
        assert_eq!((rec.detail.flags, rec.who.comm.as_str()), (Some(0), "cat"));
        assert_eq!(rec.path, b"/a");
        #[rustfmt::skip]
        let removexattr: &[u8] = &[
            1, 17, 0, 0, 0, 0,                  // version, op removexattr, ok
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // uid gid pid
            5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ino parent
            0, 4,                               // xattr
            0, 0, 2, b'/', b'a', 6, b'u', b's', b'e', b'r', b'.', b'x',
        ];
        let rec = decode(1, 2, removexattr).expect("an old removexattr decodes");
        assert_eq!(rec.op, Op::RemoveXattr);
        assert_eq!(rec.detail.xattr.as_deref(), Some(&b"user.x"[..]));
    }

    /// The codes of the first build's operations, which records on disk
    /// hold: an op added in the wrong place would renumber them.
    #[test]
    fn op_codes_never_move() {
        let first = [
            "open",
            "create",
            "opendir",
            "close",
            "search",
            "unlink",
            "rmdir",
            "rename",
            "link",
            "symlink",
            "mkdir",
            "mknod",
            "truncate",
            "chmod",
            "chown",
            "utimes",
            "setxattr",
            "removexattr",
        ];
        for (code, name) in first.into_iter().enumerate() {
            assert_eq!(Op::from_code(code as u8).map(Op::name), Some(name));
        }
        for op in Op::ALL {
            assert_eq!(Op::from_code(op.code()), Some(op));
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
    }
}
