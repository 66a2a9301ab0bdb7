//! A TCP proxy on loopback in front of a real server, to make it slow or unreachable on demand
//! and to count what reaches it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const FORWARD: u8 = 0;
pub const SLOW: u8 = 1;
pub const REFUSE: u8 = 2;

pub struct Proxy {
    pub base: String,
    pub mode: Arc<AtomicU8>,
    /// Client reads that carried bytes (requests, roughly) — while refusing too.
    pub hits: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// Proxy to `upstream` (host:port). In SLOW mode every client write waits `delay` first.
    pub fn start(upstream: String, delay: Duration) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let hits = Arc::new(AtomicU64::new(0));
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let (m, h) = (mode.clone(), hits.clone());
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, h, up) = (m.clone(), h.clone(), upstream.clone());
                tokio::spawn(async move {
                    if m.load(Ordering::SeqCst) == REFUSE {
                        h.fetch_add(1, Ordering::SeqCst);
                        return; // dropped: the client sees the connection close
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&up).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up_task = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            h.fetch_add(1, Ordering::SeqCst);
                            match m.load(Ordering::SeqCst) {
                                REFUSE => return,
                                SLOW => tokio::time::sleep(delay).await,
                                _ => {}
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down_task = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::select! { _ = up_task => {}, _ = down_task => {} }
                });
            }
        });
        Proxy {
            base,
            mode,
            hits,
            _rt: rt,
        }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}
