//! The vault's audit trail: appended to by a read-write vault (created in
//! stores made before it) and by a read-only one that serves requests,
//! beside each other; readable from any open; synced at shutdown.

use std::path::PathBuf;

use super::{Result, Vault};
use crate::audit::{AuditError, AuditLog, AuditReader, WriterOptions};
use crate::crypto::AuditKeys;
use crate::store::StoreDir;

pub(super) fn audit_dir(dir: &StoreDir) -> PathBuf {
    dir.root().join("audit")
}

/// The trail, to append to. A read-only open on a read-only filesystem
/// (a write-protected backup disk) gets None: nothing can be recorded
/// there, and the mount says so (`fs::audit`). Any other failure is an
/// error: requests are not served unrecorded for a fault that can be fixed.
pub(super) fn open_log(
    dir: &StoreDir,
    keys: &AuditKeys,
    read_only: bool,
) -> Result<Option<AuditLog>> {
    let opts = WriterOptions {
        // The read-write daemon and the readers keep the index.
        index_interval: if read_only {
            None
        } else {
            WriterOptions::default().index_interval
        },
        ..WriterOptions::default()
    };
    match AuditLog::open(&audit_dir(dir), keys.clone(), opts) {
        Ok(log) => Ok(Some(log)),
        Err(AuditError::Io { path, source }) if read_only && on_read_only_fs(&source) => {
            tracing::debug!("audit trail not opened: {}: {source}", path.display());
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn on_read_only_fs(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EROFS)
}

impl Vault {
    /// The store's audit trail, to append to. None for a read-only open
    /// that did not ask to record requests, or whose store is on a
    /// read-only filesystem.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// A reader of the store's audit trail; works for read-only opens too
    /// (the CLI while a daemon writes).
    pub fn audit_reader(&self) -> Result<AuditReader> {
        Ok(AuditReader::open(
            &audit_dir(&self.dir),
            self.audit_keys.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::audit::{Op, Query, Record};
    use crate::crypto::{KdfParams, Passphrase};
    use crate::store::StoreDir;
    use crate::vault::{create_store, read_config, unlock_master, InitOptions, OpenOptions, Vault};

    fn open(store: &StoreDir, read_only: bool) -> Arc<Vault> {
        open_with(store, read_only, false)
    }

    fn open_with(store: &StoreDir, read_only: bool, record_requests: bool) -> Arc<Vault> {
        let pass = Passphrase::new(b"audit unit test".to_vec());
        if !store.exists() {
            let init = InitOptions {
                kdf: KdfParams {
                    memory_kib: 8192,
                    iterations: 1,
                    parallelism: 1,
                },
                ..InitOptions::default()
            };
            create_store(store, &pass, &init).unwrap();
        }
        let (master, _) = unlock_master(&read_config(store).unwrap(), &pass).unwrap();
        let opts = OpenOptions {
            read_only,
            record_requests,
            ..OpenOptions::default()
        };
        Vault::open(store, &master, &opts).unwrap()
    }

    fn record(path: &str) -> Record {
        Record {
            seq: 0,
            time_ns: crate::vault::now_ns(),
            who: Default::default(),
            op: Op::Open,
            path: path.as_bytes().to_vec(),
            target: None,
            ino: 1,
            parent: 0,
            detail: Default::default(),
            result: 0,
        }
    }

    #[test]
    fn a_writable_vault_holds_the_trail_and_a_read_only_one_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let store = StoreDir::new(d.path().join("store"));
        let v = open(&store, false);
        let log = v.audit().expect("a read-write open holds the trail");
        assert_eq!(log.append(record("/a")).unwrap(), 1);
        // A read-only open beside the writer (the CLI while mounted).
        let ro = open(&store, true);
        assert!(ro.audit().is_none());
        let seen = ro.audit_reader().unwrap().query(&Query::default()).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, b"/a");
        v.shutdown().unwrap();
        drop((v, ro));
        // Reopened, the chain goes on.
        let v = open(&store, false);
        assert_eq!(v.audit().unwrap().append(record("/b")).unwrap(), 2);
        let report = v.audit_reader().unwrap().verify(&|_, _| {}).unwrap();
        assert_eq!((report.records, report.problem), (2, None));
    }

    #[test]
    fn a_read_only_open_that_serves_requests_appends_beside_the_writer() {
        let d = tempfile::tempdir().unwrap();
        let store = StoreDir::new(d.path().join("store"));
        let rw = open(&store, false);
        let ro = open_with(&store, true, true);
        let ro_log = ro
            .audit()
            .expect("a serving read-only open holds the trail");
        let rw_log = rw.audit().unwrap();
        assert_eq!(rw_log.append(record("/live")).unwrap(), 1);
        assert_eq!(ro_log.append(record("/past")).unwrap(), 2);
        assert_eq!(rw_log.append(record("/live")).unwrap(), 3);
        ro.shutdown().unwrap();
        rw.shutdown().unwrap();
        drop((rw, ro));
        let reader = open(&store, true).audit_reader().unwrap();
        let paths: Vec<Vec<u8>> = reader
            .query(&Query::default())
            .unwrap()
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(paths, [&b"/live"[..], b"/past", b"/live"]);
        let report = reader.verify(&|_, _| {}).unwrap();
        assert_eq!((report.records, report.problem), (3, None));
    }
}
