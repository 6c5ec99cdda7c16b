//! Sliced first loads against the Oracle sandbox with its latency model and
//! throttling on: drift between pages and slices, late commits and 429s on
//! excess concurrency lose and double nothing; the concurrency cap and the
//! request budget are never exceeded (the sandbox counts); the final cursor
//! is the one a serial pull leaves; an idle cycle is still one request.
//! No assertion here is about speed: `tests/benches/oracle_pull.rs` measures.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use mlc_oracle::{
    Cursor, KeyKind, MemoryRecordIndex, NothingExported, OracleClient, RawRecord, RecordIndex,
    ResourceSpec,
};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};

use crate::common::init_tracing;
use crate::oracle_client::{config_for, cycle, diff, fold, truth};

async fn start(config: SandboxConfig) -> Result<OracleSandbox> {
    init_tracing();
    OracleSandbox::start(config)
        .await
        .map_err(|e| anyhow!("starting the sandbox: {e}"))
}

/// A sliced pull to its end, "exporting" each page into `exported`;
/// `between` runs after every page (page number from 1). The pull asks
/// `index`: a first load asks [`NothingExported`], as the journal does, so
/// that a record read twice shows as doubled instead of being dropped.
/// Returns the records, the final cursor, the slices planned and the
/// requests spent.
async fn sliced_cycle(
    client: &OracleClient,
    spec: &ResourceSpec,
    cursor: Option<Cursor>,
    index: &dyn RecordIndex,
    exported: &MemoryRecordIndex,
    mut between: impl FnMut(usize),
) -> Result<(Vec<RawRecord>, Option<Cursor>, usize, u64)> {
    let mut pull = client.pull_sliced(spec, cursor.clone(), index);
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(page) = pull
        .next_page()
        .await
        .with_context(|| format!("sliced pull of {}", spec.path))?
    {
        n += 1;
        for r in &page.records {
            exported.mark_exported(&r.key, r.last_update, &r.content_hash);
        }
        out.extend(page.records);
        between(n);
    }
    ensure!(pull.is_done(), "next_page ended before the pull was done");
    let next = pull.cursor().cloned().or(cursor);
    Ok((out, next, pull.slices(), pull.stats().requests))
}

/// The greatest (`LastUpdateDate`, key) among `records`.
fn max_position(records: &[RawRecord]) -> Option<Cursor> {
    records
        .iter()
        .filter_map(|r| {
            Some(Cursor {
                last_update: r.last_update?,
                key: r.key.clone(),
            })
        })
        .max_by(|a, b| a.compare(b, KeyKind::Integer))
}

#[tokio::test]
async fn oracle_sliced_first_load_under_drift_late_commits_and_throttling_is_exact() -> Result<()> {
    // 6,000 invoices (13 pages) at 20 ms a page; the sandbox refuses a
    // third request in flight of one client, the client runs four.
    let sb = start(SandboxConfig {
        seed: 21,
        invoices: 6000,
        latency: Duration::from_millis(20),
        max_in_flight_per_client: 2,
        ..Default::default()
    })
    .await?;
    let mut cfg = config_for(&sb);
    cfg.max_concurrency = 4;
    let client = OracleClient::new("e2e", cfg)?;
    let spec = ResourceSpec::invoices();
    let index = MemoryRecordIndex::new();

    // Drift: three updates after every page served (records move from the
    // window that holds them to the open last slice, read or not), plus
    // late commits (stamped two minutes back) and inserts from the
    // consumer between pages.
    sb.faults().mutate_between_pages(3);
    let mut late = Vec::new();
    let (first, cursor, slices, _) =
        sliced_cycle(&client, &spec, None, &NothingExported, &index, |n| {
            if n % 3 == 0 {
                late.extend(sb.late_commit(&spec.path, 2, 120).unwrap_or_default());
                sb.mutate(1, 1);
            }
        })
        .await?;
    sb.faults().mutate_between_pages(0);
    ensure!(slices > 4, "6,000 invoices were read in {slices} slice(s)");
    ensure!(!late.is_empty(), "no late commits happened during the load");
    let stats = sb.stats();
    ensure!(
        stats.throttled > 0 && client.request_stats().throttled > 0,
        "no 429 on excess concurrency: sandbox {stats:?}, client {:?}",
        client.request_stats()
    );
    ensure!(
        client.request_stats().max_in_flight <= 4,
        "client {:?}",
        client.request_stats()
    );
    // The final cursor is the greatest position delivered, as a serial
    // pull leaves it.
    ensure!(
        cursor == max_position(&first),
        "final cursor {cursor:?}, greatest position read {:?}",
        max_position(&first)
    );
    fold(&spec, &first).context("the first load itself")?;

    // The next incremental cycle (a serial pull from the cursor) catches
    // what changed behind the load's slices; the union is the final state.
    let (next, _, _) = cycle(&client, &spec, cursor, &index).await?;
    let mut all = first;
    all.extend(next);
    let got = fold(&spec, &all)?;
    let want = truth(&sb, &spec)?;
    ensure!(want.len() >= 6000, "sandbox has {} invoices", want.len());
    ensure!(got == want, "first load + one cycle: {}", diff(&got, &want));
    Ok(())
}

#[tokio::test]
async fn oracle_sliced_load_never_exceeds_the_cap_and_ends_where_a_serial_pull_ends() -> Result<()>
{
    let sb = start(SandboxConfig {
        seed: 22,
        invoices: 8000,
        latency: Duration::from_millis(30),
        ..Default::default()
    })
    .await?;
    let spec = ResourceSpec::invoices();
    let mut cfg = config_for(&sb);
    cfg.max_concurrency = 3;
    let client = OracleClient::new("e2e", cfg)?;
    sb.reset_stats();
    // Two sliced pulls at once on one client: the cap is the client's, not
    // each pull's.
    let index = MemoryRecordIndex::new();
    let pay_index = MemoryRecordIndex::new();
    let payments = ResourceSpec::payables_payments();
    let (inv, pay) = tokio::join!(
        sliced_cycle(&client, &spec, None, &NothingExported, &index, |_| {}),
        sliced_cycle(
            &client,
            &payments,
            None,
            &NothingExported,
            &pay_index,
            |_| {}
        ),
    );
    let ((sliced, cursor, slices, requests), pay) = (inv?, pay?);
    let stats = sb.stats();
    ensure!(
        slices == 17,
        "7,501 records left at 449 a window: {slices} slices"
    );
    ensure!(pay.2 > 1, "payments were not sliced");
    ensure!(
        stats.max_in_flight <= 3 && client.request_stats().max_in_flight <= 3,
        "the sandbox saw {} requests of one client in flight at once (client: {:?})",
        stats.max_in_flight,
        client.request_stats()
    );
    ensure!(
        stats.max_in_flight >= 2,
        "the slices never overlapped: {stats:?}"
    );
    ensure!(
        stats.served == requests + pay.3 && stats.throttled == 0,
        "client counted {requests} + {}, sandbox {stats:?}",
        pay.3
    );
    let got = fold(&payments, &pay.0)?;
    let want = truth(&sb, &payments)?;
    ensure!(got == want, "payments: {}", diff(&got, &want));
    let got = fold(&spec, &sliced)?;
    let want = truth(&sb, &spec)?;
    ensure!(got == want, "sliced: {}", diff(&got, &want));

    // A serial pull of the same data ends at the same cursor.
    let (serial, serial_cursor, _) = cycle(&client, &spec, None, &MemoryRecordIndex::new()).await?;
    ensure!(serial.len() == sliced.len(), "serial read {}", serial.len());
    ensure!(
        serial_cursor == cursor,
        "sliced cursor {cursor:?}, serial {serial_cursor:?}"
    );

    // An idle cycle from there is one request, sliced or not.
    let (recs, _, _, requests) =
        sliced_cycle(&client, &spec, cursor, &index, &index, |_| {}).await?;
    ensure!(
        recs.is_empty() && requests == 1,
        "idle sliced cycle: {} records, {requests} requests",
        recs.len()
    );
    Ok(())
}

/// Two sliced pulls at once share the client's budget: the sandbox allows
/// 10 requests a minute per client and never refuses one, though the two
/// pulls together need more than 10. Takes a little over a minute: a budget
/// can only be exceeded over its minute.
#[tokio::test]
async fn oracle_request_budget_is_shared_and_never_exceeded() -> Result<()> {
    let sb = start(SandboxConfig {
        seed: 23,
        invoices: 1500,
        requests_per_minute_per_client: 10,
        ..Default::default()
    })
    .await?;
    let mut cfg = config_for(&sb);
    cfg.max_concurrency = 4;
    cfg.requests_per_minute = Some(10);
    // Smaller pages: the two pulls need more requests than the budget.
    cfg.page_size = 250;
    cfg.retry.max_total_secs = 120;
    let client = OracleClient::new("e2e", cfg)?;
    let invoices = ResourceSpec::invoices();
    let payments = ResourceSpec::payables_payments();
    let (ia, ib) = (MemoryRecordIndex::new(), MemoryRecordIndex::new());
    let (a, b) = tokio::join!(
        sliced_cycle(&client, &invoices, None, &NothingExported, &ia, |_| {}),
        sliced_cycle(&client, &payments, None, &NothingExported, &ib, |_| {}),
    );
    let (a, b) = (a?, b?);
    let stats = sb.stats();
    ensure!(
        a.3 + b.3 > 10,
        "the pulls needed only {} requests: the budget was never at stake",
        a.3 + b.3
    );
    ensure!(
        stats.throttled == 0 && client.request_stats().throttled == 0,
        "the budget was exceeded: sandbox {stats:?}"
    );
    for (spec, recs) in [(&invoices, &a.0), (&payments, &b.0)] {
        let got = fold(spec, recs)?;
        let want = truth(&sb, spec)?;
        ensure!(got == want, "{}: {}", spec.path, diff(&got, &want));
    }
    Ok(())
}

/// A 429 from one slice pauses all of them: after injected 429s with
/// `Retry-After: 1`, the client counts the pauses, and the load is exact.
#[tokio::test]
async fn oracle_injected_429s_pause_the_whole_client_and_lose_nothing() -> Result<()> {
    let sb = start(SandboxConfig {
        seed: 24,
        invoices: 5000,
        latency: Duration::from_millis(10),
        ..Default::default()
    })
    .await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let spec = ResourceSpec::invoices();
    let index = MemoryRecordIndex::new();
    let (recs, _, slices, _) = sliced_cycle(&client, &spec, None, &NothingExported, &index, |n| {
        if n == 2 {
            sb.faults().rate_limit_next(3, 1);
            sb.faults().fail_next(503, 1);
        }
    })
    .await?;
    ensure!(slices > 1, "not sliced");
    let rs = client.request_stats();
    ensure!(
        rs.throttled >= 3 && rs.unavailable >= 1 && rs.pauses >= 4,
        "{rs:?}"
    );
    let got = fold(&spec, &recs)?;
    let want = truth(&sb, &spec)?;
    ensure!(got == want, "{}", diff(&got, &want));
    Ok(())
}
