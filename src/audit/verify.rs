//! `verify`: walks the trail from the anchor and names the first problem:
//! frame structure, seq continuity, each record's MAC, the chain, and the
//! head kept in the head file and the index.

use std::collections::VecDeque;

use super::frame::{self, Mac, Parsed, SEGMENT_HEADER};
use super::index::Index;
use super::trail::Trail;
use super::{AuditError, AuditReader, ChainHead, IoAt, Stamp, Tamper, TamperTime, VerifyReport};
use crate::crypto::AuditKeys;

/// How far past a gap `verify` looks to tell a removal from a move.
const LOOKAHEAD: usize = 4096;

#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    /// As stored in clear: to be trusted only when `authentic`.
    time: i64,
    authentic: bool,
    mac: Mac,
    chain: Mac,
}

enum Item {
    Frame(Entry),
    Unreadable(String),
}

impl Item {
    /// The seq of an authentic frame.
    fn good_seq(&self) -> Option<u64> {
        self.good().map(|s| s.seq)
    }

    /// The seq and time of an authentic frame.
    fn good(&self) -> Option<Stamp> {
        match self {
            Item::Frame(e) => e.good(),
            Item::Unreadable(_) => None,
        }
    }
}

impl Entry {
    /// Its seq and time, if it is authentic.
    fn good(&self) -> Option<Stamp> {
        self.authentic.then_some(Stamp {
            seq: self.seq,
            time_ns: self.time,
        })
    }
}

/// The frames of every segment in order.
struct Walk<'a> {
    trail: &'a Trail,
    keys: &'a AuditKeys,
    segments: Vec<u64>,
    next: usize,
    current: Option<(u64, Vec<u8>, usize)>,
    done: u64,
    total: u64,
    progress: &'a dyn Fn(u64, u64),
}

impl Walk<'_> {
    fn next(&mut self) -> Result<Option<Item>, AuditError> {
        loop {
            let Some((first, buf, pos)) = &mut self.current else {
                let Some(&first) = self.segments.get(self.next) else {
                    return Ok(None);
                };
                self.next += 1;
                let path = self.trail.segment_path(first);
                let buf = std::fs::read(&path).at(&path)?;
                self.done += buf.len() as u64;
                (self.progress)(self.done, self.total);
                if frame::parse_segment_header(&buf) != Some(first) {
                    return Ok(Some(Item::Unreadable(format!(
                        "{}: not an audit segment",
                        path.display()
                    ))));
                }
                self.current = Some((first, buf, SEGMENT_HEADER as usize));
                continue;
            };
            let last_segment = self.next == self.segments.len();
            let at = *pos;
            match frame::parse(&buf[at..]) {
                Parsed::Frame(f) => {
                    *pos += f.size;
                    return Ok(Some(Item::Frame(Entry {
                        seq: f.seq,
                        time: f.time,
                        authentic: f.authentic(self.keys),
                        mac: f.mac,
                        chain: f.chain,
                    })));
                }
                // The end, or a write torn by a crash at the very end
                // (the writer trims it when it opens).
                Parsed::Incomplete if at == buf.len() || last_segment => self.current = None,
                Parsed::Incomplete => {
                    return Ok(Some(Item::Unreadable(format!(
                        "{}: cut short at byte {at}",
                        self.trail.segment_path(*first).display()
                    ))))
                }
                Parsed::Bad => {
                    return Ok(Some(Item::Unreadable(format!(
                        "{}: no record at byte {at}",
                        self.trail.segment_path(*first).display()
                    ))))
                }
            }
        }
    }
}

impl AuditReader {
    /// Checks the whole trail. `progress` is told (bytes read, bytes in
    /// all) as segments are read.
    pub fn verify(&self, progress: &dyn Fn(u64, u64)) -> Result<VerifyReport, AuditError> {
        let mut report = VerifyReport {
            records: 0,
            first_seq: 0,
            last_seq: 0,
            problem: None,
            when: None,
        };
        let anchor = match self.trail.anchor(&self.keys) {
            Ok(a) => a,
            Err(AuditError::Forged(p)) => {
                report.problem = Some(unreadable(&p));
                report.when = Some(TamperTime::default());
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let head = match self.kept_head() {
            Ok(h) => h,
            Err(AuditError::Forged(p)) => {
                report.problem = Some(unreadable(&p));
                report.when = Some(TamperTime::default());
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let mut segments = self.trail.segments()?;
        // Left by a prune interrupted after its anchor was written.
        while segments.len() > 1 && segments[1] <= anchor.first_seq {
            segments.remove(0);
        }
        let mut total = 0;
        for &s in &segments {
            total += std::fs::metadata(self.trail.segment_path(s)).map_or(0, |m| m.len());
        }
        let mut walk = Walk {
            trail: &self.trail,
            keys: &self.keys,
            segments,
            next: 0,
            current: None,
            done: 0,
            total,
            progress,
        };
        let mut ahead: VecDeque<Item> = VecDeque::new();
        let mut expected = anchor.first_seq;
        let mut chain = anchor.chain;
        let mut head_matches = None;
        // The last record that verified, and the head's record.
        let mut last_good: Option<Stamp> = None;
        let mut head_record: Option<Stamp> = None;
        let keys = &self.keys;
        loop {
            let item = match ahead.pop_front() {
                Some(i) => i,
                None => match walk.next()? {
                    Some(i) => i,
                    None => break,
                },
            };
            let f = match item {
                Item::Unreadable(at) => {
                    report.problem = Some(Tamper::Unreadable { at });
                    report.when = Some(TamperTime {
                        before: last_good,
                        ..TamperTime::default()
                    });
                    break;
                }
                Item::Frame(f) => f,
            };
            let follows =
                |g: &Entry, chain: &Mac| g.authentic && keys.chain_mac(chain, &g.mac) == g.chain;
            if f.authentic && f.seq == expected {
                if !follows(&f, &chain) {
                    // Its record MAC holds: only the chain MAC was changed.
                    fill(&mut walk, &mut ahead)?;
                    report.problem = Some(Tamper::Altered { seq: f.seq });
                    report.when = Some(TamperTime {
                        own_time_ns: Some(f.time),
                        before: last_good,
                        after: ahead.iter().find_map(Item::good),
                    });
                    break;
                }
                chain = f.chain;
                report.records += 1;
                if report.first_seq == 0 {
                    report.first_seq = f.seq;
                }
                report.last_seq = f.seq;
                expected += 1;
                let stamp = f.good();
                last_good = stamp;
                if head.is_some_and(|h| h.seq == f.seq) {
                    head_matches = Some(head.unwrap().mac == chain);
                    head_record = stamp;
                }
                continue;
            }
            fill(&mut walk, &mut ahead)?;
            let after_seq = expected - 1;
            let next_is_expected = match ahead.front() {
                Some(Item::Frame(g)) => g.seq == expected && follows(g, &chain),
                _ => false,
            };
            let later = |seq: u64| ahead.iter().any(|i| i.good_seq() == Some(seq));
            let own = |seq: u64| {
                (f.authentic && f.seq == seq).then_some(f.time).or_else(|| {
                    ahead
                        .iter()
                        .filter_map(Item::good)
                        .find(|g| g.seq == seq)
                        .map(|g| g.time_ns)
                })
            };
            let problem = if !f.authentic {
                if next_is_expected {
                    Tamper::Inserted { after_seq }
                } else {
                    Tamper::Altered { seq: expected }
                }
            } else if f.seq < expected {
                Tamper::Inserted { after_seq }
            } else if next_is_expected {
                if later(f.seq) {
                    Tamper::Inserted { after_seq }
                } else {
                    Tamper::Reordered { seq: f.seq }
                }
            } else if later(expected) {
                Tamper::Reordered { seq: expected }
            } else {
                Tamper::Removed {
                    after_seq,
                    missing: f.seq - expected,
                }
            };
            report.when = Some(TamperTime {
                own_time_ns: match problem {
                    Tamper::Reordered { seq } => own(seq),
                    Tamper::Inserted { .. } => f.authentic.then_some(f.time),
                    _ => None,
                },
                before: last_good,
                after: f.good().filter(|g| g.seq > after_seq).or_else(|| {
                    ahead
                        .iter()
                        .filter_map(Item::good)
                        .find(|g| g.seq > after_seq)
                }),
            });
            report.problem = Some(problem);
            break;
        }
        if report.problem.is_none() {
            if let Some(h) = head {
                if h.seq > expected - 1 {
                    report.problem = Some(Tamper::Truncated {
                        last_seq: expected - 1,
                        head_seq: h.seq,
                    });
                    report.when = Some(TamperTime {
                        before: last_good,
                        ..TamperTime::default()
                    });
                } else if head_matches == Some(false) {
                    report.problem = Some(Tamper::Altered { seq: h.seq });
                    report.when = Some(TamperTime {
                        own_time_ns: head_record.map(|s| s.time_ns),
                        before: None,
                        after: None,
                    });
                }
            }
        }
        Ok(report)
    }

    /// The newest head kept: in the head file or the index.
    fn kept_head(&self) -> Result<Option<ChainHead>, AuditError> {
        let file = self.trail.head(&self.keys)?;
        let index = if self.trail.index_path().exists() {
            Index::open(&self.trail, false)
                .and_then(|ix| ix.head(&self.keys))
                .unwrap_or(None)
        } else {
            None
        };
        Ok(match (file, index) {
            (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
            (a, b) => a.or(b),
        })
    }
}

fn fill(walk: &mut Walk, ahead: &mut VecDeque<Item>) -> Result<(), AuditError> {
    while ahead.len() < LOOKAHEAD {
        match walk.next()? {
            Some(i) => ahead.push_back(i),
            None => break,
        }
    }
    Ok(())
}

fn unreadable(path: &std::path::Path) -> Tamper {
    Tamper::Unreadable {
        at: format!("{}: does not authenticate", path.display()),
    }
}
