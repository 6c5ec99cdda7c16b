//! Scripted mappings through the real `scripted` component.
//!
//! - every demo script in `mappings/demo/` maps its sample
//!   (`mappings/demo/samples/<resource>.json`) to exactly the rows and
//!   rejects of its golden file (`mappings/demo/golden/<script>.json`),
//!   with lookups served from `mappings/demo/reference/`;
//! - a bad script is refused at load with its line, position and column;
//! - decimals keep every digit through the sandbox boundary.
//!
//! Needs the component: `cargo xtask build-plugins`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use mlc_common::{Decimal, Value};
use mlc_plugin::output::batch_json;
use mlc_plugin::{JsonDirReference, PluginError, PluginRuntime, RuntimeConfig};
use serde_json::Value as Json;

use crate::common::{init_tracing, workspace_root};

/// The built `scripted` component, or a failure naming the command to run.
fn scripted_wasm() -> Result<Vec<u8>> {
    let root = workspace_root();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT") {
        candidates.push(PathBuf::from(dir).join("scripted.wasm"));
    }
    let mut targets = vec![root.join("target")];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.insert(0, PathBuf::from(dir));
    }
    for target in targets {
        candidates.push(target.join("plugins/scripted.wasm"));
        candidates.push(target.join("wasm32-wasip2/plugin/mlc_plugin_scripted.wasm"));
    }
    for path in &candidates {
        if path.exists() {
            return std::fs::read(path).with_context(|| path.display().to_string());
        }
    }
    bail!(
        "the scripted component is not built (looked at {candidates:?}): run `cargo xtask build-plugins`"
    )
}

fn demo_dir() -> PathBuf {
    workspace_root().join("mappings/demo")
}

fn runtime() -> Result<PluginRuntime> {
    let reference = JsonDirReference::open(demo_dir().join("reference"))
        .map_err(|e| anyhow::anyhow!("demo reference data: {e}"))?;
    Ok(PluginRuntime::new(RuntimeConfig {
        reference: Arc::new(reference),
        ..RuntimeConfig::default()
    })?)
}

/// Records of a sample file, each kept as its exact JSON text.
fn sample_records(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON array", path.display()))?;
    Ok(items.into_iter().map(|r| r.get().to_owned()).collect())
}

/// Explains the first difference between two golden documents.
fn first_difference(expected: &Json, actual: &Json) -> String {
    for part in ["schema", "rows", "rejects"] {
        let (e, a) = (&expected[part], &actual[part]);
        if e == a {
            continue;
        }
        let (Some(e), Some(a)) = (e.as_array(), a.as_array()) else {
            return format!("{part}: expected {e}, got {a}");
        };
        for i in 0..e.len().max(a.len()) {
            if e.get(i) != a.get(i) {
                return format!(
                    "{part}[{i}]:\n  expected {}\n  got      {}\n({} expected, {} got)",
                    e.get(i)
                        .map(Json::to_string)
                        .unwrap_or_else(|| "nothing".into()),
                    a.get(i)
                        .map(Json::to_string)
                        .unwrap_or_else(|| "nothing".into()),
                    e.len(),
                    a.len()
                );
            }
        }
    }
    "no difference".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scripts_map_samples_to_the_golden_rows() -> Result<()> {
    init_tracing();
    let wasm = scripted_wasm()?;
    let runtime = runtime()?;
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(demo_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    scripts.sort();
    let names: Vec<String> = scripts
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect();
    for resource in [
        "invoices",
        "payablesPayments",
        "suppliers",
        "purchaseOrders",
        "receivablesInvoices",
        "journalBatches",
        "accountCombinationsLOV",
    ] {
        assert!(
            names.iter().any(|n| n == resource),
            "no demo script for {resource}: {names:?}"
        );
    }
    let mut failures = Vec::new();
    let mut rejects_seen = 0;
    let mut rejects_by_script = Vec::new();
    for (path, name) in scripts.iter().zip(&names) {
        let script = std::fs::read_to_string(path)?;
        let info = runtime
            .load("demo", name, wasm.clone(), Some(script))
            .await
            .with_context(|| format!("loading {}", path.display()))?;
        let [resource] = info.resources.as_slice() else {
            bail!("{name}: expected one resource, got {:?}", info.resources);
        };
        let records = sample_records(&demo_dir().join(format!("samples/{resource}.json")))?;
        let batch = runtime.map_batch("demo", name, resource, &records).await?;
        let schema = info
            .schema(resource)
            .with_context(|| format!("{name}: no schema for {resource}"))?;
        // The golden form is what `ml-connector plugin test --output json`
        // prints (see `mappings/README.md`).
        let actual = batch_json(schema, &batch);
        let golden_path = demo_dir().join(format!("golden/{name}.json"));
        let expected: Json = serde_json::from_str(
            &std::fs::read_to_string(&golden_path)
                .with_context(|| golden_path.display().to_string())?,
        )?;
        if actual != expected {
            failures.push(format!("{name}: {}", first_difference(&expected, &actual)));
        }
        assert!(!batch.rows.is_empty(), "{name}: the sample gave no rows");
        rejects_seen += batch.rejects.len();
        rejects_by_script.push(format!("{name}: {:?}", batch.rejects));
    }
    assert!(
        rejects_seen >= 7,
        "the samples' deliberate bad records gave only {rejects_seen} rejects:\n{}",
        rejects_by_script.join("\n")
    );
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scripts_are_refused_at_load_with_located_errors() -> Result<()> {
    init_tracing();
    let wasm = scripted_wasm()?;
    let runtime = runtime()?;
    let good = "resource = \"invoices\"\n\n[[column]]\nname = \"Invoice ID\"\ntype = \"integer\"\nkey = true\nsource = \"InvoiceId\"\n";
    runtime
        .load("acme", "invoices", wasm.clone(), Some(good.to_owned()))
        .await?;
    let cases = [
        (
            "\n[[column]]\nname = \"Invoice Amount\"\ntype = \"decimal(18)\"\nsource = \"InvoiceAmount\"\n",
            "line 11:8: column \"Invoice Amount\": type \"decimal(18)\"",
        ),
        (
            "\n[[column]]\nname = \"Supplier\"\ntype = \"text\"\nexpr = \"uper(Supplier)\"\n",
            "line 12:9: column \"Supplier\": in expr: unknown function \"uper\"",
        ),
        (
            "\n[[column]]\nname = \"Status\"\ntype = \"text\"\nsource = \"ValidationStatus\"\nmapp = { A = \"B\" }\n",
            "line 13:1: column \"Status\": unknown key \"mapp\"",
        ),
    ];
    let mut scripts: Vec<(String, &str)> = cases
        .iter()
        .map(|(tail, located)| (format!("{good}{tail}"), *located))
        .collect();
    scripts.push((
        format!("filter = \"CanceledFlag = 'Y'\"\n{good}"),
        "line 1:24: in filter: use '==' to compare",
    ));
    for (script, located) in scripts {
        let err = match runtime
            .load("acme", "invoices", wasm.clone(), Some(script.clone()))
            .await
        {
            Ok(_) => bail!("script accepted:\n{script}"),
            Err(e) => e,
        };
        let message = err.to_string();
        assert!(
            matches!(err, PluginError::Guest { .. }) || message.contains("invalid configuration"),
            "not a configuration refusal: {message}"
        );
        assert!(
            message.contains(located),
            "{message:?} does not contain {located:?}"
        );
    }
    // The refused versions left the good one serving.
    let batch = runtime
        .map_batch(
            "acme",
            "invoices",
            "invoices",
            &[r#"{"InvoiceId": 300100412233001}"#.to_owned()],
        )
        .await?;
    assert_eq!(batch.rows[0].values, vec![Value::Integer(300100412233001)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_keep_every_digit_through_the_sandbox() -> Result<()> {
    init_tracing();
    let wasm = scripted_wasm()?;
    let runtime = runtime()?;
    let script = r#"
resource = "journalBatches"
[[column]]
name = "Amount"
type = "decimal(38,9)"
source = "Amount"
[[column]]
name = "Net"
type = "decimal(38,2)"
expr = "Dr - Cr"
"#;
    runtime
        .load("acme", "exact", wasm, Some(script.to_owned()))
        .await?;
    let records = [
        r#"{"Amount": 12345678901234567890.123456789, "Dr": 12345678901234567.89, "Cr": 0.10}"#,
        r#"{"Amount": -0.000000001, "Dr": 0.1, "Cr": 0.2}"#,
        r#"{"Amount": 99999999999999999999999999999.999999999, "Dr": 1, "Cr": 1}"#,
        r#"{"Amount": 0.0000000001, "Dr": 1, "Cr": 1}"#,
    ]
    .map(str::to_owned);
    let batch = runtime
        .map_batch("acme", "exact", "journalBatches", &records)
        .await?;
    let d = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
    let got: Vec<&Vec<Value>> = batch.rows.iter().map(|r| &r.values).collect();
    assert_eq!(
        got,
        vec![
            &vec![
                d("12345678901234567890.123456789"),
                d("12345678901234567.79")
            ],
            &vec![d("-0.000000001"), d("-0.10")],
            &vec![d("99999999999999999999999999999.999999999"), d("0.00")],
        ]
    );
    assert_eq!(batch.rejects.len(), 1, "rejects: {:?}", batch.rejects);
    assert_eq!(batch.rejects[0].index, 3, "rejects: {:?}", batch.rejects);
    assert_eq!(
        batch.rejects[0].field.as_deref(),
        Some("Amount"),
        "rejects: {:?}",
        batch.rejects
    );
    assert!(
        batch.rejects[0]
            .reason
            .contains("more than 9 decimal places"),
        "{}",
        batch.rejects[0].reason
    );
    Ok(())
}

/// The demo scripts map what the Oracle sandbox serves (the same field
/// names and formats), with no reject, under REST framework version 1
/// (children as arrays) and 9 (children as `{"items": [...]}`).
#[cfg(feature = "oracle-sandbox")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scripts_map_the_oracle_sandbox_without_rejects() -> Result<()> {
    use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};

    init_tracing();
    let wasm = scripted_wasm()?;
    let runtime = runtime()?;
    let sandbox = OracleSandbox::start(SandboxConfig {
        invoices: 40,
        ..SandboxConfig::default()
    })
    .await?;
    let http = reqwest::Client::new();
    let token: Json = http
        .post(sandbox.token_url())
        .basic_auth(sandbox.client_id(), Some(sandbox.client_secret().expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", sandbox.scope().as_str()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let bearer = token["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();
    let mut report = Vec::new();
    for (script, expand) in [
        ("invoices", None),
        ("invoice-lines", Some("invoiceLines")),
        ("payablesPayments", None),
        ("suppliers", None),
        ("purchaseOrders", None),
        ("receivablesInvoices", None),
        ("journalBatches", Some("journalHeaders.journalLines")),
        ("accountCombinationsLOV", None),
    ] {
        let text = std::fs::read_to_string(demo_dir().join(format!("{script}.toml")))?;
        let info = runtime
            .load("demo", script, wasm.clone(), Some(text))
            .await?;
        let resource = info.resources[0].clone();
        for framework in ["1", "9"] {
            let mut records = Vec::new();
            let mut offset = 0;
            loop {
                let mut query = vec![
                    ("limit", "499".to_owned()),
                    ("offset", offset.to_string()),
                    ("onlyData", "true".to_owned()),
                ];
                if let Some(expand) = expand {
                    query.push(("expand", expand.to_owned()));
                }
                let body = http
                    .get(format!("{}/{resource}", sandbox.base_url()))
                    .bearer_auth(&bearer)
                    .header("REST-Framework-Version", framework)
                    .query(&query)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?;
                #[derive(serde::Deserialize)]
                struct Page {
                    items: Vec<Box<serde_json::value::RawValue>>,
                    count: usize,
                    #[serde(rename = "hasMore")]
                    has_more: bool,
                }
                let page: Page = serde_json::from_str(&body)
                    .with_context(|| format!("{resource}: not a collection page"))?;
                records.extend(page.items.into_iter().map(|r| r.get().to_owned()));
                offset += page.count;
                if !page.has_more || page.count == 0 {
                    break;
                }
            }
            let batch = runtime
                .map_batch("demo", script, &resource, &records)
                .await?;
            report.push(format!(
                "{script} (v{framework}): {} records, {} rows, {} rejects",
                records.len(),
                batch.rows.len(),
                batch.rejects.len()
            ));
            assert!(
                batch.rejects.is_empty(),
                "{script} under framework {framework} rejected sandbox records: {:?}",
                &batch.rejects[..batch.rejects.len().min(3)]
            );
            assert!(
                !records.is_empty(),
                "{script}: the sandbox served no {resource}"
            );
            assert!(
                !batch.rows.is_empty(),
                "{script}: no rows from {} records",
                records.len()
            );
        }
    }
    tracing::info!(report = ?report, "sandbox records mapped");
    sandbox.shutdown().await;
    Ok(())
}
