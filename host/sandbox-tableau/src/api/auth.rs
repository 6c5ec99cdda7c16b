//! Sign-in and sign-out with personal access tokens, and the site.

use super::*;

pub(super) async fn sign_in(ctx: Ctx, path: &str) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    if ctx.shared.faults.take_sign_in_redirect() {
        // A Cloud sign-in to a host that is not the site's pod answers 301;
        // the client must POST again to `Location`.
        let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
        let location = format!("{}{path}", ctx.shared.server_url);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let root = parse_ts_request(&ctx.headers, &body)?;
    let credentials = root
        .child("credentials")
        .ok_or_else(|| ApiError::bad_request("The sign-in request has no credentials element."))?;
    let shared = &ctx.shared;
    let (Some(name), Some(secret)) = (
        credentials.attr("personalAccessTokenName"),
        credentials.attr("personalAccessTokenSecret"),
    ) else {
        return Err(ApiError::signin_failed(
            "Error signing in to Tableau Server: this site only accepts personal access tokens.",
        ));
    };
    let site = credentials
        .child("site")
        .and_then(|s| s.attr("contentUrl"))
        .unwrap_or("");
    let known = shared
        .inner()
        .pats
        .get(name)
        .is_some_and(|s| constant_time_eq(secret.as_bytes(), s.expose().as_bytes()));
    if !known || site != shared.site.content_url {
        tracing::info!(pat = name, site, "sign-in refused");
        return Err(ApiError::signin_failed(
            "Error signing in to Tableau Server (the personal access token or the site is not valid).",
        ));
    }
    let token = new_token();
    let session = Session {
        pat_name: name.to_owned(),
        site_id: shared.site.id.clone(),
        user_id: shared.user.id.clone(),
        expires: Instant::now() + shared.settings.session_ttl,
        epoch: shared.faults.epoch(),
    };
    {
        let mut inner = shared.inner();
        // One session per PAT: a new sign-in ends the earlier one.
        inner.sessions.retain(|_, s| s.pat_name != name);
        inner.sessions.insert(token.clone(), session);
    }
    tracing::info!(pat = name, site, "signed in");
    ok(
        &ctx,
        StatusCode::OK,
        vec![
            Node::new("credentials")
                .attr("token", token)
                .attr(
                    "estimatedTimeToExpiration",
                    estimated(shared.settings.session_ttl),
                )
                .child(
                    Node::new("site")
                        .attr("id", shared.site.id.clone())
                        .attr("contentUrl", shared.site.content_url.clone()),
                )
                .child(Node::new("user").attr("id", shared.user.id.clone())),
        ],
    )
}

/// `D:HH:MM` of the session lifetime.
fn estimated(ttl: Duration) -> String {
    let minutes = ttl.as_secs() / 60;
    format!(
        "{}:{:02}:{:02}",
        minutes / 1440,
        (minutes / 60) % 24,
        minutes % 60
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token shaped like Tableau's (`<22 chars>|<32 hex>`).
fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    format!(
        "{}|{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        uuid::Uuid::new_v4().simple()
    )
}

pub(super) fn sign_out(ctx: &Ctx) -> Result<Response, ApiError> {
    authenticate(ctx, None)?;
    if let Some(token) = ctx
        .headers
        .get("x-tableau-auth")
        .and_then(|v| v.to_str().ok())
    {
        ctx.shared.inner().sessions.remove(token);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn site_node(shared: &Shared) -> Node {
    Node::new("site")
        .attr("id", shared.site.id.clone())
        .attr("name", shared.site.name.clone())
        .attr("contentUrl", shared.site.content_url.clone())
        .attr("adminMode", "ContentAndUsers")
        .attr("state", "Active")
}

pub(super) fn list_sites(ctx: &Ctx) -> Result<Response, ApiError> {
    ok(
        ctx,
        StatusCode::OK,
        vec![
            Node::new("pagination")
                .attr("pageNumber", "1")
                .attr("pageSize", "100")
                .attr("totalAvailable", "1"),
            Node::list("sites", vec![site_node(&ctx.shared)]),
        ],
    )
}

pub(super) fn get_site(ctx: &Ctx, site: &str, by_name: bool) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let matches = if by_name {
        site == shared.site.content_url || site == shared.site.name
    } else {
        site == shared.site.id
    };
    if !matches {
        return Err(ApiError::not_found(
            "404000",
            format!("Site '{site}' could not be found."),
        ));
    }
    ok(ctx, StatusCode::OK, vec![site_node(shared)])
}
