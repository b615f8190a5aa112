//! Runtimes: which interpreter runs a function, its bootstrap, its environment and its context.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::EngineSettings;
use super::instance::{Launch, NodeSpares, SpareKind, StartError, Zygote};
use super::limits::Cgroups;
use super::network::FunctionNetwork;
use super::sandbox::{self, Sandbox, Uids};
use super::scheduling::{BatchScheduling, Scheduling};
use crate::snapshot::{FunctionSpec, Resolved};

/// The bootstraps, embedded so that the binary alone is enough.
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../runtimes/python/bootstrap.py");
pub const NODE_BOOTSTRAP: &str = include_str!("../../runtimes/node/bootstrap.js");

/// Runtimes fnlb runs on the host's Python 3.
pub const PYTHON_RUNTIMES: &[&str] = &["Python3.6", "Python3.7", "Python3.9", "Python3.10"];
/// Runtimes fnlb runs on the host's Node.js.
pub const NODE_RUNTIMES: &[&str] = &["Nodejs10.15", "Nodejs12.16", "Nodejs14.18", "Nodejs16.13", "Nodejs18.15"];

pub const CUSTOM_RUNTIME: &str = "CustomRuntime";

/// Every `Runtime` value fnlb runs (each given the host's interpreter).
pub fn supported() -> impl Iterator<Item = &'static str> {
    PYTHON_RUNTIMES.iter().chain(NODE_RUNTIMES).copied().chain([CUSTOM_RUNTIME])
}

/// The system-call filter's program, in the runtime directory (`/var/runtime` in a sandbox).
const SECCOMP_FILTER_FILE: &str = "seccomp.bpf";

/// The `PATH` instances see (contract 2.4).
const INSTANCE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The language family of a `Runtime` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Python,
    Node,
    /// `CustomRuntime`: the package's own `bootstrap` executable, speaking the SCF Runtime API.
    Custom,
}

impl Family {
    fn of(runtime: &str) -> Option<Family> {
        if PYTHON_RUNTIMES.contains(&runtime) {
            Some(Family::Python)
        } else if NODE_RUNTIMES.contains(&runtime) {
            Some(Family::Node)
        } else if runtime == CUSTOM_RUNTIME {
            Some(Family::Custom)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub struct Runtimes {
    /// The real Python 3 interpreter (never a shim), if the host has one.
    pub python: Option<PathBuf>,
    /// The host's `node`, if it has one.
    pub node: Option<PathBuf>,
    bootstrap_dir: PathBuf,
    scratch_root: PathBuf,
    socket_dir: PathBuf,
    pub sandbox: Sandbox,
    pub limits: Arc<Cgroups>,
    /// The functions' network namespace, where the host allows one.
    network: Option<Arc<FunctionNetwork>>,
    /// The users functions run as (with a sandbox, when fnlb is root).
    uids: std::sync::Mutex<Uids>,
    /// The system-call filter's program (`seccomp.rs`), on the host, under `bootstrap_dir`.
    seccomp_filter: PathBuf,
    /// The Python runtime's zygote (`prepare_zygote`), where Python instances are forked and, where it keeps them,
    /// Node.js spares are started.
    zygote: Option<Arc<ZygoteSlot>>,
    /// The scheduling policy instances start under (`schedule`).
    scheduling: Arc<Scheduling>,
}

/// How long a zygote may take to load the runtime.
const ZYGOTE_INIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot write the runtime files to {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Interpreters fnlb may be told to use instead of the ones it finds.
#[derive(Clone, Debug, Default)]
pub struct Interpreters {
    pub python: Option<PathBuf>,
    pub node: Option<PathBuf>,
}

// === impl Runtimes ===

impl Runtimes {
    /// Finds the interpreters, writes the embedded bootstraps under `<data-dir>/runtime` and makes the private
    /// directory for instance channels.
    pub fn prepare(
        data_dir: &Path,
        interpreters: Interpreters,
        sandbox: Sandbox,
        limits: Cgroups,
        network: Option<FunctionNetwork>,
        uid_base: u32,
    ) -> Result<Runtimes, RuntimeError> {
        let bootstrap_dir = data_dir.join("runtime");
        let scratch_root = data_dir.join("scratch");
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| RuntimeError::Write { path, source }
        };
        let write = |path: &Path, contents: &str| {
            std::fs::create_dir_all(path.parent().expect("bootstrap paths have a parent"))
                .and_then(|()| std::fs::write(path, contents))
                .map_err(err(path))
        };
        write(&bootstrap_dir.join("python/bootstrap.py"), PYTHON_BOOTSTRAP)?;
        write(&bootstrap_dir.join("node/bootstrap.js"), NODE_BOOTSTRAP)?;
        // The bootstrap is CommonJS whatever a package.json further up says.
        write(&bootstrap_dir.join("node/package.json"), "{\"type\": \"commonjs\"}\n")?;
        let seccomp_filter = bootstrap_dir.join(SECCOMP_FILTER_FILE);
        std::fs::write(&seccomp_filter, super::seccomp::program_bytes()).map_err(err(&seccomp_filter))?;
        let _ = std::fs::remove_dir_all(&scratch_root);
        std::fs::create_dir_all(&scratch_root).map_err(err(&scratch_root))?;
        // Socket paths are short (108 bytes), so the channel directory lives in the system's temporary directory,
        // private to fnlb.
        let socket_dir = std::env::temp_dir().join(format!(
            "fnlb-{}-{}",
            std::process::id(),
            crate::ids::random_string(b"abcdefghijklmnopqrstuvwxyz", 6)
        ));
        std::fs::create_dir_all(&socket_dir).map_err(err(&socket_dir))?;
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700)).map_err(err(&socket_dir))?;
        // An interpreter named in the configuration is used only if it is there.
        let given = |path: Option<PathBuf>, what: &str| match path {
            Some(p) if p.is_file() => Some(Some(p)),
            Some(p) => {
                tracing::warn!(path = %p.display(), "The configured {what} does not exist.");
                Some(None)
            }
            None => None,
        };
        let python = given(interpreters.python, "python3").unwrap_or_else(find_python);
        let node = given(interpreters.node, "node").unwrap_or_else(find_node);
        match &python {
            Some(p) => tracing::info!(python = %p.display(), "Python runtimes available."),
            None => tracing::warn!("No python3 found: Python functions cannot run."),
        }
        match &node {
            Some(p) => tracing::info!(node = %p.display(), "Node.js runtimes available."),
            None => tracing::warn!("No node found: Node.js functions cannot run."),
        }
        Ok(Runtimes {
            python,
            node,
            bootstrap_dir,
            scratch_root,
            socket_dir,
            sandbox,
            limits: Arc::new(limits),
            network: network.map(Arc::new),
            uids: std::sync::Mutex::new(Uids::new(uid_base)),
            seccomp_filter,
            zygote: None,
            scheduling: Scheduling::new(BatchScheduling::Always),
        })
    }

    /// Sets when instances run under `SCHED_BATCH`, and in `auto` starts moving them as the machine's load changes
    /// (before any instance or zygote starts).
    pub fn schedule(&mut self, mode: BatchScheduling) {
        self.scheduling = Scheduling::new(mode);
        self.scheduling.watch(&self.limits);
    }

    /// Prepares the Python zygote, where the host has Python and the settings ask for forks: every package under
    /// `code_root` is its to hand to its children. A forked instance gets a `/tmp` and a user of its own only from a
    /// zygote that may give them (fnlb as root): in a sandbox without it, each instance is a sandbox of its own.
    pub fn prepare_zygote(&mut self, code_root: &Path, settings: &EngineSettings) {
        let privileged = self.sandbox.drops_user();
        let (Some(python), true) = (&self.python, settings.zygote && (!self.sandbox.is_isolated() || privileged))
        else {
            return;
        };
        // The zygote's sandbox binds it: it must be there before the first package is.
        if let Err(e) = std::fs::create_dir_all(code_root) {
            tracing::warn!(error = %e, dir = %code_root.display(), "Cannot make the code directory: no zygote.");
            return;
        }
        let isolated = self.sandbox.is_isolated();
        let runtime_root = if isolated { PathBuf::from(sandbox::RUNTIME_ROOT) } else { self.bootstrap_dir.clone() };
        let mut env = pairs(&RUNTIME_ENV);
        env.extend(pairs(&PYTHON_ENV));
        env.extend(scratch_env(isolated));
        let launch = Launch {
            program: python.clone(),
            args: python_args(&runtime_root),
            sandbox: self.sandbox.clone(),
            code_dir: code_root.to_path_buf(),
            runtime_dir: self.bootstrap_dir.clone(),
            socket_dir: self.socket_dir.clone(),
            env,
            init_timeout: ZYGOTE_INIT_TIMEOUT,
            stray_output_limit: settings.max_log_bytes,
            runtime_api: false,
            limits: self.limits.clone(),
            memory_mb: super::instance::ZYGOTE_MEMORY_MB,
            max_processes: settings.max_processes_per_instance,
            max_open_files: settings.max_open_files_per_instance,
            mb_per_cpu: settings.mb_per_cpu,
            uid: None,
            network: self.network.clone(),
            seccomp_filter: (self.seccomp_filter.clone(), runtime_root.join(SECCOMP_FILTER_FILE)),
            zygote: None,
            spare: SpareKind::Python,
            scheduling: self.scheduling.clone(),
            scratch_root: (!isolated).then(|| self.scratch_root.clone()),
        };
        // Node.js spares need what the zygote gives its children only as root in a sandbox (a mount namespace and a
        // user of their own), and an interpreter the zygote's sandbox sees.
        let node = match &self.node {
            Some(node) if privileged && settings.node_spares > 0 && Sandbox::sees_everywhere(node) => {
                let mut env = pairs(&RUNTIME_ENV);
                env.extend(scratch_env(isolated));
                let bootstrap = runtime_root.join("node/bootstrap.js").display().to_string();
                Some(NodeSpares { program: node.clone(), args: vec![bootstrap], env, count: settings.node_spares })
            }
            Some(node) if privileged && settings.node_spares > 0 => {
                tracing::info!(node = %node.display(), "Node.js lies outside the system directories: no Node.js spares.");
                None
            }
            _ => None,
        };
        self.zygote = Some(Arc::new(ZygoteSlot { launch, node, zygote: tokio::sync::Mutex::new(None) }));
    }

    /// Starts the runtimes' zygotes now rather than at the first cold start.
    pub fn start_zygotes(&self) {
        if let Some(slot) = self.zygote.clone() {
            tokio::spawn(async move {
                if let Err(e) = slot.running().await {
                    tracing::warn!(error = ?e, "The Python zygote could not start: Python instances start on their own.");
                }
            });
        }
    }

    /// Whether a `Runtime` value can run on this host; `Err` says why not.
    pub fn check(&self, runtime: &str) -> Result<(), String> {
        match Family::of(runtime) {
            Some(Family::Python) if self.python.is_none() => {
                Err(format!("runtime {runtime} needs python3, which this host does not have"))
            }
            Some(Family::Node) if self.node.is_none() => {
                Err(format!("runtime {runtime} needs node, which this host does not have"))
            }
            Some(_) => Ok(()),
            None => Err(format!(
                "runtime {runtime} is not supported by this fnlb; supported: {}",
                supported().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// How to start an instance of a function whose code is unpacked in `code_dir`.
    pub fn launch(
        &self,
        spec: &FunctionSpec,
        version: &Resolved,
        code_dir: &Path,
        settings: &EngineSettings,
    ) -> Result<Launch, String> {
        let function = &spec.function;
        self.check(&function.runtime)?;
        // Paths as the instance sees them: the SCF layout inside a sandbox, the host's otherwise.
        let isolated = self.sandbox.is_isolated();
        let (code_root, runtime_root) = if isolated {
            (PathBuf::from(sandbox::CODE_ROOT), PathBuf::from(sandbox::RUNTIME_ROOT))
        } else {
            (code_dir.to_path_buf(), self.bootstrap_dir.clone())
        };
        let code_root = code_root.display().to_string();
        let mut env = base_env(spec, &version.label);
        env.extend([
            ("_HANDLER".to_string(), version.handler.clone()),
            ("USER_CODE_ROOT".to_string(), code_root.clone()),
        ]);
        let family = Family::of(&function.runtime).expect("checked above");
        let (program, args) = match family {
            Family::Python => {
                env.push(("PYTHONPATH".to_string(), format!("{code_root}:/opt")));
                env.extend(pairs(&PYTHON_ENV));
                (self.python.clone().expect("checked above"), python_args(&runtime_root))
            }
            Family::Custom => (PathBuf::from(&code_root).join("bootstrap"), Vec::new()),
            Family::Node => {
                env.push((
                    "NODE_PATH".to_string(),
                    format!("{code_root}:{code_root}/node_modules:/opt:/opt/node_modules"),
                ));
                let bootstrap = runtime_root.join("node/bootstrap.js").display().to_string();
                (self.node.clone().expect("checked above"), vec![bootstrap])
            }
        };
        env.extend(scratch_env(isolated));
        env.extend(version.config.environment.iter().cloned());
        let uid = self.sandbox.drops_user().then(|| {
            let key = &function.key;
            let key = format!("{}/{}/{}/{}", key.scope.uin, key.scope.region, key.namespace, key.name);
            self.uids.lock().unwrap_or_else(|p| p.into_inner()).of(&key)
        });
        let seccomp_inside = runtime_root.join(SECCOMP_FILTER_FILE);
        Ok(Launch {
            program,
            args,
            sandbox: self.sandbox.clone(),
            code_dir: code_dir.to_path_buf(),
            runtime_dir: self.bootstrap_dir.clone(),
            socket_dir: self.socket_dir.clone(),
            env,
            init_timeout: Duration::from_secs(u64::from(version.config.init_timeout_s)),
            stray_output_limit: settings.max_log_bytes,
            runtime_api: family == Family::Custom,
            limits: self.limits.clone(),
            memory_mb: version.config.memory_mb,
            max_processes: settings.max_processes_per_instance,
            mb_per_cpu: settings.mb_per_cpu,
            uid,
            network: self.network.clone(),
            seccomp_filter: (self.seccomp_filter.clone(), seccomp_inside),
            zygote: match family {
                Family::Python => self.zygote.clone(),
                Family::Node => self.zygote.clone().filter(|slot| slot.node.is_some()),
                Family::Custom => None,
            },
            spare: if family == Family::Node { SpareKind::Node } else { SpareKind::Python },
            max_open_files: settings.max_open_files_per_instance,
            scheduling: self.scheduling.clone(),
            scratch_root: (!isolated).then(|| self.scratch_root.clone()),
        })
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// A runtime's zygote: started with fnlb, and again whenever it is found dead.
pub struct ZygoteSlot {
    /// How the zygote starts: the runtime, no function.
    launch: Launch,
    /// How its keepers start Node.js spares, where the host allows them.
    node: Option<NodeSpares>,
    zygote: tokio::sync::Mutex<Option<Arc<Zygote>>>,
}

impl std::fmt::Debug for ZygoteSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZygoteSlot").field("program", &self.launch.program).finish_non_exhaustive()
    }
}

// === impl ZygoteSlot ===

impl ZygoteSlot {
    /// The zygote, started now if it is not running; its spares are forked in the background.
    pub async fn running(&self) -> Result<Arc<Zygote>, StartError> {
        let mut slot = self.zygote.lock().await;
        if let Some(zygote) = slot.as_ref().filter(|z| z.is_alive()) {
            return Ok(zygote.clone());
        }
        *slot = None;
        let zygote = Zygote::start(crate::ids::next_instance_id(), &self.launch, self.node.clone()).await?;
        zygote.replenish();
        tracing::info!("The Python zygote is ready.");
        *slot = Some(zygote.clone());
        Ok(zygote)
    }
}

/// What every process of a runtime gets, a zygote included.
const RUNTIME_ENV: [(&str, &str); 3] = [("PATH", INSTANCE_PATH), ("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8")];
/// What the Python runtime gets besides.
const PYTHON_ENV: [(&str, &str); 1] = [("PYTHONDONTWRITEBYTECODE", "x")];

/// The Python interpreter's arguments: isolated mode, no bytecode written, the bootstrap.
fn python_args(runtime_root: &Path) -> Vec<String> {
    vec!["-I".to_string(), "-B".to_string(), runtime_root.join("python/bootstrap.py").display().to_string()]
}

fn pairs(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// In a sandbox, `HOME` and `TMPDIR` are the instance's `/tmp`.
fn scratch_env(isolated: bool) -> Vec<(String, String)> {
    if isolated { pairs(&[("HOME", sandbox::SCRATCH), ("TMPDIR", sandbox::SCRATCH)]) } else { Vec::new() }
}

/// The SCF variables every instance gets (contract 2.4).
fn base_env(spec: &FunctionSpec, version: &str) -> Vec<(String, String)> {
    let f = &spec.function;
    let mut env = pairs(&RUNTIME_ENV);
    env.extend(pairs(&[
        ("TENCENTCLOUD_RUNENV", "SCF"),
        ("TENCENTCLOUD_TZ", "UTC"),
        ("SCF_RUNTIME", &f.runtime),
        ("SCF_FUNCTIONNAME", &f.key.name),
        ("SCF_FUNCTIONVERSION", version),
        ("SCF_NAMESPACE", &f.key.namespace),
        ("TENCENTCLOUD_REGION", &f.key.scope.region),
        ("TENCENTCLOUD_APPID", &spec.app_id),
        ("TENCENTCLOUD_UIN", &f.key.scope.uin),
    ]));
    env
}

/// The context members every invocation of this function shares (all but `request_id`), as JSON members.
pub fn context_tail(spec: &FunctionSpec, version: &Resolved) -> String {
    let f = &spec.function;
    let config = &version.config;
    let mut environment = serde_json::Map::new();
    environment.insert("SCF_NAMESPACE".to_string(), f.key.namespace.clone().into());
    let mut environ = vec![format!("SCF_NAMESPACE={}", f.key.namespace)];
    for (k, v) in &config.environment {
        environment.insert(k.clone(), v.clone().into());
        environ.push(format!("{k}={v}"));
    }
    let context = serde_json::json!({
        "memory_limit_in_mb": config.memory_mb,
        "time_limit_in_ms": u64::from(config.timeout_s) * 1000,
        "environment": serde_json::Value::Object(environment).to_string(),
        "environ": environ.join(";"),
        "function_version": version.label,
        "function_name": f.key.name,
        "namespace": f.key.namespace,
        "tencentcloud_region": f.key.scope.region,
        "tencentcloud_appid": spec.app_id,
        "tencentcloud_uin": f.key.scope.uin,
    });
    let text = context.to_string();
    // Drop the braces: the members are spliced after `"request_id":"…",`.
    text[1..text.len() - 1].to_string()
}

/// The host's `node`: Debian's, else the first on `PATH`.
fn find_node() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/node");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join("node")).find(|p| p.is_file())
}

/// The host's real Python 3: Debian's, else whatever `python3` on `PATH` reports as its executable (so that a
/// version-manager shim is resolved once, not run per instance).
fn find_python() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        return Some(debian);
    }
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}
