//! `ml-connector serve` against both sandboxes, as an operator runs it: two
//! tenants on 1-minute schedules (the schedule clock runs 30 times faster),
//! Oracle changing while it serves, one tenant's credentials going bad and
//! coming back, the admin API, `/metrics`, and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use reqwest::Method;
use support::serve::{ADMIN_TOKEN, Server, every_minute};
use support::{World, first_difference, oracle_invoices, tableau_invoices};

const INVOICES: [(&str, &str, &str); 1] = [("invoices", "invoices", "invoices.toml")];

/// Both sandboxes, Oracle with `invoices` invoices generated from `seed`.
async fn world(seed: u64, invoices: u64) -> World {
    World::start(
        SandboxConfig {
            seed,
            invoices,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await
}

/// Waits until batch `id` of `tenant` is confirmed.
async fn until_confirmed(server: &Server, tenant: &str, id: &str, what: &str) {
    server
        .wait_for(Duration::from_secs(60), what, || async {
            let (_, b) = server
                .get(&format!(
                    "/api/v1/tenants/{tenant}/batches?state=confirmed&limit=50"
                ))
                .await;
            b["batches"]
                .as_array()
                .is_some_and(|bs| bs.iter().any(|x| x["id"] == id))
                .then_some(())
        })
        .await;
}

/// Waits until `tenant`'s invoices data source equals Oracle's invoices.
async fn until_equal(server: &Server, world: &World, tenant: &str, what: &str) {
    let tenant = tenant.to_owned();
    server
        .wait_for(Duration::from_secs(90), what, || {
            let tenant = tenant.clone();
            async move {
                world.tableau.datasource_id(&format!("{tenant} invoices"))?;
                let oracle = oracle_invoices(world);
                let tableau = tableau_invoices(world, &tenant).await;
                (oracle == tableau).then_some(())
            }
        })
        .await;
}

async fn confirmed(server: &Server, tenant: &str) -> u64 {
    server.pipeline(tenant, "invoices").await["store"]["confirmed_batches"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_two_tenants_current_and_one_tenants_failures_stay_its_own() {
    let world = world(21, 150).await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    world.setup_tenant_with("globex", &INVOICES, every_minute);
    let server = world.serve(0, &[]);

    // Both first loads, then changes made while serving reach both.
    until_equal(&server, &world, "acme", "acme's first load").await;
    until_equal(&server, &world, "globex", "globex's first load").await;
    world.oracle.mutate(10, 5);
    until_equal(&server, &world, "acme", "acme catching up on changes").await;
    until_equal(&server, &world, "globex", "globex catching up on changes").await;

    // globex's Oracle credentials go bad (through the admin API, which
    // never echoes the value and restarts the tenant with it).
    let (code, answer) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/globex/secrets/oracle-client-secret",
            Some("not-the-secret-at-all".into()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert!(!answer.to_string().contains("not-the-secret"), "{answer}");
    world.oracle.mutate(6, 3);
    let acme_before = confirmed(&server, "acme").await;
    let error = server
        .wait_for(
            Duration::from_secs(60),
            "globex's batch to fail visibly",
            || async {
                let p = server.pipeline("globex", "invoices").await;
                p["store"]["failed_batch"]["error"]
                    .as_str()
                    .map(str::to_owned)
            },
        )
        .await;
    assert!(
        error.contains("401")
            || error.to_lowercase().contains("credential")
            || error.contains("refused"),
        "the failure should say Oracle refused the credentials: {error}"
    );
    // Meanwhile acme keeps its schedule and takes the same changes.
    until_equal(&server, &world, "acme", "acme syncing while globex fails").await;
    server
        .wait_for(
            Duration::from_secs(30),
            "acme to keep confirming cycles",
            || async { (confirmed(&server, "acme").await >= acme_before + 2).then_some(()) },
        )
        .await;
    let globex = server.pipeline("globex", "invoices").await;
    assert_eq!(globex["last_cycle"]["outcome"], "failed", "{globex:#}");
    assert_ne!(
        oracle_invoices(&world),
        tableau_invoices(&world, "globex").await,
        "globex cannot have the changes while its credentials are refused"
    );

    // The right secret again: globex resumes its failed batch and catches up.
    let good = world.oracle.client_secret().expose().to_owned();
    let (code, answer) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/globex/secrets/oracle-client-secret",
            Some(good.clone()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    until_equal(&server, &world, "globex", "globex recovering").await;
    let oracle = oracle_invoices(&world);
    for t in ["acme", "globex"] {
        let tableau = tableau_invoices(&world, t).await;
        assert_eq!(
            oracle,
            tableau,
            "{t}: first difference: {}",
            first_difference(&oracle, &tableau)
        );
    }

    // Nothing the server shows carries a secret.
    let status = server.status().await.to_string();
    let (_, batches) = server.get("/api/v1/tenants/globex/batches?limit=100").await;
    let (_, tenant) = server.get("/api/v1/tenants/globex").await;
    for doc in [status, batches.to_string(), tenant.to_string()] {
        for secret in [
            good.as_str(),
            world.tableau.pat_secret().expose(),
            ADMIN_TOKEN,
        ] {
            assert!(!doc.contains(secret), "a secret leaked into {doc}");
        }
    }
    assert_eq!(
        tenant["secrets"],
        serde_json::json!(["oracle-client-secret", "tableau-pat", "webhook-token"]),
        "{tenant:#}"
    );

    // SIGTERM: a clean exit within the grace period.
    let (ended, took) = server.terminate();
    assert!(
        ended.status.success(),
        "serve exited {}:\n{}",
        ended.status,
        ended.stderr
    );
    assert!(
        took < Duration::from_secs(30),
        "SIGTERM took {took:?} (grace 20 s)"
    );
    assert!(ended.stderr.contains("stopped"), "{}", ended.stderr);
    for secret in [
        good.as_str(),
        world.tableau.pat_secret().expose(),
        ADMIN_TOKEN,
    ] {
        assert!(!ended.stderr.contains(secret), "a secret reached the log");
    }
}

/// POSTs `body` to `url` as JSON; the status.
async fn deliver(http: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> u16 {
    http.post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("posting to the receiver: {e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_hints_checked_over_rest_and_bad_deliveries_change_nothing() {
    let world = world(22, 80).await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    let port = support::serve::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = world.serve(port, &["--public-url", &public]);
    until_equal(&server, &world, "acme", "the first load").await;

    // Tableau's jobs take 4 s; the client's polls back off past that, so
    // the batch is seen finished on the poll the webhook asks for.
    world.tableau.faults().slow_jobs(Duration::from_secs(4));
    world.oracle.mutate(5, 2);
    server
        .wait_for(
            Duration::from_secs(90),
            "a batch confirmed right after Tableau's webhook said its job finished",
            || async {
                let p = server.pipeline("acme", "invoices").await;
                (p["last_cycle"]["outcome"] == "ok" && p["last_cycle"]["after_webhook"] == true)
                    .then_some(())
            },
        )
        .await;
    world.tableau.faults().slow_jobs(Duration::ZERO);
    until_equal(&server, &world, "acme", "the changes").await;

    // A genuine delivery, as Tableau made it: its URL carries the token.
    let genuine = world
        .tableau
        .webhook_deliveries()
        .into_iter()
        .find(|d| {
            d.url.starts_with(&public)
                && matches!(
                    d.outcome,
                    mlc_sandbox_tableau::DeliveryOutcome::Delivered { status: 200 }
                )
        })
        .expect("Tableau delivered an event to the receiver");
    let url = genuine.url.clone();
    let token = url.rsplit('/').next().expect("token").to_owned();
    assert!(token.len() >= 32, "an unguessable token: {url}");

    // Nothing below may change a batch: pause the schedule, take a picture.
    let (code, _) = server
        .call(
            Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/pause",
            None,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, before) = server.get("/api/v1/tenants/acme/batches?limit=1000").await;

    let http = reqwest::Client::new();
    let payload = genuine.payload.to_string();
    let forged_token = "0".repeat(token.len());
    let forged = url.replace(&token, &forged_token);
    let other_tenant = url.replace("/acme/", "/nobody/");
    let mut foreign = genuine.payload.clone();
    foreign["site_luid"] = "00000000-0000-0000-0000-000000000000".into();
    let mut unmatched = genuine.payload.clone();
    unmatched["resource_luid"] = "11111111-2222-3333-4444-555555555555".into();
    unmatched["created_at"] = "2026-01-01T00:00:00Z".into();
    let cases: Vec<(&str, String, String, u16)> = vec![
        ("unknown tenant", other_tenant, payload.clone(), 404),
        ("forged token", forged.clone(), payload.clone(), 404),
        (
            "oversized",
            url.clone(),
            format!("{{\"x\":\"{}\"}}", "a".repeat(70 << 10)),
            413,
        ),
        ("malformed", url.clone(), "{\"resource\": ".into(), 400),
        (
            "not a Tableau event",
            url.clone(),
            "{\"hello\":\"world\"}".into(),
            400,
        ),
        ("another site", url.clone(), foreign.to_string(), 400),
        ("replayed", url.clone(), payload.clone(), 200),
        (
            "a data source that is not ours",
            url.clone(),
            unmatched.to_string(),
            200,
        ),
    ];
    for (what, to, body, expect) in &cases {
        assert_eq!(deliver(&http, to, body.clone()).await, *expect, "{what}");
    }
    // A flood of forgeries.
    for _ in 0..50 {
        assert_eq!(deliver(&http, &forged, payload.clone()).await, 404);
    }
    let (_, after) = server.get("/api/v1/tenants/acme/batches?limit=1000").await;
    assert_eq!(before, after, "a bad delivery changed a batch");

    let counts = server.status().await["webhooks"].clone();
    for (outcome, at_least) in [
        ("unknown-tenant", 1),
        ("forged", 51),
        ("oversized", 1),
        ("malformed", 2),
        ("foreign-site", 1),
        ("duplicate", 1),
        ("unmatched", 1),
        ("accepted", 1),
    ] {
        assert!(
            counts[outcome].as_u64().unwrap_or(0) >= at_least,
            "{outcome}: expected at least {at_least} in {counts:#}"
        );
    }
    let (_, events) = server.get("/api/v1/tenants/acme/events").await;
    let stored = events["events"].as_array().expect("events");
    assert!(
        stored
            .iter()
            .all(|e| e["site_luid"] == world.tableau.site_id()),
        "only the tenant's own site's events are stored: {events:#}"
    );
    let (_, text) = server.text("/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}"));
    let forged: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "mlc_webhook_deliveries_total" && s.labels.get("outcome") == Some("forged")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(
        forged >= 51.0,
        "forged deliveries counted {forged}:\n{text}"
    );
    // The token never reaches the log or the metrics.
    assert!(!text.contains(&token), "the webhook token is in /metrics");
    assert!(
        !server.log().contains(&token),
        "the webhook token was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_its_token_and_drives_the_runtime() {
    let world = world(23, 60).await;
    let file = world.setup_tenant_with("acme", &INVOICES, every_minute);
    let server = world.serve(0, &[]);

    // Without the token, or with a wrong one: 401, nothing else said.
    for token in [
        None,
        Some("wrong"),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
    ] {
        for path in [
            "/api/v1/tenants",
            "/api/v1/tenants/acme/secrets",
            "/api/v1/audit",
        ] {
            let (code, body) = server.call(Method::GET, path, None, token).await;
            assert_eq!(code, 401, "{path} with {token:?}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        }
    }
    let (code, _) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/secrets/tableau-pat",
            Some("x".into()),
            Some("wrong"),
        )
        .await;
    assert_eq!(code, 401);
    assert_eq!(server.text("/healthz").await.0, 200);

    until_equal(&server, &world, "acme", "the first load").await;
    server
        .wait_for(Duration::from_secs(30), "/readyz", || async {
            (server.text("/readyz").await.0 == 200).then_some(())
        })
        .await;

    // Pause: Oracle's changes wait; resume: they arrive.
    let (code, body) = server
        .call(
            Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/pause",
            None,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!((code, body["paused"].clone()), (200, true.into()), "{body}");
    server
        .wait_for(
            Duration::from_secs(20),
            "the pipeline to show paused",
            || async {
                (server.pipeline("acme", "invoices").await["schedule"]["state"] == "paused")
                    .then_some(())
            },
        )
        .await;
    world.oracle.mutate(4, 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_ne!(
        oracle_invoices(&world),
        tableau_invoices(&world, "acme").await,
        "a paused pipeline synced"
    );
    let (code, _) = server
        .call(
            Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/resume",
            None,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200);
    until_equal(&server, &world, "acme", "the changes after resume").await;

    // A full replay from the store, through the pipeline's own task.
    let (code, body) = server
        .call(
            Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/replay",
            Some(r#"{"full": true}"#.into()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let replayed = body["batch"].as_str().expect("batch id").to_owned();
    until_confirmed(&server, "acme", &replayed, "the replay to be confirmed").await;
    let (code, body) = server
        .call(
            Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/replay",
            Some(r#"{"failed": true}"#.into()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].clone()),
        (409, "conflict".into()),
        "{body}"
    );
    until_equal(&server, &world, "acme", "Tableau after the replay").await;

    // A definition through the API: a broken one is refused with its
    // location and changes nothing; a valid one takes effect.
    let text = std::fs::read_to_string(&file).expect("tenant file");
    let (code, body) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme",
            Some(text.replace("every = \"1m\"", "every = \"1 minute\"")),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("pipeline[0].every"), "{message}");
    let (code, body) = server
        .call(
            Method::PUT,
            "/api/v1/tenants/acme",
            Some(text.replace("every = \"1m\"", "every = \"2m\"")),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        (code, body["changed"].clone()),
        (200, true.into()),
        "{body}"
    );
    server
        .wait_for(Duration::from_secs(30), "the new schedule", || async {
            (server.pipeline("acme", "invoices").await["every_secs"] == 120).then_some(())
        })
        .await;

    // A plugin uploaded through the API: a component that is not one is
    // refused, a real one is loaded and listed.
    let (code, body) = server
        .call(
            Method::PUT,
            "/api/v1/plugins/acme/gl",
            Some("not wasm".into()),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let wasm = std::fs::read(support::scripted_wasm().with_file_name("gl-journal-lines.wasm"))
        .expect("the gl-journal-lines component (cargo xtask build-plugins)");
    let upload = server
        .http
        .put(format!("{}/api/v1/plugins/acme/gl", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .body(wasm)
        .send()
        .await
        .expect("uploading");
    assert_eq!(
        upload.status().as_u16(),
        200,
        "{}",
        upload.text().await.unwrap_or_default()
    );
    let (_, plugins) = server.get("/api/v1/plugins").await;
    assert!(
        plugins["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .any(|p| p["current"]["tenant"] == "acme" && p["current"]["name"] == "gl"),
        "{plugins:#}"
    );

    // Every change is in the audit log, by the API, and the chain holds.
    let (_, audit) = server.get("/api/v1/audit?limit=1000").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["actor"] == "admin-api")
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "pipeline.pause",
        "pipeline.resume",
        "replay.full",
        "tenant.apply",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    let (_, verify) = server.get("/api/v1/audit/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");

    // /metrics is Prometheus text with the families a dashboard needs.
    world.oracle.mutate(3, 1);
    until_equal(&server, &world, "acme", "one more change").await;
    let (code, text) = server.text("/metrics").await;
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let families: std::collections::BTreeSet<String> = scrape
        .samples
        .iter()
        .map(|s| {
            s.metric
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect();
    for family in [
        "mlc_records_pulled_total",
        "mlc_rows_written_total",
        "mlc_rejects_total",
        "mlc_batches_total",
        "mlc_open_batch",
        "mlc_cycle_duration_seconds",
        "mlc_freshness_seconds",
        "mlc_last_success_timestamp_seconds",
        "mlc_plugin_call_seconds",
        "mlc_oracle_requests_total",
        "mlc_tableau_requests_total",
    ] {
        assert!(
            families.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    let pulled: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "mlc_records_pulled_total" && s.labels.get("tenant") == Some("acme")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(pulled >= 60.0, "records pulled {pulled}:\n{text}");
    assert!(!text.contains(ADMIN_TOKEN));

    // The freshness history survives a restart (read back from the store;
    // Oracle does not change meanwhile, so no new sample can stand in).
    let samples = server.pipeline("acme", "invoices").await["freshness"]["samples"]
        .as_u64()
        .unwrap_or(0);
    assert!(samples >= 1, "no freshness sample after upserts");
    let (ended, _) = server.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    let server = world.serve(0, &[]);
    server
        .wait_for(
            Duration::from_secs(30),
            "the freshness history restored",
            || async {
                let p = server.pipeline("acme", "invoices").await;
                (p["freshness"]["samples"].as_u64().unwrap_or(0) >= samples).then_some(())
            },
        )
        .await;
}

/// `kill -9` of `serve` at random moments while Oracle changes and cycles
/// run (Tableau's jobs slowed so some kills land between submit and
/// confirm), five times, each followed by a restart: Tableau ends equal to
/// Oracle, no row doubled, every batch confirmed. The seed is printed;
/// `ML_CONNECTOR_CRASH_SEED=<n>` draws the same moments again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_serve_during_cycles_then_restart_loses_and_doubles_nothing() {
    let world = world(24, 300).await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    world.tableau.faults().slow_jobs(Duration::from_millis(700));
    let seed = std::env::var("ML_CONNECTOR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("crash seed {seed} (ML_CONNECTOR_CRASH_SEED={seed} draws the same moments)");
    let mut rng = seed;
    let mut next = move |lo: u64, hi: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        lo + rng % (hi - lo)
    };
    let mut states = Vec::new();
    for round in 0..5 {
        let server = world.serve(0, &[]);
        for _ in 0..next(2, 6) {
            world.oracle.mutate(3, 1);
            tokio::time::sleep(Duration::from_millis(next(200, 900))).await;
        }
        let ended = server.kill9();
        assert!(
            ended.killed,
            "round {round}: serve exited by itself:\n{}",
            ended.stderr
        );
        let doc = world.json(&["batches", "acme", "--limit", "1"]);
        let state = doc["batches"][0]["state"]["state"]
            .as_str()
            .unwrap_or("none")
            .to_owned();
        eprintln!("round {round}: the kill left the newest batch {state}");
        states.push(state);
    }
    world.tableau.faults().slow_jobs(Duration::ZERO);
    let server = world.serve(0, &[]);
    until_equal(&server, &world, "acme", "Tableau after the last restart").await;
    server
        .wait_for(Duration::from_secs(30), "every batch confirmed", || async {
            let (_, b) = server.get("/api/v1/tenants/acme/batches?limit=10000").await;
            b["batches"]
                .as_array()
                .is_some_and(|bs| {
                    !bs.is_empty() && bs.iter().all(|x| x["state"]["state"] == "confirmed")
                })
                .then_some(())
        })
        .await;
    let (ended, _) = server.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    eprintln!("states the kills left: {states:?}");
}

/// The CLI's commands over a tenant whose store `serve` holds go to its
/// admin API and print the same documents as over the store itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_the_running_server_that_holds_the_store() {
    let world = world(25, 50).await;
    let file = world.setup_tenant_with("acme", &INVOICES, every_minute);
    let file = file.to_str().expect("utf-8 path");
    let server = world.serve(0, &[]);
    until_equal(&server, &world, "acme", "the first load").await;

    let keys = |doc: &serde_json::Value| -> Vec<String> {
        doc["pipelines"][0]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let served = world.json(&["pipeline", "list", "acme"]);
    assert_eq!(served["pipelines"][0]["pipeline"], "invoices", "{served:#}");
    let paused = world.json(&["pipeline", "pause", "acme/invoices"]);
    assert_eq!(paused["paused"], true, "{paused:#}");
    server
        .wait_for(Duration::from_secs(20), "the pause to apply", || async {
            (server.pipeline("acme", "invoices").await["schedule"]["state"] == "paused")
                .then_some(())
        })
        .await;
    let batches = world.json(&["batches", "acme", "--limit", "3"]);
    assert!(
        !batches["batches"].as_array().expect("batches").is_empty(),
        "{batches:#}"
    );
    let pat = world.tableau.pat_secret().expose().to_owned();
    let out = world.run_with_stdin(
        &["--output", "json", "secret", "set", "acme", "tableau-pat"],
        &pat,
    );
    assert!(out.status.success(), "{}", support::explain(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&pat));
    let replay = world.json(&["replay", "--full", "acme/invoices"]);
    let id = replay["batch"].as_str().expect("a batch id").to_owned();
    until_confirmed(&server, "acme", &id, "the replay through the CLI").await;
    let skipped = world.json(&["sync", "acme", "--once"]);
    assert_eq!(
        skipped["started"],
        serde_json::json!([]),
        "a paused pipeline is not run: {skipped:#}"
    );
    world.json(&["pipeline", "resume", "acme/invoices"]);
    let started = world.json(&["sync", "acme/invoices", "--once"]);
    assert_eq!(
        started["started"],
        serde_json::json!(["invoices"]),
        "{started:#}"
    );
    let applied = world.json(&["tenant", "apply", file]);
    assert_eq!(applied["changed"], false, "{applied:#}");
    // Without the token the CLI says what it needs.
    let out = world
        .command(&["pipeline", "list", "acme"])
        .env_remove("ML_CONNECTOR_ADMIN_TOKEN")
        .output()
        .expect("running the CLI");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin token"),
        "{}",
        support::explain(&out)
    );

    let (ended, _) = server.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    // Over the store itself: the same document.
    let local = world.json(&["pipeline", "list", "acme"]);
    assert_eq!(keys(&local), keys(&served), "{local:#}\n{served:#}");
    assert_eq!(local["pipelines"][0]["paused"], false);
}

/// The mapping scripts stay live under `serve`: a broken edit is refused
/// (recorded in the audit log and the status, with its file and line) while
/// the previous version keeps syncing; a valid edit that changes the schema
/// is swapped in and re-exports the data source from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_mapping_script_is_validated_and_swapped_while_serving() {
    let world = world(26, 50).await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    let server = world.serve(0, &[]);
    until_equal(&server, &world, "acme", "the first load").await;
    let script = world.mappings_dir().join("acme/invoices.toml");
    let good = std::fs::read_to_string(&script).expect("the script");

    // A broken edit: refused with its location, the old version serves.
    std::fs::write(
        &script,
        good.replace("type = \"integer\"", "type = \"integr\""),
    )
    .unwrap();
    let reason = server
        .wait_for(
            Duration::from_secs(30),
            "the broken script to be refused",
            || async {
                let doc = server.status().await;
                doc["tenants"][0]["refused"]
                    .as_array()
                    .and_then(|r| r.iter().find(|x| x["pipeline"] == "invoices"))
                    .and_then(|x| x["reason"].as_str().map(str::to_owned))
            },
        )
        .await;
    assert!(
        reason.contains("invoices.toml"),
        "the refusal names the file: {reason}"
    );
    assert!(
        reason.contains("integr"),
        "the refusal says what is wrong: {reason}"
    );
    world.oracle.mutate(3, 1);
    until_equal(&server, &world, "acme", "syncing on the previous version").await;
    let (_, audit) = server.get("/api/v1/audit?limit=200").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "mapping.refused" && e["tenant"] == "acme"),
        "{audit:#}"
    );

    // A valid edit with one more column: swapped in, the data source
    // re-exported from the store with the new schema.
    let wider = format!(
        "{good}\n[[column]]\nname = \"Invoice Currency Copy\"\ntype = \"text\"\nsource = \"InvoiceCurrency\"\n"
    );
    std::fs::write(&script, wider).unwrap();
    server
        .wait_for(
            Duration::from_secs(60),
            "a re-export with the new schema",
            || async {
                let (_, b) = server
                    .get("/api/v1/tenants/acme/batches?state=confirmed&limit=50")
                    .await;
                b["batches"]
                    .as_array()
                    .is_some_and(|bs| bs.iter().any(|x| x["kind"]["type"] == "reexport"))
                    .then_some(())
            },
        )
        .await;
    let doc = server.status().await;
    assert!(
        doc["tenants"][0]["refused"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "the refusal is cleared once a version loads: {doc:#}"
    );
    let rows = world
        .tableau
        .datasource_rows("acme invoices", &[])
        .await
        .expect("rows")
        .expect("the data source");
    let columns = support::script_columns("invoices.toml").len() + 1;
    assert!(
        rows.iter().all(|r| r.len() == columns),
        "every row has the new column"
    );
    assert_eq!(rows.len(), oracle_invoices(&world).len());
}

/// Floods are limited per source before anything else is looked at: webhook
/// deliveries and admin API requests over their rate get 429 with
/// `Retry-After`, change no batch and are counted; probes are not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_webhooks_and_api_calls_are_rate_limited() {
    let world = world(27, 30).await;
    world.setup_tenant_with("acme", &INVOICES, every_minute);
    let server = world.serve(0, &["--webhook-rate", "30", "--api-rate", "60"]);
    until_equal(&server, &world, "acme", "the first load").await;
    let (_, before) = server.get("/api/v1/tenants/acme/batches?limit=100").await;

    let http = reqwest::Client::new();
    let forged = format!("{}/webhooks/tableau/acme/{}", server.url, "0".repeat(64));
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..40 {
        *codes
            .entry(deliver(&http, &forged, "{}").await)
            .or_insert(0) += 1;
    }
    assert!(
        codes.get(&404).is_some_and(|n| *n >= 3),
        "the burst is answered: {codes:?}"
    );
    assert!(
        codes.get(&429).is_some_and(|n| *n >= 25),
        "the flood is limited: {codes:?}"
    );
    let limited = server.status().await["webhooks"]["rate-limited"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        limited >= 25,
        "rate-limited deliveries are counted: {limited}"
    );

    let mut api = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for _ in 0..40 {
        let r = http
            .get(format!("{}/api/v1/tenants", server.url))
            .bearer_auth("wrong-token")
            .send()
            .await
            .expect("the API");
        if r.status().as_u16() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        *api.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert!(api.get(&401).is_some_and(|n| *n >= 5), "{api:?}");
    assert!(
        api.get(&429).is_some_and(|n| *n >= 20),
        "token guessing is slowed: {api:?}"
    );
    assert!(retry_after.is_some(), "a 429 says when to come back");
    assert_eq!(
        server.text("/healthz").await.0,
        200,
        "probes are not limited"
    );

    // Nothing changed, and the budget comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, after) = server.get("/api/v1/tenants/acme/batches?limit=100").await;
    assert_eq!(code, 200, "{after}");
    let strip = |v: &serde_json::Value| {
        v["batches"].as_array().map(|bs| {
            bs.iter()
                .filter(|b| b["records"] != 0)
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        strip(&before),
        strip(&after),
        "a flood changed a batch with records"
    );
}
