//! Drop-behind: once the last handle of a file written whole is released,
//! its pages leave the kernel's cache, while a file that held data when it
//! was opened keeps them. The kernel's cache is observed with mincore(2) on
//! a shared mapping, which reports residency without reading anything.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Vault;

fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Pages of `path` in the kernel's cache.
fn resident_pages(path: &Path) -> usize {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    assert!(len > 0, "{} is empty: nothing to map", path.display());
    // SAFETY: a fresh read-only mapping of `len` bytes, unmapped before
    // returning; mincore writes one byte per page into a vector that long.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap {}", path.display());
        let mut pages = vec![0u8; len.div_ceil(page_size())];
        let rc = libc::mincore(map, len, pages.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(map, len);
        assert_eq!(rc, 0, "mincore {}: {err}", path.display());
        pages.iter().filter(|p| *p & 1 != 0).count()
    }
}

/// Waits for the asynchronous release of `path` to drop its pages.
fn wait_dropped(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = resident_pages(path);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} still has {left} pages in the kernel's cache 20 s after its close",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a new file whole and waits until its pages are gone: afterwards,
/// every release sent before this one has been served too.
fn write_new_and_wait(path: &Path, seed: u64) -> Vec<u8> {
    let data = common::pattern(seed, 1 << 20);
    std::fs::write(path, &data).unwrap();
    wait_dropped(path);
    data
}

#[test]
fn a_file_written_whole_leaves_the_kernels_cache_and_reads_back() {
    written_whole_leaves_the_cache(&Vault::mounted());
}

#[test]
fn the_same_over_dev_fuse() {
    written_whole_leaves_the_cache(&Vault::mounted_with(&["--io-uring", "off"]));
}

fn written_whole_leaves_the_cache(v: &Vault) {
    let new = v.path("new.bin");
    let data = write_new_and_wait(&new, 1);
    assert_eq!(
        std::fs::read(&new).unwrap(),
        data,
        "read back from the daemon"
    );
    assert!(
        resident_pages(&new) > 0,
        "a file only read keeps the pages its read brought in"
    );

    // Rewritten through O_TRUNC: all of it is new again.
    let again = common::pattern(2, 300_000);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&new)
        .unwrap();
    f.write_all(&again).unwrap();
    drop(f);
    wait_dropped(&new);
    assert_eq!(std::fs::read(&new).unwrap(), again);
}

#[test]
fn a_file_changed_in_place_keeps_its_pages() {
    let v = Vault::mounted();
    let kept = v.path("kept.bin");
    let mut data = write_new_and_wait(&kept, 3);
    assert_eq!(std::fs::read(&kept).unwrap(), data);
    let cached = resident_pages(&kept);
    assert_eq!(
        cached,
        data.len().div_ceil(page_size()),
        "the read cached it all"
    );

    let f = OpenOptions::new().write(true).open(&kept).unwrap();
    f.write_all_at(b"changed in place", 4096).unwrap();
    drop(f);
    data[4096..4096 + 16].copy_from_slice(b"changed in place");
    // Its release was sent before this file's, which is served by now.
    write_new_and_wait(&v.path("barrier.bin"), 4);

    assert_eq!(resident_pages(&kept), cached, "the change kept the cache");
    assert_eq!(std::fs::read(&kept).unwrap(), data);
}

#[test]
fn a_file_open_elsewhere_keeps_its_pages_until_the_last_close() {
    let v = Vault::mounted();
    let shared = v.path("shared.bin");
    let data = common::pattern(5, 1 << 20);
    let mut writer = File::create(&shared).unwrap();
    let reader = File::open(&shared).unwrap();
    writer.write_all(&data).unwrap();
    let mut read = vec![0u8; data.len()];
    reader.read_exact_at(&mut read, 0).unwrap();
    assert_eq!(read, data);
    drop(writer);
    write_new_and_wait(&v.path("barrier.bin"), 6);
    assert!(
        resident_pages(&shared) > 0,
        "the reader still has the file open"
    );
    drop(reader);
    wait_dropped(&shared);
    assert_eq!(std::fs::read(&shared).unwrap(), data);
}
