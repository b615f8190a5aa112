//! Resource limits of function instances: memory (`MemorySize`) and process count through the cgroup memory and
//! pids controllers, open files through `RLIMIT_NOFILE`.
//!
//! cgroup v1 (a hierarchy per controller, as on Debian hosts with the legacy layout): each instance gets
//! `memory/…/fnlb-<pid>/instance-<id>` with `memory.limit_in_bytes` (and `pids/…` with `pids.max`); an OOM kill shows
//! in `memory.oom_control` as `oom_kill`. cgroup v2 (the unified hierarchy): fnlb moves itself into a leaf of its
//! own group, enables the controllers for the group's children and gives each instance a child with
//! `memory.max`, `memory.swap.max` 0 and `pids.max`; an OOM kill shows in `memory.events`. Where neither can be
//! written (no permission, no controller), instances run without a memory limit and fnlb says so at start.

use std::fs;
use std::path::{Path, PathBuf};

/// Processes and threads an instance may run (contract 2.9).
pub const DEFAULT_MAX_PROCESSES: u64 = 1024;
/// Files an instance may hold open (contract 2.9).
pub const DEFAULT_MAX_OPEN_FILES: u64 = 1024;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
pub enum Cgroups {
    V1 { memory: PathBuf, pids: Option<PathBuf> },
    V2 { base: PathBuf },
    Unavailable,
}

/// One instance's cgroup(s). Removed (after killing what is left in it) when dropped.
#[derive(Debug)]
pub struct InstanceGroup {
    dirs: Vec<PathBuf>,
    events: Option<PathBuf>,
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
            Cgroups::V1 { memory, pids } => std::iter::once(memory.as_path()).chain(pids.as_deref()).collect(),
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

    /// Creates the cgroup of one instance with its limits.
    pub fn instance(&self, id: u64, memory_mb: u32, max_processes: u64) -> std::io::Result<Option<InstanceGroup>> {
        let bytes = u64::from(memory_mb) * 1024 * 1024;
        let name = format!("instance-{id}");
        match self {
            Cgroups::Unavailable => Ok(None),
            Cgroups::V1 { memory, pids } => {
                let mem = memory.join(&name);
                fs::create_dir_all(&mem)?;
                let mut group = InstanceGroup { dirs: vec![mem.clone()], events: Some(mem.join("memory.oom_control")) };
                fs::write(mem.join("memory.limit_in_bytes"), bytes.to_string())?;
                // Without swap accounting the file is absent; the machine's swap then is what bounds it.
                let _ = fs::write(mem.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                if let Some(pids) = pids {
                    let dir = pids.join(&name);
                    fs::create_dir_all(&dir)?;
                    group.dirs.push(dir.clone());
                    fs::write(dir.join("pids.max"), max_processes.to_string())?;
                }
                Ok(Some(group))
            }
            Cgroups::V2 { base } => {
                let dir = base.join(&name);
                fs::create_dir_all(&dir)?;
                let group = InstanceGroup { dirs: vec![dir.clone()], events: Some(dir.join("memory.events")) };
                fs::write(dir.join("memory.max"), bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                let _ = fs::write(dir.join("pids.max"), max_processes.to_string());
                Ok(Some(group))
            }
        }
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
    Some(Cgroups::V1 { memory, pids: make("pids") })
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
    remove_stale(&group);
    let base = group.join(tag);
    fs::create_dir_all(&base).ok()?;
    fs::write(base.join("cgroup.subtree_control"), "+memory +pids").ok()?;
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
    /// Run under `SCHED_BATCH` (`EngineSettings::batch_scheduling`).
    batch: bool,
}

impl AtExec {
    pub fn new(group: Option<&InstanceGroup>, max_open_files: u64, batch: bool) -> std::io::Result<AtExec> {
        let procs = group.map_or(Ok(Vec::new()), |g| {
            g.dirs.iter().map(|dir| fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))).collect()
        })?;
        Ok(AtExec { procs, max_open_files, batch })
    }
}

/// Makes a command's process join its instance's cgroups, set its open-file limit and (optionally) take the
/// `SCHED_BATCH` policy as its last step before `exec`: the runtime, and everything it or a sandbox wrapper forks,
/// is limited from its first instruction (moving the process from outside after it started would race its first
/// `fork`). See docs/decisions/0005-limits-at-exec.md and 0007-batch-scheduling.md.
#[allow(unsafe_code)]
pub fn apply_at_exec(command: &mut tokio::process::Command, limits: AtExec) {
    let AtExec { procs, max_open_files, batch } = limits;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe work is allowed.
    // It makes three kinds of system call on values prepared before the fork: write(2) of a constant to
    // descriptors opened then ("0" moves the writing process), setrlimit(2) and sched_setscheduler(2). It
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            for file in &procs {
                rustix::io::write(file, b"0")?;
            }
            let limit = rustix::process::Rlimit { current: Some(max_open_files), maximum: Some(max_open_files) };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
            if batch {
                // Best effort: an unprivileged process may always move from SCHED_OTHER to SCHED_BATCH.
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            }
            Ok(())
        });
    }
}

// === impl InstanceGroup ===

impl InstanceGroup {
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
            Cgroups::V1 { memory, pids } => std::iter::once(memory).chain(pids.iter()).collect(),
            Cgroups::V2 { base } => vec![base],
            Cgroups::Unavailable => vec![],
        };
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}
