//! A place in memory, for tests of the layers above: the same contract as a
//! real place (create-only, hash-checked, locks honoured on delete), plus a
//! way to damage an object.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome};

/// The clock a locking place judges retain-until dates by.
pub type LockClock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

#[derive(Default)]
pub struct MemPlace {
    objects: Mutex<BTreeMap<ObjectName, Stored>>,
    /// `Some` for a place with Object Lock: it asks for retain-until dates
    /// and refuses deletes before them, by this clock.
    lock_clock: Option<LockClock>,
}

struct Stored {
    bytes: Arc<[u8]>,
    retain_until: Option<jiff::Timestamp>,
}

impl MemPlace {
    pub fn new() -> Self {
        Self::default()
    }

    /// A place with Object Lock whose clock is `now` (a test's, which may
    /// run behind the engine's as a remote's clock can).
    pub fn locking(now: LockClock) -> Self {
        MemPlace {
            lock_clock: Some(now),
            ..Self::default()
        }
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.objects.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces an object's bytes without any check, as a failing disk or a
    /// hostile remote would: for tests of what reads it back.
    pub fn damage(&self, name: &ObjectName, bytes: &[u8]) {
        let mut objects = self.objects.lock();
        let retain_until = objects.get(name).and_then(|s| s.retain_until);
        objects.insert(
            *name,
            Stored {
                bytes: bytes.into(),
                retain_until,
            },
        );
    }

    fn bytes(&self, name: &ObjectName) -> Result<Arc<[u8]>, PlaceError> {
        let objects = self.objects.lock();
        let s = objects.get(name).ok_or(PlaceError::NotFound(*name))?;
        Ok(s.bytes.clone())
    }
}

impl ObjectPlace for MemPlace {
    fn put_new(&self, object: NamedBytes<'_>, o: &PutOptions) -> Result<PutOutcome, PlaceError> {
        let (name, bytes) = (object.name(), object.bytes());
        let mut objects = self.objects.lock();
        if objects.contains_key(name) {
            return Ok(PutOutcome::AlreadyThere);
        }
        objects.insert(
            *name,
            Stored {
                bytes: bytes.into(),
                retain_until: o.retain_until,
            },
        );
        Ok(PutOutcome::Created)
    }

    fn get(&self, name: &ObjectName) -> Result<Vec<u8>, PlaceError> {
        let bytes = self.bytes(name)?;
        if !name.matches(&bytes) {
            return Err(PlaceError::Damaged {
                name: *name,
                what: "the stored bytes do not hash to the name",
            });
        }
        Ok(bytes.to_vec())
    }

    fn get_range(&self, name: &ObjectName, r: std::ops::Range<u64>) -> Result<Vec<u8>, PlaceError> {
        let bytes = self.bytes(name)?;
        if r.start > r.end {
            return Err(PlaceError::Refused {
                place: self.describe(),
                status: 0,
                message: format!("{name}: range {}..{} runs backward", r.start, r.end),
            });
        }
        if r.end > bytes.len() as u64 {
            return Err(PlaceError::Damaged {
                name: *name,
                what: "shorter than the range read",
            });
        }
        Ok(bytes[r.start as usize..r.end as usize].to_vec())
    }

    fn size(&self, name: &ObjectName) -> Result<Option<u64>, PlaceError> {
        Ok(self.objects.lock().get(name).map(|s| s.bytes.len() as u64))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>, PlaceError> {
        Ok(self
            .objects
            .lock()
            .iter()
            .filter(|(n, _)| n.kind == kind)
            .map(|(n, s)| (*n, s.bytes.len() as u64))
            .collect())
    }

    fn delete(&self, name: &ObjectName) -> Result<(), PlaceError> {
        let mut objects = self.objects.lock();
        if let Some(until) = objects.get(name).and_then(|s| s.retain_until) {
            let now = self
                .lock_clock
                .as_ref()
                .map_or_else(jiff::Timestamp::now, |clock| clock());
            if until > now {
                return Err(PlaceError::Locked { name: *name, until });
            }
        }
        objects.remove(name);
        Ok(())
    }

    fn retain_until(&self, name: &ObjectName) -> Result<Option<jiff::Timestamp>, PlaceError> {
        let objects = self.objects.lock();
        let s = objects.get(name).ok_or(PlaceError::NotFound(*name))?;
        Ok(s.retain_until)
    }

    fn locks_objects(&self) -> bool {
        self.lock_clock.is_some()
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_place_keeps_the_contract() {
        let p = MemPlace::new();
        let n = ObjectName::of(ObjectKind::Data, b"abc");
        let o = PutOptions::default();
        assert_eq!(
            p.put_new(NamedBytes::new(n.kind, b"abc"), &o).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            p.put_new(NamedBytes::new(n.kind, b"abc"), &o).unwrap(),
            PutOutcome::AlreadyThere
        );
        assert_eq!(p.get(&n).unwrap(), b"abc");
        assert_eq!(p.get_range(&n, 1..3).unwrap(), b"bc");
        assert_eq!(p.list(ObjectKind::Data).unwrap(), vec![(n, 3)]);
        assert!(p.list(ObjectKind::Head).unwrap().is_empty());
        p.damage(&n, b"abd");
        assert!(matches!(p.get(&n), Err(PlaceError::Damaged { .. })));
        p.delete(&n).unwrap();
        p.delete(&n).unwrap();
        assert!(matches!(p.get(&n), Err(PlaceError::NotFound(_))));
        assert_eq!(p.size(&n).unwrap(), None);
    }

    #[test]
    fn mem_place_refuses_to_delete_a_locked_object() {
        let p = MemPlace::new();
        let n = ObjectName::of(ObjectKind::Head, b"h");
        let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let o = PutOptions {
            retain_until: Some(until),
        };
        p.put_new(NamedBytes::new(n.kind, b"h"), &o).unwrap();
        assert_eq!(p.retain_until(&n).unwrap(), Some(until));
        assert!(matches!(p.delete(&n), Err(PlaceError::Locked { .. })));
        assert_eq!(p.get(&n).unwrap(), b"h");
    }
}
