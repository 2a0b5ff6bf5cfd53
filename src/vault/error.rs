use crate::catalog::{CatalogError, LossCause};
use crate::crypto::CryptoError;
use crate::store::StoreError;

/// What an engine call can fail with. `errno()` is what the mount reports.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid argument")]
    Invalid,
    #[error("no such attribute")]
    NoAttr,
    #[error("buffer too small")]
    Range,
    #[error("value too large")]
    TooBig,
    #[error("operation not permitted")]
    NotPermitted,
    /// A permission check refused the caller (EACCES).
    #[error("permission denied")]
    AccessDenied,
    #[error("operation not supported")]
    NotSupported,
    #[error("read-only mount")]
    ReadOnly,
    #[error("inode {ino}, block {block}: {reason}")]
    Corrupt {
        ino: u64,
        block: u64,
        reason: String,
    },
    /// Changes already answered were rolled back with the catalog group
    /// that held them (see `catalog::lost`).
    #[error("changes since the last close were lost: the catalog could not commit them ({0:?})")]
    ChangesLost(LossCause),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

pub type Result<T> = std::result::Result<T, VaultError>;

impl VaultError {
    pub fn errno(&self) -> i32 {
        use VaultError::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            NameTooLong => libc::ENAMETOOLONG,
            Invalid => libc::EINVAL,
            NoAttr => libc::ENODATA,
            Range => libc::ERANGE,
            TooBig => libc::E2BIG,
            NotPermitted => libc::EPERM,
            AccessDenied => libc::EACCES,
            NotSupported => libc::EOPNOTSUPP,
            ReadOnly => libc::EROFS,
            Corrupt { .. } | Crypto(_) => libc::EIO,
            ChangesLost(LossCause::DiskFull) => libc::ENOSPC,
            ChangesLost(LossCause::Io) => libc::EIO,
            Store(StoreError::Io { source, .. }) => io_errno(source),
            Store(StoreError::OutOfSpace { .. }) => libc::ENOSPC,
            Store(_) => libc::EIO,
            Catalog(CatalogError::Io { source, .. }) => io_errno(source),
            Catalog(CatalogError::Sql(e)) => sql_errno(e),
            Catalog(_) => libc::EIO,
            Audit(e) => e.errno(),
        }
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => libc::ENOSPC,
        Some(libc::EROFS) => libc::EROFS,
        _ => libc::EIO,
    }
}

fn sql_errno(e: &rusqlite::Error) -> i32 {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => libc::ENOSPC,
        Some(rusqlite::ErrorCode::ReadOnly) => libc::EROFS,
        _ => libc::EIO,
    }
}
