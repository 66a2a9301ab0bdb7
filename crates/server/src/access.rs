//! Who may reach the server at all, before any API key is looked at, and the per-start admin
//! token of the local CLI.
//!
//! Why: with `open_local` a loopback server answers without a key, so every web page the user
//! opens is a potential client. A cross-site `POST` needs no CORS permission to *act* (unload
//! a model, burn CPU), and DNS rebinding (a name of the attacker's that resolves to 127.0.0.1)
//! lets a page *read* the answers too — Ollama's CVE-2024-28224. So, on every route
//! (`/health` and `/metrics` included), [`gate`] refuses:
//! - a `Host` that is not a loopback name or address (`localhost`, 127.0.0.0/8, `[::1]`, any
//!   port) or in `allowed_hosts` → 403 (rebinding always arrives under the attacker's name);
//! - an `Origin` (browsers send one on every cross-site request and on every `POST`) that is
//!   not in `allowed_origins` → 403; allowed origins get CORS headers and preflights;
//! - a body that is not JSON (`Content-Type: application/json` or `…+json`) → 415: a page can
//!   send `text/plain` and form bodies without a preflight, but never JSON.
//!
//! A keyless caller gets the `inference` scope only. So that `rightsize ps/load/unload` work
//! on a local server with no set-up (as Jupyter's token does), each server start makes a
//! random [`AdminToken`], accepted as an admin bearer by that process only, and writes it to
//! `<cache>/admin-token-<port>` (mode 0600, atomically; removed when the server stops). The
//! CLI reads it when it talks to a loopback URL without `--api-key`. One file per port:
//! several servers (tests, `rightsize bench serve`) may share one cache.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Refuse requests a web page could have made (see the module docs).
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let cfg = &state.cfg;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if host_allowed(&h, &cfg.allowed_hosts) => {}
        Some(h) => {
            return Err(ApiError::forbidden(format!(
                "Host `{h}` is not allowed: this server answers to localhost, 127.0.0.1 and [::1] and to the names in `allowed_hosts`"
            ))
            .code("host_not_allowed"))
        }
        None => return Err(ApiError::forbidden("a `Host` header is required").code("host_not_allowed")),
    }
    let origin = match req.headers().get(header::ORIGIN) {
        None => None,
        Some(o) => {
            let o = o.to_str().unwrap_or("");
            if !origin_allowed(o, &cfg.allowed_origins) {
                return Err(ApiError::forbidden(format!(
                    "cross-site request from `{o}` refused: add that origin to `allowed_origins` to let its pages call this server"
                ))
                .code("origin_not_allowed"));
            }
            Some(o.to_owned())
        }
    };
    if let Some(o) = &origin {
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return Ok(preflight(o, req.headers()));
        }
    }
    if has_body(req.headers()) && !is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type(
            "request bodies must be JSON: send `Content-Type: application/json`",
        ));
    }
    let mut resp = next.run(req).await;
    if let Some(o) = origin {
        if let Ok(v) = HeaderValue::from_str(&o) {
            resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            resp.headers_mut()
                .append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
    Ok(resp)
}

/// The answer to an allowed origin's CORS preflight.
fn preflight(origin: &str, headers: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.append(header::VARY, HeaderValue::from_static("origin"));
    resp
}

/// The host part of a `Host` value: `[::1]:8080` → `::1`, `localhost:8080` → `localhost`;
/// `None` when it is not a host with an optional numeric port.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(numeric)).then_some(inner);
    }
    let name = match host.rsplit_once(':') {
        Some((h, port)) if numeric(port) => h,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty() && !name.contains(':')).then_some(name)
}

/// Whether a `Host` value names this server: loopback, or an `allowed_hosts` entry (a name,
/// which matches with any port, or `name:port`, or `*` for any host).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(name) = host_name(host) else { return false };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(name) || a.eq_ignore_ascii_case(host.trim()))
}

/// Whether an `Origin` value is one of `allowed_origins` (`scheme://host[:port]`, compared
/// without case and without a trailing `/`). `null` never is.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let o = origin.trim().trim_end_matches('/');
    o != "null" && !o.is_empty() && allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
}

/// Whether a request carries a body.
fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `application/json` or `application/…+json`, with any parameters.
fn is_json(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A per-start admin bearer: 32 random bytes as hex, accepted by the process that made it.
pub struct AdminToken {
    secret: String,
    /// Where its file goes: the cache directory.
    dir: PathBuf,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A fresh token whose file will go in `dir` (the cache directory).
    pub fn new(dir: &Path) -> Self {
        Self {
            secret: hex::encode(rand::random::<[u8; 32]>()),
            dir: dir.to_owned(),
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this token (in time independent of where they differ).
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Where the token file of the server on `port` goes.
    pub fn path(&self, port: u16) -> PathBuf {
        token_path(&self.dir, port)
    }

    /// Write the token file of the server listening on `port` (see [`token_path`]).
    pub(crate) fn write(&self, port: u16) -> std::io::Result<TokenFile> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(port);
        let tmp = self.dir.join(format!(
            ".admin-token-{port}.{}.{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(self.secret.as_bytes())?;
            f.sync_all()
        });
        match written.and_then(|_| std::fs::rename(&tmp, &path)) {
            Ok(()) => Ok(TokenFile {
                path,
                secret: self.secret.clone(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// `<cache>/admin-token-<port>`: the admin token of the server on that local port.
pub fn token_path(cache_root: &Path, port: u16) -> PathBuf {
    cache_root.join(format!("admin-token-{port}"))
}

/// A written token file; removed when dropped (when the server stops), unless another server
/// has replaced it since.
pub(crate) struct TokenFile {
    path: PathBuf,
    secret: String,
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == self.secret) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: Vec<String> = vec![];
        for h in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "localhost.:80",
            "127.0.0.1:8080",
            "127.9.8.7",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(host_allowed(h, &none), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.5:8080",
            "[::2]:80",
            "::1",
            "127.0.0.1:80x",
            "",
            "[::1]x",
            "127.0.0.1:",
        ] {
            assert!(!host_allowed(h, &none), "{h}");
        }
        let some = vec!["gpu-box.lan".to_owned(), "10.0.0.5:8080".to_owned()];
        assert!(host_allowed("gpu-box.lan:8080", &some));
        assert!(host_allowed("GPU-BOX.lan", &some));
        assert!(host_allowed("10.0.0.5:8080", &some));
        assert!(!host_allowed("10.0.0.5:9090", &some));
        assert!(host_allowed("anything.example", &["*".to_owned()]));
    }

    #[test]
    fn origins() {
        let allowed = vec!["http://localhost:3000".to_owned()];
        assert!(origin_allowed("http://localhost:3000", &allowed));
        assert!(origin_allowed("HTTP://LOCALHOST:3000/", &allowed));
        assert!(!origin_allowed("http://localhost:3001", &allowed));
        assert!(!origin_allowed("http://evil.example", &allowed));
        assert!(!origin_allowed("null", &["null".to_owned()]));
    }

    #[test]
    fn json_bodies() {
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(has_body(&h));
        assert!(!is_json(&h));
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            assert!(is_json(&h), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json+x",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            assert!(!is_json(&h), "{ct}");
        }
    }

    #[test]
    fn token_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = AdminToken::new(&dir.path().join("cache"));
        assert_eq!(t.secret().len(), 64);
        assert!(t.matches(t.secret()) && !t.matches("nope") && !t.matches(&"0".repeat(64)));
        assert_ne!(t.secret(), AdminToken::new(dir.path()).secret());
        let f = t.write(4242).unwrap();
        let path = token_path(&dir.path().join("cache"), 4242);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), t.secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            1,
            "no temporary file is left"
        );
        drop(f);
        assert!(!path.exists());
        // A file another server has written since is not ours to remove.
        let f = t.write(4243).unwrap();
        std::fs::write(token_path(&dir.path().join("cache"), 4243), "someone else").unwrap();
        drop(f);
        assert!(token_path(&dir.path().join("cache"), 4243).exists());
    }
}
