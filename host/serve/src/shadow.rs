//! `POST /api/v1/tenants/{t}/pipelines/{p}/mapping/diff?records=&sample=`
//! and `…/mapping/promote`: the shadow run of a candidate mapping (the
//! body: a mapping script, or a component for a plugin pipeline) over the
//! pipeline's recent stored records, and its installation, on the tenant
//! this process holds. The answers are `mlc_sync`'s documents, as
//! `ml-connector mapping diff|promote` prints them with `--output json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{ApiError, audited, held};
use crate::app::App;
use crate::status::error_chain;
use mlc_sync::{CandidateFile, DiffOptions, ShadowError};

/// What a diff may be asked for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    records: Option<usize>,
    sample: Option<usize>,
}

/// The most records one diff maps (a larger ask is refused, not trimmed).
pub const MAX_DIFF_RECORDS: usize = 200_000;

fn api_error(e: ShadowError) -> ApiError {
    match &e {
        ShadowError::UnknownPipeline { .. } => ApiError::NotFound(e.to_string()),
        ShadowError::WrongKind { .. }
        | ShadowError::Refused { .. }
        | ShadowError::PluginPipeline { .. } => ApiError::Invalid(error_chain(&e)),
        _ => ApiError::Internal(error_chain(&e)),
    }
}

fn candidate(body: Bytes) -> CandidateFile {
    CandidateFile {
        origin: "upload".into(),
        bytes: body.to_vec(),
    }
}

/// Maps the recent stored records with the candidate and the version in
/// use; installs nothing.
pub async fn diff(
    State(app): State<Arc<App>>,
    Path((tenant, pipeline)): Path<(String, String)>,
    Query(params): Query<DiffParams>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let store = held(&app, &tenant).await?;
    let defaults = DiffOptions::default();
    let options = DiffOptions {
        records: params.records.unwrap_or(defaults.records),
        sample: params.sample.unwrap_or(defaults.sample),
    };
    if options.records > MAX_DIFF_RECORDS {
        return Err(ApiError::Invalid(format!(
            "records={} is more than a diff maps (at most {MAX_DIFF_RECORDS})",
            options.records
        )));
    }
    let diff = app
        .scheduler
        .host
        .diff_mapping(&store, &pipeline, &candidate(body), &options)
        .await
        .map_err(api_error)?;
    serde_json::to_value(diff)
        .map(axum::Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Installs the candidate script (validated first; audited).
pub async fn promote(
    State(app): State<Arc<App>>,
    Path((tenant, pipeline)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let store = held(&app, &tenant).await?;
    let promoted = app
        .scheduler
        .host
        .promote_mapping(&store, &pipeline, &candidate(body))
        .await
        .map_err(api_error)?;
    let doc = serde_json::to_value(&promoted).map_err(|e| ApiError::Internal(e.to_string()))?;
    let detail = promoted.audit_detail("api upload");
    audited(&app, "mapping.promote", &tenant, detail).await?;
    Ok(axum::Json(doc))
}
