//! The functions' network: one namespace per fnlb, apart from the host's, that every instance joins.
//!
//! A function sees its own loopback and, with `--function-egress allow` (the default, as SCF functions reach the
//! public network), a veth pair to the host through which it reaches other hosts by NAT. An nftables table of
//! fnlb's own drops whatever functions send to the host itself (any of its addresses: the host's loopback services,
//! fnlb's API, admin and listeners) and to link-local, loopback and multicast addresses (other fnlb processes'
//! functions and cloud metadata services among them), and anything that would enter the namespace other than
//! answers. A port a function binds is the namespace's, never the host's. With `--function-egress none` the
//! namespace has a loopback only.
//!
//! It needs root, iproute2's `ip` and, for egress, `nft` (nftables) and IPv4 forwarding (switched on when off, as
//! container engines do). Without them functions share the host's network and fnlb says so at start; asked for
//! `none` it refuses to start instead.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Where functions may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Egress {
    /// Other hosts, through NAT (never this host).
    Allow,
    /// Nowhere: the namespace's loopback only.
    None,
}

/// The link-local block the veth pairs' /30s are taken from, each fnlb its own.
const LINK_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 0);
/// The /30 holding the metadata address cloud hosts serve (169.254.169.254) is never taken.
const METADATA_BLOCK: u32 = (169 << 8 | 252) / 4;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("functions cannot get a network of their own here: {0}")]
    Unavailable(String),
    #[error("cannot set up the functions' network: `{command}` failed: {output}")]
    Command { command: String, output: String },
}

/// The namespace functions run in, removed with it.
#[derive(Debug)]
pub struct FunctionNetwork {
    name: String,
    netns: Arc<OwnedFd>,
    /// The host's end of the veth pair and the /30's first address, with egress.
    host_side: Option<(String, Ipv4Addr)>,
}

// === impl FunctionNetwork ===

impl FunctionNetwork {
    /// Makes the namespace (and, with egress, its link and the table), after removing those of fnlb processes that
    /// are gone. `Ok(None)` when this host cannot (not root, no `ip` or `nft`) and functions may share its network.
    pub fn setup(egress: Egress) -> Result<Option<FunctionNetwork>, NetworkError> {
        match Self::try_setup(egress) {
            Ok(network) => Ok(Some(network)),
            Err(NetworkError::Unavailable(why)) if egress == Egress::Allow => {
                tracing::warn!(reason = %why, "Functions share the host's network: they can reach its loopback services and bind its ports.");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn try_setup(egress: Egress) -> Result<FunctionNetwork, NetworkError> {
        let unavailable = |why: &str| NetworkError::Unavailable(why.to_string());
        if !rustix::process::geteuid().is_root() {
            return Err(unavailable("fnlb does not run as root"));
        }
        if !tool("ip") {
            return Err(unavailable("iproute2's ip is not installed"));
        }
        if egress == Egress::Allow && !tool("nft") {
            return Err(unavailable("nftables' nft is not installed"));
        }
        remove_stale();
        let pid = std::process::id();
        let name = format!("fnlb-{pid}");
        run("ip", &["netns", "add", &name])?;
        let mut network = FunctionNetwork { name: name.clone(), netns: Arc::new(open_netns(&name)?), host_side: None };
        run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        if egress == Egress::Allow {
            let (host_if, inner_if) = (format!("fnlb{pid}h"), format!("fnlb{pid}n"));
            let base = free_block(pid)?;
            let (gateway, inner) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
            run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &inner_if, "netns", &name])?;
            network.host_side = Some((host_if.clone(), gateway));
            run("ip", &["addr", "add", &format!("{gateway}/30"), "dev", &host_if])?;
            run("ip", &["link", "set", &host_if, "up"])?;
            run("ip", &["-n", &name, "addr", "add", &format!("{inner}/30"), "dev", &inner_if])?;
            run("ip", &["-n", &name, "link", "set", &inner_if, "up"])?;
            run("ip", &["-n", &name, "route", "add", "default", "via", &gateway.to_string()])?;
            nft(&ruleset(&name, &host_if, Ipv4Addr::from(base)))?;
            enable_forwarding();
        }
        tracing::info!(namespace = %name, ?egress, "Functions run in a network namespace of their own.");
        Ok(network)
    }

    /// The namespace, for instances to join between `fork` and `exec`.
    pub fn netns(&self) -> Arc<OwnedFd> {
        self.netns.clone()
    }

    /// A listener on the namespace's loopback (a free port), where only functions can connect.
    pub fn bind_loopback(&self) -> std::io::Result<TcpListener> {
        let netns = self.netns.clone();
        // A thread of its own enters the namespace (a socket stays in the namespace it was made in).
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&*netns),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
        })
    }
}

impl Drop for FunctionNetwork {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// The table of one fnlb's functions: nothing to the host, nothing to local and link-local addresses, nothing in
/// but answers, and NAT out.
fn ruleset(name: &str, host_if: &str, block: Ipv4Addr) -> String {
    format!(
        "table inet {name} {{
  chain input {{ type filter hook input priority filter - 10; policy accept;
    iifname \"{host_if}\" drop
  }}
  chain forward {{ type filter hook forward priority filter - 10; policy accept;
    iifname \"{host_if}\" meta nfproto ipv6 drop
    iifname \"{host_if}\" ip daddr {{ 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3 }} drop
    oifname \"{host_if}\" ct state established,related accept
    oifname \"{host_if}\" drop
  }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr {block}/30 oifname != \"{host_if}\" masquerade
  }}
}}
"
    )
}

/// A /30 of the link-local block no interface of the host is in, starting from one the pid picks.
fn free_block(pid: u32) -> Result<u32, NetworkError> {
    let taken = String::from_utf8_lossy(&output("ip", &["-o", "-4", "addr", "show"])?).into_owned();
    let blocks = 1u32 << 14;
    (0..blocks)
        .map(|i| (pid + i) % blocks)
        .filter(|b| *b != 0 && *b != METADATA_BLOCK && *b != blocks - 1)
        .map(|b| u32::from(LINK_LOCAL) + b * 4)
        .find(|base| (0..4).all(|i| !taken.contains(&format!(" {}/", Ipv4Addr::from(base + i)))))
        .ok_or_else(|| NetworkError::Unavailable("no free link-local /30 for the functions' link".to_string()))
}

fn enable_forwarding() {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
        match std::fs::write(path, "1") {
            Ok(()) => tracing::info!("IPv4 forwarding switched on for the functions' egress."),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot switch on IPv4 forwarding: functions cannot reach other hosts.")
            }
        }
    }
}

/// Removes the namespaces and tables of fnlb processes that are gone (killed without cleaning up).
fn remove_stale() {
    let listed = output("ip", &["netns", "list"]).unwrap_or_default();
    let tables = output("nft", &["list", "tables"]).unwrap_or_default();
    let names = String::from_utf8_lossy(&listed).into_owned() + &String::from_utf8_lossy(&tables);
    for word in names.split_whitespace() {
        let Some(pid) = word.strip_prefix("fnlb-").filter(|p| p.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            remove(word);
        }
    }
}

/// Removes a namespace (its veth pair goes with it) and its table.
fn remove(name: &str) {
    let _ = Command::new("ip").args(["netns", "delete", name]).output();
    if tool("nft") {
        let _ = Command::new("nft").args(["delete", "table", "inet", name]).output();
    }
}

fn open_netns(name: &str) -> Result<OwnedFd, NetworkError> {
    let path = Path::new("/run/netns").join(name);
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| NetworkError::Command { command: format!("open {}", path.display()), output: e.to_string() })
}

fn tool(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|dir| Path::new(dir).join(name).is_file())
}

fn output(program: &str, args: &[&str]) -> Result<Vec<u8>, NetworkError> {
    let out = Command::new(program).args(args).output().map_err(|e| NetworkError::Command {
        command: format!("{program} {}", args.join(" ")),
        output: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(NetworkError::Command {
            command: format!("{program} {}", args.join(" ")),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), NetworkError> {
    output(program, args).map(drop)
}

fn nft(ruleset: &str) -> Result<(), NetworkError> {
    use std::io::Write;
    let failed = |e: std::io::Error| NetworkError::Command { command: "nft -f -".to_string(), output: e.to_string() };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(failed)?;
    child.stdin.take().expect("stdin is piped").write_all(ruleset.as_bytes()).map_err(failed)?;
    let out = child.wait_with_output().map_err(failed)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Command {
            command: "nft -f -".to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
