//! The scope of `phivault audit --path PATH`: the nodes that were at PATH
//! or below it, each with the time spans it was there, so that a query by
//! inode follows the tree across renames and keeps out records of the same
//! inode number while it was elsewhere. Read-only; the SQL is the catalog's
//! (`scope`). Names are looked up by keyed hash and never decrypted here.

use super::{Result, Vault};
use crate::audit::NodeSpan;
use crate::catalog::{Kind, NodeInterval, ROOT_INO};

/// How far a span reaches past the end of the catalog's interval (its
/// start needs nothing: a change's tick is taken before its record). A record
/// is stamped when the request is answered, after the catalog's tick of
/// the change it describes: the rename or unlink that ended an entry is
/// recorded just after the entry's end (by as long as the change waited for
/// the catalog). Records of the node in its new place within this much
/// after a rename away are counted with the old place too.
pub const AFTER_SLACK_NS: i64 = 500_000_000;

/// What `--path` covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditScope {
    /// The root: every record.
    Everything,
    /// These nodes over these spans (sorted by inode, then time).
    Nodes(Vec<NodeSpan>),
    /// Nothing was ever at that path in the catalog's history (or the
    /// history was pruned): match records by their recorded path instead.
    NeverExisted,
}

impl Vault {
    /// The nodes that were at `path` (a path from the mount's root) at any
    /// time, and every node below them while they were there.
    pub fn audit_scope(&self, path: &[u8]) -> Result<AuditScope> {
        let parts: Vec<&[u8]> = path
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .collect();
        if parts.is_empty() {
            return Ok(AuditScope::Everything);
        }
        let cat = self.catalog_to_read()?;
        let mut at = vec![NodeInterval {
            ino: ROOT_INO,
            kind: Kind::Dir,
            from: i64::MIN,
            until: i64::MAX,
        }];
        for part in parts {
            let mut next = Vec::new();
            for dir in at.iter().filter(|n| n.kind == Kind::Dir) {
                let hash = self.name_hash(dir.ino, part)?;
                for e in cat.entries_named(dir.ino, &hash)? {
                    let from = e.from.max(dir.from);
                    let until = e.until.unwrap_or(i64::MAX).min(dir.until);
                    if from < until {
                        next.push(NodeInterval {
                            ino: e.ino,
                            kind: e.kind,
                            from,
                            until,
                        });
                    }
                }
            }
            at = next;
        }
        if at.is_empty() {
            return Ok(AuditScope::NeverExisted);
        }
        let mut all = at.clone();
        for n in at.iter().filter(|n| n.kind == Kind::Dir) {
            all.extend(cat.subtree_intervals(n.ino, n.from, n.until)?);
        }
        Ok(AuditScope::Nodes(merge(all)))
    }
}

/// The intervals as inclusive spans, each end widened by `AFTER_SLACK_NS`,
/// those of one inode that overlap or touch merged.
fn merge(mut all: Vec<NodeInterval>) -> Vec<NodeSpan> {
    all.sort_by_key(|n| (n.ino, n.from));
    let mut out: Vec<NodeSpan> = Vec::with_capacity(all.len());
    for n in all {
        let from_ns = n.from;
        let until_ns = if n.until == i64::MAX {
            i64::MAX
        } else {
            n.until.saturating_add(AFTER_SLACK_NS - 1)
        };
        match out.last_mut() {
            Some(last) if last.ino == n.ino && from_ns <= last.until_ns.saturating_add(1) => {
                last.until_ns = last.until_ns.max(until_ns);
            }
            _ => out.push(NodeSpan {
                ino: n.ino,
                from_ns,
                until_ns,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(ino: u64, from: i64, until: i64) -> NodeInterval {
        NodeInterval {
            ino,
            kind: Kind::File,
            from,
            until,
        }
    }

    #[test]
    fn spans_of_one_inode_merge_and_those_apart_stay_apart() {
        let (a, s) = (AFTER_SLACK_NS, 1_000_000_000);
        let got = merge(vec![
            iv(7, 10 * s, 20 * s),
            iv(5, 0, i64::MAX),
            iv(7, 20 * s, 30 * s),
            iv(7, 40 * s, 50 * s),
        ]);
        let want = [
            (5, 0, i64::MAX),
            (7, 10 * s, 30 * s + a - 1),
            (7, 40 * s, 50 * s + a - 1),
        ];
        let got: Vec<_> = got.iter().map(|n| (n.ino, n.from_ns, n.until_ns)).collect();
        assert_eq!(got, want);
    }
}
