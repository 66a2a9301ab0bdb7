//! The load generator against a tiny fake OpenAI SSE server on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench::{run_load, LoadSpec};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy)]
struct Behaviour {
    /// Delay before the first content token.
    first_token: Duration,
    /// Delay between tokens.
    per_token: Duration,
    /// Send a final usage chunk when asked for one.
    usage: bool,
    /// Tokens before a simulated EOS when ignore_eos is not set.
    eos_after: u64,
    /// Answer every request with HTTP 500.
    fail: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            first_token: Duration::from_millis(60),
            per_token: Duration::from_millis(2),
            usage: true,
            eos_after: 3,
            fail: false,
        }
    }
}

struct Fake {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn start(b: Behaviour) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = serve(sock, b, seen).await;
            });
        }
    });
    Fake { url, bodies }
}

async fn serve(mut s: TcpStream, b: Behaviour, seen: Arc<Mutex<Vec<Value>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
    seen.lock().unwrap().push(body.clone());
    if b.fail {
        s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom")
            .await?;
        return Ok(());
    }
    let max = body["max_tokens"].as_u64().unwrap();
    let n = if body["ignore_eos"] == true {
        max
    } else {
        max.min(b.eos_after)
    };
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )
    .await?;
    s.write_all(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n")
        .await?;
    s.flush().await?;
    tokio::time::sleep(b.first_token).await;
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(b.per_token).await;
        }
        // Several tokens per chunk would also be legal; usage is what counts.
        s.write_all(
            format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n").as_bytes(),
        )
        .await?;
        s.flush().await?;
    }
    if b.usage && body["stream_options"]["include_usage"] == true {
        let u = format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n", n + 5);
        s.write_all(u.as_bytes()).await?;
    }
    s.write_all(b"data: [DONE]\n\n").await?;
    s.shutdown().await
}

fn spec(url: &str, clients: usize, per_client: usize, max_tokens: u32, ignore_eos: bool) -> LoadSpec {
    let mut s = LoadSpec::new(url, "fake", "hello");
    s.prompts = vec!["a".into(), "b".into()];
    s.clients = clients;
    s.requests_per_client = per_client;
    s.max_tokens = max_tokens;
    s.ignore_eos = ignore_eos;
    s.timeout = Duration::from_secs(30);
    s
}

#[tokio::test]
async fn counts_tokens_from_usage_with_ignore_eos() {
    let fake = start(Behaviour::default()).await;
    let r = run_load(&spec(&fake.url, 4, 3, 16, true)).await.unwrap();
    assert_eq!((r.requests, r.ok, r.errors), (12, 12, 0), "{:?}", r.error_samples);
    assert_eq!(r.total_completion_tokens, 12 * 16);
    assert_eq!(r.total_prompt_tokens, 12 * 5);
    assert!(r.tokens_from_usage);
    assert!(r.aggregate_tps > 0.0 && r.wall_s > 0.0);
    // TTFT includes the 60 ms first-token delay; the full response takes longer.
    assert!(r.ttft_ms.p50 >= 50.0, "ttft {:?}", r.ttft_ms);
    assert!(
        r.latency_ms.p50 > r.ttft_ms.p50,
        "latency {:?} ttft {:?}",
        r.latency_ms,
        r.ttft_ms
    );
    assert!(r.ttft_ms.p95 >= r.ttft_ms.p50 && r.latency_ms.p95 >= r.latency_ms.p50);
    assert!(r.decode_tps_per_request.p50 > 0.0);
    let bodies = fake.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 12);
    assert!(bodies
        .iter()
        .all(|b| b["ignore_eos"] == true && b["stream"] == true && b["temperature"] == 0.0));
    let a = bodies.iter().filter(|b| b["messages"][0]["content"] == "a").count();
    assert_eq!(a, 6, "prompts are used round-robin");
}

#[tokio::test]
async fn without_ignore_eos_the_server_stops_early() {
    let fake = start(Behaviour::default()).await;
    let r = run_load(&spec(&fake.url, 2, 1, 16, false)).await.unwrap();
    assert_eq!(r.total_completion_tokens, 2 * 3);
    assert!(fake
        .bodies
        .lock()
        .unwrap()
        .iter()
        .all(|b| b.get("ignore_eos").is_none()));
}

#[tokio::test]
async fn falls_back_to_counting_chunks_without_usage() {
    let fake = start(Behaviour {
        usage: false,
        ..Default::default()
    })
    .await;
    let r = run_load(&spec(&fake.url, 2, 2, 8, true)).await.unwrap();
    assert_eq!(r.ok, 4);
    assert_eq!(r.total_completion_tokens, 4 * 8);
    assert!(!r.tokens_from_usage);
}

#[tokio::test]
async fn http_errors_are_counted_not_fatal() {
    let fake = start(Behaviour {
        fail: true,
        ..Default::default()
    })
    .await;
    let r = run_load(&spec(&fake.url, 2, 2, 8, true)).await.unwrap();
    assert_eq!((r.ok, r.errors), (0, 4));
    assert!(r.error_samples[0].contains("500"), "{:?}", r.error_samples);
    assert_eq!(r.total_completion_tokens, 0);
}

#[tokio::test]
async fn overall_deadline_bounds_the_run() {
    let fake = start(Behaviour {
        first_token: Duration::from_secs(5),
        ..Default::default()
    })
    .await;
    let mut s = spec(&fake.url, 2, 3, 4, true);
    s.timeout = Duration::from_millis(300);
    let t = std::time::Instant::now();
    let r = run_load(&s).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(r.timed_out);
    assert_eq!(r.errors, 6);
}

#[tokio::test]
async fn refuses_non_loopback_targets() {
    let err = run_load(&spec("http://10.1.2.3:8080", 1, 1, 4, true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");
}
