//! `ml-connector demo --once`: the check. Three durable cycles of every
//! pipeline of the demo tenant: a first full publish, an incremental upsert
//! after changes in Oracle, and a cycle with nothing new. Then each data
//! source is read back from the Tableau sandbox's `.hyper` files and the
//! invoices' row count compared with Oracle's own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_sync::{CycleAction, CycleReport, Quiet};

use super::{DemoCommand, World};
use crate::cli::Output;

struct Row {
    pipeline: String,
    datasource: String,
    cycles: Vec<CycleReport>,
}

/// Three cycles of every pipeline, read back, checked.
pub async fn run(cmd: DemoCommand, output: Output) -> Result<()> {
    let started = Instant::now();
    let World {
        work: _,
        oracle: oracle_sandbox,
        tableau: tableau_sandbox,
        host,
        store,
    } = World::start(&cmd, None).await?;
    eprintln!("syncing reference data (suppliers, segment values, account combinations)…");
    let tenant = host.tenant(store).await?;

    let mut rows: Vec<Row> = tenant
        .pipelines
        .iter()
        .map(|p| Row {
            pipeline: p.name.clone(),
            datasource: p.datasource.clone(),
            cycles: Vec::new(),
        })
        .collect();
    for cycle in 1..=3 {
        match cycle {
            1 => eprintln!("cycle 1: first full publish of every pipeline…"),
            2 => {
                let touched = oracle_sandbox.mutate(cmd.updates, cmd.inserts);
                let distinct: std::collections::BTreeSet<i64> = touched.into_iter().collect();
                eprintln!(
                    "cycle 2: {} updates and {} inserts in Oracle touched {} invoices; incremental upserts…",
                    cmd.updates,
                    cmd.inserts,
                    distinct.len()
                );
            }
            _ => eprintln!("cycle 3: nothing changed; every pipeline should send nothing…"),
        }
        // Every pipeline's cycle; those reading one resource share its pull.
        let pipelines: Vec<(&mlc_sync::PipelineSpec, &dyn mlc_sync::Progress)> = tenant
            .pipelines
            .iter()
            .map(|spec| (spec, &Quiet as &dyn mlc_sync::Progress))
            .collect();
        for (outcome, row) in tenant
            .run_together(&pipelines)
            .await
            .into_iter()
            .zip(rows.iter_mut())
        {
            row.cycles.push(outcome?);
        }
    }

    // Read back what a dashboard would see and compare with Oracle.
    let mut checks = Vec::new();
    for row in &rows {
        let stored = tableau_sandbox
            .datasource_rows(&row.datasource, &[])
            .await
            .with_context(|| format!("reading back {}", row.datasource))?
            .map_or(0, |r| r.len());
        checks.push(stored);
    }
    let invoices_in_oracle = oracle_sandbox.count("invoices").unwrap_or(0);

    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "seconds": started.elapsed().as_secs_f64(),
                "oracle_invoices": invoices_in_oracle,
                "pipelines": rows.iter().zip(&checks).map(|(r, stored)| serde_json::json!({
                    "pipeline": r.pipeline,
                    "datasource": r.datasource,
                    "rows_in_tableau": stored,
                    "cycles": r.cycles.iter().map(crate::cli::sync::report_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Text => print_table(&rows, &checks, invoices_in_oracle, started.elapsed()),
    }

    let invoice_rows = rows
        .iter()
        .zip(&checks)
        .find(|(r, _)| r.pipeline == "invoices")
        .map(|(_, n)| *n as u64);
    tenant.connectors.tableau.shutdown().await.ok();
    drop(tenant);
    host.shutdown().await;
    tableau_sandbox.shutdown().await.ok();
    oracle_sandbox.shutdown().await;
    if let Some(n) = invoice_rows
        && n != invoices_in_oracle
    {
        bail!(
            "Tableau's `Demo Invoices` holds {n} rows but Oracle has {invoices_in_oracle} invoices"
        );
    }
    Ok(())
}

fn action_text(c: &CycleReport) -> String {
    match &c.action {
        CycleAction::NothingNew => "—".into(),
        CycleAction::Published { .. } => format!("publish {}", c.rows_written),
        CycleAction::Upserted { .. } => format!("upsert {}", c.rows_written),
    }
}

fn print_table(rows: &[Row], checks: &[usize], oracle_invoices: u64, took: Duration) {
    println!(
        "{:<24} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
        "pipeline", "data source", "cycle 1", "cycle 2", "cycle 3", "rejects", "in Tableau"
    );
    for (row, stored) in rows.iter().zip(checks) {
        let cell = |i: usize| row.cycles.get(i).map(action_text).unwrap_or_default();
        let rejects: u64 = row
            .cycles
            .iter()
            .map(|c| c.rejected_by_mapping + c.rejected_by_writer)
            .sum();
        println!(
            "{:<24} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
            row.pipeline,
            row.datasource,
            cell(0),
            cell(1),
            cell(2),
            rejects,
            stored
        );
    }
    let requests: u64 = rows
        .iter()
        .filter_map(|r| r.cycles.get(2))
        .map(|c| c.oracle_requests)
        .sum();
    println!(
        "\nOracle invoices: {oracle_invoices}; Oracle requests in the quiet cycle 3: {requests} for {} pipelines; {:.1} s in all.",
        rows.len(),
        took.as_secs_f64()
    );
}
