//! Hostile tenants against one running `serve`: tenant `mallory` sends
//! everything a tenant or the internet can send — malformed and oversized
//! tenant files, mapping scripts that are huge, deeply nested, call unknown
//! functions, read unknown fields or divide, components that are not wasm,
//! too large or import what is forbidden, requests without or with a wrong
//! admin token, forged and oversized webhooks and a flood of them — while
//! tenant `acme` (the bystander) keeps syncing in the same process, with
//! Oracle changing all along. Every case is named, must be answered with a
//! clear error (status and the cause in the message), must change nothing
//! of mallory's (its stored definition, its mapping script, its plugins)
//! nor of acme's, and acme must confirm a new batch after it. A tampered
//! audit log is detected by `audit --verify` once the server stopped.
//! The plugin runtime's own hostile cases (compile limits, instance shapes,
//! misbehaving guests) are in `host/plugin/tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use reqwest::Method;
use serde_json::Value;
use support::serve::{ADMIN_TOKEN, Server, every_minute};
use support::{World, explain, first_difference, oracle_invoices, tableau_invoices};

const INVOICES: [(&str, &str, &str); 1] = [("invoices", "invoices", "invoices.toml")];

/// What a case may not change: mallory's stored definition, its script,
/// its plugins, and acme's definition.
async fn picture(server: &Server, world: &World) -> Value {
    let (_, mallory) = server.get("/api/v1/tenants/mallory").await;
    let (_, acme) = server.get("/api/v1/tenants/acme").await;
    let (_, plugins) = server.get("/api/v1/plugins").await;
    let script = std::fs::read_to_string(world.mappings_dir().join("mallory/invoices.toml"))
        .unwrap_or_default();
    let keep = |t: &Value| {
        serde_json::json!({
            "pipelines": t["pipelines"].as_array().map(|ps| ps.iter().map(|p| {
                serde_json::json!({"pipeline": p["pipeline"], "datasource": p["datasource"], "paused": p["paused"]})
            }).collect::<Vec<_>>()),
            "secrets": t["secrets"],
        })
    };
    let loaded: Vec<Value> = plugins["plugins"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| serde_json::json!([p["tenant"], p["name"], p["current"]["version"]]))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "mallory": keep(&mallory),
        "acme": keep(&acme),
        "script": script,
        "plugins": loaded,
    })
}

async fn confirmed(server: &Server, tenant: &str) -> u64 {
    server.pipeline(tenant, "invoices").await["store"]["confirmed_batches"]
        .as_u64()
        .unwrap_or(0)
}

/// One request; its status and body (JSON, or the text as a JSON string).
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut r = http.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    match r.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(format!("no answer: {e}"))),
    }
}

/// Checks an answer: the status, and each needle in its text.
fn expect(answer: &(u16, Value), status: u16, needles: &[&str]) -> Result<(), String> {
    let text = answer.1.to_string();
    if answer.0 != status {
        return Err(format!("status {} (wanted {status}): {text}", answer.0));
    }
    for n in needles {
        if !text.contains(n) {
            return Err(format!("the answer does not say {n:?}: {text}"));
        }
    }
    Ok(())
}

struct Suite<'a> {
    world: &'a World,
    server: &'a Server,
    http: reqwest::Client,
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Suite<'_> {
    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.server.url)
    }

    /// Runs a case: its own check, then that nothing changed and that the
    /// bystander confirmed a batch after it.
    async fn case(&mut self, name: &str, check: Result<(), String>, before: Value) {
        let mut problems = Vec::new();
        if let Err(e) = check {
            problems.push(e);
        }
        let after = picture(self.server, self.world).await;
        if after != before {
            problems.push(format!(
                "state changed:\n  before {before}\n  after  {after}"
            ));
        }
        let was = confirmed(self.server, "acme").await;
        let started = Instant::now();
        while confirmed(self.server, "acme").await <= was {
            if started.elapsed() > Duration::from_secs(40) {
                problems.push(format!(
                    "the bystander confirmed no batch within 40 s (still {was})"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if problems.is_empty() {
            eprintln!("ok      {name}");
            self.passed.push(name.to_owned());
        } else {
            eprintln!("FAILED  {name}: {}", problems.join("; "));
            self.failed
                .push(format!("{name}: {}", problems.join("\n    ")));
        }
    }

    async fn put_tenant(&self, body: Vec<u8>) -> (u16, Value) {
        send(
            &self.http,
            Method::PUT,
            &self.api("/tenants/mallory"),
            Some(body),
            Some(ADMIN_TOKEN),
        )
        .await
    }

    async fn promote(&self, script: String) -> (u16, Value) {
        send(
            &self.http,
            Method::POST,
            &self.api("/tenants/mallory/pipelines/invoices/mapping/promote"),
            Some(script.into_bytes()),
            Some(ADMIN_TOKEN),
        )
        .await
    }

    async fn upload(&self, name: &str, wasm: Vec<u8>) -> (u16, Value) {
        send(
            &self.http,
            Method::PUT,
            &self.api(&format!("/plugins/mallory/{name}")),
            Some(wasm),
            Some(ADMIN_TOKEN),
        )
        .await
    }
}

/// Sends `text` on a fresh connection; what came back before the server
/// closed it (at most 5 s).
async fn raw_request(addr: &str, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "cannot connect".into();
    };
    // The server may answer and close before all of a large head is sent.
    let _ = stream.write_all(text.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A refused head: 431, or the connection closed without an answer.
fn head_refused(answer: &str) -> Result<(), String> {
    if answer.is_empty() || answer.starts_with("HTTP/1.1 431") {
        Ok(())
    } else {
        Err(format!(
            "the head was not refused: {}",
            answer.lines().next().unwrap_or("")
        ))
    }
}

/// Opens a connection, sends half a request head and waits: the server
/// must close it after its header timeout (2 s here), well within 8 s.
async fn slow_client(addr: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .map_err(|e| format!("writing: {e}"))?;
    let started = Instant::now();
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buf)).await {
        Ok(_) => {
            let took = started.elapsed();
            if took >= Duration::from_millis(1500) {
                Ok(())
            } else {
                Err(format!(
                    "closed too early ({took:?}), before the header timeout"
                ))
            }
        }
        Err(_) => Err("the connection was still open after 8 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_hurts_no_one_and_changes_nothing() {
    let world = World::start(
        SandboxConfig {
            seed: 66,
            invoices: 60,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    let mallory_file = world.setup_tenant_with("mallory", &INVOICES, every_minute);
    let mallory_toml = std::fs::read_to_string(&mallory_file).expect("mallory's file");
    let port = support::serve::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = world.serve(
        port,
        &[
            "--public-url",
            &public,
            "--webhook-rate",
            "120",
            "--api-rate",
            "100000",
            "--header-timeout",
            "2s",
        ],
    );
    server
        .wait_for(Duration::from_secs(90), "both first loads", || async {
            (confirmed(&server, "acme").await >= 1 && confirmed(&server, "mallory").await >= 1)
                .then_some(())
        })
        .await;
    // Oracle keeps changing, so the bystander has a batch to confirm after
    // every case.
    world.oracle.faults().set_mutation_rate(3.0, 1.0);

    let mut s = Suite {
        world: &world,
        server: &server,
        http: reqwest::Client::new(),
        passed: Vec::new(),
        failed: Vec::new(),
    };
    let demo = std::fs::read_to_string(support::workspace().join("mappings/demo/invoices.toml"))
        .expect("demo script");

    // --- tenant files ----------------------------------------------------
    let cases: Vec<(&str, Vec<u8>, u16, Vec<&str>)> = vec![
        (
            "tenant file: not TOML",
            b"id = \"mallory\"\n[oracle\nurl = ".to_vec(),
            422,
            vec!["mallory.toml:2:8"],
        ),
        (
            "tenant file: an unknown field",
            mallory_toml
                .replacen("[oracle]\n", "[oracle]\nshell = \"rm -rf /\"\n", 1)
                .into_bytes(),
            422,
            vec!["shell"],
        ),
        (
            "tenant file: a secret written in clear",
            mallory_toml
                .replacen(
                    "client_secret = \"secret:oracle-client-secret\"",
                    "client_secret = \"hunter2\"",
                    1,
                )
                .into_bytes(),
            422,
            vec!["client_secret", "secret:"],
        ),
        (
            "tenant file: a bad duration",
            mallory_toml
                .replacen("every = \"1m\"", "every = \"5 parsecs\"", 1)
                .into_bytes(),
            422,
            vec!["every"],
        ),
        (
            "tenant file: a schedule below the minimum",
            mallory_toml
                .replacen("every = \"1m\"", "every = \"1s\"", 1)
                .into_bytes(),
            422,
            vec!["every"],
        ),
        (
            "tenant file: two pipelines with one id",
            format!(
                "{mallory_toml}\n[[pipeline]]\nid = \"invoices\"\nresource = \"invoices\"\ndatasource = \"other\"\nmapping = \"invoices.toml\"\n"
            )
            .into_bytes(),
            422,
            vec!["invoices"],
        ),
        (
            "tenant file: a path out of the mappings directory",
            mallory_toml
                .replacen("mapping = \"invoices.toml\"", "mapping = \"../acme/invoices.toml\"", 1)
                .into_bytes(),
            422,
            vec!["mapping"],
        ),
        (
            "tenant file: another tenant's id",
            mallory_toml
                .replacen("id = \"mallory\"", "id = \"acme\"", 1)
                .into_bytes(),
            422,
            vec!["acme"],
        ),
        (
            "tenant file: over the body cap",
            format!("{mallory_toml}\n# {}\n", "x".repeat(2 << 20)).into_bytes(),
            413,
            vec![],
        ),
    ];
    for (name, body, status, needles) in cases {
        let before = picture(&server, &world).await;
        let answer = s.put_tenant(body).await;
        s.case(name, expect(&answer, status, &needles), before)
            .await;
    }

    // --- mapping scripts -------------------------------------------------
    let deep = format!("{}Supplier{}", "upper(".repeat(5_000), ")".repeat(5_000));
    let scripts: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "mapping script: over the size cap",
            format!("{demo}\n# {}\n", "x".repeat(300 << 10)),
            vec!["over the limit"],
        ),
        (
            "mapping script: a deeply nested expression",
            demo.replacen(
                "expr = \"trim(Description)\"",
                &format!("expr = \"{deep}\""),
                1,
            ),
            vec!["nests more than"],
        ),
        (
            "mapping script: an unknown function",
            demo.replacen(
                "expr = \"trim(Description)\"",
                "expr = \"exec(Description)\"",
                1,
            ),
            vec!["exec"],
        ),
        (
            "mapping script: an unknown field where a value is required",
            demo.replacen("source = \"InvoiceNumber\"", "source = \"NoSuchField\"", 1),
            vec!["Invoice Number"],
        ),
        (
            "mapping script: a division by zero",
            demo.replacen(
                "expr = \"InvoiceAmount - coalesce(AmountPaid, 0)\"",
                "expr = \"InvoiceAmount / 0\"",
                1,
            ),
            vec!["refused"],
        ),
        (
            "mapping script: not a script at all",
            "\u{0}\u{1}garbage".into(),
            vec!["refused"],
        ),
    ];
    for (name, script, needles) in scripts {
        let before = picture(&server, &world).await;
        let answer = s.promote(script).await;
        s.case(name, expect(&answer, 422, &needles), before).await;
    }

    // --- components ------------------------------------------------------
    let import = std::fs::read(support::scripted_wasm().with_file_name("misbehave-import.wasm"))
        .expect("the misbehave-import component (cargo xtask build-plugins)");
    let components: Vec<(&str, Vec<u8>, u16, Vec<&str>)> = vec![
        (
            "component: not wasm",
            b"#!/bin/sh\nrm -rf /\n".to_vec(),
            422,
            vec!["compil"],
        ),
        (
            "component: over the size cap",
            vec![0u8; (16 << 20) + 1],
            413,
            vec![],
        ),
        ("component: a forbidden import", import, 422, vec!["import"]),
    ];
    for (name, wasm, status, needles) in components {
        let before = picture(&server, &world).await;
        let answer = s.upload("evil", wasm).await;
        s.case(name, expect(&answer, status, &needles), before)
            .await;
    }

    // --- the admin API's token ------------------------------------------
    for (name, token) in [
        ("admin API: no token", None),
        (
            "admin API: a wrong token",
            Some("not-the-admin-token-at-all"),
        ),
        ("admin API: a prefix of the token", Some(&ADMIN_TOKEN[..8])),
    ] {
        let before = picture(&server, &world).await;
        let answer = send(
            &s.http,
            Method::PUT,
            &s.api("/tenants/mallory"),
            Some(
                mallory_toml
                    .replace("every = \"1m\"", "every = \"2m\"")
                    .into_bytes(),
            ),
            token,
        )
        .await;
        s.case(name, expect(&answer, 401, &["token"]), before).await;
    }

    // --- webhooks --------------------------------------------------------
    let hook = |tenant: &str, token: &str| format!("{public}/webhooks/tableau/{tenant}/{token}");
    // mallory's real webhook URL (with its token), as Tableau delivers to it.
    let delivered = world
        .tableau
        .webhook_deliveries()
        .into_iter()
        .find(|d| d.url.starts_with(&hook("mallory", "")))
        .expect("Tableau delivered a webhook to mallory's receiver");
    let genuine = delivered.url.clone();
    let webhooks: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "webhook: a forged token",
            hook("mallory", &"0".repeat(64)),
            br#"{"resource":"datasource"}"#.to_vec(),
            404,
        ),
        (
            "webhook: an unknown tenant",
            hook("nobody", &"0".repeat(64)),
            b"{}".to_vec(),
            404,
        ),
        (
            "webhook: over the body cap",
            genuine.clone(),
            format!("{{\"x\":\"{}\"}}", "a".repeat(70 << 10)).into_bytes(),
            413,
        ),
        (
            "webhook: a malformed body",
            genuine.clone(),
            b"{\"resource\": ".to_vec(),
            400,
        ),
        (
            "webhook: not a Tableau event",
            genuine.clone(),
            br#"{"hello":"world"}"#.to_vec(),
            400,
        ),
    ];
    for (name, url, body, status) in webhooks {
        let before = picture(&server, &world).await;
        let answer = send(&s.http, Method::POST, &url, Some(body), None).await;
        s.case(name, expect(&answer, status, &[]), before).await;
    }
    // A genuine delivery sent again: seen before, counted, nothing done.
    let before = picture(&server, &world).await;
    let answer = send(
        &s.http,
        Method::POST,
        &genuine,
        Some(delivered.payload.to_string().into_bytes()),
        None,
    )
    .await;
    s.case(
        "webhook: a replayed delivery",
        expect(&answer, 200, &["duplicate"]),
        before,
    )
    .await;
    let before = picture(&server, &world).await;
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let (code, _) = send(
            &s.http,
            Method::POST,
            &hook("mallory", &"1".repeat(64)),
            Some(b"{}".to_vec()),
            None,
        )
        .await;
        *codes.entry(code).or_insert(0u32) += 1;
    }
    let flood = if codes.get(&429).copied().unwrap_or(0) >= 25 {
        Ok(())
    } else {
        Err(format!(
            "a flood of 200 deliveries was not limited: {codes:?}"
        ))
    };
    s.case("webhook: a flood", flood, before).await;
    // --- HTTP heads -----------------------------------------------------
    let addr = server.url.trim_start_matches("http://").to_owned();
    let before = picture(&server, &world).await;
    let slow = slow_client(&addr).await;
    s.case(
        "http: a client that never finishes its headers",
        slow,
        before,
    )
    .await;
    let before = picture(&server, &world).await;
    let big = raw_request(
        &addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 << 10)
        ),
    )
    .await;
    s.case("http: a head over the size cap", head_refused(&big), before)
        .await;
    let before = picture(&server, &world).await;
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_request(
        &addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
    )
    .await;
    s.case("http: too many headers", head_refused(&answer), before)
        .await;

    let Suite {
        mut passed,
        mut failed,
        ..
    } = s;

    // The bystander ends exact, and so does mallory.
    world.oracle.faults().set_mutation_rate(0.0, 0.0);
    for tenant in ["acme", "mallory"] {
        server
            .wait_for(
                Duration::from_secs(90),
                "the data sources to catch up",
                || async {
                    (tableau_invoices(&world, tenant).await == oracle_invoices(&world))
                        .then_some(())
                },
            )
            .await;
    }
    let (ended, _) = server.terminate();
    assert!(ended.status.success(), "serve: {}", ended.stderr);

    // --- the audit log ---------------------------------------------------
    let out = world.run(&["audit", "--verify"]);
    assert!(
        out.status.success(),
        "an untouched log verifies: {}",
        explain(&out)
    );
    {
        let runtime = mlc_store::RuntimeStore::open(&mlc_store::DataDir::new(world.data_dir()))
            .expect("the runtime file");
        let log = runtime.audit_log(0, 1000).expect("the audit log");
        let mut entry = log
            .iter()
            .find(|e| e.action == "tenant.apply")
            .cloned()
            .expect("an apply entry");
        let seq = entry.seq;
        entry.actor = "someone-else".into();
        runtime
            .overwrite_audit_entry_for_tests(seq, &entry)
            .expect("tampering");
    }
    let out = world.run(&["audit", "--verify"]);
    let tampered = if out.status.success() {
        Err(format!("a tampered entry verified: {}", explain(&out)))
    } else if !String::from_utf8_lossy(&out.stderr).contains("audit") {
        Err(format!(
            "the refusal does not name the audit log: {}",
            explain(&out)
        ))
    } else {
        Ok(())
    };
    match tampered {
        Ok(()) => passed.push("audit log: a tampered entry".into()),
        Err(e) => failed.push(format!("audit log: a tampered entry: {e}")),
    }

    let total = passed.len() + failed.len();
    assert!(
        failed.is_empty(),
        "{} of {total} hostile cases failed:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
    assert!(total >= 25, "only {total} cases ran");
    let (a, b) = (
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world),
    );
    assert!(
        a == b,
        "acme differs from Oracle: {}",
        first_difference(&a, &b)
    );
}
