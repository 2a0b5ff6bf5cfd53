//! fdatasync of catalog files, in two steps when the caller has other
//! writes to overlap with it.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{CatalogError, Result};

/// fdatasync of a file by path; false if it is missing (nothing to flush).
pub fn fsync_path(path: &Path) -> Result<bool> {
    match FileFlush::start(path)? {
        Some(flush) => flush.finish().map(|()| true),
        None => Ok(false),
    }
}

/// An fdatasync in two steps: `start` hands the file's dirty pages to the
/// device without waiting, so that they travel while the caller waits for
/// other writes; `finish` waits for them and flushes the device's cache.
pub struct FileFlush {
    file: File,
    path: PathBuf,
}

impl FileFlush {
    /// None if the file is missing (nothing to flush).
    pub fn start(path: &Path) -> Result<Option<Self>> {
        let io_error = |source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own; 0 bytes means "to the end".
        if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) }
            != 0
        {
            return Err(io_error(std::io::Error::last_os_error()));
        }
        Ok(Some(Self {
            file,
            path: path.to_path_buf(),
        }))
    }

    pub fn finish(self) -> Result<()> {
        self.file.sync_data().map_err(|source| CatalogError::Io {
            path: self.path,
            source,
        })
    }
}
