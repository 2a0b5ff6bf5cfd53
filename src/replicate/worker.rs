//! Replication in the background of a mount: one thread that ships each
//! remote's changes within its delay, serves `phivault replicate` requests
//! (`state::StateDir::request`), and backs off from a remote that fails.
//!
//! It never holds the vault's locks while it talks to a remote (only the
//! cut takes the catalog's lock, for a copy in memory), so an unreachable
//! remote grows the lag and never the latency of the mount.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pass::{now_ns, Pass};
use super::remotes::{self, Remote};
use super::state::{ErrorNote, StateDir};
use super::ReplicateError;
use crate::crypto::{EnvelopeKey, MasterKey};
use crate::vault::Vault;

const TICK: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Starts the thread; it stops when `stop` is set.
///
/// Replication runs at the lowest priority (nice 19), on threads of its
/// own: checking and sealing a pass's packs takes CPU the mount's programs
/// should have first, and the mount's own pool (sealing the blocks they
/// write) must never wait behind a pass. A busy machine grows the lag.
pub fn spawn(vault: Arc<Vault>, master: &MasterKey, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let key = master.envelope_key(&vault.config().vault_id);
    std::thread::Builder::new()
        .name("phivault-replicate".into())
        .spawn(move || {
            lower_priority();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
                .thread_name(|i| format!("phivault-repl-{i}"))
                .start_handler(|_| lower_priority())
                .build();
            match pool {
                Ok(pool) => pool.install(|| run(&vault, &key, &stop)),
                Err(e) => {
                    tracing::warn!("replication shares the mount's threads: {e}");
                    run(&vault, &key, &stop)
                }
            }
        })
        .expect("spawn the replication thread")
}

/// nice 19 for the calling thread (Linux sets it per thread).
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19)
    };
    if rc != 0 {
        tracing::debug!(
            "replication keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// When each remote is due, and how many failures in a row it has had.
#[derive(Default)]
struct Schedule {
    due: Option<Instant>,
    failures: u32,
}

fn run(vault: &Vault, key: &EnvelopeKey, stop: &AtomicBool) {
    let mut schedules: HashMap<String, Schedule> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let list = match remotes::list(vault.store_dir()) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("replication: cannot read the remotes: {e}");
                continue;
            }
        };
        schedules.retain(|name, _| list.iter().any(|r| &r.name == name));
        for remote in list {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let state = StateDir::new(remotes::remote_dir(vault.store_dir(), &remote.name));
            let schedule = schedules.entry(remote.name.clone()).or_default();
            let due = *schedule
                .due
                .get_or_insert_with(|| Instant::now() + remote.delay());
            let request = state.request();
            if request.is_none() && Instant::now() < due {
                continue;
            }
            let outcome = pass(vault, key, &remote, &state, stop);
            if matches!(outcome, Err(ReplicateError::Stopped)) {
                break;
            }
            let mut status = state.status();
            match &outcome {
                Ok(()) => {
                    status.last_success_ns = Some(now_ns());
                    status.last_error = None;
                    schedule.failures = 0;
                    schedule.due = Some(Instant::now() + remote.delay());
                }
                Err(e) => {
                    tracing::warn!("replication to {} failed: {e}", remote.name);
                    status.last_error = Some(ErrorNote {
                        at_ns: now_ns(),
                        message: e.to_string(),
                    });
                    schedule.failures += 1;
                    schedule.due = Some(Instant::now() + backoff(schedule.failures));
                }
            }
            if request.is_some() {
                status.served = request.clone();
            }
            if let Err(e) = state.save_status(&status) {
                tracing::warn!(
                    "replication to {}: cannot record its status: {e}",
                    remote.name
                );
            }
            if let Some(token) = request {
                state.clear_request(&token);
            }
        }
    }
}

fn pass(
    vault: &Vault,
    key: &EnvelopeKey,
    remote: &Remote,
    state: &StateDir,
    stop: &AtomicBool,
) -> Result<(), ReplicateError> {
    let place = remote.url()?.open(false)?;
    let report = Pass {
        vault,
        key,
        place: &*place,
        state,
        progress: &|_| {},
        stop: Some(stop),
    }
    .run()?;
    if let Some(seq) = report.head {
        tracing::info!(
            "replicated to {}: {} objects, {} bytes (head {seq})",
            remote.name,
            report.objects,
            report.bytes
        );
    }
    Ok(())
}

/// 2, 4, 8 ... seconds, at most five minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF)
}
