//! Wire shapes of the Tableau REST API as this client uses them: a small
//! namespace-tolerant XML reader (elements matched by local name, so the
//! default `http://tableau.com/api` namespace or a prefix make no
//! difference), the typed pieces read from responses, the XML request bodies,
//! the `multipart/mixed` framing, and the JSON actions of *Update Data in
//! Hyper Data Source*.
//!
//! Request bodies that carry the PAT secret are built here but never logged.

use quick_xml::Reader;
use quick_xml::escape::{escape, unescape};
use quick_xml::events::Event;
use serde_json::json;

/// The schema of the tables this client reads from update payloads and
/// writes to in the published extract.
pub const EXTRACT_SCHEMA: &str = "Extract";

/// The table of a published extract: `"Extract"."Extract"`, the conventional
/// single-table name every Tableau version reads.
pub const TARGET_TABLE: &str = "Extract";

/// The table in an update payload `.hyper` holding the rows to upsert:
/// `"Extract"."changes"`, same columns as the target.
pub const CHANGES_TABLE: &str = "changes";

/// The table in an update payload `.hyper` holding the keys of rows to
/// delete: `"Extract"."deleted"`, only the key columns.
pub const DELETED_TABLE: &str = "deleted";

// ---------------------------------------------------------------- XML reading

/// One XML element: local name, attributes by local name, children, and its
/// concatenated text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// An attribute's value by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first direct child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first element with this local name at any depth (self included).
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Parses a whole XML document into its root element.
pub(crate) fn parse_xml(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => stack.push(open_element(&start)?),
            Event::Empty(start) => {
                let element = open_element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("unbalanced closing tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = t.decode().map_err(|e| format!("bad text: {e}"))?;
                    top.text.push_str(&raw);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = t.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                    top.text.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    let entity = format!("&{name};");
                    let resolved = unescape(&entity).map_err(|e| format!("bad reference: {e}"))?;
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => return Err("document ended before its root element closed".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

fn open_element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute in <{name}>: {e}"))?;
        let key = attr.key.local_name();
        if attr.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value in <{name}>: {e}"))?;
        attrs.push((
            String::from_utf8_lossy(key.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

// ------------------------------------------------------------ response types

/// Tableau's error envelope: `<error code><summary/><detail/></error>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiErrorBody {
    /// 6-digit code such as `401002`.
    pub code: String,
    /// Short text.
    pub summary: String,
    /// Longer text.
    pub detail: String,
}

impl ApiErrorBody {
    /// Reads an error body in XML or JSON; `None` when it is neither.
    pub(crate) fn parse(body: &str) -> Option<Self> {
        let trimmed = body.trim_start();
        if trimmed.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(trimmed).ok()?;
            let e = v.get("error")?;
            let text = |k: &str| {
                e.get(k)
                    .map(|x| match x {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default()
            };
            return Some(Self {
                code: text("code"),
                summary: text("summary"),
                detail: text("detail"),
            });
        }
        let root = parse_xml(trimmed).ok()?;
        let e = root.find("error")?;
        Some(Self {
            code: e.attr("code").unwrap_or_default().to_owned(),
            summary: e
                .child("summary")
                .map(|s| s.text.trim().to_owned())
                .unwrap_or_default(),
            detail: e
                .child("detail")
                .map(|s| s.text.trim().to_owned())
                .unwrap_or_default(),
        })
    }
}

/// What `serverInfo` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// `<restApiVersion>`, e.g. `3.25`.
    pub rest_api_version: String,
    /// `<productVersion>` text, e.g. `2025.1.0`.
    pub product_version: String,
}

impl ServerInfo {
    pub(crate) fn from_xml(root: &Element) -> Option<Self> {
        let info = root.find("serverInfo")?;
        Some(Self {
            rest_api_version: info.find("restApiVersion")?.text.trim().to_owned(),
            product_version: info
                .find("productVersion")
                .map(|p| p.text.trim().to_owned())
                .unwrap_or_default(),
        })
    }
}

/// What sign-in returns: the session token and the site and user ids.
pub(crate) struct SignInAnswer {
    pub token: String,
    pub site_id: String,
    pub user_id: String,
}

impl SignInAnswer {
    pub fn from_xml(root: &Element) -> Option<Self> {
        let creds = root.find("credentials")?;
        Some(Self {
            token: creds.attr("token")?.to_owned(),
            site_id: creds.child("site")?.attr("id")?.to_owned(),
            user_id: creds
                .child("user")
                .and_then(|u| u.attr("id"))
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// `<pagination pageNumber pageSize totalAvailable/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pagination {
    pub page_number: u32,
    pub page_size: u32,
    pub total_available: u32,
}

impl Pagination {
    pub fn from_xml(root: &Element) -> Option<Self> {
        let p = root.find("pagination")?;
        Some(Self {
            page_number: p.attr("pageNumber")?.parse().ok()?,
            page_size: p.attr("pageSize")?.parse().ok()?,
            total_available: p.attr("totalAvailable")?.parse().ok()?,
        })
    }

    /// True when pages after this one hold more items.
    pub fn has_more(&self) -> bool {
        u64::from(self.page_number) * u64::from(self.page_size) < u64::from(self.total_available)
    }
}

/// A project on the site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// LUID.
    pub id: String,
    /// Name (unique only among siblings).
    pub name: String,
    /// The parent project, `None` at top level.
    pub parent_project_id: Option<String>,
}

impl Project {
    pub(crate) fn from_xml(e: &Element) -> Option<Self> {
        Some(Self {
            id: e.attr("id")?.to_owned(),
            name: e.attr("name")?.to_owned(),
            parent_project_id: e
                .attr("parentProjectId")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        })
    }
}

/// A published data source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datasource {
    /// LUID, used by every later call.
    pub id: String,
    /// Name.
    pub name: String,
    /// The project it lives in.
    pub project_id: Option<String>,
}

impl Datasource {
    pub(crate) fn from_xml(e: &Element) -> Option<Self> {
        Some(Self {
            id: e.attr("id")?.to_owned(),
            name: e.attr("name").unwrap_or_default().to_owned(),
            project_id: e
                .child("project")
                .and_then(|p| p.attr("id"))
                .map(str::to_owned),
        })
    }
}

/// A file upload session's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileUpload {
    /// Opaque id (not a GUID).
    pub upload_session_id: String,
}

impl FileUpload {
    pub fn from_xml(root: &Element) -> Option<Self> {
        Some(Self {
            upload_session_id: root.find("fileUpload")?.attr("uploadSessionId")?.to_owned(),
        })
    }
}

/// An asynchronous job's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// LUID.
    pub id: String,
    /// `UpdateUploadedFile`, `PublishDatasource`, ...
    pub job_type: String,
    /// 0–100.
    pub progress: Option<u32>,
    /// Set once the job ended.
    pub completed_at: Option<String>,
    /// 0 success, 1 failed, 2 cancelled (3 also counts as completed);
    /// absent while running.
    pub finish_code: Option<i32>,
    /// Failure text, when the job has any.
    pub notes: Option<String>,
    /// The data source the job concerns, when named.
    pub datasource_id: Option<String>,
}

impl Job {
    pub(crate) fn from_xml(root: &Element) -> Option<Self> {
        let job = root.find("job")?;
        let notes = job
            .find("notes")
            .map(|n| n.text.trim().to_owned())
            .filter(|n| !n.is_empty());
        Some(Self {
            id: job.attr("id")?.to_owned(),
            job_type: job.attr("type").unwrap_or_default().to_owned(),
            progress: job.attr("progress").and_then(|p| p.parse().ok()),
            completed_at: job
                .attr("completedAt")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            finish_code: job.attr("finishCode").and_then(|c| c.trim().parse().ok()),
            notes,
            datasource_id: job
                .find("datasource")
                .and_then(|d| d.attr("id"))
                .map(str::to_owned),
        })
    }

    /// True once Tableau reports the job ended.
    pub fn is_done(&self) -> bool {
        self.completed_at.is_some() || self.finish_code.is_some_and(|c| c >= 0)
    }
}

/// The webhook events a tenant subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// An extract refresh of a data source succeeded.
    DatasourceRefreshSucceeded,
    /// An extract refresh of a data source failed.
    DatasourceRefreshFailed,
    /// A data source was updated.
    DatasourceUpdated,
}

impl WebhookEvent {
    /// Every event the connector registers.
    pub const ALL: [WebhookEvent; 3] = [
        Self::DatasourceRefreshSucceeded,
        Self::DatasourceRefreshFailed,
        Self::DatasourceUpdated,
    ];

    /// The API name (`event` attribute and payload `event_type`).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::DatasourceRefreshSucceeded => "DatasourceRefreshSucceeded",
            Self::DatasourceRefreshFailed => "DatasourceRefreshFailed",
            Self::DatasourceUpdated => "DatasourceUpdated",
        }
    }

    /// The older `<webhook-source>` child element name.
    pub fn source_element(self) -> &'static str {
        match self {
            Self::DatasourceRefreshSucceeded => "webhook-source-event-datasource-refresh-succeeded",
            Self::DatasourceRefreshFailed => "webhook-source-event-datasource-refresh-failed",
            Self::DatasourceUpdated => "webhook-source-event-datasource-updated",
        }
    }

    /// Reads an event from either its API name or its source element name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.api_name().eq_ignore_ascii_case(name) || e.source_element() == name)
    }
}

/// One webhook event as Tableau POSTs it (JSON). Dispatch on
/// [`event_type`](Self::event_type), not `resource` (the docs disagree on
/// the latter for refresh events). Tableau may deliver an event twice:
/// dedupe on [`dedupe_key`](Self::dedupe_key).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct WebhookPayload {
    /// `DATASOURCE`, `EXTRACTS`, ...
    pub resource: String,
    /// `DatasourceUpdated`, `DatasourceRefreshSucceeded`, ... or `Test`.
    pub event_type: String,
    /// The data source's name.
    pub resource_name: String,
    /// The site's LUID.
    pub site_luid: String,
    /// The data source's LUID (opaque text).
    pub resource_luid: String,
    /// When the event happened (ISO 8601).
    pub created_at: String,
}

impl WebhookPayload {
    /// Reads a delivery body. An empty body or `{}` is Tableau's test
    /// delivery and reads as `event_type` `Test`.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::test());
        }
        let mut payload: Self = serde_json::from_slice(body)?;
        if payload.event_type.is_empty() {
            payload.event_type = "Test".into();
        }
        Ok(payload)
    }

    fn test() -> Self {
        Self {
            event_type: "Test".into(),
            ..Self::default()
        }
    }

    /// The connector event this is, if it is one.
    pub fn event(&self) -> Option<WebhookEvent> {
        WebhookEvent::from_name(&self.event_type)
    }

    /// True for Tableau's test delivery.
    pub fn is_test(&self) -> bool {
        self.event_type.eq_ignore_ascii_case("Test")
    }

    /// Identical deliveries share this key.
    pub fn dedupe_key(&self) -> (String, String, String) {
        (
            self.event_type.clone(),
            self.resource_luid.clone(),
            self.created_at.clone(),
        )
    }
}

/// A webhook registered on the site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// LUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// The event it fires on, when it is one this client knows.
    pub event: Option<WebhookEvent>,
    /// Destination URL.
    pub url: String,
    /// Whether Tableau delivers it.
    pub enabled: bool,
}

impl Webhook {
    pub(crate) fn from_xml(e: &Element) -> Option<Self> {
        let event = e
            .attr("event")
            .and_then(WebhookEvent::from_name)
            .or_else(|| {
                e.child("webhook-source")
                    .and_then(|s| s.children.first())
                    .and_then(|c| WebhookEvent::from_name(&c.name))
            });
        Some(Self {
            id: e.attr("id")?.to_owned(),
            name: e.attr("name").unwrap_or_default().to_owned(),
            event,
            url: e
                .find("webhook-destination-http")
                .and_then(|h| h.attr("url"))
                .unwrap_or_default()
                .to_owned(),
            enabled: e.attr("isEnabled").is_none_or(|v| v != "false"),
        })
    }
}

// ------------------------------------------------------------- request bodies

/// The PAT sign-in body. Holds the secret: never log it.
pub(crate) fn signin_xml(pat_name: &str, pat_secret: &str, site: &str) -> String {
    format!(
        "<tsRequest><credentials personalAccessTokenName=\"{}\" personalAccessTokenSecret=\"{}\"><site contentUrl=\"{}\"/></credentials></tsRequest>",
        escape(pat_name),
        escape(pat_secret),
        escape(site)
    )
}

/// The `request_payload` part of a data source publish.
pub(crate) fn publish_payload_xml(name: &str, project_id: &str) -> String {
    format!(
        "<tsRequest><datasource name=\"{}\"><project id=\"{}\"/></datasource></tsRequest>",
        escape(name),
        escape(project_id)
    )
}

/// The body creating a webhook (both the `event` attribute and the older
/// `<webhook-source>` element, which agree).
pub(crate) fn webhook_create_xml(name: &str, event: WebhookEvent, url: &str) -> String {
    format!(
        "<tsRequest><webhook name=\"{}\" event=\"{}\" isEnabled=\"true\"><webhook-source><{}/></webhook-source><webhook-destination><webhook-destination-http method=\"POST\" url=\"{}\"/></webhook-destination></webhook></tsRequest>",
        escape(name),
        event.api_name(),
        event.source_element(),
        escape(url)
    )
}

/// One part of a `multipart/mixed` body.
pub(crate) struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Frames parts as `multipart/mixed` with `Content-Disposition: form-data`,
/// as Tableau's clients send it. Returns the body.
pub(crate) fn multipart_mixed(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let size: usize = parts.iter().map(|p| p.body.len() + 200).sum();
    let mut out = Vec::with_capacity(size + boundary.len() + 8);
    for part in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.extend_from_slice(part.name.as_bytes());
        out.push(b'"');
        if let Some(f) = part.filename {
            out.extend_from_slice(b"; filename=\"");
            out.extend_from_slice(f.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(part.content_type.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(part.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out
}

/// The body of one chunk of a file upload: an empty `request_payload` part
/// and a `tableau_file` part of `len` bytes left zeroed at the returned
/// range, for the caller to read the file straight into (one copy of the
/// chunk in memory, not two).
pub(crate) fn upload_chunk_body(boundary: &str, len: usize) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut out = multipart_mixed(
        boundary,
        &[
            Part {
                name: "request_payload",
                filename: None,
                content_type: "text/xml",
                body: b"",
            },
            Part {
                name: "tableau_file",
                filename: Some("file"),
                content_type: "application/octet-stream",
                body: b"",
            },
        ],
    );
    // `multipart_mixed` ends the last part's (empty) body with CRLF and the
    // closing boundary: the file goes just before that CRLF.
    let tail = 2 + 2 + boundary.len() + 4;
    let at = out.len() - tail;
    out.splice(at..at, std::iter::repeat_n(0u8, len));
    (out, at..at + len)
}

/// The `and` of `eq` conditions matching target key columns to source ones
/// (a single key needs no `and`).
fn key_condition(keys: &[String]) -> serde_json::Value {
    let eqs: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| json!({"op": "eq", "target-col": k, "source-col": k}))
        .collect();
    match <[serde_json::Value; 1]>::try_from(eqs) {
        Ok([single]) => single,
        Err(eqs) => json!({"op": "and", "args": eqs}),
    }
}

/// The JSON body of one *Update Data in Hyper* request: an `upsert` from
/// `"Extract"."changes"` when the payload has changed rows, then a `delete`
/// matching `"Extract"."deleted"` when it has deleted keys; both keyed on
/// `keys` and targeting `"Extract"."Extract"`.
pub(crate) fn update_actions(keys: &[String], upserts: bool, deletes: bool) -> serde_json::Value {
    let mut actions = Vec::new();
    if upserts {
        actions.push(json!({
            "action": "upsert",
            "source-schema": EXTRACT_SCHEMA, "source-table": CHANGES_TABLE,
            "target-schema": EXTRACT_SCHEMA, "target-table": TARGET_TABLE,
            "condition": key_condition(keys),
        }));
    }
    if deletes {
        actions.push(json!({
            "action": "delete",
            "source-schema": EXTRACT_SCHEMA, "source-table": DELETED_TABLE,
            "target-schema": EXTRACT_SCHEMA, "target-table": TARGET_TABLE,
            "condition": key_condition(keys),
        }));
    }
    json!({ "actions": actions })
}

/// An `eq` filter term (`field:eq:value`). The value must not contain `,` or
/// `:` (callers list without a filter then); the HTTP layer URL-encodes it.
pub(crate) fn filter_eq(field: &str, value: &str) -> String {
    format!("{field}:eq:{value}")
}
