//! Who holds a layer lock and whether it still runs: the holding process's name (host, boot
//! id and pid namespace, pid, start time, a nonce) and the heartbeat task that renews a held
//! lock. Recovery checks a process of this machine in `/proc` and any other by its heartbeat.

/// Renews a held lock's heartbeat; stops when dropped.
pub(super) struct Heartbeat(pub(super) tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which process holds a lock: `host:machine:pid:start:nonce`. `machine` is the kernel's
/// boot id and the pid namespace (the same for a CLI run in the bot's container), `start` the
/// process's start time (so a reused pid is not taken for the holder), `nonce` tells two
/// deployers of one process apart.
pub(super) fn process_name() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    let host: String = read("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != ':')
        .take(64)
        .collect();
    let boot: String = read("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    let pidns: String = std::fs::read_link("/proc/self/ns/pid")
        .map(|l| {
            l.to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default();
    let pid = std::process::id();
    let start = proc_start_time(pid).unwrap_or(0);
    let nonce = super::new_deploy_id();
    let nonce = nonce.rsplit('-').next().unwrap_or_default();
    format!("{host}:{boot}-{pidns}:{pid}:{start}:{nonce}")
}

/// The parts of a [`process_name`] that tell whether it still runs.
pub(super) struct ProcessId {
    pub(super) machine: String,
    pub(super) pid: u32,
    pub(super) start: u64,
}

impl ProcessId {
    pub(super) fn parse(s: &str) -> Option<ProcessId> {
        let mut parts = s.split(':');
        let (_host, machine, pid, start, _nonce) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || machine.len() < 3 {
            return None;
        }
        Some(ProcessId {
            machine: machine.to_string(),
            pid: pid.parse().ok()?,
            start: start.parse().ok().filter(|s| *s > 0)?,
        })
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot); `None` when no
/// such process runs (in this pid namespace).
pub(super) fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}
