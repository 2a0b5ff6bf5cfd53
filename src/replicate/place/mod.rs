//! Places: where replicated objects live (a directory, an object store), one
//! small interface for all of them.
//!
//! A place holds opaque, immutable objects, each named by the BLAKE3 hash of
//! its bytes under a kind folder (`keys/`, `heads/`, `data/ab/`). Hash names
//! make every object self-checking: anyone can verify a remote, or find a
//! damaged object on it, by rehashing, without the store's key; and since a
//! name fixes its bytes, storing is create-only: a put of a name already
//! there is `AlreadyThere`, never an overwrite, so a rerun after a kill can
//! neither duplicate nor clobber anything. A place stores bytes only under
//! the name they hash to (`NamedBytes`), and checks the hash of what it
//! reads.
//!
//! Owns the naming and the contract; `dir` (a directory), `s3` (an
//! S3-compatible bucket), `mem` (memory, for tests of the layers above) and
//! `faulty` (fault injection as a decorator) implement it. Never decrypts, never interprets an object's bytes.

mod dir;
mod faulty;
mod mem;
mod s3;
mod s3_lock;

use std::fmt;
use std::path::PathBuf;

pub use dir::DirPlace;
pub use faulty::{FaultyPlace, FaultyPlaceBuilder};
pub use mem::MemPlace;
pub use s3::{S3Credentials, S3Place, S3Spec, DEFAULT_REGION};

/// What an object is, and so which folder of a place it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The store's wrapped key slots: `keys/<hash>`.
    Keys,
    /// The commit record of one replication pass: `heads/<hash>`.
    Head,
    /// Everything else (packs, catalog pages, audit bytes): `data/<ab>/<hash>`.
    Data,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Keys, ObjectKind::Head, ObjectKind::Data];

    /// The folder of this kind, relative to the place's root.
    pub fn folder(self) -> &'static str {
        match self {
            ObjectKind::Keys => "keys",
            ObjectKind::Head => "heads",
            ObjectKind::Data => "data",
        }
    }
}

/// An object's name: its kind and the BLAKE3 hash (unkeyed) of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub kind: ObjectKind,
    pub hash: [u8; 32],
}

/// Bytes and the name they hash to: what a place stores. Made only by
/// hashing the bytes, so no place stores bytes under a name that is not
/// theirs, and none hashes them a second time to make sure.
#[derive(Clone, Copy)]
pub struct NamedBytes<'a> {
    name: ObjectName,
    bytes: &'a [u8],
}

impl<'a> NamedBytes<'a> {
    /// `bytes` as an object of `kind`.
    pub fn new(kind: ObjectKind, bytes: &'a [u8]) -> Self {
        NamedBytes {
            name: ObjectName::of(kind, bytes),
            bytes,
        }
    }

    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A string that is not the key of an object (see `ObjectName::key`).
#[derive(Debug, thiserror::Error)]
#[error("not an object key: {0:?} (expected keys/<hash>, heads/<hash> or data/<ab>/<hash>, 64 lowercase hex digits)")]
pub struct BadObjectKey(pub String);

impl ObjectName {
    /// The name of `bytes` as an object of `kind`.
    pub fn of(kind: ObjectKind, bytes: &[u8]) -> Self {
        ObjectName {
            kind,
            hash: *blake3::hash(bytes).as_bytes(),
        }
    }

    /// Whether `bytes` are this object's bytes.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        blake3::hash(bytes) == blake3::Hash::from(self.hash)
    }

    /// The hash in lowercase hex.
    /// The name of kind `kind` whose hash is the hex string `hex`.
    pub fn from_hex(kind: ObjectKind, hex: &str) -> Result<Self, BadObjectKey> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex, &mut hash).map_err(|_| BadObjectKey(hex.to_string()))?;
        Ok(Self { kind, hash })
    }

    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The object's key relative to the place's root: `keys/<hex>`,
    /// `heads/<hex>` or `data/<hex[..2]>/<hex>` (data objects are many,
    /// so they are spread over 256 folders).
    pub fn key(&self) -> String {
        let h = self.hex();
        match self.kind {
            ObjectKind::Data => format!("data/{}/{h}", &h[..2]),
            kind => format!("{}/{h}", kind.folder()),
        }
    }

    /// Parses a key made by `key`; anything else (upper case, a wrong fan-out
    /// folder, extra components) is refused.
    pub fn from_key(key: &str) -> Result<Self, BadObjectKey> {
        let bad = || BadObjectKey(key.to_string());
        let parts: Vec<&str> = key.split('/').collect();
        let (kind, h) = match parts[..] {
            ["keys", h] => (ObjectKind::Keys, h),
            ["heads", h] => (ObjectKind::Head, h),
            ["data", fan, h] if h.len() == 64 && h.starts_with(fan) && fan.len() == 2 => {
                (ObjectKind::Data, h)
            }
            _ => return Err(bad()),
        };
        if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(h, &mut hash).map_err(|_| bad())?;
        Ok(ObjectName { kind, hash })
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectName({})", self.key())
    }
}

/// What a create-only put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was stored by this call.
    Created,
    /// An object of that name was already there: the same name is the same
    /// bytes, so nothing was written.
    AlreadyThere,
}

/// Options of a put.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Keep the object undeletable until then (S3 Object Lock, COMPLIANCE
    /// mode). A place that cannot lock refuses a put that asks for it
    /// rather than store it unprotected.
    pub retain_until: Option<jiff::Timestamp>,
}

/// The error a boxed source of `PlaceError::Unreachable` is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of a place.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{0}: no such object")]
    NotFound(ObjectName),
    /// DNS, connect, timeout, 5xx, 429: try again later.
    #[error("{place} cannot be reached: {source}")]
    Unreachable { place: String, source: BoxError },
    /// 403, 400, no such bucket, an option the place cannot honour: a person
    /// must act. `status` is the HTTP status, 0 for a place that has none.
    #[error("{place} refused the request ({status}): {message}")]
    Refused {
        place: String,
        status: u16,
        message: String,
    },
    #[error("{name} is locked until {until}: it cannot be deleted before then")]
    Locked {
        name: ObjectName,
        until: jiff::Timestamp,
    },
    /// Bytes read back that do not hash to their name or are shorter than
    /// the range asked for, or, on a put, an object of another size
    /// already stored under the name.
    #[error("{name}: damaged: {what}")]
    Damaged {
        name: ObjectName,
        what: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PlaceError {
    /// Whether the same call may succeed later without anyone acting: a
    /// network that comes back, a NAS that stops timing out. A full disk, a
    /// refusal or damage need a person, and are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            PlaceError::Unreachable { .. } => true,
            PlaceError::Io { source, .. } => {
                use std::io::ErrorKind::*;
                matches!(
                    source.kind(),
                    Interrupted
                        | WouldBlock
                        | TimedOut
                        | NotConnected
                        | ConnectionReset
                        | ConnectionAborted
                        | ConnectionRefused
                        | HostUnreachable
                        | NetworkUnreachable
                        | NetworkDown
                ) || matches!(source.raw_os_error(), Some(libc::EHOSTDOWN))
            }
            PlaceError::NotFound(_)
            | PlaceError::Refused { .. }
            | PlaceError::Locked { .. }
            | PlaceError::Damaged { .. } => false,
        }
    }
}

/// Where objects live. Sync, like the rest of the engine; every call is
/// independent and may run from several threads at once.
pub trait ObjectPlace: Send + Sync {
    /// Stores `object` unless an object of its name is there (create-only:
    /// never overwrites).
    fn put_new(&self, object: NamedBytes<'_>, o: &PutOptions) -> Result<PutOutcome, PlaceError>;
    /// The whole object, checked against its name (`Damaged` if not).
    fn get(&self, name: &ObjectName) -> Result<Vec<u8>, PlaceError>;
    /// Bytes `r` of the object (unchecked: a range cannot be hashed alone).
    fn get_range(&self, name: &ObjectName, r: std::ops::Range<u64>) -> Result<Vec<u8>, PlaceError>;
    /// The object's size, `None` if it is not there.
    fn size(&self, name: &ObjectName) -> Result<Option<u64>, PlaceError>;
    /// Every object of `kind` with its size, sorted by name.
    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>, PlaceError>;
    /// Removes the object; one already gone is not an error.
    fn delete(&self, name: &ObjectName) -> Result<(), PlaceError>;
    /// Until when the object is locked against deletion, if it is.
    fn retain_until(&self, name: &ObjectName) -> Result<Option<jiff::Timestamp>, PlaceError>;
    /// How many objects to move at once: a local disk is kept busy by one
    /// per core; a server over a network waits on round trips, so more at
    /// once fill the link.
    fn concurrency(&self) -> usize {
        rayon::current_num_threads()
    }
    /// Whether puts here are to carry a retain-until date (`PutOptions`):
    /// an S3 remote added with `--object-lock`.
    fn locks_objects(&self) -> bool {
        false
    }
    /// Where this is, for messages: never a secret.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hashes_and_keys_round_trip() {
        for kind in ObjectKind::ALL {
            let n = ObjectName::of(kind, b"some bytes");
            assert_eq!(n.hash, *blake3::hash(b"some bytes").as_bytes());
            assert!(n.matches(b"some bytes"));
            assert!(!n.matches(b"some bytez"));
            assert!(n.key().starts_with(kind.folder()));
            assert_eq!(ObjectName::from_key(&n.key()).unwrap(), n);
        }
        let d = ObjectName::of(ObjectKind::Data, b"x");
        let h = d.hex();
        assert_eq!(d.key(), format!("data/{}/{h}", &h[..2]));
    }

    #[test]
    fn keys_that_are_not_object_keys_are_refused() {
        let h = ObjectName::of(ObjectKind::Data, b"x").hex();
        let other_fan = if h.starts_with("00") { "01" } else { "00" };
        for bad in [
            String::new(),
            "keys".to_string(),
            format!("keys/{}", &h[..63]),
            format!("keys/{h}0"),
            format!("keys/{}", h.to_uppercase()),
            format!("heads/{}g", &h[..63]),
            format!("data/{h}"),
            format!("data/{other_fan}/{h}"),
            format!("data/{}/{h}/x", &h[..2]),
            format!("/keys/{h}"),
            format!("keys/../{h}"),
            format!("tmp/{h}"),
        ] {
            assert!(ObjectName::from_key(&bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn only_unreachable_and_network_io_are_transient() {
        let name = ObjectName::of(ObjectKind::Head, b"h");
        let io = |e: i32| PlaceError::Io {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(e),
        };
        assert!(PlaceError::Unreachable {
            place: "p".into(),
            source: "down".into()
        }
        .is_transient());
        assert!(io(libc::ETIMEDOUT).is_transient());
        assert!(io(libc::EHOSTDOWN).is_transient());
        assert!(!io(libc::ENOSPC).is_transient());
        assert!(!io(libc::EACCES).is_transient());
        assert!(!PlaceError::NotFound(name).is_transient());
        assert!(!PlaceError::Damaged { name, what: "x" }.is_transient());
    }
}
