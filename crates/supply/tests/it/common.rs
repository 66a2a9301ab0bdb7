//! Test helpers: a loopback HTTP/1.1 server that logs requests, supports
//! `Range`, and can cut a response short; fake wheels and PyPI JSON.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Clone)]
struct Route {
    status: u16,
    body: Vec<u8>,
    /// Cut the next N responses after this many body bytes.
    cut_after: Option<(usize, usize)>,
    /// Ignore `Range` (always answer 200 with the whole body).
    no_ranges: bool,
    /// Wait this long before answering.
    delay_ms: u64,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Request>,
}

/// A loopback server; lives until the test process ends.
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || handle(conn, st));
            }
        });
        Server { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Serves `body` at `path` with 200 (and 206 for ranges).
    pub fn add(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.add_status(path, 200, body);
    }

    pub fn add_status(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.state.lock().unwrap().routes.insert(
            path.to_string(),
            Route {
                status,
                body: body.into(),
                cut_after: None,
                no_ranges: false,
                delay_ms: 0,
            },
        );
    }

    /// The next `times` responses for `path` declare the full length but close
    /// the connection after `bytes` body bytes.
    pub fn cut(&self, path: &str, bytes: usize, times: usize) {
        self.state.lock().unwrap().routes.get_mut(path).unwrap().cut_after = Some((bytes, times));
    }

    /// `path` ignores `Range` headers, like some servers do.
    pub fn no_ranges(&self, path: &str) {
        self.state.lock().unwrap().routes.get_mut(path).unwrap().no_ranges = true;
    }

    /// `path` answers only after `ms` milliseconds.
    pub fn delay(&self, path: &str, ms: u64) {
        self.state.lock().unwrap().routes.get_mut(path).unwrap().delay_ms = ms;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
}

fn handle(mut conn: TcpStream, st: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let route = {
        let mut s = st.lock().unwrap();
        s.log.push(Request {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
        });
        let r = s.routes.get_mut(&path).map(|r| {
            let snapshot = r.clone();
            if let Some((n, times)) = r.cut_after {
                r.cut_after = if times > 1 { Some((n, times - 1)) } else { None };
            }
            snapshot
        });
        r
    };
    let Some(route) = route else {
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
        return;
    };
    if route.delay_ms > 0 {
        thread::sleep(std::time::Duration::from_millis(route.delay_ms));
    }
    let len = route.body.len();
    let range = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| !route.no_ranges);
    let (status, body, extra): (u16, &[u8], String) = match (route.status, range) {
        (200, Some(start)) if start >= len => (416, &[], format!("Content-Range: bytes */{len}\r\n")),
        (200, Some(start)) => (
            206,
            &route.body[start..],
            format!("Content-Range: bytes {start}-{}/{len}\r\n", len - 1),
        ),
        (s, _) => (s, &route.body[..], String::new()),
    };
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    match route.cut_after {
        Some((n, _)) if n < body.len() => {
            let _ = conn.write_all(&body[..n]);
            let _ = conn.flush();
            let _ = conn.shutdown(Shutdown::Both);
        }
        _ => {
            let _ = conn.write_all(body);
        }
    }
    // Drain anything left so the client sees a clean close.
    let mut sink = [0u8; 64];
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(50)));
    let _ = conn.read(&mut sink);
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A wheel (zip) holding `files` (name → bytes), deflated.
pub fn make_wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
}

/// A file listed by the fake index.
pub struct IndexFile<'a> {
    pub filename: &'a str,
    pub url: String,
    pub sha256: String,
    pub size: usize,
}

fn files_json(files: &[IndexFile<'_>]) -> serde_json::Value {
    serde_json::Value::Array(
        files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "filename": f.filename,
                    "url": f.url,
                    "digests": {"sha256": f.sha256, "md5": "x"},
                    "size": f.size,
                    "packagetype": if f.filename.ends_with(".whl") { "bdist_wheel" } else { "sdist" },
                })
            })
            .collect(),
    )
}

/// `/pypi/<name>/json` body.
pub fn project_json(name: &str, version: &str, files: &[IndexFile<'_>]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "info": {"name": name, "version": version},
        "releases": { version: files_json(files), "0.0.1": [] },
    }))
    .unwrap()
}

/// `/pypi/<name>/<version>/json` body.
pub fn version_json(name: &str, version: &str, files: &[IndexFile<'_>]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "info": {"name": name, "version": version},
        "urls": files_json(files),
    }))
    .unwrap()
}

/// Publishes `wheel` as `name==version` on the fake index, under the project JSON
/// only (the per-version JSON 404s, as on the real network). Returns the wheel's file name.
pub fn publish(server: &Server, name: &str, version: &str, wheel: &[u8]) -> String {
    publish_with_sha(server, name, version, wheel, &sha256_hex(wheel))
}

/// Like [`publish`], with the digest the index advertises.
pub fn publish_with_sha(server: &Server, name: &str, version: &str, wheel: &[u8], sha: &str) -> String {
    let filename = format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"));
    let url_path = format!("/files/{filename}");
    server.add(&url_path, wheel.to_vec());
    let files = [IndexFile {
        filename: &filename,
        url: server.url(&url_path),
        sha256: sha.to_string(),
        size: wheel.len(),
    }];
    server.add(&format!("/pypi/{name}/json"), project_json(name, version, &files));
    filename
}

/// Deterministic pseudo-random bytes that start with the GGUF magic.
pub fn fake_gguf(len: usize, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"GGUF");
    let mut x = seed as u32 | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x & 0xff) as u8);
    }
    v.truncate(len);
    v
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
