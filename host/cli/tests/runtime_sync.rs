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

/// Oracle's invoice lines read the way a third-party client would: its
/// REST API, `expand=invoiceLines`, paged by offset: (invoice, line).
async fn oracle_lines(world: &World) -> std::collections::BTreeSet<(i64, i64)> {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(world.oracle.token_url())
        .basic_auth(
            world.oracle.client_id(),
            Some(world.oracle.client_secret().expose()),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", world.oracle.scope().as_str()),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token answer");
    let access = token["access_token"].as_str().expect("access_token");
    let mut lines = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let page: serde_json::Value = http
            .get(format!("{}/invoices", world.oracle.base_url()))
            .bearer_auth(access)
            .query(&[
                ("onlyData", "true"),
                ("expand", "invoiceLines"),
                ("limit", "499"),
                ("offset", &offset.to_string()),
            ])
            .send()
            .await
            .expect("page request")
            .json()
            .await
            .expect("page");
        let items = page["items"].as_array().expect("items");
        for invoice in items {
            let id = invoice["InvoiceId"].as_i64().expect("InvoiceId");
            let children = &invoice["invoiceLines"];
            let children = children["items"].as_array().or(children.as_array());
            for line in children.expect("expanded invoiceLines") {
                lines.insert((id, line["LineNumber"].as_i64().expect("LineNumber")));
            }
        }
        offset += items.len();
        if page["hasMore"] != true {
            return lines;
        }
    }
}

/// What a dashboard sees in `<tenant> invoice-lines`: (invoice, line),
/// failing on a duplicate.
async fn tableau_lines(world: &World, tenant: &str) -> std::collections::BTreeSet<(i64, i64)> {
    use mlc_common::Value;
    let rows = world
        .tableau
        .datasource_rows(
            &support::datasource_name(tenant, "invoice-lines"),
            &["Invoice ID", "Line Number"],
        )
        .await
        .expect("reading the data source")
        .expect("the data source exists");
    let mut lines = std::collections::BTreeSet::new();
    for row in rows {
        let (Value::Integer(invoice), Value::Integer(line)) = (&row[0], &row[1]) else {
            panic!("unexpected row shape: {row:?}");
        };
        assert!(
            lines.insert((*invoice, *line)),
            "line {invoice}/{line} is in Tableau twice"
        );
    }
    lines
}

/// The reports of one `sync --once`, by pipeline.
fn reports(doc: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    doc["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .map(|p| {
            assert_eq!(p["ok"], true, "{p:#}");
            (
                p["pipeline"].as_str().expect("name").to_owned(),
                p["report"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pull_of_invoices_feeds_both_invoice_pipelines_each_exact() {
    let world = World::start(
        SandboxConfig {
            seed: 13,
            invoices: 700,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    // Pages of 100, four at a time: the first load is a sliced, shared pull.
    // No overlap window: a shared pull that started at any cursor but the
    // earliest would miss what the pipeline behind has not seen (with the
    // default 300 s window the re-read would hide it).
    let pipelines = [
        ("invoices", "invoices", "invoices.toml"),
        ("payments", "payablesPayments", "payablesPayments.toml"),
        ("invoice-lines", "invoices", "invoice-lines.toml"),
    ];
    world.setup_tenant_with("acme", &pipelines, |t| {
        t.replace(
            "[tableau]",
            "page_size = 100\nmax_concurrency = 4\noverlap_secs = 0\n\n[tableau]",
        )
    });
    let lines_in_oracle = oracle_lines(&world).await;
    assert!(
        lines_in_oracle.len() > 700,
        "{} lines",
        lines_in_oracle.len()
    );

    for (cycle, action) in [(1, "published"), (2, "upserted")] {
        if cycle == 2 {
            // Updates and inserts, and one change the lines pipeline alone
            // had not yet seen would be the same: both start from their
            // own cursors, the pull from the earlier.
            world.oracle.mutate(40, 15);
        }
        world.oracle.reset_request_count();
        let doc = world.json(&["sync", "acme", "--once"]);
        let by = reports(&doc);
        let (invoices, lines, payments) = (&by["invoices"], &by["invoice-lines"], &by["payments"]);
        for r in [invoices, lines] {
            assert_eq!(r["action"]["type"], action, "cycle {cycle}: {doc:#}");
        }
        assert_eq!(
            invoices["shared_pull_with"],
            serde_json::json!(["invoice-lines"]),
            "{doc:#}"
        );
        assert_eq!(
            lines["shared_pull_with"],
            serde_json::json!(["invoices"]),
            "{doc:#}"
        );
        assert_eq!(
            payments["shared_pull_with"],
            serde_json::json!([]),
            "{doc:#}"
        );
        // The pull is counted once, in the first pipeline's report; Oracle
        // served exactly those requests for /invoices.
        assert_eq!(lines["oracle_requests"], 0, "{doc:#}");
        assert_eq!(
            invoices["oracle_requests"].as_u64(),
            Some(world.oracle.resource_request_count("invoices")),
            "cycle {cycle}: Oracle served other /invoices requests than the shared pull made: {doc:#}"
        );
        assert_eq!(invoices["records"], lines["records"], "{doc:#}");
        // Each data source equals Oracle: nothing lost, nothing doubled.
        let lines_in_oracle = oracle_lines(&world).await;
        assert_eq!(
            tableau_invoices(&world, "acme").await,
            oracle_invoices(&world),
            "cycle {cycle}: invoices"
        );
        let in_tableau = tableau_lines(&world, "acme").await;
        assert_eq!(
            in_tableau.len(),
            lines_in_oracle.len(),
            "cycle {cycle}: lines missing from Tableau: {:?}; lines Oracle does not have: {:?}",
            lines_in_oracle
                .difference(&in_tableau)
                .take(5)
                .collect::<Vec<_>>(),
            in_tableau
                .difference(&lines_in_oracle)
                .take(5)
                .collect::<Vec<_>>(),
        );
        assert_eq!(in_tableau, lines_in_oracle, "cycle {cycle}: lines");
    }

    // The lines pipeline alone (an operator's `sync acme/invoice-lines`)
    // moves ahead of the other; the next shared pull starts at the earlier
    // cursor and the pipeline already past it takes nothing twice.
    world.oracle.mutate(10, 0);
    let alone = reports(&world.json(&["sync", "acme/invoice-lines", "--once"]));
    assert_eq!(
        alone["invoice-lines"]["shared_pull_with"],
        serde_json::json!([])
    );
    world.oracle.mutate(5, 0);
    let doc = world.json(&["sync", "acme", "--once"]);
    let by = reports(&doc);
    assert_eq!(
        by["invoices"]["shared_pull_with"],
        serde_json::json!(["invoice-lines"]),
        "{doc:#}"
    );
    assert!(
        by["invoices"]["records"].as_u64() > by["invoice-lines"]["records"].as_u64(),
        "the pipeline that was behind got no more than the one ahead: {doc:#}"
    );
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );
    assert_eq!(
        tableau_lines(&world, "acme").await,
        oracle_lines(&world).await
    );
}
