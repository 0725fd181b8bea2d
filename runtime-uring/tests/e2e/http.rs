//! HTTP helpers for the admin API tests: a client (ureq) and a tiny webhook receiver.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A response: status and body text.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// The admin API at `127.0.0.1:port`.
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

pub fn basic(key: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .allow_non_standard_methods(true)
                .timeout_global(Some(std::time::Duration::from_secs(20)))
                .build()
                .into(),
        }
    }

    /// `method path` with a body of this content type.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        content_type: &str,
        body: &str,
    ) -> Resp {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some((k, s)) = auth {
            b = b.header("Authorization", basic(k, s));
        }
        let mut r = self
            .agent
            .run(b.body(body.to_string()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Resp {
            status,
            body,
            content_type: String::new(),
        }
    }

    /// `method path` with Basic `key:secret` (if any) and a JSON body (if any).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<&str>,
    ) -> Resp {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some((k, s)) = auth {
            b = b.header("Authorization", basic(k, s));
        }
        let res = match body {
            Some(text) => self.agent.run(
                b.header("Content-Type", "application/json")
                    .body(text.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut r = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Resp {
            status,
            body,
            content_type,
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub event: String,
    pub id: String,
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

/// A webhook endpoint on loopback answering `fail_first` requests with 500, then 200.
pub struct Receiver {
    pub port: u16,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                let (mut event, mut id) = (String::new(), String::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "x-petrel-event" => event = v.trim().into(),
                            "x-petrel-event-id" => id = v.trim().into(),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    continue;
                }
                n += 1;
                let status = if n <= fail_first { 500 } else { 200 };
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                h.lock().unwrap().push(Hit {
                    event,
                    id,
                    body,
                    status,
                });
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, hits }
    }

    /// Requests answered 200.
    pub fn accepted(&self) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.status == 200)
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds for the accepted requests.
    pub fn wait(&self, timeout: std::time::Duration, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let a = self.accepted();
            if pred(&a) || std::time::Instant::now() > end {
                return a;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
