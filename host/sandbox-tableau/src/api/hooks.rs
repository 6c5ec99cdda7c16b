//! Webhooks: create, list, get, test, delete.

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

pub(super) async fn create_webhook(ctx: Ctx) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    let root = parse_ts_request(&ctx.headers, &body)?;
    let element: &Element = root
        .child("webhook")
        .ok_or_else(|| webhook_error("The request has no webhook element."))?;
    let name = element
        .attr("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| webhook_error("The webhook has no name."))?;
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
        (Some(a), _) | (None, Some(a)) => a.0,
        (None, None) => return Err(webhook_error("The webhook names no event.")),
    };
    let http = element
        .child("webhook-destination")
        .and_then(|d| d.child("webhook-destination-http"))
        .ok_or_else(|| webhook_error("The webhook has no webhook-destination-http."))?;
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
    let enabled = element
        .attr("isEnabled")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let hook = Webhook {
        id: luid(),
        name: name.to_owned(),
        event,
        url: url.to_owned(),
        enabled,
        created_at: now_micros(),
    };
    let shared = &ctx.shared;
    shared.inner().webhooks.push(hook.clone());
    shared.save_catalog();
    tracing::info!(webhook = %hook.id, event, url, "webhook created");
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
