//! The durable runtime through the CLI, as an operator runs it: `tenant
//! apply` + `secret set` + `sync --once` of every pipeline against both
//! sandboxes, then incremental cycles while Oracle changes, each ending
//! with Tableau's data sources equal to Oracle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{ALL_PIPELINES, World, oracle_invoices, tableau_invoices};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_secret_sync_publishes_every_pipeline_then_upserts_only_changes() {
    let world = World::start(
        SandboxConfig {
            seed: 11,
            invoices: 120,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.setup_tenant("acme", &ALL_PIPELINES);

    let first = world.json(&["sync", "acme", "--once"]);
    let pipelines = first["pipelines"].as_array().expect("pipelines");
    assert_eq!(pipelines.len(), ALL_PIPELINES.len(), "{first:#}");
    for p in pipelines {
        assert_eq!(p["ok"], true, "{p:#}");
        assert_eq!(p["report"]["action"]["type"], "published", "{p:#}");
    }
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );

    world.oracle.mutate(10, 4);
    let second = world.json(&["sync", "acme/invoices", "--once"]);
    let report = &second["pipelines"][0]["report"];
    assert_eq!(report["action"]["type"], "upserted", "{second:#}");
    assert!(
        report["records"].as_u64().expect("records") >= 4,
        "{second:#}"
    );
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );

    let quiet = world.json(&["sync", "acme", "--once"]);
    for p in quiet["pipelines"].as_array().expect("pipelines") {
        let name = p["pipeline"].as_str().expect("name");
        if name == "invoice-lines" {
            // The other pipeline on /invoices catches up on the change now.
            assert_eq!(p["report"]["action"]["type"], "upserted", "{p:#}");
        } else {
            assert_eq!(p["report"]["action"]["type"], "nothing-new", "{p:#}");
        }
    }
    let listed = world.json(&["batches", "acme/invoices"]);
    let states: Vec<&str> = listed["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|b| b["state"]["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["confirmed"; 3], "{listed:#}");
}
