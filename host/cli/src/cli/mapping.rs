//! `mapping diff` and `mapping promote`: a shadow run of a candidate
//! mapping over a pipeline's recent stored records, and its installation.
//! Both run here on the tenant's store, or on the running `serve` that
//! holds it (its admin API answers with the same document); the text shown
//! is rendered from that document either way.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mlc_sync::{CandidateFile, DiffOptions};
use serde_json::Value;

use super::Output;
use super::remote::Place;
use super::runtime::{RuntimeArgs, Target, actor, print};

/// Shadow runs and promotion of a mapping candidate.
#[derive(Debug, clap::Subcommand)]
pub enum MappingCommand {
    /// Map the pipeline's recent stored records with a candidate and with
    /// the version in use, inside the sandbox, and show what would change:
    /// the schema, the rows (cell by cell for a sample), new rejects and
    /// the time per record of both. Installs nothing.
    Diff(DiffArgs),
    /// Install a candidate mapping script for a pipeline (validated
    /// against its sample first, audited): it maps the next batch, and a
    /// schema change makes that batch a re-export of the data source.
    Promote(PromoteArgs),
}

/// `mapping diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// `TENANT/PIPELINE`.
    target: Target,
    /// The candidate: a mapping script (.toml), or a component (.wasm) for
    /// a pipeline mapped by a plugin.
    #[arg(long, value_name = "FILE")]
    candidate: PathBuf,
    /// Records mapped: the latest versions of those of the newest batches.
    #[arg(long, default_value_t = DiffOptions::default().records)]
    records: usize,
    /// Examples shown of each kind of change.
    #[arg(long, default_value_t = DiffOptions::default().sample)]
    sample: usize,
}

/// `mapping promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// `TENANT/PIPELINE`.
    target: Target,
    /// The candidate mapping script (.toml).
    #[arg(long, value_name = "FILE")]
    candidate: PathBuf,
}

fn read_candidate(path: &std::path::Path) -> Result<CandidateFile> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the candidate {}", path.display()))?;
    Ok(CandidateFile {
        origin: path.display().to_string(),
        bytes,
    })
}

impl MappingCommand {
    /// Runs the subcommand.
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        match self {
            Self::Diff(d) => d.run(args, output).await,
            Self::Promote(p) => p.run(args, output).await,
        }
    }
}

impl DiffArgs {
    async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        let pipeline = self.target.pipeline()?.to_owned();
        let tenant = self.target.tenant.clone();
        let candidate = read_candidate(&self.candidate)?;
        let doc = match args.place(&tenant)? {
            Place::Server(remote) => {
                let path = format!(
                    "/pipelines/{pipeline}/mapping/diff?records={}&sample={}",
                    self.records, self.sample
                );
                remote
                    .call(reqwest::Method::POST, &path, Some(candidate.bytes))
                    .await?
            }
            Place::Local(store) => {
                let host = args.host(args.master_key()?).await?;
                let options = DiffOptions {
                    records: self.records,
                    sample: self.sample,
                };
                let diff = host
                    .diff_mapping(&store, &pipeline, &candidate, &options)
                    .await;
                host.shutdown().await;
                serde_json::to_value(diff?)?
            }
        };
        print(output, &doc, || diff_text(&doc, &self.candidate));
        Ok(())
    }
}

impl PromoteArgs {
    async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        let pipeline = self.target.pipeline()?.to_owned();
        let tenant = self.target.tenant.clone();
        let candidate = read_candidate(&self.candidate)?;
        let doc = match args.place(&tenant)? {
            Place::Server(remote) => {
                let path = format!("/pipelines/{pipeline}/mapping/promote");
                remote
                    .call(reqwest::Method::POST, &path, Some(candidate.bytes))
                    .await?
            }
            Place::Local(store) => {
                let host = args.host(args.master_key()?).await?;
                let promoted = host.promote_mapping(&store, &pipeline, &candidate).await;
                host.shutdown().await;
                let promoted = promoted?;
                let runtime = args.runtime()?;
                runtime.audit(
                    &actor(),
                    "mapping.promote",
                    Some(&tenant),
                    promoted.audit_detail(&candidate.origin),
                )?;
                serde_json::to_value(&promoted)?
            }
        };
        print(output, &doc, || promote_text(&doc));
        Ok(())
    }
}

fn short(v: &Value) -> String {
    let s = v.as_str().unwrap_or("?");
    s.get(..12).unwrap_or(s).to_owned()
}

fn columns(v: &Value) -> Vec<&Value> {
    v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

/// A field of a document as text (`?` when missing).
fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// The text `mapping diff` prints, from its document.
fn diff_text(doc: &Value, candidate: &std::path::Path) -> String {
    let mut lines: Vec<String> = Vec::new();
    let each = |lines: &mut Vec<String>, items: &Value, render: &dyn Fn(&Value) -> String| {
        lines.extend(columns(items).into_iter().map(render));
    };
    let rows = &doc["rows"];
    let n = |k: &str| rows[k].as_u64().unwrap_or(0);
    lines.push(format!(
        "{}/{}: candidate {} ({}) against the version in use ({}), over {} stored records of recent batches",
        s(&doc["tenant"]),
        s(&doc["pipeline"]),
        candidate.display(),
        short(&doc["candidate_version"]),
        short(&doc["current_version"]),
        n("records"),
    ));
    let schema = &doc["schema"];
    if schema["changed"].as_bool() == Some(true) {
        lines.push("schema: changed (a promote re-exports the data source from the store)".into());
        each(&mut lines, &schema["renamed"], &|r| {
            format!("  renamed  {} -> {}", s(&r["from"]), s(&r["to"]))
        });
        each(&mut lines, &schema["added"], &|c| {
            format!("  added    {} ({})", s(&c["name"]), s(&c["type"]))
        });
        each(&mut lines, &schema["removed"], &|c| {
            format!("  removed  {} ({})", s(&c["name"]), s(&c["type"]))
        });
        each(&mut lines, &schema["retyped"], &|r| {
            format!(
                "  retyped  {}: {} -> {}",
                s(&r["after"]["name"]),
                r["before"],
                r["after"]
            )
        });
        if schema["reordered"].as_bool() == Some(true) {
            lines.push("  reordered columns".into());
        }
    } else {
        lines.push("schema: unchanged".into());
    }
    lines.push(format!(
        "rows: {} before, {} after: {} would change, {} unchanged, {} added, {} removed",
        n("rows_before"),
        n("rows_after"),
        n("rows_changed"),
        n("rows_unchanged"),
        n("rows_added"),
        n("rows_removed"),
    ));
    if let Some(by) = rows["changed_by_column"].as_object()
        && !by.is_empty()
    {
        let parts: Vec<String> = by.iter().map(|(c, k)| format!("{c} {k}")).collect();
        lines.push(format!("  changed by column: {}", parts.join(", ")));
    }
    each(&mut lines, &rows["sample"], &|change| {
        let cells: Vec<String> = columns(&change["cells"])
            .iter()
            .map(|c| format!("{}: {} -> {}", s(&c["column"]), c["before"], c["after"]))
            .collect();
        format!(
            "  record {} row {}: {}",
            s(&change["key"]),
            change["row"],
            cells.join("; ")
        )
    });
    lines.push(format!(
        "rejects: {} new, {} no longer rejected, {} rejected by both",
        n("new_rejects"),
        n("no_longer_rejected"),
        n("still_rejected"),
    ));
    each(&mut lines, &rows["new_reject_sample"], &|r| {
        format!("  new reject {}: {}", s(&r["key"]), s(&r["reason"]))
    });
    each(&mut lines, &rows["no_longer_rejected_sample"], &|r| {
        format!("  now mapped {} (was: {})", s(&r["key"]), s(&r["reason"]))
    });
    let missing = columns(&doc["not_in_store"]);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|v| s(v)).collect();
        lines.push(format!(
            "not in the store: the records were pulled with mapped fields only, and the candidate also reads {}: the diff shows them empty; a promote makes the next batch pull every record from Oracle again",
            names.join(", ")
        ));
    }
    let t = &doc["timing"];
    lines.push(format!(
        "time per record: {:.1} µs in use, {:.1} µs candidate",
        t["current_us_per_record"].as_f64().unwrap_or(0.0),
        t["candidate_us_per_record"].as_f64().unwrap_or(0.0),
    ));
    lines.join("\n")
}

/// The text `mapping promote` prints, from its document.
fn promote_text(doc: &Value) -> String {
    let mut text = format!(
        "{}/{}: version {} installed in {}; it maps the next batch",
        s(&doc["tenant"]),
        s(&doc["pipeline"]),
        short(&doc["version"]),
        s(&doc["file"]),
    );
    if let Some(kept) = doc["previous_kept"].as_str() {
        text.push_str(&format!(
            "\nthe previous script ({}) is kept in {kept}",
            short(&doc["previous_version"])
        ));
    }
    if doc["schema_changed"].as_bool() == Some(true) {
        text.push_str(
            "\nthe schema changed: the next batch re-exports the data source from the store",
        );
    }
    text
}
