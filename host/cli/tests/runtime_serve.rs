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
    let world = World::start(
        SandboxConfig {
            seed: 21,
            invoices: 150,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
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
