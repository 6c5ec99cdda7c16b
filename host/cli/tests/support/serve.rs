//! `serve` as a child process: started on a free loopback port with a fast
//! schedule clock, its address read from its stderr, its HTTP surface
//! called with reqwest, stopped with SIGTERM or SIGKILL.

use std::time::{Duration, Instant};

use super::{Ended, Running, World};

/// The admin token the tests' servers use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Schedules run this many times faster: `every = "1m"` is 2 s.
pub const TIME_SCALE: &str = "30";

/// A running `serve`.
pub struct Server {
    /// The child (taken when it ends; a server dropped while running, as
    /// when a test fails, is killed).
    child: Option<Running>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// Stderr lines drained while waiting.
    log: std::sync::Mutex<Vec<String>>,
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl World {
    /// Starts `serve` on `port` (0: any) with `extra` arguments and waits
    /// until it listens.
    pub fn serve(&self, port: u16, extra: &[&str]) -> Server {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--grace", "20s"];
        args.extend_from_slice(extra);
        let mut child = self.spawn(
            &args,
            &[
                ("ML_CONNECTOR_ADMIN_TOKEN", ADMIN_TOKEN),
                ("ML_CONNECTOR_TIME_SCALE", TIME_SCALE),
                ("RUST_LOG", "info"),
            ],
        );
        let started = Instant::now();
        let url = loop {
            match child.next_line(Duration::from_secs(120)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("serving on ") {
                        break rest
                            .split_whitespace()
                            .next()
                            .expect("an address")
                            .to_owned();
                    }
                }
                Err(e) => {
                    let ended = child.kill9();
                    panic!(
                        "serve did not start within {:?} ({e:?}):\n{}",
                        started.elapsed(),
                        ended.stderr
                    );
                }
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        Server {
            child: Some(child),
            url,
            http: reqwest::Client::new(),
            log: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Server {
    /// GET `path` with the admin token; status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None, Some(ADMIN_TOKEN))
            .await
    }

    /// A request with an optional body and token; status and JSON body
    /// (`Null` when the body is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The raw text of `path` (no token).
    pub async fn text(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// `/status.json`.
    pub async fn status(&self) -> serde_json::Value {
        let (code, text) = self.text("/status.json").await;
        assert_eq!(code, 200, "/status.json: {text}");
        serde_json::from_str(&text).expect("status JSON")
    }

    /// A pipeline's entry in `/status.json`.
    pub async fn pipeline(&self, tenant: &str, pipeline: &str) -> serde_json::Value {
        let doc = self.status().await;
        doc["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["tenant"] == tenant)
            .flat_map(|t| t["pipelines"].as_array().cloned().unwrap_or_default())
            .find(|p| p["pipeline"] == pipeline)
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `check` returns `Some`, polling every 250 ms, at most
    /// `timeout`; panics with `what`, the last status document and the
    /// server's last log lines.
    pub async fn wait_for<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            self.drain();
            if started.elapsed() > timeout {
                let status = self.status().await;
                let log = self.log.lock().unwrap();
                let tail: Vec<&String> = log.iter().rev().take(40).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- status\n{status:#}\n--- last stderr lines (newest first)\n{tail:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn drain(&self) {
        let mut log = self.log.lock().unwrap();
        let Some(child) = &self.child else { return };
        while let Ok(line) = child.lines.try_recv() {
            log.push(line);
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.drain();
        let log = self.log.lock().unwrap();
        let mut all = self
            .child
            .as_ref()
            .map(|c| c.stderr.clone())
            .unwrap_or_default();
        all.extend(log.iter().cloned());
        all.join("\n")
    }

    /// Sends SIGTERM and waits for the exit; also how long the exit took.
    pub fn terminate(self) -> (Ended, Duration) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let asked = Instant::now();
        let ended = self.end(false);
        (ended, asked.elapsed())
    }

    /// SIGKILL.
    pub fn kill9(self) -> Ended {
        self.end(true)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.child.id())
    }

    fn end(mut self, kill: bool) -> Ended {
        self.drain();
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let child = self.child.take().expect("a running server");
        let mut ended = if kill { child.kill9() } else { child.wait() };
        let before = ended.stderr.clone();
        ended.stderr = log.join("\n");
        ended.stderr.push('\n');
        ended.stderr.push_str(&before);
        ended
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

/// A tenant file's pipelines on a 1-minute schedule.
pub fn every_minute(text: String) -> String {
    text.replace(".toml\"\n", ".toml\"\nevery = \"1m\"\n")
}
