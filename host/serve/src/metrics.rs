//! The metric families of `/metrics`, their names and labels in one place.
//!
//! Recorded through the `metrics` facade (the Oracle and Tableau clients
//! and the plugin runtime record their own request and call metrics the same
//! way) and rendered in Prometheus' text format by
//! `metrics-exporter-prometheus`. Families:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mlc_records_pulled_total` | counter | tenant, pipeline |
//! | `mlc_rows_written_total` | counter | tenant, pipeline |
//! | `mlc_rejects_total` | counter | tenant, pipeline |
//! | `mlc_batches_total` | counter | tenant, pipeline, outcome (confirmed, failed) |
//! | `mlc_open_batch` | gauge, 1 for the open batch's state | tenant, pipeline, state |
//! | `mlc_cycle_duration_seconds` | histogram | tenant, pipeline |
//! | `mlc_freshness_seconds` | histogram: newest record's LastUpdateDate to confirmation | tenant, pipeline |
//! | `mlc_last_success_timestamp_seconds` | gauge (lag = now − this) | tenant, pipeline |
//! | `mlc_plugin_call_seconds` | histogram | tenant, plugin |
//! | `mlc_oracle_requests_total` | counter | tenant, status |
//! | `mlc_tableau_requests_total` | counter | tenant, operation, status |
//! | `mlc_webhook_deliveries_total` | counter | outcome |

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use mlc_sync::CycleReport;

/// Batch states a pipeline's open batch can be in.
const OPEN_STATES: [&str; 6] = [
    "pulling",
    "pulled",
    "mapped",
    "written",
    "submitted",
    "failed",
];

/// Installs the process-wide recorder; `None` when one is installed already
/// (a second server in one test process), in which case that one serves.
pub fn install() -> Option<PrometheusHandle> {
    let seconds = [
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "mlc_records_pulled_total",
        "Records read from Oracle that were new to the store."
    );
    describe_counter!(
        "mlc_rows_written_total",
        "Rows written into extracts and sent to Tableau."
    );
    describe_counter!(
        "mlc_rejects_total",
        "Records the mapping or the extract writer refused."
    );
    describe_counter!("mlc_batches_total", "Cycles by outcome.");
    describe_gauge!(
        "mlc_open_batch",
        "1 for the state of a pipeline's unfinished batch."
    );
    describe_histogram!(
        "mlc_cycle_duration_seconds",
        Unit::Seconds,
        "Duration of one pipeline cycle."
    );
    describe_histogram!(
        "mlc_freshness_seconds",
        Unit::Seconds,
        "From the newest record's LastUpdateDate in Oracle to Tableau's confirmation."
    );
    describe_gauge!(
        "mlc_last_success_timestamp_seconds",
        "When a pipeline's last cycle was confirmed (Unix seconds)."
    );
    describe_histogram!(
        "mlc_plugin_call_seconds",
        Unit::Seconds,
        "Duration of one plugin map-batch call."
    );
    describe_counter!(
        "mlc_oracle_requests_total",
        "Requests to Oracle Fusion by answer status."
    );
    describe_counter!(
        "mlc_tableau_requests_total",
        "Requests to Tableau by operation and answer status."
    );
    describe_counter!(
        "mlc_webhook_deliveries_total",
        "Webhook deliveries by outcome."
    );
}

/// A confirmed cycle.
pub fn cycle_ok(
    tenant: &str,
    pipeline: &str,
    report: &CycleReport,
    seconds: f64,
    freshness: Option<f64>,
) {
    let labels = [
        ("tenant", tenant.to_owned()),
        ("pipeline", pipeline.to_owned()),
    ];
    counter!("mlc_records_pulled_total", &labels).increment(report.records);
    counter!("mlc_rows_written_total", &labels).increment(report.rows_written);
    counter!("mlc_rejects_total", &labels)
        .increment(report.rejected_by_mapping + report.rejected_by_writer);
    counter!("mlc_batches_total", "tenant" => tenant.to_owned(), "pipeline" => pipeline.to_owned(), "outcome" => "confirmed").increment(1);
    histogram!("mlc_cycle_duration_seconds", &labels).record(seconds);
    if let Some(f) = freshness {
        histogram!("mlc_freshness_seconds", &labels).record(f);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!("mlc_last_success_timestamp_seconds", &labels).set(now);
}

/// A failed cycle.
pub fn cycle_failed(tenant: &str, pipeline: &str, seconds: f64) {
    counter!("mlc_batches_total", "tenant" => tenant.to_owned(), "pipeline" => pipeline.to_owned(), "outcome" => "failed").increment(1);
    histogram!("mlc_cycle_duration_seconds", "tenant" => tenant.to_owned(), "pipeline" => pipeline.to_owned()).record(seconds);
}

/// The state of a pipeline's open batch (`None`: none open).
pub fn open_batch(tenant: &str, pipeline: &str, state: Option<&str>) {
    for s in OPEN_STATES {
        gauge!("mlc_open_batch", "tenant" => tenant.to_owned(), "pipeline" => pipeline.to_owned(), "state" => s)
            .set(if state == Some(s) { 1.0 } else { 0.0 });
    }
}

/// A webhook delivery's outcome.
pub fn webhook(outcome: &'static str) {
    counter!("mlc_webhook_deliveries_total", "outcome" => outcome).increment(1);
}
