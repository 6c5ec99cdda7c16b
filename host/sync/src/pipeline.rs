//! What a cycle runs on and reports: a pipeline's definition
//! ([`PipelineSpec`]), the connections it uses ([`Connectors`], built by the
//! composition root) and the outcome of one cycle ([`CycleReport`]).

use std::path::PathBuf;
use std::sync::Arc;

use mlc_hyper::Hyperd;
use mlc_oracle::{OracleClient, ResourceSpec};
use mlc_plugin::PluginRuntime;
use mlc_tableau::TableauClient;

/// What a pipeline moves: one Oracle resource of one tenant, mapped by one
/// plugin, into one Tableau data source.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// The tenant.
    pub tenant: String,
    /// The pipeline's name, unique within the tenant.
    pub name: String,
    /// The Oracle resource read.
    pub resource: ResourceSpec,
    /// The tenant's plugin (as loaded in the [`PluginRuntime`]) that maps it.
    pub plugin: String,
    /// The Tableau data source written.
    pub datasource: String,
    /// An incremental batch stops taking pages once it holds this many
    /// records; the next cycle continues from there. Bounds the update
    /// payload (Tableau refuses those above its limit, 100 MB by default)
    /// and the batch's memory. Whole pages are taken, so a batch can exceed
    /// it by less than one page. Full publishes are not capped: they upload
    /// in chunks.
    pub max_records_per_batch: usize,
    /// How often the keys are reconciled with Oracle (deletes sent as a
    /// batch); `None`: never.
    pub reconcile: Option<std::time::Duration>,
    /// Whole records, or only what the mapping script reads (the cycle
    /// projects [`PipelineSpec::resource`] from the script it runs).
    pub pull: crate::definition::Pull,
}

/// The default [`PipelineSpec::max_records_per_batch`]: about 10–60 MB of
/// update payload for typical ERP rows.
pub const DEFAULT_MAX_RECORDS_PER_BATCH: usize = 200_000;

/// The connections a cycle uses; shared by all of a tenant's pipelines.
pub struct Connectors {
    /// The tenant's Oracle Fusion client.
    pub oracle: OracleClient,
    /// The tenant's Tableau client.
    pub tableau: TableauClient,
    /// The plugin runtime.
    pub plugins: PluginRuntime,
    /// The Hyper engine that writes extracts.
    pub hyperd: Arc<Hyperd>,
    /// Where batch extracts are written.
    pub work_dir: PathBuf,
}

/// What a cycle did with Tableau.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleAction {
    /// Nothing new since the cursor: nothing sent.
    NothingNew,
    /// The full extract was published (first run, or a full refresh).
    Published {
        /// The data source's id.
        datasource_id: String,
    },
    /// The batch was upserted.
    Upserted {
        /// The `RequestID`s sent, one per payload part.
        request_ids: Vec<String>,
        /// The jobs Tableau ran.
        jobs: Vec<String>,
        /// True when the poll that found the jobs finished was made at once
        /// because a webhook said the data source changed (`serve`).
        after_webhook: bool,
    },
}

/// The outcome of one cycle.
#[derive(Clone, Debug)]
pub struct CycleReport {
    /// The batch id (deterministic per pipeline and cycle number).
    pub batch_id: String,
    /// Records read that were not exported before.
    pub records: u64,
    /// Records skipped as already exported (overlap window, drift).
    pub duplicates_skipped: u64,
    /// HTTP requests to Oracle (token requests excluded); a pull shared by
    /// several pipelines counts its requests in the first one's report.
    pub oracle_requests: u64,
    /// The other pipelines whose batches this cycle's pull also fed (one
    /// pull per resource); empty when it pulled alone.
    pub shared_pull_with: Vec<String>,
    /// Rows written into the extract.
    pub rows_written: u64,
    /// True when the extract was mapped and written while the pages
    /// arrived (a fresh first load or incremental batch); false when it was
    /// written from the store after the pull: a resumed batch, a replay, or
    /// a batch in which a record changed while it was being pulled.
    pub streamed: bool,
    /// Records the mapping refused (with reasons in the log).
    pub rejected_by_mapping: u64,
    /// Rows the extract writer refused (value does not fit its column).
    pub rejected_by_writer: u64,
    /// Keys found gone from Oracle and deleted in Tableau by this cycle's
    /// reconciliation.
    pub deleted: u64,
    /// What was sent to Tableau.
    pub action: CycleAction,
}
