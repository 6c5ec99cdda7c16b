//! `ml-connector plugin new NAME [--dir DIR]`: a custom plugin crate to
//! start from, written against the SDK (`plugins/sdk`): a mapper of one
//! resource, a sample input, a test of it, and a cargo alias that builds the
//! component for wasm32-wasip2 in one command (`cargo wasm`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Output;

/// Scaffold a custom plugin crate.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The crate name: lowercase letters, digits and `-`, starting with a
    /// letter (e.g. `acme-invoices`).
    name: String,
    /// Where to create it (default: ./NAME); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The SDK crate (`plugins/sdk` of an ml-connector checkout; default:
    /// the one this binary was built from).
    #[arg(long, env = "ML_CONNECTOR_PLUGIN_SDK")]
    sdk: Option<PathBuf>,
}

/// The SDK of the checkout this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sdk");

impl NewArgs {
    pub fn run(self, output: Output) -> Result<()> {
        check_crate_name(&self.name)?;
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(&self.name));
        if dir.exists()
            && std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .next()
                .is_some()
        {
            bail!(
                "{} exists and is not empty: nothing was written",
                dir.display()
            );
        }
        let sdk = self.sdk.unwrap_or_else(|| PathBuf::from(BUILT_SDK));
        let sdk = sdk.canonicalize().with_context(|| {
            format!(
                "the plugin SDK {} is not there: pass --sdk PATH (plugins/sdk of an ml-connector checkout)",
                sdk.display()
            )
        })?;
        if !sdk.join("Cargo.toml").is_file() {
            bail!("{} is not the plugin SDK (no Cargo.toml)", sdk.display());
        }
        let files = files(&self.name, &sdk);
        for (path, text) in &files {
            write(&dir.join(path), text)?;
        }
        // The checkout's lock file pins the SDK's dependencies to versions
        // known to build (and found offline when they were built before).
        if let Some(lock) = sdk
            .parent()
            .and_then(Path::parent)
            .map(|r| r.join("Cargo.lock"))
            && lock.is_file()
        {
            std::fs::copy(&lock, dir.join("Cargo.lock"))
                .with_context(|| format!("copying {}", lock.display()))?;
        }
        let wasm = format!(
            "target/wasm32-wasip2/release/{}.wasm",
            self.name.replace('-', "_")
        );
        let doc = json!({
            "name": self.name,
            "dir": dir.display().to_string(),
            "sdk": sdk.display().to_string(),
            "files": files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            "component": wasm,
        });
        let text = || {
            format!(
                "plugin crate `{}` created in {dir}\n  cd {dir}\n  cargo test                   # the sample through the mapper, natively\n  cargo wasm                   # the component: {wasm}\n  ml-connector plugin test {wasm} --records samples/invoices.json",
                self.name,
                dir = dir.display(),
            )
        };
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
            Output::Text => println!("{}", text()),
        }
        Ok(())
    }
}

fn check_crate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.ends_with('-')
        || name.len() > 64
    {
        return Err(crate::failure::CliError::InvalidName {
            what: "plugin",
            name: name.to_owned(),
            rule: "use lowercase letters, digits and `-`, starting with a letter (e.g. acme-invoices)",
        }
        .into());
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `acme-invoices` → `AcmeInvoices`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The crate's files: (path in the crate, text).
fn files(name: &str, sdk: &Path) -> Vec<(String, String)> {
    let ty = type_name(name);
    let sdk = sdk.display().to_string().replace('\\', "/");
    vec![
        ("Cargo.toml".into(), cargo_toml(name, &sdk)),
        (".cargo/config.toml".into(), CARGO_CONFIG.into()),
        (".gitignore".into(), "/target\n".into()),
        (
            "src/lib.rs".into(),
            LIB_RS.replace("__TYPE__", &ty).replace("__NAME__", name),
        ),
        ("samples/invoices.json".into(), SAMPLE.into()),
        (
            "README.md".into(),
            README
                .replace("__NAME__", name)
                .replace("__CRATE__", &name.replace('-', "_")),
        ),
    ]
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "A custom ml-connector mapping plugin."
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A cdylib built for wasm32-wasip2 is already a WebAssembly component.
crate-type = ["cdylib"]

[dependencies]
mlc-plugin-sdk = {{ path = "{sdk}" }}

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1

# Not a member of any enclosing workspace.
[workspace]
"#
    )
}

const CARGO_CONFIG: &str = r#"# `cargo wasm`: the component, target/wasm32-wasip2/release/<crate>.wasm
# (needs `rustup target add wasm32-wasip2` once).
[alias]
wasm = "build --release --target wasm32-wasip2"
"#;

const LIB_RS: &str = r##"//! `__NAME__`: a custom ml-connector mapping plugin. It maps Oracle's
//! `invoices` into one row per invoice; edit the schema and `map` to shape
//! your data source. `cargo test` runs samples/invoices.json through it;
//! `cargo wasm` builds the component.

use mlc_plugin_sdk::column::{self, ColumnExt};
use mlc_plugin_sdk::{Column, MapError, Mapper, Object, PluginError, Rows};

const INVOICES: &str = "invoices";

struct __TYPE__;

impl Mapper for __TYPE__ {
    fn configure(config: &str) -> Result<Self, PluginError> {
        if !config.trim().is_empty() {
            return Err(PluginError::invalid_config("__NAME__ takes no configuration"));
        }
        Ok(Self)
    }

    fn resources(&self) -> Vec<String> {
        vec![INVOICES.into()]
    }

    fn schema(&self, resource: &str) -> Option<Vec<Column>> {
        (resource == INVOICES).then(|| {
            vec![
                column::integer("Invoice ID").key(),
                column::text("Invoice Number"),
                column::decimal("Invoice Amount", 18, 2),
                column::text("Currency").nullable(),
                column::timestamp("Last Updated"),
            ]
        })
    }

    fn map(&self, _resource: &str, rec: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        rows.push(vec![
            rec.integer("InvoiceId")?,
            rec.text("InvoiceNumber")?,
            rec.decimal("InvoiceAmount", 18, 2)?,
            rec.opt_text("InvoiceCurrency")?,
            rec.timestamp("LastUpdateDate")?,
        ]);
        Ok(())
    }
}

mlc_plugin_sdk::export_mapper!(__TYPE__);

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_plugin_sdk::Value;

    /// The records of samples/invoices.json, one JSON text each.
    fn sample() -> Vec<String> {
        let text = include_str!("../samples/invoices.json");
        let Some(inner) = text.trim().strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            panic!("samples/invoices.json is not a JSON array");
        };
        // One record per line, as the sample is written.
        inner
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_sample_maps_to_one_row_per_invoice() {
        let mapper = __TYPE__::configure("").expect("configure");
        let schema = mapper.schema(INVOICES).expect("schema");
        let records = sample();
        let out = mlc_plugin_sdk::map_records(&mapper, INVOICES, &records).expect("map");
        assert!(out.rejects.is_empty(), "rejects: {:?}", out.rejects);
        let rows = out.rows();
        assert_eq!(rows.len(), records.len(), "one row per invoice");
        assert!(rows.iter().all(|r| r.values.len() == schema.len()));
        assert_eq!(rows[0].values[0], Value::Integer(300100412233001));
        assert_eq!(rows[1].values[3], Value::Null, "no currency: null");
    }

    #[test]
    fn a_record_without_its_key_is_rejected_naming_the_field() {
        let mapper = __TYPE__::configure("").expect("configure");
        let records = vec![r#"{"InvoiceNumber":"X","InvoiceAmount":1,"LastUpdateDate":"2024-01-01T00:00:00Z"}"#.to_owned()];
        let out = mlc_plugin_sdk::map_records(&mapper, INVOICES, &records).expect("map");
        assert_eq!(out.rejects.len(), 1, "{:?}", out.rejects);
        assert!(format!("{:?}", out.rejects[0]).contains("InvoiceId"), "{:?}", out.rejects);
    }
}
"##;

const SAMPLE: &str = r#"[
{"InvoiceId":300100412233001,"InvoiceNumber":"ACME-2024-0042","InvoiceAmount":1250.00,"InvoiceCurrency":"USD","LastUpdateDate":"2024-05-03T09:02:51.077+00:00"},
{"InvoiceId":300100412233002,"InvoiceNumber":"ACME-2024-0043","InvoiceAmount":"99.5","LastUpdateDate":"2024-05-04T10:00:00Z"}
]
"#;

const README: &str = r#"# __NAME__

A custom ml-connector mapping plugin (scaffolded by `ml-connector plugin new`).

```sh
cargo test                                  # samples/invoices.json through the mapper
cargo wasm                                  # target/wasm32-wasip2/release/__CRATE__.wasm
ml-connector plugin check target/wasm32-wasip2/release/__CRATE__.wasm
ml-connector plugin test target/wasm32-wasip2/release/__CRATE__.wasm --records samples/invoices.json
ml-connector plugin load target/wasm32-wasip2/release/__CRATE__.wasm --tenant TENANT --name __NAME__ --sample samples/invoices.json
```

`cargo wasm` needs the target once: `rustup target add wasm32-wasip2`.
"#;
