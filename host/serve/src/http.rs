//! The HTTP server of `serve`: the routes, their limits, and the admin
//! token check.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /` | anyone on the listen address | the status page |
//! | `GET /status.json` | anyone | what the page shows (no secrets, no records) |
//! | `GET /healthz`, `GET /readyz` | probes | alive; every tenant tried |
//! | `GET /metrics` | Prometheus | text format |
//! | `POST /webhooks/tableau/{tenant}/{token}` | Tableau | [`crate::webhook`] |
//! | `/api/v1/...` | bearer admin token | [`crate::api`] |
//!
//! Every request is bounded in time ([`ServeLimits::request_timeout`]) and
//! its body in size (the webhook and API caps).

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;

/// The router.
pub fn router(app: Arc<App>) -> Router {
    let api = crate::api::routes()
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admin_only,
        ))
        .layer(DefaultBodyLimit::max(app.limits.api_body));
    let webhooks = Router::new()
        .route(
            "/webhooks/tableau/{tenant}/{token}",
            post(crate::webhook::receive),
        )
        .layer(DefaultBodyLimit::max(app.limits.webhook_body));
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(script))
        .route("/page.css", get(style))
        .route("/status.json", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .merge(webhooks)
        .fallback(|| async { crate::api::ApiError::NotFound("no such route".into()) })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            app.limits.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// Refuses an API request over its source's rate (429) or without the
/// admin token (401, constant-time comparison; the token is never logged or
/// echoed).
async fn admin_only(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(wait) = app.rates.api_source(peer.ip()) {
        return crate::api::ApiError::RateLimited(wait).into_response();
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.is_empty()
        || !mlc_common::secret::constant_time_eq(
            given.as_bytes(),
            app.admin_token.expose().as_bytes(),
        )
    {
        let mut response = crate::api::ApiError::Unauthorized.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ml-connector\""),
        );
        return response;
    }
    next.run(request).await
}

const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn status(State(app): State<Arc<App>>) -> Response {
    axum::Json(crate::api::status_document(&app).await).into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.scheduler.ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: not every tenant has been tried yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match &app.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {"code": "no-recorder",
                "message": "another metrics recorder was installed in this process"}})),
        )
            .into_response(),
    }
}
