//! `mapping diff` and `mapping promote` through the real binary, over the
//! records a real sync stored. Each candidate is reported exactly, the
//! expected figures computed from the Oracle sandbox's own data: a renamed
//! column is a rename and changes no row; a changed value-map entry changes
//! exactly the rows holding that code, cell by cell; a candidate that
//! refuses a code rejects exactly those records, with the reason. A diff
//! installs nothing. `promote` installs a candidate (audited, the previous
//! script kept), the next sync re-exports the data source with the new
//! column, and a refused candidate changes nothing. Through a running
//! `serve` the same diff comes back from the admin API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use serde_json::{Value, json};
use support::{ALL_PIPELINES, World, datasource_name, explain, workspace};

const INVOICES: u64 = 120;

fn demo_script() -> String {
    std::fs::read_to_string(workspace().join("mappings/demo/invoices.toml")).expect("script")
}

/// Writes a candidate: the demo invoices script with `from` replaced by
/// `to` (which must be there).
fn candidate(world: &World, name: &str, from: &str, to: &str) -> PathBuf {
    let script = demo_script();
    assert!(script.contains(from), "the demo script has no {from:?}");
    let path = world.dir.path().join(name);
    std::fs::write(&path, script.replacen(from, to, 1)).expect("candidate");
    path
}

/// How many Oracle invoices have this validation status.
fn with_status(world: &World, status: &str) -> u64 {
    world
        .oracle
        .snapshot("invoices")
        .expect("snapshot")
        .iter()
        .filter(|i| i["ValidationStatus"] == status)
        .count() as u64
}

fn diff(world: &World, path: &std::path::Path) -> Value {
    world.json(&[
        "mapping",
        "diff",
        "acme/invoices",
        "--candidate",
        path.to_str().expect("utf-8"),
    ])
}

fn counts(rows: &Value) -> Value {
    json!({
        "records": rows["records"],
        "changed": rows["rows_changed"],
        "unchanged": rows["rows_unchanged"],
        "added": rows["rows_added"],
        "removed": rows["rows_removed"],
        "new_rejects": rows["new_rejects"],
        "no_longer_rejected": rows["no_longer_rejected"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_reports_each_candidate_exactly_and_promote_installs_one() {
    let world = World::start(
        SandboxConfig {
            seed: 47,
            invoices: INVOICES,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    let out = world.run(&["sync", "acme", "--once"]);
    assert!(out.status.success(), "first sync: {}", explain(&out));
    let script_path = world.mappings_dir().join("acme/invoices.toml");
    let needs = with_status(&world, "Needs revalidation");
    assert!(
        needs > 0 && needs < INVOICES,
        "the sandbox's data must hold both statuses (it has {needs} of {INVOICES} to revalidate)"
    );

    // A renamed column: a schema change, no row changes.
    let rename = candidate(
        &world,
        "rename.toml",
        "name = \"Supplier Site\"",
        "name = \"Vendor Site\"",
    );
    let d = diff(&world, &rename);
    assert_eq!(
        d["schema"]["renamed"],
        json!([{"from": "Supplier Site", "to": "Vendor Site"}]),
        "{d:#}"
    );
    assert_eq!(d["schema"]["changed"], true, "{d:#}");
    assert_eq!(d["schema"]["added"], json!([]), "{d:#}");
    assert_eq!(d["schema"]["removed"], json!([]), "{d:#}");
    assert_eq!(
        counts(&d["rows"]),
        json!({"records": INVOICES, "changed": 0, "unchanged": INVOICES, "added": 0, "removed": 0, "new_rejects": 0, "no_longer_rejected": 0}),
        "{d:#}"
    );
    assert_ne!(d["candidate_version"], d["current_version"], "{d:#}");
    assert!(
        d["timing"]["current_us_per_record"].as_f64().unwrap() > 0.0
            && d["timing"]["candidate_us_per_record"].as_f64().unwrap() > 0.0,
        "{d:#}"
    );

    // A value map entry changed: exactly the rows with that code change,
    // in that column only.
    let relabel = candidate(
        &world,
        "relabel.toml",
        "\"Needs revalidation\" = \"Needs Revalidation\"",
        "\"Needs revalidation\" = \"Revalidate\"",
    );
    let d = diff(&world, &relabel);
    assert_eq!(d["schema"]["changed"], false, "{d:#}");
    assert_eq!(
        counts(&d["rows"]),
        json!({"records": INVOICES, "changed": needs, "unchanged": INVOICES - needs, "added": 0, "removed": 0, "new_rejects": 0, "no_longer_rejected": 0}),
        "{d:#}"
    );
    assert_eq!(
        d["rows"]["changed_by_column"],
        json!({"Validation Status": needs}),
        "{d:#}"
    );
    let sample = d["rows"]["sample"].as_array().expect("sample");
    assert_eq!(sample.len() as u64, needs.min(10), "{d:#}");
    assert_eq!(
        sample[0]["cells"],
        json!([{"column": "Validation Status", "before": "Needs Revalidation", "after": "Revalidate"}]),
        "{d:#}"
    );

    // A candidate that refuses a code: exactly those records are new
    // rejects, with the column named in the reason.
    let refuse = candidate(
        &world,
        "refuse.toml",
        "source = \"ValidationStatus\"\nmap = { \"Validated\" = \"Validated\", \"Needs revalidation\" = \"Needs Revalidation\", \"Never validated\" = \"Not Validated\" }\nmap_default = \"Other\"",
        "expr = \"if(ValidationStatus == 'Needs revalidation', null, ValidationStatus)\"\nnullable = false",
    );
    let d = diff(&world, &refuse);
    assert_eq!(
        counts(&d["rows"]),
        json!({"records": INVOICES, "changed": 0, "unchanged": INVOICES - needs, "added": 0, "removed": needs, "new_rejects": needs, "no_longer_rejected": 0}),
        "{d:#}"
    );
    let rejects = d["rows"]["new_reject_sample"].as_array().expect("rejects");
    assert_eq!(rejects.len() as u64, needs.min(10), "{d:#}");
    assert!(
        rejects
            .iter()
            .all(|r| r["reason"].as_str().unwrap().contains("Validation Status")),
        "{d:#}"
    );

    // The text report says the same.
    let text = world.ok(&[
        "mapping",
        "diff",
        "acme/invoices",
        "--candidate",
        relabel.to_str().unwrap(),
    ]);
    assert!(
        text.contains(&format!("{needs} would change")) && text.contains("Validation Status"),
        "{text}"
    );

    // Diffs installed nothing: the script on disk is the demo's.
    assert_eq!(
        std::fs::read_to_string(&script_path).unwrap(),
        demo_script()
    );

    // A candidate the sandbox refuses is reported with its location, and
    // promoting it changes nothing.
    let broken = candidate(
        &world,
        "broken.toml",
        "expr = \"trim(Description)\"",
        "expr = \"trimm(Description)\"",
    );
    let out = world.fails(&[
        "mapping",
        "promote",
        "acme/invoices",
        "--candidate",
        broken.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("trimm"),
        "{}",
        explain(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "a refused candidate is a validation failure: {}",
        explain(&out)
    );
    assert!(stderr.contains("hint:"), "{}", explain(&out));
    assert_eq!(
        std::fs::read_to_string(&script_path).unwrap(),
        demo_script()
    );

    // Promote the rename: installed, the previous script kept, audited.
    let p = world.json(&[
        "mapping",
        "promote",
        "acme/invoices",
        "--candidate",
        rename.to_str().unwrap(),
    ]);
    assert_eq!(p["schema_changed"], true, "{p:#}");
    assert_eq!(
        std::fs::read_to_string(&script_path).unwrap(),
        std::fs::read_to_string(&rename).unwrap()
    );
    let kept = PathBuf::from(p["previous_kept"].as_str().expect("kept"));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), demo_script());
    let log = world.json(&["audit", "--log"]);
    let entry = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "mapping.promote")
        .unwrap_or_else(|| panic!("no mapping.promote in the audit log: {log:#}"));
    assert_eq!(entry["detail"]["version"], p["version"], "{entry:#}");

    // The next sync re-exports: the data source has the new column and
    // every invoice once.
    let out = world.run(&["--output", "json", "sync", "acme", "--once"]);
    assert!(
        out.status.success(),
        "sync after promote: {}",
        explain(&out)
    );
    let batches = world.json(&["batches", "acme/invoices", "--limit", "1"]);
    assert_eq!(
        batches["batches"][0]["kind"]["type"], "reexport",
        "{batches:#}"
    );
    let name = datasource_name("acme", "invoices");
    let rows = world
        .tableau
        .datasource_rows(&name, &["Vendor Site"])
        .await
        .expect("the new column is in the data source")
        .expect("data source");
    assert_eq!(rows.len() as u64, INVOICES);
    assert!(
        world
            .tableau
            .datasource_rows(&name, &["Supplier Site"])
            .await
            .is_err(),
        "the old column name is still in the data source"
    );

    // Through a running server: the admin API answers the same diff, and
    // the CLI reaches it there while the server holds the store.
    let local = diff(&world, &relabel);
    let server = world.serve(support::serve::free_port(), &[]);
    server
        .wait_for(
            std::time::Duration::from_secs(60),
            "acme running",
            || async {
                (server.status().await["tenants"][0]["status"]["state"] == "running").then_some(())
            },
        )
        .await;
    let (status, remote) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/mapping/diff?sample=3",
            Some(std::fs::read_to_string(&relabel).unwrap()),
            Some(support::serve::ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{remote:#}");
    assert_eq!(
        counts(&remote["rows"]),
        counts(&local["rows"]),
        "{remote:#}"
    );
    assert_eq!(remote["schema"], local["schema"], "{remote:#}");
    assert_eq!(
        remote["rows"]["sample"].as_array().map(Vec::len),
        Some(3),
        "{remote:#}"
    );
    let mut cmd = world.command(&[
        "--output",
        "json",
        "mapping",
        "diff",
        "acme/invoices",
        "--candidate",
        relabel.to_str().unwrap(),
    ]);
    cmd.env("ML_CONNECTOR_ADMIN_TOKEN", support::serve::ADMIN_TOKEN);
    let out = cmd.output().expect("mapping diff");
    assert!(
        out.status.success(),
        "diff through the server: {}",
        explain(&out)
    );
    let cli = support::stdout_json(&out);
    assert_eq!(counts(&cli["rows"]), counts(&local["rows"]), "{cli:#}");
    let (status, refused) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/tenants/acme/pipelines/invoices/mapping/diff",
            Some(std::fs::read_to_string(&broken).unwrap()),
            Some(support::serve::ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 422, "{refused:#}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("trimm"),
        "{refused:#}"
    );
    drop(server);
}
