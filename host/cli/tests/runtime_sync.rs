//! The durable runtime through the CLI, as an operator runs it: `tenant
//! apply` + `secret set` + `sync --once` of every pipeline against both
//! sandboxes, then incremental cycles while Oracle changes, each ending
//! with Tableau's data sources equal to Oracle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{ALL_PIPELINES, World, oracle_invoices, row_count, tableau_invoices};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_deletes_rows_of_records_gone_from_oracle() {
    let world = World::start(
        SandboxConfig {
            seed: 12,
            invoices: 60,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    let pipelines = [
        ("invoices", "invoices", "invoices.toml"),
        ("invoice-lines", "invoices", "invoice-lines.toml"),
    ];
    let file = world.setup_tenant("acme", &pipelines);
    world.ok(&["sync", "acme", "--once"]);
    let lines_before = row_count(&world, "acme", "invoice-lines").await;

    // Six invoices are deleted in Oracle; without reconciliation nothing
    // notices (an incremental pull never sees a deleted record).
    let keys = world.oracle.keys("invoices").expect("keys");
    for key in keys.iter().step_by(10) {
        world.oracle.delete("invoices", *key).expect("delete");
    }
    world.ok(&["sync", "acme", "--once"]);
    assert_eq!(tableau_invoices(&world, "acme").await.len(), 60);

    // With `reconcile` on (never reconciled yet, so due now) the next cycle
    // deletes their rows: the invoice and every one of its lines.
    let text = std::fs::read_to_string(&file).expect("tenant file");
    let text = text
        .replace(
            "mapping = \"invoices.toml\"",
            "mapping = \"invoices.toml\"\nreconcile = \"1h\"",
        )
        .replace(
            "mapping = \"invoice-lines.toml\"",
            "mapping = \"invoice-lines.toml\"\nreconcile = \"1h\"",
        );
    std::fs::write(&file, text).expect("tenant file");
    world.ok(&["tenant", "apply", file.to_str().expect("path")]);
    let third = world.json(&["sync", "acme", "--once"]);
    for p in third["pipelines"].as_array().expect("pipelines") {
        assert_eq!(p["report"]["deleted"], 6, "{p:#}");
    }
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );
    let lines_after = row_count(&world, "acme", "invoice-lines").await;
    assert!(
        lines_after < lines_before,
        "the deleted invoices' lines stay in Tableau: {lines_before} → {lines_after}"
    );
    // Not due again within the hour: nothing more is deleted, and the
    // deletes batch is in the journal like any other.
    let fourth = world.json(&["sync", "acme", "--once"]);
    assert_eq!(fourth["pipelines"][0]["report"]["deleted"], 0, "{fourth:#}");
    let listed = world.json(&["batches", "acme/invoices"]);
    let kinds: Vec<&str> = listed["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .filter_map(|b| b["kind"]["type"].as_str())
        .collect();
    assert!(kinds.contains(&"deletes"), "{listed:#}");
}
