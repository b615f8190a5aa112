//! Access logs: one line per request of a layer-7 listener, written by one task off the request path (a full
//! buffer drops lines rather than slowing requests, and counts them). To stdout, or to one file per listener in a
//! directory, rotated by size (`<listener>.log`, then `.1` … `.N`); SIGHUP reopens the files (after an outside
//! rotation).
//!
//! A line, in logfmt: `time=2026-11-28T03:58:00.123Z client=127.0.0.1:50112 vip=127.0.0.10:8443
//! host=hello.fnlb.test method=GET path=/ status=200 bytes=44 duration_ms=1.234 load_balancer=lb-… listener=lbl-…
//! rule=loc-… target=function:default/hello-clb request_id=…`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Where access logs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// One file per listener in this directory.
    Directory(PathBuf),
}

#[derive(Clone, Debug)]
pub struct AccessLogSettings {
    pub destination: Destination,
    /// A file past this size is rotated.
    pub max_bytes: u64,
    /// Rotated files kept per listener.
    pub files: usize,
}

pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_FILES: usize = 5;
/// Lines waiting to be written; past it, lines are dropped (and counted).
pub const BUFFERED_LINES: usize = 65_536;

/// One request, as its line tells it.
pub struct Entry<'a> {
    pub client: std::net::SocketAddr,
    pub vip: std::net::SocketAddr,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub duration_ms: f64,
    pub lb_id: &'a str,
    pub listener_id: &'a str,
    pub rule: Option<&'a str>,
    pub target: &'a str,
    pub request_id: &'a str,
}

pub struct AccessLog {
    lines: mpsc::Sender<(String, String)>,
    pub dropped: AtomicU64,
    reopen: std::sync::Arc<AtomicBool>,
}

impl AccessLog {
    /// Starts the writer task.
    pub fn start(settings: AccessLogSettings) -> AccessLog {
        let (tx, rx) = mpsc::channel(BUFFERED_LINES);
        let reopen = std::sync::Arc::new(AtomicBool::new(false));
        tokio::spawn(write_lines(settings, rx, reopen.clone()));
        AccessLog { lines: tx, dropped: AtomicU64::new(0), reopen }
    }

    /// Reopens the files before the next line (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    pub fn record(&self, e: &Entry<'_>) {
        let mut line = String::with_capacity(256);
        let time = time::OffsetDateTime::now_utc();
        let _ = write!(
            line,
            "time={:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z client={} vip={} host={} method={} path={} status={} bytes={} \
             duration_ms={:.3} load_balancer={} listener={} rule={} target={} request_id={}",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second(),
            time.millisecond(),
            e.client,
            e.vip,
            quoted(e.host),
            e.method,
            quoted(e.path),
            e.status,
            e.bytes.map_or("-".to_string(), |b| b.to_string()),
            e.duration_ms,
            e.lb_id,
            e.listener_id,
            e.rule.unwrap_or("-"),
            quoted(e.target),
            e.request_id,
        );
        if self.lines.try_send((e.listener_id.to_string(), line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A value as logfmt writes it: bare when it can be, quoted (with `"` and `\` escaped) otherwise.
fn quoted(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '"', '\\', '=', '\n', '\t']) {
        return value.to_string();
    }
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

struct Open {
    file: std::io::BufWriter<std::fs::File>,
    size: u64,
    last_write: std::time::Instant,
}

/// A file not written for this long is closed (its listener may be gone); the next line opens it again.
const IDLE_FILE: std::time::Duration = std::time::Duration::from_secs(600);

async fn write_lines(
    settings: AccessLogSettings,
    mut rx: mpsc::Receiver<(String, String)>,
    reopen: std::sync::Arc<AtomicBool>,
) {
    let mut files: HashMap<String, Open> = HashMap::new();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    while let Some((listener, line)) = rx.recv().await {
        if reopen.swap(false, Ordering::Relaxed) {
            files.clear();
        }
        let mut batch = vec![(listener, line)];
        // Whatever else is waiting goes in the same write.
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let written = tokio::task::block_in_place(|| -> std::io::Result<()> {
            for (listener, line) in batch {
                match &settings.destination {
                    Destination::Stdout => writeln!(stdout, "{line}")?,
                    Destination::Directory(dir) => {
                        let path = dir.join(format!("{listener}.log"));
                        let open = match files.entry(listener) {
                            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                            std::collections::hash_map::Entry::Vacant(v) => v.insert(open(&path)?),
                        };
                        if open.size >= settings.max_bytes {
                            open.file.flush()?;
                            rotate(&path, settings.files)?;
                            *open = self::open(&path)?;
                        }
                        writeln!(open.file, "{line}")?;
                        open.size += line.len() as u64 + 1;
                        open.last_write = std::time::Instant::now();
                    }
                }
            }
            stdout.flush()?;
            for open in files.values_mut() {
                open.file.flush()?;
            }
            files.retain(|_, open| open.last_write.elapsed() < IDLE_FILE);
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "Cannot write the access log.");
            files.clear();
        }
    }
}

fn open(path: &std::path::Path) -> std::io::Result<Open> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok(Open { file: std::io::BufWriter::new(file), size, last_write: std::time::Instant::now() })
}

/// `x.log` → `x.log.1` → … → `x.log.N` (the oldest goes).
fn rotate(path: &std::path::Path, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(quoted("/a/b"), "/a/b");
        assert_eq!(quoted("/a b"), "\"/a b\"");
        assert_eq!(quoted("x=\"y\""), "\"x=\\\"y\\\"\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.log");
        for round in 0..4 {
            std::fs::write(&path, format!("{round}")).unwrap();
            rotate(&path, 2).unwrap();
        }
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(dir.path().join("l.log.1")).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(dir.path().join("l.log.2")).unwrap(), "2");
        assert!(!dir.path().join("l.log.3").exists());
    }
}
