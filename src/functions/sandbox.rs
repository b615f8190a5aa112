//! Isolation of function instances.
//!
//! With bubblewrap (Debian's `bubblewrap`), each instance runs in its own mount, PID, IPC and UTS namespaces: it
//! sees the host's system directories read-only, its own code read-only at `/var/user`, the runtime at
//! `/var/runtime`, and a private `/tmp`; nothing else of the host, so neither fnlb's data directory, its
//! credentials, nor another function's code. When fnlb runs as root, each function runs as an unprivileged user of
//! its own (`Uids`) with no capabilities (through `setpriv`). Without bubblewrap, instances run as fnlb's children in
//! their own process groups, and fnlb warns that functions are not isolated.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a sandboxed instance finds its code, its runtime and its scratch space (contract 2.4's layout).
pub const CODE_ROOT: &str = "/var/user";
pub const RUNTIME_ROOT: &str = "/var/runtime";
pub const SCRATCH: &str = "/tmp";
/// The instance's channel to fnlb, bound into the sandbox from fnlb's private socket directory.
pub const CHANNEL: &str = "/var/run/fnlb.sock";
/// A zygote's channel directory (its own socket and its children's), bound the same way.
pub const CHANNEL_DIR: &str = "/var/run/fnlb";
/// `/tmp` is 512 MB per instance (contract 2.9).
pub const SCRATCH_BYTES: u64 = 512 * 1024 * 1024;
/// The first of the users functions run as when fnlb is root (`--function-uid-base`): far above the ranges that
/// distributions give people, services and containers' subordinate users.
pub const DEFAULT_FUNCTION_UID_BASE: u32 = 2_000_000_000;
/// How many users functions are given: a function keeps its user for as long as fnlb runs, and past this many
/// functions the user of the one that ran least recently is given again.
pub const FUNCTION_UIDS: u32 = 65_536;
/// Where a runtime's zygote sees every code package (its children unmount it).
pub const ZYGOTE_CODE_ROOT: &str = "/var/code";
/// The descriptor bubblewrap reads the system-call filter from.
pub const SECCOMP_FD: i32 = 200;

/// Host directories a sandbox sees read-only (those that exist).
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    /// bubblewrap when it works on this host, else no sandbox (with a warning).
    Auto,
    /// bubblewrap, or refuse to start.
    Bubblewrap,
    /// No sandbox.
    None,
}

#[derive(Clone, Debug)]
pub enum Sandbox {
    Bubblewrap {
        bwrap: PathBuf,
        /// `setpriv`, to drop to the function's user inside the sandbox (when fnlb runs as root).
        setpriv: Option<PathBuf>,
    },
    None,
}

/// What a sandboxed process is confined to beyond its mounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Confinement {
    /// The user it runs as (when fnlb runs as root).
    pub uid: Option<u32>,
    /// bubblewrap installs the system-call filter it reads from `SECCOMP_FD`.
    pub seccomp: bool,
    /// A runtime's zygote: it sees every code package, stays root with only the capabilities its children need to
    /// take on a function (a mount namespace of their own with their package, `/tmp` and `/proc`, and the
    /// function's user), and runs none of the functions' code.
    pub zygote: bool,
}

/// The capabilities a zygote keeps (`Confinement::zygote`).
const ZYGOTE_CAPABILITIES: &str = "-all,+sys_admin,+setuid,+setgid";

/// The users functions run as: one per function, given in turn from `base` and kept while fnlb runs.
#[derive(Debug)]
pub struct Uids {
    base: u32,
    /// A function's user and when it was last asked for (a counter).
    given: std::collections::HashMap<String, (u32, u64)>,
    asked: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bubblewrap was asked for but does not work here: {0}")]
    Unavailable(String),
}

// === impl Sandbox ===

impl Sandbox {
    /// Picks the sandbox for this host.
    pub fn detect(mode: SandboxMode) -> Result<Sandbox, SandboxError> {
        if mode == SandboxMode::None {
            tracing::warn!("Sandbox disabled: functions run unisolated, as fnlb's own user.");
            return Ok(Sandbox::None);
        }
        let probe = probe_bwrap();
        match (probe, mode) {
            (Ok(bwrap), _) => {
                let setpriv = if rustix::process::geteuid().is_root() {
                    let setpriv = find(&["/usr/bin/setpriv", "/bin/setpriv"])
                        .ok_or_else(|| SandboxError::Unavailable("setpriv (util-linux) is missing".to_string()))?;
                    Some(setpriv)
                } else {
                    None
                };
                tracing::info!(bwrap = %bwrap.display(), own_users = setpriv.is_some(), "Functions run in bubblewrap sandboxes.");
                Ok(Sandbox::Bubblewrap { bwrap, setpriv })
            }
            (Err(why), SandboxMode::Bubblewrap) => Err(SandboxError::Unavailable(why)),
            (Err(why), _) => {
                tracing::warn!(reason = %why, "No sandbox (install bubblewrap): functions are not isolated from fnlb or each other.");
                Ok(Sandbox::None)
            }
        }
    }

    /// Whether a program lies in the system directories every sandbox sees.
    pub fn sees_everywhere(program: &Path) -> bool {
        SYSTEM_DIRS.iter().any(|dir| program.starts_with(dir))
    }

    pub fn is_isolated(&self) -> bool {
        matches!(self, Sandbox::Bubblewrap { .. })
    }

    /// Whether functions run as users of their own (bubblewrap, with fnlb as root).
    pub fn drops_user(&self) -> bool {
        matches!(self, Sandbox::Bubblewrap { setpriv: Some(_), .. })
    }

    /// Wraps `program args…` (paths as the sandbox sees them) into the command that starts it in the sandbox,
    /// with the function's code, the runtimes and the instance's channel socket (host paths) mounted. The
    /// interpreter's installation is visible at its host path.
    pub fn wrap(
        &self,
        program: &Path,
        args: &[String],
        code_dir: &Path,
        runtime_dir: &Path,
        channel: Option<(&Path, &Path)>,
        confinement: Confinement,
    ) -> (PathBuf, Vec<String>) {
        let Sandbox::Bubblewrap { bwrap, setpriv } = self else {
            return (program.to_path_buf(), args.to_vec());
        };
        let mut out: Vec<String> = Vec::new();
        for dir in SYSTEM_DIRS.iter().map(Path::new).filter(|d| d.exists()) {
            ro_bind(&mut out, dir, dir);
        }
        // An interpreter installed elsewhere (pyenv, a custom prefix) is visible at its own path.
        if let Some(prefix) = program.parent().and_then(Path::parent)
            && !program.starts_with(CODE_ROOT)
            && !SYSTEM_DIRS.iter().any(|d| prefix.starts_with(d))
            && prefix != Path::new("/")
        {
            ro_bind(&mut out, prefix, prefix);
        }
        // Directories bubblewrap creates are root's and private unless told otherwise: /var (made for the code
        // and runtime mounts) must be traversable, /tmp writable by the function.
        out.extend(["--perms", "0755", "--dir", "/var"].map(str::to_string));
        if confinement.zygote {
            // Every package, for each child to take its own from (and unmount the rest) when it takes on a
            // function; `/var/user` is where it puts it.
            ro_bind(&mut out, code_dir, Path::new(ZYGOTE_CODE_ROOT));
            out.extend(["--perms", "0755", "--dir", CODE_ROOT].map(str::to_string));
        } else {
            ro_bind(&mut out, code_dir, Path::new(CODE_ROOT));
        }
        ro_bind(&mut out, runtime_dir, Path::new(RUNTIME_ROOT));
        if let Some((host, inside)) = channel {
            out.extend(
                ["--perms", "0755", "--dir", "/var/run", "--bind", &path(host), &path(inside)].map(str::to_string),
            );
        }
        let scratch_size = SCRATCH_BYTES.to_string();
        #[rustfmt::skip]
        let rest = [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", &scratch_size, "--tmpfs", SCRATCH,
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
            // A session of its own: no way back to fnlb's terminal (TIOCSTI).
            "--new-session",
            "--hostname", "scf", "--chdir", CODE_ROOT,
        ];
        out.extend(rest.map(str::to_string));
        if confinement.seccomp {
            out.extend(["--seccomp".to_string(), SECCOMP_FD.to_string()]);
        }
        out.push("--".to_string());
        if let (Some(setpriv), true) = (setpriv, confinement.zygote) {
            out.extend([
                path(setpriv),
                "--clear-groups".to_string(),
                "--inh-caps=-all".to_string(),
                format!("--bounding-set={ZYGOTE_CAPABILITIES}"),
                "--no-new-privs".to_string(),
                "--".to_string(),
            ]);
        } else if let (Some(setpriv), Some(uid)) = (setpriv, confinement.uid) {
            out.extend([
                path(setpriv),
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_string(),
                "--inh-caps=-all".to_string(),
                "--bounding-set=-all".to_string(),
                "--no-new-privs".to_string(),
                "--".to_string(),
            ]);
        }
        out.push(path(program));
        out.extend(args.iter().cloned());
        (bwrap.clone(), out)
    }
}

// === impl Uids ===

impl Uids {
    pub fn new(base: u32) -> Uids {
        Uids { base, given: Default::default(), asked: 0 }
    }

    /// The user of a function (named by a key unique to it): the one it was given, else the next never given, else
    /// the one of the function asked for least recently.
    pub fn of(&mut self, function: &str) -> u32 {
        self.asked += 1;
        let asked = self.asked;
        if let Some((uid, last)) = self.given.get_mut(function) {
            *last = asked;
            return *uid;
        }
        let uid = if (self.given.len() as u64) < u64::from(FUNCTION_UIDS) {
            self.base.saturating_add(self.given.len() as u32)
        } else {
            let (oldest, (uid, _)) = self
                .given
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, v)| (k.clone(), *v))
                .expect("the users are all given, so some function has one");
            self.given.remove(&oldest);
            uid
        };
        self.given.insert(function.to_string(), (uid, asked));
        uid
    }
}

fn ro_bind(out: &mut Vec<String>, src: &Path, dest: &Path) {
    out.extend(["--ro-bind".to_string(), path(src), path(dest)]);
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Runs bubblewrap once with the namespaces instances use, to see that it works here.
fn probe_bwrap() -> Result<PathBuf, String> {
    let bwrap = find(&["/usr/bin/bwrap", "/bin/bwrap"]).ok_or_else(|| "bwrap is not installed".to_string())?;
    let mut command = Command::new(&bwrap);
    for dir in SYSTEM_DIRS.iter().filter(|d| Path::new(d).exists()) {
        command.args(["--ro-bind", dir, dir]);
    }
    let out = command
        .args([
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--unshare-pid",
            "--unshare-ipc",
            "--die-with-parent",
            "--",
            "true",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if out.status.success() { Ok(bwrap) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

#[cfg(test)]
mod tests;
