//! Who a request came from, as the audit trail names them: the request's
//! uid, gid and thread id, and what /proc says of that thread. /proc is
//! read once per thread and second at most: a loop of opens by one program
//! costs four reads of /proc, not four per open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::audit::Who;

/// How long what /proc said of a thread is taken as still true. A thread
/// id is reused only after the kernel has cycled through pid_max ids; a
/// program that execs another keeps its id, and is named by its new exe
/// at most this long after.
const VALID: Duration = Duration::from_secs(1);
/// Threads remembered at most; expired ones go first, all if none has.
const MAX_THREADS: usize = 1024;
/// "Not set" in /proc/PID/loginuid and sessionid.
const UNSET: u32 = u32::MAX;

/// What /proc says of a thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Process {
    pub comm: String,
    pub exe: String,
    pub login_uid: Option<u32>,
    pub session_id: Option<u32>,
}

impl Process {
    /// Reads /proc/PID/... of thread `tid`; a thread that is gone (or
    /// whose exe this daemon may not read) leaves those fields empty.
    pub fn read(tid: u32) -> Self {
        let dir = format!("/proc/{tid}");
        let text = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let id = |f: &str| {
            text(f)
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|&v| v != UNSET)
        };
        Process {
            comm: text("comm")
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_default(),
            exe: std::fs::read_link(format!("{dir}/exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            login_uid: id("loginuid"),
            session_id: id("sessionid"),
        }
    }
}

/// What /proc said of recent callers, by thread id.
#[derive(Default)]
pub struct Callers {
    seen: Mutex<HashMap<u32, (Instant, Arc<Process>)>>,
}

impl Callers {
    /// The record's `Who` for a request by `uid`/`gid` from thread `tid`.
    pub fn who(&self, uid: u32, gid: u32, tid: u32) -> Who {
        let p = self.process(tid);
        Who {
            uid,
            gid,
            pid: tid,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            login_uid: p.login_uid,
            session_id: p.session_id,
        }
    }

    fn process(&self, tid: u32) -> Arc<Process> {
        let now = Instant::now();
        if let Some((at, p)) = self.seen.lock().get(&tid) {
            if now.duration_since(*at) < VALID {
                return p.clone();
            }
        }
        // Read without the lock: other threads' callers need not wait.
        let p = Arc::new(Process::read(tid));
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_THREADS {
            seen.retain(|_, (at, _)| now.duration_since(*at) < VALID);
            if seen.len() >= MAX_THREADS {
                seen.clear();
            }
        }
        seen.insert(tid, (now, p.clone()));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_thread() -> u32 {
        // SAFETY: gettid cannot fail.
        unsafe { libc::gettid() as u32 }
    }

    #[test]
    fn names_this_thread() {
        let who = Callers::default().who(1, 2, this_thread());
        assert_eq!((who.uid, who.gid, who.pid), (1, 2, this_thread()));
        let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        assert_eq!(who.comm, comm.trim_end());
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(who.exe, exe.to_string_lossy());
        let login = std::fs::read_to_string("/proc/self/loginuid").unwrap();
        let login: u32 = login.trim().parse().unwrap();
        assert_eq!(who.login_uid, (login != UNSET).then_some(login));
    }

    #[test]
    fn a_caller_that_is_gone_has_empty_fields() {
        let who = Callers::default().who(5, 6, u32::MAX - 1);
        assert_eq!(who.comm, "");
        assert_eq!(who.exe, "");
        assert_eq!((who.login_uid, who.session_id), (None, None));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let callers = Callers::default();
        for tid in 0..(MAX_THREADS as u32 + 10) {
            callers.who(0, 0, u32::MAX - 2 - tid);
        }
        assert!(callers.seen.lock().len() <= MAX_THREADS);
    }

    /// What reading /proc costs, beside a hit of the cache: the figures
    /// behind `VALID` (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn measure_proc_reads() {
        let tid = this_thread();
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(Process::read(tid));
        }
        let read = t.elapsed() / n;
        let callers = Callers::default();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(callers.who(0, 0, tid));
        }
        let hit = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(std::fs::read_to_string(format!("/proc/{tid}/stat")).ok());
        }
        let stat = t.elapsed() / n;
        println!("/proc read {read:?}, cached {hit:?}, /proc/TID/stat alone {stat:?}");
    }
}
