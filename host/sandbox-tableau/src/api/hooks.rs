//! Webhooks: create, list, get, update, test, delete.

use super::*;

pub(super) fn list_webhooks(ctx: &Ctx) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let items = shared
        .inner()
        .webhooks
        .iter()
        .map(|w| w.node(&shared.user))
        .collect();
    ok(ctx, StatusCode::OK, vec![Node::list("webhooks", items)])
}

fn find_webhook(shared: &Shared, id: &str) -> Result<Webhook, ApiError> {
    shared
        .inner()
        .webhooks
        .iter()
        .find(|w| w.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("404040", format!("Webhook '{id}' could not be found.")))
}

pub(super) fn get_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let hook = find_webhook(&ctx.shared, id)?;
    ok(ctx, StatusCode::OK, vec![hook.node(&ctx.shared.user)])
}

pub(super) fn delete_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    find_webhook(&ctx.shared, id)?;
    ctx.shared.inner().webhooks.retain(|w| w.id != id);
    ctx.shared.save_catalog();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn webhook_error(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "400000", "Bad Request", detail)
}

/// The fields a create or update request gives.
struct Spec {
    name: Option<String>,
    event: Option<&'static str>,
    url: Option<String>,
    enabled: Option<bool>,
    reason: Option<String>,
}

fn parse_spec(element: &Element) -> Result<Spec, ApiError> {
    let by_attr = match element.attr("event") {
        Some(e) => Some(
            find_event(e).ok_or_else(|| webhook_error(format!("Unknown webhook event '{e}'.")))?,
        ),
        None => None,
    };
    let by_source =
        match element
            .child("webhook-source")
            .and_then(|s| s.children.first())
        {
            Some(e) => Some(find_event(&e.name).ok_or_else(|| {
                webhook_error(format!("Unknown webhook source event '{}'.", e.name))
            })?),
            None => None,
        };
    let event = match (by_attr, by_source) {
        (Some(a), Some(b)) if a != b => {
            return Err(webhook_error(format!(
                "The event attribute '{}' and the webhook-source '{}' disagree.",
                a.0, b.1
            )));
        }
        (Some(a), _) | (None, Some(a)) => Some(a.0),
        (None, None) => None,
    };
    let url = match element
        .child("webhook-destination")
        .and_then(|d| d.child("webhook-destination-http"))
    {
        None => None,
        Some(http) => {
            if http
                .attr("method")
                .is_some_and(|m| !m.eq_ignore_ascii_case("POST"))
            {
                return Err(webhook_error(
                    "The webhook destination method must be POST.",
                ));
            }
            let url = http
                .attr("url")
                .ok_or_else(|| webhook_error("The webhook destination has no url."))?;
            if !webhooks::url_allowed(url) {
                return Err(webhook_error(format!(
                    "The destination URL '{url}' is not allowed: it must be https (plain http only on loopback in the sandbox)."
                )));
            }
            Some(url.to_owned())
        }
    };
    let enabled = element
        .attr("isEnabled")
        .map(|v| !v.eq_ignore_ascii_case("false"));
    let reason = element.attr("statusChangeReason").map(str::to_owned);
    if reason.is_some() && enabled != Some(false) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "400127",
            "Bad Request",
            "statusChangeReason may only be given with isEnabled=\"false\".",
        ));
    }
    Ok(Spec {
        name: element
            .attr("name")
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        event,
        url,
        enabled,
        reason,
    })
}

/// The status reason for an enabled flag (Tableau's default when a webhook
/// is disabled without one).
fn reason_for(enabled: bool, given: Option<String>) -> String {
    if enabled {
        String::new()
    } else {
        given.unwrap_or_else(|| "Webhook disabled by user".to_owned())
    }
}

pub(super) async fn create_webhook(ctx: Ctx) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    let root = parse_ts_request(&ctx.headers, &body)?;
    let element: &Element = root
        .child("webhook")
        .ok_or_else(|| webhook_error("The request has no webhook element."))?;
    let spec = parse_spec(element)?;
    let name = spec
        .name
        .ok_or_else(|| webhook_error("The webhook has no name."))?;
    let event = spec
        .event
        .ok_or_else(|| webhook_error("The webhook names no event."))?;
    let url = spec
        .url
        .ok_or_else(|| webhook_error("The webhook has no webhook-destination-http."))?;
    let enabled = spec.enabled.unwrap_or(true);
    let hook = Webhook {
        id: luid(),
        name,
        event,
        url,
        enabled,
        status_change_reason: reason_for(enabled, spec.reason),
        created_at: now_micros(),
    };
    let shared = &ctx.shared;
    shared.inner().webhooks.push(hook.clone());
    shared.save_catalog();
    tracing::info!(webhook = %hook.id, event, destination = %webhooks::redacted(&hook.url), "webhook created");
    let mut response = ts_response(
        ctx.format,
        StatusCode::CREATED,
        vec![hook.node(&shared.user)],
    );
    let location = format!(
        "{}/api/{API_VERSION}/sites/{}/webhooks/{}",
        shared.server_url, shared.site.id, hook.id
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `PUT .../webhooks/{id}` (3.8+): changes the given fields; answers 201
/// as the documentation says.
pub(super) async fn update_webhook(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    let root = parse_ts_request(&ctx.headers, &body)?;
    let element: &Element = root
        .child("webhook")
        .ok_or_else(|| webhook_error("The request has no webhook element."))?;
    let spec = parse_spec(element)?;
    let shared = &ctx.shared;
    let updated = {
        let mut inner = shared.inner();
        let hook = inner
            .webhooks
            .iter_mut()
            .find(|w| w.id == id)
            .ok_or_else(|| {
                ApiError::not_found("404040", format!("Webhook '{id}' could not be found."))
            })?;
        if let Some(name) = spec.name {
            hook.name = name;
        }
        if let Some(event) = spec.event {
            hook.event = event;
        }
        if let Some(url) = spec.url {
            hook.url = url;
        }
        if let Some(enabled) = spec.enabled {
            hook.enabled = enabled;
            hook.status_change_reason = reason_for(enabled, spec.reason);
        }
        hook.clone()
    };
    shared.save_catalog();
    ok(&ctx, StatusCode::CREATED, vec![updated.node(&shared.user)])
}

pub(super) async fn test_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let hook = find_webhook(&ctx.shared, id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "400113",
            "Bad Request",
            format!("Webhook '{id}' does not exist."),
        )
    })?;
    let (status, body) = webhooks::test(&ctx.shared, &hook.url).await;
    ok(
        ctx,
        StatusCode::OK,
        vec![
            Node::new("webhookTestResult")
                .attr("id", hook.id.clone())
                .attr("status", status.to_string())
                .child(Node::new("body").text(body)),
        ],
    )
}
