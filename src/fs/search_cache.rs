//! Which directories everyone may search (`Vault::searchable_by_all`), as
//! the entry timeout of every LOOKUP, CREATE and READDIRPLUS reply needs:
//! remembered per inode generation, so a number reused by a new directory
//! is asked again, and forgotten when this mount changes a directory's
//! mode, owner or ACL (only this mount changes the live tree).

use std::collections::HashMap;

use parking_lot::Mutex;

/// Past this many directories, start again rather than grow.
const MAX: usize = 1 << 16;

#[derive(Default)]
pub struct SearchCache {
    dirs: Mutex<HashMap<u64, (u64, bool)>>,
}

impl SearchCache {
    /// Whether `ino` of generation `generation` is searchable by all, from
    /// `ask` when not remembered (None: not known, not remembered).
    pub fn get_or(&self, ino: u64, generation: u64, ask: impl FnOnce() -> Option<bool>) -> bool {
        if let Some(&(g, open)) = self.dirs.lock().get(&ino) {
            if g == generation {
                return open;
            }
        }
        let Some(open) = ask() else { return false };
        let mut dirs = self.dirs.lock();
        if dirs.len() >= MAX {
            dirs.clear();
        }
        dirs.insert(ino, (generation, open));
        open
    }

    /// Forgets `ino`, which is changing, and says what was remembered.
    pub fn take(&self, ino: u64) -> Option<bool> {
        self.dirs.lock().remove(&ino).map(|(_, open)| open)
    }
}
