//! The admin API under `/api/v1/` (bearer admin token; JSON in and out).
//!
//! | method and path | does |
//! |---|---|
//! | `GET /status` | what the status page shows |
//! | `GET /tenants` | tenants with their state |
//! | `GET /tenants/{t}` | one tenant: pipelines, secret names, state |
//! | `PUT /tenants/{t}` | apply a definition (TOML body); the tenant restarts with it |
//! | `GET /tenants/{t}/pipelines` | as `pipeline list` |
//! | `POST /tenants/{t}/pipelines/{p}/pause`, `/resume` | as `pipeline pause|resume` |
//! | `POST /tenants/{t}/pipelines/{p}/run` | run a cycle now |
//! | `POST /tenants/{t}/pipelines/{p}/replay` | `{"failed":true}`, `{"full":true}`, `{"batch":ID}` or `{"record":KEY}` |
//! | `POST /tenants/{t}/pipelines/{p}/mapping/diff?records=&sample=` | shadow run of a candidate (body: script or component) over stored records, as `mapping diff` |
//! | `POST /tenants/{t}/pipelines/{p}/mapping/promote` | install a candidate script (body), as `mapping promote` |
//! | `GET /tenants/{t}/batches?pipeline=&state=&limit=` | as `batches` |
//! | `GET /tenants/{t}/events?limit=` | webhook events received |
//! | `GET /tenants/{t}/secrets` | secret names (never values) |
//! | `PUT /tenants/{t}/secrets/{name}` | set a secret (body: the value) |
//! | `GET /audit?after=&limit=`, `GET /audit/verify` | the admin audit log |
//! | `GET /plugins` | loaded plugins and refusals |
//! | `PUT /plugins/{t}/{name}` | load a component (the body, at most 16 MiB), validated, swapped in for the next batch; kept until restart (the plugins directory keeps one for good) |
//! | `POST /plugins/{t}/{name}/rollback` | back to the previous version |
//!
//! Every change is written to the admin audit log (actor `admin-api`).
//! Errors are `{"error": {"code", "message"}}` with a fitting status.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use mlc_common::Secret;
use mlc_store::{BatchKind, StoreError, TenantStore};
use mlc_sync::stored_definition;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::block_in_place;

use crate::app::App;
use crate::pipeline::Command;
use crate::runtime_file;
use crate::shadow;
use crate::status::error_chain;
use crate::views::{self, BatchQuery};

/// The actor the audit log names for API changes.
pub const ACTOR: &str = "admin-api";

/// An API error: a status, a code and a message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong token.
    #[error("a valid admin token is required (Authorization: Bearer …)")]
    Unauthorized,
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the state (an unfinished batch).
    #[error("{0}")]
    Conflict(String),
    /// The store refused.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Something on the server side failed.
    #[error("{0}")]
    Internal(String),
    /// Too many requests from this source: try again after the wait.
    #[error("too many requests: try again in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Store(StoreError::Locked { .. }) => (StatusCode::CONFLICT, "locked"),
            Self::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut response = (
            status,
            axum::Json(json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response();
        if let Self::RateLimited(wait) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

type Answer = Result<axum::Json<Value>, ApiError>;

/// The API's routes (mounted under `/api/v1`).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/status", get(status))
        .route("/tenants", get(tenants))
        .route("/tenants/{tenant}", get(tenant).put(apply))
        .route("/tenants/{tenant}/pipelines", get(pipelines))
        .route(
            "/tenants/{tenant}/pipelines/{pipeline}/{action}",
            post(pipeline_action),
        )
        .route(
            "/tenants/{tenant}/pipelines/{pipeline}/mapping/diff",
            post(shadow::diff).layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT)),
        )
        .route(
            "/tenants/{tenant}/pipelines/{pipeline}/mapping/promote",
            post(shadow::promote),
        )
        .route("/tenants/{tenant}/batches", get(batches))
        .route("/tenants/{tenant}/events", get(events))
        .route("/tenants/{tenant}/secrets", get(secrets))
        .route("/tenants/{tenant}/secrets/{name}", put(set_secret))
        .route("/audit", get(audit))
        .route("/audit/verify", get(verify))
        .route("/plugins", get(plugins))
        .route("/plugins/{tenant}/{name}/rollback", post(rollback))
        .route(
            "/plugins/{tenant}/{name}",
            put(load_plugin).layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT)),
        )
}

/// The largest component `PUT /plugins/{t}/{name}` takes (16 MiB).
pub const MAX_COMPONENT: usize = 16 << 20;

/// What `/status.json` and `GET /api/v1/status` answer.
pub async fn status_document(app: &App) -> Value {
    let mut extra = std::collections::BTreeMap::new();
    for (id, store) in app.scheduler.stores().await {
        // A running tenant's definition is at hand; only one that could not
        // be built is read (and parsed) from its store.
        let def = match app.scheduler.running(&id).await {
            Some((tenant, _)) => tenant.definition.clone(),
            None => match block_in_place(|| stored_definition(&store)) {
                Ok(def) => def,
                Err(_) => continue,
            },
        };
        for p in &def.pipelines {
            let state = block_in_place(|| store.pipeline(&p.id)).ok();
            let open = block_in_place(|| store.open_batch(&p.id)).ok().flatten();
            let failed = open.as_ref().and_then(|b| match &b.state {
                mlc_store::BatchState::Failed { error, .. } => Some(json!({
                    "batch": b.id, "error": error, "failures": b.failures,
                })),
                _ => None,
            });
            extra.insert(
                (id.clone(), p.id.clone()),
                json!({
                    "datasource": p.datasource,
                    "resource": p.resource.name(),
                    "paused": state.as_ref().is_some_and(|s| s.paused),
                    "confirmed_batches": state.as_ref().map_or(0, |s| s.confirmed_seq),
                    "newest_record_micros": state.as_ref().and_then(|s| s.cursor.as_ref()).map(|c| c.last_update),
                    "open_batch": open.as_ref().map(|b| json!({"id": b.id, "state": b.state.name()})),
                    "failed_batch": failed,
                }),
            );
        }
    }
    let mut doc = app.scheduler.status.to_json(&|t, p| {
        extra
            .get(&(t.to_owned(), p.to_owned()))
            .cloned()
            .unwrap_or(Value::Null)
    });
    doc["refused_plugins"] = json!(app.scheduler.host.plugins().refusals());
    doc
}

async fn status(State(app): State<Arc<App>>) -> Answer {
    Ok(axum::Json(status_document(&app).await))
}

pub(crate) async fn held(app: &App, tenant: &str) -> Result<Arc<TenantStore>, ApiError> {
    app.scheduler
        .store(tenant)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no tenant `{tenant}` runs here")))
}

fn definition(store: &TenantStore) -> Result<mlc_sync::definition::TenantDefinition, ApiError> {
    block_in_place(|| stored_definition(store)).map_err(|e| ApiError::Invalid(error_chain(&e)))
}

async fn tenants(State(app): State<Arc<App>>) -> Answer {
    let doc = app.scheduler.status.to_json(&|_, _| Value::Null);
    let rows: Vec<Value> = doc["tenants"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    json!({
                        "tenant": t["tenant"],
                        "status": t["status"],
                        "pipelines": t["pipelines"].as_array().map_or(0, Vec::len),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(json!({ "tenants": rows })))
}

async fn tenant(State(app): State<Arc<App>>, Path(tenant): Path<String>) -> Answer {
    let store = held(&app, &tenant).await?;
    let def = definition(&store)?;
    let mut doc = block_in_place(|| views::pipelines(&store, &def))?;
    doc["secrets"] = json!(block_in_place(|| store.secret_names())?);
    Ok(axum::Json(doc))
}

async fn apply(State(app): State<Arc<App>>, Path(tenant): Path<String>, body: Bytes) -> Answer {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::Invalid("the definition is not UTF-8".into()))?;
    let source = format!("api:{tenant}.toml");
    let store = app.scheduler.store(&tenant).await;
    let data = app.scheduler.host.data().clone();
    let applied = runtime_file::visit(&data.clone(), move |runtime| match &store {
        Some(store) => mlc_sync::apply_definition_to(store, runtime, &source, &text, ACTOR),
        None => {
            let def = mlc_sync::definition::parse(&source, &text)?;
            if def.id != tenant {
                return Err(mlc_sync::ApplyError::OtherTenant {
                    expected: tenant,
                    found: def.id,
                });
            }
            mlc_sync::apply_definition(&data, runtime, &source, &text, ACTOR)
        }
    })
    .await
    .map_err(|e| match e {
        mlc_sync::ApplyError::Store(s) => ApiError::Store(s),
        other => ApiError::Invalid(other.to_string()),
    })?;
    app.scheduler.refresh().await;
    let def = &applied.definition;
    let scripts_missing = app.scheduler.host.missing_scripts(def);
    Ok(axum::Json(json!({
        "tenant": def.id,
        "changed": applied.changed,
        "pipelines": def.pipelines.iter().map(|p| &p.id).collect::<Vec<_>>(),
        "pipelines_removed": applied.removed_pipelines,
        "secrets_missing": applied.missing_secrets,
        "mapping_scripts_missing": scripts_missing,
        "store": applied.store.display().to_string(),
    })))
}

async fn pipelines(State(app): State<Arc<App>>, Path(tenant): Path<String>) -> Answer {
    let store = held(&app, &tenant).await?;
    let def = definition(&store)?;
    Ok(axum::Json(block_in_place(|| {
        views::pipelines(&store, &def)
    })?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    full: bool,
    batch: Option<String>,
    record: Option<String>,
}

async fn pipeline_action(
    State(app): State<Arc<App>>,
    Path((tenant, pipeline, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let store = held(&app, &tenant).await?;
    let def = definition(&store)?;
    if def.pipeline(&pipeline).is_none() {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant} has no pipeline `{pipeline}`"
        )));
    }
    match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            block_in_place(|| store.set_paused(&pipeline, paused))?;
            audited(
                &app,
                &format!("pipeline.{action}"),
                &tenant,
                json!({"pipeline": pipeline}),
            )
            .await?;
            Ok(axum::Json(
                json!({"tenant": tenant, "pipeline": pipeline, "paused": paused}),
            ))
        }
        "run" => {
            if !app
                .scheduler
                .command(&tenant, &pipeline, Command::RunNow)
                .await
            {
                return Err(ApiError::Conflict(format!(
                    "{tenant}/{pipeline} is not running in this process"
                )));
            }
            audited(&app, "pipeline.run", &tenant, json!({"pipeline": pipeline})).await?;
            Ok(axum::Json(
                json!({"tenant": tenant, "pipeline": pipeline, "started": true}),
            ))
        }
        "replay" => replay(&app, &store, &tenant, &pipeline, &body).await,
        other => Err(ApiError::NotFound(format!(
            "no pipeline action `{other}` (pause, resume, run, replay)"
        ))),
    }
}

async fn replay(
    app: &App,
    store: &TenantStore,
    tenant: &str,
    pipeline: &str,
    body: &[u8],
) -> Answer {
    let req: ReplayRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::Invalid(format!(
            "expected {{\"failed\":true}}, {{\"full\":true}}, {{\"batch\":ID}} or {{\"record\":KEY}}: {e}"
        ))
    })?;
    let chosen = usize::from(req.failed)
        + usize::from(req.full)
        + usize::from(req.batch.is_some())
        + usize::from(req.record.is_some());
    if chosen != 1 {
        return Err(ApiError::Invalid(
            "say exactly one of failed, full, batch or record".into(),
        ));
    }
    if req.failed {
        let open = block_in_place(|| store.open_batch(pipeline))?;
        let Some(batch) = open.filter(|b| matches!(b.state, mlc_store::BatchState::Failed { .. }))
        else {
            return Err(ApiError::Conflict(format!(
                "{tenant}/{pipeline} has no failed batch"
            )));
        };
        app.scheduler
            .command(tenant, pipeline, Command::RunNow)
            .await;
        audited(
            app,
            "replay.failed",
            tenant,
            json!({"pipeline": pipeline, "batch": batch.id}),
        )
        .await?;
        return Ok(axum::Json(
            json!({"tenant": tenant, "pipeline": pipeline, "batch": batch.id}),
        ));
    }
    let (kind, keys, action) = if let Some(id) = &req.batch {
        // The whole id must match: the same number under another store
        // instance is another batch.
        let seq = id
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::Invalid(format!("`{id}` is not a batch id")))?;
        let original = block_in_place(|| store.batch(pipeline, seq))
            .ok()
            .filter(|b| &b.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("{tenant}/{pipeline} has no batch {id}")))?;
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = block_in_place(|| {
                store.batch_keys(pipeline, original.seq, after.as_deref(), 10_000)
            })?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            after = Some(last);
            keys.extend(page);
        }
        (BatchKind::Replay { of: seq }, keys, "replay.batch")
    } else if let Some(key) = &req.record {
        if block_in_place(|| store.versions(pipeline, key))?.is_empty() {
            return Err(ApiError::NotFound(format!(
                "{tenant}/{pipeline} has no stored version of record `{key}`"
            )));
        }
        (BatchKind::Records, vec![key.clone()], "replay.record")
    } else {
        (BatchKind::Reexport, Vec::new(), "replay.full")
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let n = keys.len();
    let sent = app
        .scheduler
        .command(
            tenant,
            pipeline,
            Command::Replay {
                kind: kind.clone(),
                keys,
                reply,
            },
        )
        .await;
    if !sent {
        return Err(ApiError::Conflict(format!(
            "{tenant}/{pipeline} is not running in this process"
        )));
    }
    let batch = answer
        .await
        .map_err(|_| ApiError::Conflict("the pipeline stopped before answering".into()))?
        .map_err(|e| ApiError::Conflict(format!("{tenant}/{pipeline}: {e}")))?;
    audited(
        app,
        action,
        tenant,
        json!({"pipeline": pipeline, "batch": batch, "kind": kind, "keys": n}),
    )
    .await?;
    Ok(axum::Json(
        json!({"tenant": tenant, "pipeline": pipeline, "batch": batch, "kind": kind, "keys": n}),
    ))
}

pub(crate) async fn audited(
    app: &App,
    action: &str,
    tenant: &str,
    detail: Value,
) -> Result<(), ApiError> {
    runtime_file::audit(
        app.scheduler.host.data(),
        ACTOR,
        action,
        Some(tenant),
        detail,
    )
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchParams {
    pipeline: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

async fn batches(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<BatchParams>,
) -> Answer {
    if let Some(s) = &q.state
        && !views::STATES.contains(&s.as_str())
    {
        return Err(ApiError::Invalid(format!(
            "state {s}: expected one of {}",
            views::STATES.join(", ")
        )));
    }
    let store = held(&app, &tenant).await?;
    let def = definition(&store)?;
    let query = BatchQuery {
        pipeline: q.pipeline,
        state: q.state,
        limit: q.limit.unwrap_or(20).min(10_000),
    };
    Ok(axum::Json(block_in_place(|| {
        views::batches(&store, &def, &query)
    })?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<usize>,
    after: Option<u64>,
}

async fn events(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<Limit>,
) -> Answer {
    let store = held(&app, &tenant).await?;
    let events = block_in_place(|| store.events(q.limit.unwrap_or(50).min(1_000)))?;
    let events: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    Ok(axum::Json(json!({ "events": events })))
}

async fn secrets(State(app): State<Arc<App>>, Path(tenant): Path<String>) -> Answer {
    let store = held(&app, &tenant).await?;
    Ok(axum::Json(
        json!({"secrets": block_in_place(|| store.secret_names())?}),
    ))
}

async fn set_secret(
    State(app): State<Arc<App>>,
    Path((tenant, name)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    mlc_sync::definition::SecretRef::new(&name).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::Invalid("the secret is not UTF-8".into()))?;
    let value = Secret::new(value.trim_end_matches(['\r', '\n']).to_owned());
    if value.is_empty() {
        return Err(ApiError::Invalid("the secret is empty".into()));
    }
    let store = held(&app, &tenant).await?;
    block_in_place(|| store.set_secret(app.scheduler.host.key(), &name, &value))?;
    let referenced = block_in_place(|| stored_definition(&store))
        .map(|d| d.secrets().iter().any(|s| s.name() == name))
        .unwrap_or(false);
    audited(
        &app,
        "secret.set",
        &tenant,
        json!({"name": name, "referenced": referenced}),
    )
    .await?;
    // Its clients hold the old value: the tenant is built again with it.
    app.scheduler.restart(&tenant).await;
    Ok(axum::Json(
        json!({"tenant": tenant, "secret": name, "set": true, "referenced": referenced}),
    ))
}

async fn audit(State(app): State<Arc<App>>, Query(q): Query<Limit>) -> Answer {
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).min(10_000));
    let entries = runtime_file::visit(app.scheduler.host.data(), move |r| {
        r.audit_log(after, limit)
    })
    .await?;
    Ok(axum::Json(json!({ "entries": entries })))
}

async fn verify(State(app): State<Arc<App>>) -> Answer {
    let broken = runtime_file::visit(app.scheduler.host.data(), |r| r.verify_audit()).await?;
    Ok(axum::Json(match broken {
        None => json!({"ok": true}),
        Some(b) => json!({"ok": false, "broken_at": b}),
    }))
}

async fn plugins(State(app): State<Arc<App>>) -> Answer {
    let plugins = app.scheduler.host.plugins();
    Ok(axum::Json(
        json!({"plugins": plugins.list(), "refusals": plugins.refusals()}),
    ))
}

async fn rollback(
    State(app): State<Arc<App>>,
    Path((tenant, name)): Path<(String, String)>,
) -> Answer {
    held(&app, &tenant).await?;
    let info = app
        .scheduler
        .host
        .plugins()
        .rollback(&tenant, &name)
        .map_err(|e| ApiError::Conflict(e.chain()))?;
    audited(
        &app,
        "plugin.rollback",
        &tenant,
        json!({"plugin": name, "version": info.version}),
    )
    .await?;
    Ok(axum::Json(
        json!({"tenant": tenant, "plugin": name, "current": info}),
    ))
}

async fn load_plugin(
    State(app): State<Arc<App>>,
    Path((tenant, name)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    held(&app, &tenant).await?;
    let info = app
        .scheduler
        .host
        .plugins()
        .load(&tenant, &name, body.to_vec(), None)
        .await
        .map_err(|e| ApiError::Invalid(e.chain()))?;
    audited(
        &app,
        "plugin.load",
        &tenant,
        json!({"plugin": name, "version": info.version, "bytes": body.len()}),
    )
    .await?;
    Ok(axum::Json(
        json!({"tenant": tenant, "plugin": name, "current": info}),
    ))
}
