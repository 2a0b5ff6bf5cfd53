//! Drop-behind: the pages of a file written whole and closed leave the
//! kernel's cache.
//!
//! A program that writes a file from start to end and closes it (tar, cp, a
//! saved scan) rarely reads it back soon. Kept, those pages make each
//! following file take fresh memory, and on a VM that hands free memory
//! back to its host (virtio-balloon free page reporting, as on these
//! Firecracker guests) every fresh page costs a fault in the host. Dropping
//! them took an untar of the Linux tree from 30-32 s to 21-22 s
//! (docs/performance.md, "Drop-behind"). A read soon after costs a round
//! trip instead, often answered from the block cache.
//!
//! The kernel drops the pages while it handles the notification, and may
//! wait there for a read or write of the file that another program started
//! meanwhile. So the notifications go out from threads of their own: a
//! request handler that sent them could wait for a request that only it
//! would serve (one worker per queue with `--threads 2`, say). There is
//! one such thread per CPU, pinned to it: the pages are freed where the
//! program that wrote them runs, and its next file reuses them.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use fuser::{INodeNo, Notifier};
use parking_lot::Mutex;

use super::kernel_cache::KernelCache;

/// How long a thread gathers files before it drops their pages: one wake
/// of it per batch, not one per file, while a batch holds no more than a
/// few megabytes.
const GATHER: Duration = Duration::from_millis(20);

/// Where request handlers queue the files whose pages are to go.
pub struct DropBehind {
    kernel: Arc<KernelCache>,
    /// Per CPU, the queue of its thread, started with the first file
    /// released there.
    queues: Mutex<HashMap<usize, Sender<INodeNo>>>,
}

impl DropBehind {
    /// Files released once `kernel` has a notifier have their pages
    /// dropped. The threads end once this is dropped (with the
    /// filesystem, at unmount).
    pub fn new(kernel: Arc<KernelCache>) -> Self {
        Self {
            kernel,
            queues: Mutex::default(),
        }
    }

    /// The last handle of `ino`, written whole, was released.
    pub(super) fn written_whole(&self, ino: INodeNo) {
        let Some(notifier) = self.kernel.notifier() else {
            return;
        };
        // SAFETY: takes nothing; -1 where the kernel cannot tell.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0);
        let mut queues = self.queues.lock();
        let queue = match queues.entry(cpu) {
            Entry::Occupied(queue) => queue.into_mut(),
            Entry::Vacant(slot) => match start_thread(cpu, notifier.clone()) {
                Ok(queue) => slot.insert(queue),
                Err(e) => {
                    tracing::warn!(
                        "pages of written files stay cached: no thread to drop them: {e}"
                    );
                    return;
                }
            },
        };
        // A thread only stops once its sender is dropped.
        let _ = queue.send(ino);
    }
}

fn start_thread(cpu: usize, notifier: Notifier) -> std::io::Result<Sender<INodeNo>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("phivault-drop-{cpu}"))
        .spawn(move || {
            pin_to(cpu);
            drop_pages(&rx, &notifier);
        })?;
    Ok(tx)
}

fn pin_to(cpu: usize) {
    // SAFETY: `set` is a plain bitmask that CPU_SET fills within its size;
    // sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::debug!(
            "drop-behind thread not pinned to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn drop_pages(queue: &Receiver<INodeNo>, notifier: &Notifier) {
    while let Ok(first) = queue.recv() {
        std::thread::sleep(GATHER);
        for ino in std::iter::once(first).chain(queue.try_iter()) {
            // Offset 0 and length 0: every page, to the end of the file. A
            // file the kernel has forgotten meanwhile is not an error.
            if let Err(e) = notifier.inval_inode(ino, 0, 0) {
                tracing::debug!("inode {ino}: its pages stay in the kernel's cache: {e}");
            }
        }
    }
}
