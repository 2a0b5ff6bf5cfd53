//! SQLite's own page cache, with one wasted scan taken out of every commit.
//!
//! When a B-tree page splits, `balance_nonroot` puts the new pages in
//! ascending order by swapping their numbers, parking one page for a moment
//! under the number of the pending-byte page (1,048,577 with the catalog's
//! 1 KiB pages). The default cache remembers that number as its highest key,
//! and the truncate at the end of the transaction, which drops pages past
//! the end of the database, then walks the whole hash table instead of the
//! few slots past the end. With the catalog's 16 MiB cache that walk was 18%
//! of the daemon's CPU under SQLite transactions on a mount holding the
//! Linux tree.
//!
//! This wrapper keeps the default cache and tracks the highest key itself,
//! leaving parked pages out while they are parked. A truncate that cannot
//! drop anything is not passed on. Every other call goes straight through.

use std::os::raw::{c_int, c_uint};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Where SQLite keeps the lock bytes (`PENDING_BYTE`, 1 GiB); the page that
/// holds it never stores data, which is why it serves as the parking number.
const PENDING_BYTE: u32 = 0x4000_0000;

/// The default cache's methods, which every wrapped call goes to.
struct DefaultMethods(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain function pointers and the default cache's
// `pArg`, which SQLite itself shares between all threads.
unsafe impl Send for DefaultMethods {}
unsafe impl Sync for DefaultMethods {}

static DEFAULT: OnceLock<DefaultMethods> = OnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static TRUNCATES_PASSED: AtomicU64 = AtomicU64::new(0);
static TRUNCATES_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// One cache: the default cache plus what it holds at most.
struct TrackedCache {
    inner: *mut ffi::sqlite3_pcache,
    /// The number a page is parked under while B-tree pages swap numbers.
    parking_key: u32,
    /// No page in `inner` has a key above this, parked pages aside.
    max_key: AtomicU32,
    /// Pages now under `parking_key` by a rekey.
    parked: AtomicU32,
}

/// Installs the wrapper for every SQLite connection this process opens.
/// It only takes effect before SQLite's first use in the process; later it
/// changes nothing and the default cache stays (slower, equally correct).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config with these ops reads or writes one struct;
        // before sqlite3_initialize nothing else uses the configuration.
        unsafe {
            let mut default: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut default) != ffi::SQLITE_OK {
                return;
            }
            let default = &DEFAULT.get_or_init(|| DefaultMethods(default)).0;
            let wrapper = ffi::sqlite3_pcache_methods2 {
                iVersion: default.iVersion,
                pArg: default.pArg,
                xInit: default.xInit,
                xShutdown: default.xShutdown,
                xCreate: Some(create),
                xCachesize: Some(cache_size),
                xPagecount: Some(page_count),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &wrapper) == ffi::SQLITE_OK {
                INSTALLED.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// How the wrapper has fared in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCacheStats {
    /// Whether SQLite uses the wrapper at all.
    pub installed: bool,
    /// Truncates that could drop pages and went to the default cache.
    pub truncates_passed: u64,
    /// Truncates that could drop nothing and were not passed on.
    pub truncates_skipped: u64,
}

pub fn stats() -> PageCacheStats {
    PageCacheStats {
        installed: INSTALLED.load(Ordering::Relaxed),
        truncates_passed: TRUNCATES_PASSED.load(Ordering::Relaxed),
        truncates_skipped: TRUNCATES_SKIPPED.load(Ordering::Relaxed),
    }
}

fn default_methods() -> &'static ffi::sqlite3_pcache_methods2 {
    &DEFAULT
        .get()
        .expect("the wrapper is only installed after the default is saved")
        .0
}

/// # Safety
/// `p` must be a cache made by `create` and not yet destroyed.
unsafe fn tracked<'a>(p: *mut ffi::sqlite3_pcache) -> &'a TrackedCache {
    unsafe { &*(p as *const TrackedCache) }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra_size: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let create = default_methods()
        .xCreate
        .expect("SQLite's cache has xCreate");
    let inner = unsafe { create(page_size, extra_size, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let page_size = u32::try_from(page_size).unwrap_or(1).max(1);
    let cache = Box::new(TrackedCache {
        inner,
        parking_key: PENDING_BYTE / page_size + 1,
        max_key: AtomicU32::new(0),
        parked: AtomicU32::new(0),
    });
    Box::into_raw(cache) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cache_size(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    let f = default_methods()
        .xCachesize
        .expect("SQLite's cache has xCachesize");
    unsafe { f(tracked(p).inner, pages) }
}

unsafe extern "C" fn page_count(p: *mut ffi::sqlite3_pcache) -> c_int {
    let f = default_methods()
        .xPagecount
        .expect("SQLite's cache has xPagecount");
    unsafe { f(tracked(p).inner) }
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let f = default_methods().xFetch.expect("SQLite's cache has xFetch");
    let cache = unsafe { tracked(p) };
    let page = unsafe { f(cache.inner, key, create_flag) };
    if !page.is_null() {
        cache.max_key.fetch_max(key, Ordering::Relaxed);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    let f = default_methods().xUnpin.expect("SQLite's cache has xUnpin");
    unsafe { f(tracked(p).inner, page, discard) }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    let f = default_methods().xRekey.expect("SQLite's cache has xRekey");
    let cache = unsafe { tracked(p) };
    unsafe { f(cache.inner, page, old_key, new_key) };
    if old_key == cache.parking_key {
        // Saturating: a page fetched under that number (a catalog past
        // 1 GiB) was counted in max_key, not here.
        let _ = cache
            .parked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    if new_key == cache.parking_key {
        cache.parked.fetch_add(1, Ordering::Relaxed);
    } else {
        cache.max_key.fetch_max(new_key, Ordering::Relaxed);
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let f = default_methods()
        .xTruncate
        .expect("SQLite's cache has xTruncate");
    let cache = unsafe { tracked(p) };
    let parked = cache.parked.load(Ordering::Relaxed);
    let may_drop = cache.max_key.load(Ordering::Relaxed) >= limit
        || (parked > 0 && cache.parking_key >= limit);
    if !may_drop {
        TRUNCATES_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    TRUNCATES_PASSED.fetch_add(1, Ordering::Relaxed);
    unsafe { f(cache.inner, limit) };
    cache
        .max_key
        .fetch_min(limit.saturating_sub(1), Ordering::Relaxed);
    if cache.parking_key >= limit {
        cache.parked.store(0, Ordering::Relaxed);
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let f = default_methods()
        .xDestroy
        .expect("SQLite's cache has xDestroy");
    // SAFETY: `p` came from Box::into_raw in `create`; SQLite destroys once.
    let cache = unsafe { Box::from_raw(p as *mut TrackedCache) };
    unsafe { f(cache.inner) }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    let f = default_methods()
        .xShrink
        .expect("SQLite's cache has xShrink");
    unsafe { f(tracked(p).inner) }
}
