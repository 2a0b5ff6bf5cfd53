use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::crypto::BlockId;

/// Plaintext blocks by id, bounded in bytes. Shared by every file, so a block
/// stored once (dedup) is also cached once.
pub struct BlockCache {
    inner: Mutex<Inner>,
    budget: usize,
}

struct Inner {
    map: LruCache<BlockId, Arc<Vec<u8>>>,
    bytes: usize,
}

impl BlockCache {
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    pub fn get(&self, id: &BlockId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().map.get(id).cloned()
    }

    pub fn put(&self, id: BlockId, data: Arc<Vec<u8>>) {
        if self.budget == 0 || data.len() > self.budget {
            return;
        }
        let mut g = self.inner.lock();
        let len = data.len();
        if let Some(old) = g.map.put(id, data) {
            g.bytes -= old.len();
        }
        g.bytes += len;
        while g.bytes > self.budget {
            match g.map.pop_lru() {
                Some((_, v)) => g.bytes -= v.len(),
                None => break,
            }
        }
    }
}
