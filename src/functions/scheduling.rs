//! How function instances share the processors: their scheduling policy, and whether the processors have time
//! left for more of them (decision 0015).
//!
//! Under `SCHED_BATCH` a waking instance never preempts the task running on its processor, which is usually fnlb
//! with more requests to read and answers to write (decision 0007): on a machine fnlb and its instances have to
//! themselves, that is fewer context switches and more requests a second. But a batch instance that wakes behind
//! a busy neighbour (any process that keeps a processor busy) waits for the tick to take the processor from it, at
//! every invocation, where the default policy lets it preempt the neighbour as any other waking task does.
//!
//! So by default (`auto`) fnlb measures, once a second, how much of the machine's processor time went to processes
//! other than itself and its instances, and moves every instance process between the two policies: to the default
//! policy while others take more than `CONTENDED` of the machine, back to `SCHED_BATCH` once they take less than
//! `UNCONTENDED` (two thresholds, so that a share between them changes nothing). New instances are born under the
//! policy of the moment (`apply_at_exec`, or their zygote's, which is moved with the rest).
//!
//! The same look tells whether the processors are saturated (idle less than `SATURATED_IDLE` of the time): a pool
//! then starts no instance beyond its eager ones before a caller has waited for a busy one (`pool::patience`),
//! since an instance more adds no processor time, only the work of its start and one more process to share
//! the caches with.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rustix::process::Pid;

use super::instance::stat_fields;
use super::limits::Cgroups;

/// Others' share of the machine's processor time above which instances leave `SCHED_BATCH`.
pub const CONTENDED: f64 = 0.25;
/// Others' share below which instances go back to `SCHED_BATCH`.
pub const UNCONTENDED: f64 = 0.125;
/// The machine's idle share below which its processors count as saturated.
pub const SATURATED_IDLE: f64 = 0.1;
/// How often the shares are measured.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The most instance processes read or moved in one look: a function that forks thousands of processes makes the
/// measure count less of fnlb's own time (so the instances keep the default policy), not fnlb work harder.
pub const MAX_PROCESSES_PER_LOOK: usize = 4096;

/// `--batch-scheduling`: whether instances run under `SCHED_BATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchScheduling {
    /// While no other process keeps the processors busy (measured once a second).
    Auto,
    /// Always.
    #[value(name = "true")]
    Always,
    /// Never: the default policy.
    #[value(name = "false")]
    Never,
}

/// The policy instances are started under now, whether the processors are saturated, and the task that measures
/// both.
#[derive(Debug)]
pub struct Scheduling {
    mode: BatchScheduling,
    batch: AtomicBool,
    saturated: AtomicBool,
}

impl Scheduling {
    pub fn new(mode: BatchScheduling) -> Arc<Scheduling> {
        let batch = AtomicBool::new(mode != BatchScheduling::Never);
        Arc::new(Scheduling { mode, batch, saturated: AtomicBool::new(false) })
    }

    /// Whether a process started now for an instance runs under `SCHED_BATCH`.
    pub fn batch(&self) -> bool {
        self.batch.load(Ordering::Relaxed)
    }

    /// Whether the processors were idle less than `SATURATED_IDLE` of the last second.
    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    /// Starts the task that measures the machine's shares once a second (and in `auto`, with instance cgroups to
    /// find the instances in, moves them); it ends with the last reference to `self`.
    pub fn watch(self: &Arc<Self>, cgroups: &Arc<Cgroups>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let moves = self.mode == BatchScheduling::Auto && cgroups.is_available();
        let (me, cgroups) = (Arc::downgrade(self), moves.then(|| cgroups.clone()));
        runtime.spawn(watch(me, cgroups));
    }
}

/// Measures the machine once a second; moves the instances found in `cgroups` (in `auto`) as others' share asks.
async fn watch(me: Weak<Scheduling>, cgroups: Option<Arc<Cgroups>>) {
    let mut last = Sample::take(cgroups.as_deref());
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(scheduling) = me.upgrade() else { return };
        let now = Sample::take(cgroups.as_deref());
        if let (Some(before), Some(after)) = (&last, &now) {
            scheduling.saturated.store(after.idle_share_since(before) < SATURATED_IDLE, Ordering::Relaxed);
            if cgroups.is_some() {
                follow(&scheduling, after.others_share_since(before), after.processes());
            }
        }
        last = now;
    }
}

/// Decides the policy from others' share and moves the instance processes to it.
fn follow(scheduling: &Scheduling, others: f64, processes: impl Iterator<Item = i32>) {
    let batch = decide(scheduling.batch(), others);
    if batch != scheduling.batch() {
        tracing::info!(
            others = format!("{:.0} %", others * 100.0),
            policy = if batch { "SCHED_BATCH" } else { "SCHED_OTHER" },
            "Other processes' share of the processors changed: instances move to another scheduling policy."
        );
        scheduling.batch.store(batch, Ordering::Relaxed);
    }
    // Every look, not only at a change: a process a zygote forked just as it was moved keeps the old policy until
    // then.
    move_all(processes, batch);
}

/// The next policy from the current one and others' share of the machine.
pub fn decide(batch: bool, others: f64) -> bool {
    if batch { others <= CONTENDED } else { others < UNCONTENDED }
}

/// Processor time so far, in clock ticks: the machine's (all of it, idle, and spent running tasks), fnlb's own, and
/// each process's in its instances' cgroups (by pid, in order); the last two only with cgroups to look in.
struct Sample {
    all: u64,
    idle: u64,
    running: u64,
    own: u64,
    instances: Vec<(i32, u64)>,
}

impl Sample {
    fn take(cgroups: Option<&Cgroups>) -> Option<Sample> {
        let MachineTime { all, idle, running } = machine_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let Some(cgroups) = cgroups else {
            return Some(Sample { all, idle, running, own: 0, instances: Vec::new() });
        };
        let own = process_time(Path::new("/proc/self/stat")).unwrap_or(0);
        let mut instances: Vec<(i32, u64)> = cgroups
            .instance_processes(MAX_PROCESSES_PER_LOOK)
            .into_iter()
            .map(Pid::as_raw_nonzero)
            .filter_map(|pid| Some((pid.get(), process_time(&proc_path(pid.get(), "stat"))?)))
            .collect();
        instances.sort_unstable_by_key(|(pid, _)| *pid);
        Some(Sample { all, idle, running, own, instances })
    }

    /// The share of the machine's processor time since `before` that was idle.
    fn idle_share_since(&self, before: &Sample) -> f64 {
        let all = self.all.saturating_sub(before.all);
        if all == 0 {
            return 1.0;
        }
        self.idle.saturating_sub(before.idle) as f64 / all as f64
    }

    /// The share of the machine's processor time since `before` that went to other processes' tasks. fnlb's part
    /// is counted process by process: one that started since counts all its time, one that ended since is not
    /// counted (its last moments count as others').
    fn others_share_since(&self, before: &Sample) -> f64 {
        let all = self.all.saturating_sub(before.all);
        if all == 0 {
            return 0.0;
        }
        let instances: u64 = self
            .instances
            .iter()
            .map(|(pid, time)| match before.instances.binary_search_by_key(pid, |(pid, _)| *pid) {
                Ok(at) => time.saturating_sub(before.instances[at].1),
                Err(_) => *time,
            })
            .sum();
        let ours = self.own.saturating_sub(before.own) + instances;
        let others = self.running.saturating_sub(before.running).saturating_sub(ours);
        others as f64 / all as f64
    }

    fn processes(&self) -> impl Iterator<Item = i32> + '_ {
        self.instances.iter().map(|(pid, _)| *pid)
    }
}

/// The machine's processor time so far, in clock ticks.
#[derive(Debug, PartialEq, Eq)]
struct MachineTime {
    /// Of every kind (up to steal time: guests' time is counted in user time already).
    all: u64,
    /// Idle, or waiting for input or output.
    idle: u64,
    /// Running tasks: user, nice and system time (interrupts are left out, as they are of each process's own).
    running: u64,
}

/// From `/proc/stat`'s first line.
fn machine_time(stat: &str) -> Option<MachineTime> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().take(8).map(|t| t.parse().unwrap_or(0)).collect();
    if ticks.len() < 5 {
        return None;
    }
    Some(MachineTime { all: ticks.iter().sum(), idle: ticks[3] + ticks[4], running: ticks[0] + ticks[1] + ticks[2] })
}

/// A process's user and system time, in clock ticks, from its `stat` file.
fn process_time(path: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let mut fields = stat_fields(&stat)?.skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

fn proc_path(pid: i32, file: &str) -> std::path::PathBuf {
    Path::new("/proc").join(pid.to_string()).join(file)
}

/// Moves every thread of these processes to the policy (best effort: a process may end meanwhile).
fn move_all(processes: impl Iterator<Item = i32>, batch: bool) {
    let policy = if batch { libc::SCHED_BATCH } else { libc::SCHED_OTHER };
    let mut budget = MAX_PROCESSES_PER_LOOK;
    for pid in processes {
        let Ok(threads) = std::fs::read_dir(proc_path(pid, "task")) else { continue };
        for thread in threads.flatten() {
            let Some(tid) = thread.file_name().to_str().and_then(|t| t.parse::<libc::pid_t>().ok()) else { continue };
            if budget == 0 {
                return;
            }
            budget -= 1;
            set_policy(tid, policy);
        }
    }
}

#[allow(unsafe_code)]
fn set_policy(tid: libc::pid_t, policy: libc::c_int) {
    // SAFETY: sched_getscheduler and sched_setscheduler take a thread id and a parameter on the stack; a thread
    // that ended meanwhile gives ESRCH, which is ignored.
    unsafe {
        if libc::sched_getscheduler(tid) != policy {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(tid, policy, &param);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_leave_batch_above_one_threshold_and_come_back_below_the_other() {
        assert!(decide(true, 0.0));
        assert!(decide(true, CONTENDED));
        assert!(!decide(true, CONTENDED + 0.01));
        // Between the thresholds nothing changes, whichever policy holds.
        assert!(!decide(false, UNCONTENDED + 0.01));
        assert!(decide(true, UNCONTENDED + 0.01));
        assert!(decide(false, UNCONTENDED - 0.01));
    }

    #[test]
    fn the_machine_time_counts_every_kind_and_running_tasks_apart() {
        let stat = "cpu  100 5 50 800 10 3 7 2 0 0\ncpu0 50 2 25 400 5 1 3 1 0 0\n";
        assert_eq!(machine_time(stat), Some(MachineTime { all: 977, idle: 810, running: 155 }));
        assert_eq!(machine_time("intr 1 2 3\n"), None);
        assert_eq!(machine_time(""), None);
    }

    #[test]
    fn a_process_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        let line = "42 (odd) name)) S 1 42 42 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 1 0 100 0 0\n";
        std::fs::write(&path, line).unwrap();
        assert_eq!(process_time(&path), Some(21));
        std::fs::write(&path, "42 (short) S 1\n").unwrap();
        assert_eq!(process_time(&path), None);
        assert!(process_time(Path::new("/proc/self/stat")).is_some());
    }

    #[test]
    fn others_share_is_what_ran_outside_fnlb_over_all_the_time() {
        let before = Sample { all: 1000, idle: 500, running: 400, own: 200, instances: vec![(7, 50), (9, 50)] };
        // 160 ticks ran: 40 fnlb's, 30 and 20 of its two instances, 10 of one started since.
        let after =
            Sample { all: 1200, idle: 520, running: 560, own: 240, instances: vec![(7, 80), (9, 70), (11, 10)] };
        assert!((after.others_share_since(&before) - 0.3).abs() < 1e-9);
        // An instance that ended since takes none of its earlier time with it.
        let ended = Sample { all: 1200, idle: 520, running: 560, own: 240, instances: vec![(7, 80)] };
        assert!((ended.others_share_since(&before) - 0.45).abs() < 1e-9);
        assert_eq!(before.others_share_since(&before), 0.0);
        // 20 of the 200 ticks were idle.
        assert!((after.idle_share_since(&before) - 0.1).abs() < 1e-9);
        assert_eq!(before.idle_share_since(&before), 1.0);
    }
}
