//! A throwaway PostgreSQL server for the cluster tests: Debian's `postgresql` package, a cluster made with
//! `initdb` in a temporary directory, its own port and socket directory, run as the unprivileged `postgres` user
//! when the tests run as root, so that a test can kill it (as a crash would) and start it again.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Server options besides the port and addresses (TLS).
    options: String,
}

impl Pg {
    /// Makes and starts a new database server.
    pub fn start() -> Pg {
        Pg::start_with(None)
    }

    /// Makes and starts a new database server that also takes TLS connections, with this certificate and key.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Pg {
        Pg::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Pg {
        let bin = server_binaries();
        let dir = tempfile::Builder::new().prefix("fnlb-pg").tempdir().expect("a temporary directory");
        let root = rustix::process::geteuid().is_root();
        if root {
            run(Command::new("chown").args(["postgres:postgres"]).arg(dir.path()), "chown");
        }
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let mut pg = Pg { dir, bin, port, options: String::new() };
        let data = pg.data();
        pg.as_server(&["initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", &data]);
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            let (cert_file, key_file) = (pg.dir.path().join("server.crt"), pg.dir.path().join("server.key"));
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            if root {
                run(Command::new("chown").args(["postgres:postgres"]).arg(&cert_file).arg(&key_file), "chown");
            }
            pg.options =
                format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", cert_file.display(), key_file.display());
        }
        pg.start_again();
        pg
    }

    /// The URL fnlb's `--store` takes.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server as a crash would (`pg_ctl -m immediate`): no checkpoint, clients cut off.
    pub fn kill(&self) {
        let data = self.data();
        self.as_server(&["pg_ctl", "-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server (again) on its port; returns once it accepts connections.
    pub fn start_again(&self) {
        let data = self.data();
        let dir = self.dir.path().display().to_string();
        let options = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off{}", self.port, self.options);
        let log = format!("{dir}/server.log");
        self.as_server(&["pg_ctl", "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start"]);
    }

    /// Runs one SQL statement with psql; its output, unaligned without headers.
    pub fn sql(&self, statement: &str) -> String {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-tAqc"])
            .arg(statement)
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql {statement}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the server's programs.
    fn as_server(&self, args: &[&str]) -> Output {
        run(self.server_command(args[0]).args(&args[1..]).current_dir(self.dir.path()), args[0])
    }

    /// One of the server's programs, run as `postgres` when the tests run as root.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if !rustix::process::geteuid().is_root() {
            return Command::new(program);
        }
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.server_command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{what} cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The directory of Debian's PostgreSQL server programs (`initdb`, `pg_ctl`), newest version first.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).filter(|bin| bin.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().filter(|bin| Path::new(bin).join("pg_ctl").exists()).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: the cluster tests need Debian's \
             `postgresql` package (apt-get install postgresql; .ci/run installs it)"
        )
    })
}
