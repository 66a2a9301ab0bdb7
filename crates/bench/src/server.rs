//! A `llama-server` child process bound to a loopback port, killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BenchError, PeerBins};

/// How to start `llama-server`.
#[derive(Debug, Clone)]
pub struct PeerServerConfig {
    pub model: PathBuf,
    /// Threads for both generation and batch/prompt processing (`-t`, `-tb`).
    pub threads: u32,
    /// Server slots, i.e. concurrent sequences (`-np`).
    pub parallel: u32,
    /// Total KV cache size in tokens, shared by all slots (`-c` with `--kv-unified`).
    pub ctx: u32,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How long to wait for `/health` to report ok (model load + warmup).
    pub health_timeout: Duration,
    /// Extra flags appended verbatim.
    pub extra_args: Vec<String>,
}

impl PeerServerConfig {
    pub fn new(model: impl Into<PathBuf>, threads: u32, parallel: u32, ctx: u32) -> Self {
        Self {
            model: model.into(),
            threads,
            parallel,
            ctx,
            port: 0,
            health_timeout: Duration::from_secs(180),
            extra_args: Vec::new(),
        }
    }

    /// The full argument list given to `llama-server`, for `port`.
    ///
    /// - `--host 127.0.0.1`: loopback only.
    /// - `-t N -tb N`: same thread count for decode and prompt batches, as `llama-bench -t N`.
    /// - `-np P -c C --kv-unified`: P slots sharing one KV pool of C tokens, so any
    ///   one request may use the whole context (like a paged/unified KV cache),
    ///   rather than each slot getting a fixed C/P slice.
    /// - `-cb`: continuous batching (the default, stated so a changed default can't skew results).
    /// - `--no-webui`: serve the API only.
    pub fn args(&self, port: u16) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-m".into(),
            self.model.display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "-t".into(),
            self.threads.to_string(),
            "-tb".into(),
            self.threads.to_string(),
            "-np".into(),
            self.parallel.max(1).to_string(),
            "-c".into(),
            self.ctx.to_string(),
            "--kv-unified".into(),
            "-cb".into(),
            "--no-webui".into(),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A running `llama-server`. Dropping it kills the process.
#[derive(Debug)]
pub struct PeerServer {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl PeerServer {
    /// Start `llama-server` with `-np parallel -c ctx` on 127.0.0.1 (`port` 0 = any free
    /// port) and wait until `/health` is ok.
    pub fn start(
        bins: &PeerBins,
        model: &Path,
        threads: u32,
        parallel: u32,
        ctx: u32,
        port: u16,
    ) -> Result<PeerServer, BenchError> {
        let mut cfg = PeerServerConfig::new(model, threads, parallel, ctx);
        cfg.port = port;
        Self::start_with(bins, &cfg)
    }

    /// Start with a full config.
    pub fn start_with(bins: &PeerBins, cfg: &PeerServerConfig) -> Result<PeerServer, BenchError> {
        if !cfg.model.is_file() {
            return Err(BenchError::PeerFailed {
                tool: "llama-server".into(),
                message: format!("no model at {}", cfg.model.display()),
            });
        }
        let port = if cfg.port == 0 { free_port()? } else { cfg.port };
        let log = tempfile::Builder::new()
            .prefix("rightsize-peer-server-")
            .suffix(".log")
            .tempfile()?;
        let child = Command::new(&bins.llama_server)
            .args(cfg.args(port))
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .map_err(|e| BenchError::PeerFailed {
                tool: "llama-server".into(),
                message: format!("spawn {}: {e}", bins.llama_server.display()),
            })?;
        tracing::debug!(pid = child.id(), port, "llama-server started");
        let mut server = PeerServer { child, port, log };
        server.wait_healthy(cfg.health_timeout)?;
        Ok(server)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(BenchError::PeerFailed {
                    tool: "llama-server".into(),
                    message: format!("exited with {status} before becoming healthy:\n{}", self.log_tail(20)),
                });
            }
            if http_get_status(self.port, "/health") == Some(200) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(BenchError::ServerTimeout {
                    port: self.port,
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: format!(":\n{}", self.log_tail(20)),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the base for `/v1/...` requests.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Process id, e.g. for [`crate::peak_rss_of`].
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the server's stdout/stderr go (deleted on drop).
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kill the server and wait for it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
}

/// Status code of a plain HTTP/1.1 GET to 127.0.0.1:port, or None if unreachable.
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = std::str::from_utf8(&buf[..got]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_bind_loopback_and_share_kv() {
        let cfg = PeerServerConfig::new("/m.gguf", 2, 16, 4096);
        let a = cfg.args(8081).join(" ");
        assert_eq!(
            a,
            "-m /m.gguf --host 127.0.0.1 --port 8081 -t 2 -tb 2 -np 16 -c 4096 --kv-unified -cb --no-webui"
        );
    }

    #[test]
    fn health_probe_reads_status() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        assert_eq!(http_get_status(port, "/health"), Some(503));
        t.join().unwrap();
        assert_eq!(http_get_status(free_port().unwrap(), "/health"), None);
    }
}
