//! Resource limits of function instances: memory (`MemorySize`), process count and processor time through the
//! cgroup memory, pids and cpu controllers, open files through `RLIMIT_NOFILE`.
//!
//! Processor time is allotted in proportion to `MemorySize`, as SCF and Lambda allot it: an instance may use
//! `MemorySize / mb_per_cpu` processors (a CFS quota over a 100 ms period, `--function-mb-per-cpu`), and under
//! contention instances divide the processors in the same proportion (`cpu.shares` / `cpu.weight`).
//!
//! cgroup v1 (a hierarchy per controller, as on Debian hosts with the legacy layout): each instance gets
//! `memory/…/fnlb-<pid>/instance-<id>` with `memory.limit_in_bytes` (and `pids/…` with `pids.max`); an OOM kill shows
//! in `memory.oom_control` as `oom_kill`. cgroup v2 (the unified hierarchy): fnlb moves itself into a leaf of its
//! own group, enables the controllers for the group's children and gives each instance a child with
//! `memory.max`, `memory.swap.max` 0 and `pids.max`; an OOM kill shows in `memory.events`. Where neither can be
//! written (no permission, no controller), instances run without a memory limit and fnlb says so at start.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Processes and threads an instance may run (contract 2.9).
pub const DEFAULT_MAX_PROCESSES: u64 = 1024;
/// Files an instance may hold open (contract 2.9).
pub const DEFAULT_MAX_OPEN_FILES: u64 = 1024;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
pub enum Cgroups {
    V1 { memory: PathBuf, pids: Option<PathBuf>, cpu: Option<PathBuf> },
    V2 { base: PathBuf },
    Unavailable,
}

/// What one instance may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    pub memory_mb: u32,
    pub max_processes: u64,
    /// The memory that buys one processor (0: no processor quota, only the proportional weight).
    pub mb_per_cpu: u32,
}

/// The memory that buys an instance one processor: a single-threaded runtime never needs more than one, so the
/// quota costs a 128 MB function nothing until it runs several busy processes or threads at once.
pub const DEFAULT_MB_PER_CPU: u32 = 128;
/// The CFS period over which an instance's processor quota is counted.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel takes.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// The memory size whose weight is the controllers' default (1024 shares, weight 100).
const WEIGHT_UNIT_MB: u64 = 128;

/// One instance's cgroup(s). Removed (after killing what is left in it) when dropped.
#[derive(Debug)]
pub struct InstanceGroup {
    dirs: Vec<PathBuf>,
    events: Option<PathBuf>,
    layout: Layout,
}

/// Where an instance's limits are written.
#[derive(Debug)]
enum Layout {
    V1 { memory: PathBuf, pids: Option<PathBuf>, cpu: Option<PathBuf> },
    V2(PathBuf),
}

// === impl Cgroups ===

impl Cgroups {
    /// Prepares fnlb's cgroup for instances, or reports that limits cannot be enforced here.
    pub fn detect() -> Cgroups {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let tag = format!("fnlb-{}", std::process::id());
        match setup_v1(&own, &tag).or_else(|| setup_v2(&own, &tag)) {
            Some(cgroups) => {
                tracing::info!(?cgroups, "Instance memory limits enforced with cgroups.");
                cgroups
            }
            None => {
                tracing::warn!("No writable cgroup memory controller: instances run without a memory limit.");
                Cgroups::Unavailable
            }
        }
    }

    pub fn is_available(&self) -> bool {
        !matches!(self, Cgroups::Unavailable)
    }

    /// Removes this fnlb's cgroups (at exit), killing what still runs in them and waiting for the kernel at most
    /// `patience`; returns whether they are gone. (With cgroup v2 the leaf fnlb itself runs in stays until it
    /// exits; the next start removes it with the groups of other fnlb processes that are gone.)
    pub fn remove_own(&self, patience: std::time::Duration) -> bool {
        let dirs: Vec<&Path> = match self {
            Cgroups::Unavailable => return true,
            Cgroups::V1 { memory, pids, cpu } => {
                std::iter::once(memory.as_path()).chain(pids.as_deref()).chain(cpu.as_deref()).collect()
            }
            Cgroups::V2 { base } => vec![base.as_path()],
        };
        let end = std::time::Instant::now() + patience;
        loop {
            for dir in &dirs {
                for child in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if child.file_type().is_ok_and(|t| t.is_dir()) {
                        // What is still running there (an invocation past the drain) ends with fnlb.
                        for pid in read_pids(&child.path().join("cgroup.procs")) {
                            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                        let _ = fs::remove_dir(child.path());
                    }
                }
                let _ = fs::remove_dir(dir);
            }
            if dirs.iter().all(|d| !d.exists()) {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The processes in instances' cgroups now (zygotes and their spares included), at most `limit` of them.
    pub fn instance_processes(&self, limit: usize) -> Vec<rustix::process::Pid> {
        let parent = match self {
            Cgroups::V1 { memory, .. } => memory,
            Cgroups::V2 { base } => base,
            Cgroups::Unavailable => return Vec::new(),
        };
        let mut processes = Vec::new();
        for child in fs::read_dir(parent).into_iter().flatten().flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                processes.extend(read_pids(&child.path().join("cgroup.procs")));
                if processes.len() >= limit {
                    processes.truncate(limit);
                    break;
                }
            }
        }
        processes
    }

    /// Creates the cgroup of one instance with its limits.
    pub fn instance(&self, id: u64, limits: &InstanceLimits) -> std::io::Result<Option<InstanceGroup>> {
        let name = format!("instance-{id}");
        let make = |parent: &Path| -> std::io::Result<PathBuf> {
            let dir = parent.join(&name);
            fs::create_dir_all(&dir)?;
            Ok(dir)
        };
        let group = match self {
            Cgroups::Unavailable => return Ok(None),
            Cgroups::V1 { memory, pids, cpu } => {
                let memory = make(memory)?;
                let mut group = InstanceGroup {
                    dirs: vec![memory.clone()],
                    events: Some(memory.join("memory.oom_control")),
                    layout: Layout::V1 { memory, pids: None, cpu: None },
                };
                // Each directory joins the group as it is made, so that a failure removes what was made.
                if let Some(pids) = pids {
                    let dir = make(pids)?;
                    group.dirs.push(dir.clone());
                    if let Layout::V1 { pids, .. } = &mut group.layout {
                        *pids = Some(dir);
                    }
                }
                if let Some(cpu) = cpu {
                    let dir = make(cpu)?;
                    group.dirs.push(dir.clone());
                    if let Layout::V1 { cpu, .. } = &mut group.layout {
                        *cpu = Some(dir);
                    }
                }
                group
            }
            Cgroups::V2 { base } => {
                let dir = make(base)?;
                InstanceGroup {
                    dirs: vec![dir.clone()],
                    events: Some(dir.join("memory.events")),
                    layout: Layout::V2(dir),
                }
            }
        };
        group.set_limits(limits)?;
        Ok(Some(group))
    }
}

// === impl InstanceLimits ===

impl InstanceLimits {
    /// The instance's processor time per `CPU_PERIOD_US`: `MemorySize / mb_per_cpu` processors' worth.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        (self.mb_per_cpu > 0)
            .then(|| (CPU_PERIOD_US * u64::from(self.memory_mb) / u64::from(self.mb_per_cpu)).max(MIN_CPU_QUOTA_US))
    }
}

fn setup_v1(own: &str, tag: &str) -> Option<Cgroups> {
    let path_of = |controller: &str| {
        own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then(|| path.trim_start_matches('/').to_string())
        })
    };
    let make = |controller: &str| -> Option<PathBuf> {
        let parent = Path::new(CGROUP_ROOT).join(controller).join(path_of(controller)?);
        remove_stale(&parent);
        let dir = parent.join(tag);
        fs::create_dir_all(&dir).ok()?;
        Some(dir)
    };
    let memory = make("memory")?;
    if !memory.join("memory.limit_in_bytes").exists() {
        let _ = fs::remove_dir(&memory);
        return None;
    }
    Some(Cgroups::V1 { memory, pids: make("pids"), cpu: make("cpu") })
}

fn setup_v2(own: &str, tag: &str) -> Option<Cgroups> {
    let root = Path::new(CGROUP_ROOT);
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return None;
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/');
    let group = root.join(path);
    // A group with processes cannot hand controllers to its children: fnlb moves itself into a leaf first.
    let leaf = group.join(format!("{tag}-supervisor"));
    fs::create_dir_all(&leaf).ok()?;
    fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()).ok()?;
    fs::write(group.join("cgroup.subtree_control"), "+memory +pids").ok()?;
    // The cpu controller where the host offers it (instances then get a quota and a weight).
    let _ = fs::write(group.join("cgroup.subtree_control"), "+cpu");
    remove_stale(&group);
    let base = group.join(tag);
    fs::create_dir_all(&base).ok()?;
    fs::write(base.join("cgroup.subtree_control"), "+memory +pids").ok()?;
    let _ = fs::write(base.join("cgroup.subtree_control"), "+cpu");
    Some(Cgroups::V2 { base })
}

/// Removes the empty instance cgroups of fnlb processes that are gone (killed without cleaning up).
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("fnlb-")).and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir(child.path());
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Limits a new process takes on itself between `fork` and `exec` (`apply_at_exec`).
pub struct AtExec {
    /// The `cgroup.procs` files of the instance's groups, opened before the fork.
    procs: Vec<fs::File>,
    max_open_files: u64,
    /// Run under `SCHED_BATCH` (`scheduling::Scheduling::batch`).
    batch: bool,
    /// The functions' network namespace to join (`network.rs`).
    netns: Option<Arc<OwnedFd>>,
    /// A descriptor the program is given at a fixed number (bubblewrap's `--seccomp FD`).
    pass: Option<(fs::File, i32)>,
    /// The system-call filter to install (`seccomp.rs`), when no sandbox installs it.
    seccomp: Option<Vec<libc::sock_filter>>,
}

impl AtExec {
    pub fn new(group: Option<&InstanceGroup>, max_open_files: u64, batch: bool) -> std::io::Result<AtExec> {
        let procs = group.map_or(Ok(Vec::new()), |g| {
            g.dirs.iter().map(|dir| fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))).collect()
        })?;
        Ok(AtExec { procs, max_open_files, batch, netns: None, pass: None, seccomp: None })
    }

    /// Joins this network namespace before `exec`.
    pub fn join_network(mut self, netns: Option<Arc<OwnedFd>>) -> AtExec {
        self.netns = netns;
        self
    }

    /// Gives the program `file` as descriptor `fd`.
    pub fn pass(mut self, file: fs::File, fd: i32) -> AtExec {
        self.pass = Some((file, fd));
        self
    }

    /// Installs the system-call filter (with `no_new_privs`) as the last step before `exec`.
    pub fn filter_calls(mut self) -> AtExec {
        let filter = super::seccomp::program()
            .into_iter()
            .map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k })
            .collect();
        self.seccomp = Some(filter);
        self
    }
}

/// Makes a command's process join its instance's cgroups, set its open-file limit, join the functions' network,
/// (optionally) take the `SCHED_BATCH` policy and install the system-call filter as its last steps before `exec`:
/// the runtime, and everything it or a sandbox wrapper forks, is limited from its first instruction (moving the
/// process from outside after it started would race its first `fork`). See docs/decisions/0005-limits-at-exec.md
/// and 0007-batch-scheduling.md.
#[allow(unsafe_code)]
pub fn apply_at_exec(command: &mut tokio::process::Command, limits: AtExec) {
    let AtExec { procs, max_open_files, batch, netns, pass, mut seccomp } = limits;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe work is allowed.
    // It makes only system calls, on values prepared before the fork: write(2) of a constant to descriptors opened
    // then ("0" moves the writing process), setrlimit(2), setns(2), dup2(2), sched_setscheduler(2) and prctl(2)
    // with a filter allocated before the fork (the `sock_fprog` it points to is built on the stack). It allocates
    // nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            for file in &procs {
                rustix::io::write(file, b"0")?;
            }
            let limit = rustix::process::Rlimit { current: Some(max_open_files), maximum: Some(max_open_files) };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
            if let Some(netns) = &netns
                && libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((file, fd)) = &pass
                && libc::dup2(file.as_raw_fd(), *fd) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if batch {
                // Best effort: an unprivileged process may always move from SCHED_OTHER to SCHED_BATCH.
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            }
            if let Some(filter) = &mut seccomp {
                let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const _) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

// === impl InstanceGroup ===

impl InstanceGroup {
    /// Writes the instance's limits (again: an instance forked ahead of time takes its function's limits when it
    /// takes on the function).
    pub fn set_limits(&self, limits: &InstanceLimits) -> std::io::Result<()> {
        let bytes = (u64::from(limits.memory_mb) * 1024 * 1024).to_string();
        let quota = limits.cpu_quota_us();
        match &self.layout {
            Layout::V1 { memory, pids, cpu } => {
                // The memory and swap limit may not be below the memory limit: raised first when it grows, set
                // again when it shrinks. Without swap accounting the file is absent; the machine's swap then is
                // what bounds it.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                let _ = fs::write(&memsw, &bytes);
                fs::write(memory.join("memory.limit_in_bytes"), &bytes)?;
                let _ = fs::write(&memsw, &bytes);
                if let Some(pids) = pids {
                    fs::write(pids.join("pids.max"), limits.max_processes.to_string())?;
                }
                if let Some(cpu) = cpu {
                    let shares = (1024 * u64::from(limits.memory_mb) / WEIGHT_UNIT_MB).clamp(2, 262_144);
                    fs::write(cpu.join("cpu.shares"), shares.to_string())?;
                    fs::write(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    fs::write(cpu.join("cpu.cfs_quota_us"), quota.map_or("-1".to_string(), |q| q.to_string()))?;
                }
            }
            Layout::V2(dir) => {
                fs::write(dir.join("memory.max"), &bytes)?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                let _ = fs::write(dir.join("pids.max"), limits.max_processes.to_string());
                let weight = (100 * u64::from(limits.memory_mb) / WEIGHT_UNIT_MB).clamp(1, 10_000);
                let _ = fs::write(dir.join("cpu.weight"), weight.to_string());
                let max = quota.map_or("max".to_string(), |q| q.to_string());
                let _ = fs::write(dir.join("cpu.max"), format!("{max} {CPU_PERIOD_US}"));
            }
        }
        Ok(())
    }

    /// The file listing the group's processes.
    pub fn procs_file(&self) -> Option<PathBuf> {
        self.dirs.first().map(|dir| dir.join("cgroup.procs"))
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<rustix::process::Pid> {
        self.procs_file().map(|file| read_pids(&file)).unwrap_or_default()
    }

    /// Moves a process (and the children it forks from now on) into the group.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        for dir in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel killed a process of this group for exceeding its memory limit.
    pub fn oom_killed(&self) -> bool {
        let Some(events) = &self.events else { return false };
        let text = fs::read_to_string(events).unwrap_or_default();
        text.lines()
            .any(|line| line.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0)))
    }

    /// Kills every process left in the group (including any that left the instance's process group).
    pub fn kill_all(&self) {
        for pid in self.pids() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for InstanceGroup {
    fn drop(&mut self) {
        self.kill_all();
        let dirs = std::mem::take(&mut self.dirs);
        // A cgroup can be removed once its last process is gone, which takes the kernel a moment.
        let remove = move || {
            for attempt in 0..50 {
                if dirs.iter().all(|d| fs::remove_dir(d).is_ok() || !d.exists()) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10 * (attempt + 1)));
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// The processes a `cgroup.procs` file lists (none when it cannot be read).
pub fn read_pids(procs: &Path) -> Vec<rustix::process::Pid> {
    let text = fs::read_to_string(procs).unwrap_or_default();
    text.lines().filter_map(|p| p.trim().parse::<i32>().ok()).filter_map(rustix::process::Pid::from_raw).collect()
}

/// Removes fnlb's own instance cgroups at shutdown.
impl Drop for Cgroups {
    fn drop(&mut self) {
        let dirs: Vec<&PathBuf> = match &*self {
            Cgroups::V1 { memory, pids, cpu } => std::iter::once(memory).chain(pids.iter()).chain(cpu.iter()).collect(),
            Cgroups::V2 { base } => vec![base],
            Cgroups::Unavailable => vec![],
        };
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}
