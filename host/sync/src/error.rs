//! Errors of a pipeline cycle, each naming the tenant and pipeline.

/// Why a cycle failed. Every variant names the pipeline (`tenant/name`) and
/// keeps the failing layer's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading Oracle Fusion failed.
    #[error("pipeline {pipeline}: pulling {resource} from Oracle failed")]
    Pull {
        /// `tenant/name`.
        pipeline: String,
        /// The Oracle resource.
        resource: String,
        /// The client's error (shared by every pipeline of a shared pull).
        #[source]
        source: std::sync::Arc<mlc_oracle::OracleError>,
    },
    /// The pull this pipeline shared with others could not record a page
    /// (the store refused it in another pipeline's part of the page).
    #[error("pipeline {pipeline}: the pull of {resource} shared with {with} failed: {reason}")]
    SharedPull {
        /// `tenant/name`.
        pipeline: String,
        /// The Oracle resource.
        resource: String,
        /// The pipeline (`tenant/name`) whose error it was.
        with: String,
        /// The error, as that pipeline reports it.
        reason: String,
    },
    /// The mapping plugin failed the batch.
    #[error("pipeline {pipeline}: mapping batch {batch} failed")]
    Map {
        /// `tenant/name`.
        pipeline: String,
        /// The batch id.
        batch: String,
        /// The runtime's error.
        #[source]
        source: mlc_plugin::PluginError,
    },
    /// Writing the extract failed.
    #[error("pipeline {pipeline}: writing the extract of batch {batch} failed")]
    Write {
        /// `tenant/name`.
        pipeline: String,
        /// The batch id.
        batch: String,
        /// The writer's error.
        #[source]
        source: mlc_hyper::HyperError,
    },
    /// Publishing or upserting into Tableau failed.
    #[error("pipeline {pipeline}: {operation} of batch {batch} into Tableau failed")]
    Publish {
        /// `tenant/name`.
        pipeline: String,
        /// The batch id.
        batch: String,
        /// `publish` or `upsert`.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: mlc_tableau::TableauError,
    },
    /// Reference data could not be read or understood.
    #[error("tenant {tenant}: reference data `{dataset}`: {reason}")]
    Reference {
        /// The tenant.
        tenant: String,
        /// The dataset.
        dataset: String,
        /// What went wrong.
        reason: String,
    },
    /// The store failed.
    #[error("pipeline {pipeline}: the store failed")]
    Store {
        /// `tenant/name`.
        pipeline: String,
        /// The store's error.
        #[source]
        source: mlc_store::StoreError,
    },
    /// What the pipeline's mapping reads could not be worked out
    /// (`pull = "mapped-fields"`).
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    /// A local file operation failed.
    #[error("pipeline {pipeline}: {what}")]
    Io {
        /// `tenant/name`.
        pipeline: String,
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
