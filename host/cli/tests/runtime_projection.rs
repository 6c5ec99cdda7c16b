//! `pull = "mapped-fields"` through the CLI: a tenant whose pipelines ask
//! Oracle for only what their mapping scripts read ends with the same rows
//! as a tenant pulling whole records, its requests carry `fields=` (and
//! no `expand`), and a script that later reads more makes the next batch
//! pull every record again rather than re-export the narrower store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mlc_common::Value;
use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{World, datasource_name, oracle_invoices, tableau_invoices_mapped, workspace};

const PIPELINES: [(&str, &str, &str); 2] = [
    ("invoices", "invoices", "invoices.toml"),
    ("invoice-lines", "invoices", "invoice-lines.toml"),
];

/// Every row of `<tenant> <pipeline>`, ordered by its key columns.
async fn rows(world: &World, tenant: &str, pipeline: &str, order: &[&str]) -> Vec<Vec<Value>> {
    world
        .tableau
        .datasource_rows(&datasource_name(tenant, pipeline), order)
        .await
        .expect("reading the data source")
        .expect("the data source exists")
}

/// Percent-decodes a query (enough for what the client encodes).
fn decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The decoded `fields` of each `invoices` collection request after the
/// first `from` the sandbox logged (it keeps 256; these runs make fewer).
fn invoice_fields(world: &World, from: usize) -> Vec<Option<String>> {
    world
        .oracle
        .recent_requests()
        .iter()
        .skip(from)
        .filter_map(|r| r.strip_prefix("invoices?"))
        .map(|q| {
            let q = decoded(q);
            assert!(
                !q.split('&').any(|p| p.starts_with("expand=")),
                "a projected pull sends no expand: {q}"
            );
            q.split('&')
                .find_map(|p| p.strip_prefix("fields="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_fields_end_exact_with_fields_requests_and_a_wider_script_pulls_again() {
    let world = World::start(
        SandboxConfig {
            seed: 21,
            invoices: 150,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;

    // The reference: the same scripts over whole records.
    world.setup_tenant("whole", &PIPELINES);
    let whole = world.json(&["sync", "whole", "--once"]);
    for p in whole["pipelines"].as_array().expect("pipelines") {
        assert_eq!(p["ok"], true, "{p:#}");
    }

    // The projected tenant; its invoices pipeline starts with a narrower
    // script (the bench's 12 header columns).
    world.setup_tenant_with("proj", &PIPELINES, |text| {
        text.replace(
            "mapping = \"invoices.toml\"\n",
            "mapping = \"narrow.toml\"\npull = \"mapped-fields\"\n",
        )
        .replace(
            "mapping = \"invoice-lines.toml\"\n",
            "mapping = \"invoice-lines.toml\"\npull = \"mapped-fields\"\n",
        )
    });
    let narrow = world.mappings_dir().join("proj/narrow.toml");
    std::fs::copy(workspace().join("mappings/bench/invoices.toml"), &narrow)
        .expect("narrow script");
    let before_first = world.oracle.recent_requests().len();
    let first = world.json(&["sync", "proj", "--once"]);
    for p in first["pipelines"].as_array().expect("pipelines") {
        assert_eq!(p["ok"], true, "{p:#}");
        assert_eq!(p["report"]["action"]["type"], "published", "{p:#}");
    }

    // Exact: every invoice once, as Oracle holds it; every line row equal
    // to the whole-records tenant's.
    assert_eq!(
        tableau_invoices_mapped(&world, "proj", "invoices", "mappings/bench/invoices.toml").await,
        oracle_invoices(&world)
    );
    let lines_order = ["Invoice ID", "Line Number"];
    let projected_lines = rows(&world, "proj", "invoice-lines", &lines_order).await;
    assert!(!projected_lines.is_empty());
    assert_eq!(
        projected_lines,
        rows(&world, "whole", "invoice-lines", &lines_order).await
    );

    // What was asked: `fields=` on every invoices request, only what the
    // scripts read (the bench script reads no Description; the lines
    // script reads the lines, not the installments).
    let fields = invoice_fields(&world, before_first);
    assert!(fields.len() >= 2, "{fields:?}");
    for f in &fields {
        let f = f
            .as_deref()
            .unwrap_or_else(|| panic!("no fields= in {fields:?}"));
        assert!(
            f.split(';')
                .next()
                .is_some_and(|top| top.split(',').any(|a| a == "InvoiceId"))
        );
        assert!(!f.contains("invoiceInstallments"), "{f}");
    }
    assert!(
        fields
            .iter()
            .flatten()
            .any(|f| f.contains(";invoiceLines:") && f.contains("LineNumber")),
        "the lines pipeline names its child: {fields:?}"
    );
    assert!(
        fields
            .iter()
            .flatten()
            .any(|f| !f.contains("invoiceLines") && !f.split(',').any(|a| a == "Description")),
        "the narrow header pull: {fields:?}"
    );

    // A script that reads more than the store holds: the next batch is a
    // full pull, asking for the new attributes, and ends exact.
    std::fs::copy(workspace().join("mappings/demo/invoices.toml"), &narrow).expect("wider script");
    let before_wider = world.oracle.recent_requests().len();
    let wider = world.json(&["sync", "proj/invoices", "--once"]);
    assert_eq!(wider["pipelines"][0]["ok"], true, "{wider:#}");
    let listed = world.json(&["batches", "proj/invoices"]);
    let kinds: Vec<&str> = listed["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|b| b["kind"]["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["full", "full"], "{listed:#}");
    assert!(
        invoice_fields(&world, before_wider)
            .iter()
            .flatten()
            .any(|f| f.split(',').any(|a| a == "Description")),
        "the wider script's attributes are asked for"
    );
    let order = ["Invoice ID"];
    assert_eq!(
        rows(&world, "proj", "invoices", &order).await,
        rows(&world, "whole", "invoices", &order).await,
        "the wider script over the re-pulled records equals it over whole records"
    );
}
