//! Fault injection as a decorator: a place that goes unreachable after a
//! number of calls, loses the answer to a put that in fact succeeded, or is
//! slow. Tests wrap a real place in it; production code has no hooks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome};

/// A place that fails where its builder says.
pub struct FaultyPlace<P: ObjectPlace> {
    inner: P,
    fail_after: Option<u64>,
    tear_put: Option<u64>,
    delay: Duration,
    calls: AtomicU64,
    puts: AtomicU64,
    healed: AtomicBool,
}

/// Configures a `FaultyPlace`; without any setting it only passes calls on.
pub struct FaultyPlaceBuilder<P: ObjectPlace> {
    inner: P,
    fail_after: Option<u64>,
    tear_put: Option<u64>,
    delay: Duration,
}

impl<P: ObjectPlace> FaultyPlaceBuilder<P> {
    /// After `n` calls have passed, every later call fails `Unreachable`
    /// (without reaching the inner place) until `heal`.
    pub fn fail_after(mut self, n: u64) -> Self {
        self.fail_after = Some(n);
        self
    }

    /// The `n`th `put_new` (counting from 1) stores its object in the inner
    /// place, then fails `Unreachable`, as an upload whose answer was lost:
    /// the caller sees an error for an object that is there.
    pub fn tear_put(mut self, n: u64) -> Self {
        self.tear_put = Some(n);
        self
    }

    /// Every call first sleeps this long.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn build(self) -> FaultyPlace<P> {
        FaultyPlace {
            inner: self.inner,
            fail_after: self.fail_after,
            tear_put: self.tear_put,
            delay: self.delay,
            calls: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            healed: AtomicBool::new(false),
        }
    }
}

impl<P: ObjectPlace> FaultyPlace<P> {
    pub fn builder(inner: P) -> FaultyPlaceBuilder<P> {
        FaultyPlaceBuilder {
            inner,
            fail_after: None,
            tear_put: None,
            delay: Duration::ZERO,
        }
    }

    /// The decorated place, to look at what really got there.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Calls made so far, failed ones included (`describe` not counted).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The place comes back: no call fails any more.
    pub fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
    }

    fn unreachable(&self, what: &str) -> PlaceError {
        PlaceError::Unreachable {
            place: self.describe(),
            source: format!("{what} (injected by FaultyPlace)").into(),
        }
    }

    /// Counts a call and fails it if it comes after the configured number.
    fn enter(&self) -> Result<(), PlaceError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        match self.fail_after {
            Some(n) if i >= n && !self.healed.load(Ordering::SeqCst) => {
                Err(self.unreachable("connection refused"))
            }
            _ => Ok(()),
        }
    }
}

impl<P: ObjectPlace> ObjectPlace for FaultyPlace<P> {
    fn put_new(&self, object: NamedBytes<'_>, o: &PutOptions) -> Result<PutOutcome, PlaceError> {
        self.enter()?;
        let nth = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.inner.put_new(object, o)?;
        if self.tear_put == Some(nth) && !self.healed.load(Ordering::SeqCst) {
            return Err(self.unreachable("connection reset after the upload"));
        }
        Ok(outcome)
    }

    fn get(&self, name: &ObjectName) -> Result<Vec<u8>, PlaceError> {
        self.enter()?;
        self.inner.get(name)
    }

    fn get_range(&self, name: &ObjectName, r: std::ops::Range<u64>) -> Result<Vec<u8>, PlaceError> {
        self.enter()?;
        self.inner.get_range(name, r)
    }

    fn size(&self, name: &ObjectName) -> Result<Option<u64>, PlaceError> {
        self.enter()?;
        self.inner.size(name)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>, PlaceError> {
        self.enter()?;
        self.inner.list(kind)
    }

    fn delete(&self, name: &ObjectName) -> Result<(), PlaceError> {
        self.enter()?;
        self.inner.delete(name)
    }

    fn retain_until(&self, name: &ObjectName) -> Result<Option<jiff::Timestamp>, PlaceError> {
        self.enter()?;
        self.inner.retain_until(name)
    }

    fn locks_objects(&self) -> bool {
        self.inner.locks_objects()
    }

    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::super::MemPlace;
    use super::*;

    fn obj(i: u8) -> (ObjectName, Vec<u8>) {
        let bytes = vec![i; 10];
        (ObjectName::of(ObjectKind::Data, &bytes), bytes)
    }

    #[test]
    fn faulty_place_fails_after_n_calls_until_healed() {
        let p = FaultyPlace::builder(MemPlace::new()).fail_after(3).build();
        let o = PutOptions::default();
        for i in 0..3 {
            let (n, b) = obj(i);
            assert_eq!(
                p.put_new(NamedBytes::new(n.kind, &b), &o).unwrap(),
                PutOutcome::Created
            );
        }
        let (n, b) = obj(3);
        let e = p.put_new(NamedBytes::new(n.kind, &b), &o).unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("injected"), "{e}");
        assert!(p.list(ObjectKind::Data).is_err());
        assert_eq!(p.inner().len(), 3, "a failed call reached the place");
        assert_eq!(p.calls(), 5);
        p.heal();
        assert_eq!(
            p.put_new(NamedBytes::new(n.kind, &b), &o).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(p.list(ObjectKind::Data).unwrap().len(), 4);
    }

    #[test]
    fn faulty_place_tears_the_nth_put_after_storing_it() {
        let p = FaultyPlace::builder(MemPlace::new()).tear_put(2).build();
        let o = PutOptions::default();
        let (n1, b1) = obj(1);
        let (n2, b2) = obj(2);
        assert_eq!(
            p.put_new(NamedBytes::new(n1.kind, &b1), &o).unwrap(),
            PutOutcome::Created
        );
        assert!(p
            .put_new(NamedBytes::new(n2.kind, &b2), &o)
            .unwrap_err()
            .is_transient());
        assert_eq!(p.inner().get(&n2).unwrap(), b2, "the torn put is there");
        assert_eq!(
            p.put_new(NamedBytes::new(n2.kind, &b2), &o).unwrap(),
            PutOutcome::AlreadyThere,
            "a retry finds it"
        );
    }

    #[test]
    fn faulty_place_delays_every_call() {
        let p = FaultyPlace::builder(MemPlace::new())
            .delay(Duration::from_millis(30))
            .build();
        let t = std::time::Instant::now();
        let (n, _) = obj(1);
        assert_eq!(p.size(&n).unwrap(), None);
        assert!(p.get(&n).is_err());
        assert!(t.elapsed() >= Duration::from_millis(60));
    }
}
