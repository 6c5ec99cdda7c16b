//! The Tableau sandbox over real HTTP, from the reference's point of view:
//! sign-in (XML and JSON) and session rules, publish with its conflicts and
//! limits, chunked uploads, Update Data in Hyper with RequestID, job notes,
//! webhooks to a loopback receiver, and the official Python client
//! (`tableauserverclient`, unmodified) driving a whole round trip.
// Test helpers outside `#[test]` functions fail loudly too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlc_common::{Decimal, Value};
use mlc_hyper::{Hyperd, HyperdConfig};
use mlc_sandbox_tableau::{DeliveryOutcome, TableauSandbox, TableauSandboxConfig};
use reqwest::StatusCode;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V: &str = "3.28";

/// A sandbox, a fixture hyperd for making payload files, and a scratch dir.
struct Env {
    sandbox: TableauSandbox,
    fixtures: Hyperd,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

async fn env_with(f: impl FnOnce(&mut TableauSandboxConfig)) -> Env {
    crate::common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut config = TableauSandboxConfig {
        data_dir: dir.path().join("sandbox"),
        webhook_retry_delay: Duration::from_millis(50),
        ..TableauSandboxConfig::default()
    };
    f(&mut config);
    let sandbox = TableauSandbox::start(config)
        .await
        .unwrap_or_else(|e| panic!("the sandbox did not start: {e}"));
    let fixtures = Hyperd::start(HyperdConfig {
        log_dir: dir.path().join("fixture-hyperd"),
        ..HyperdConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("fixture hyperd did not start: {e}"));
    Env {
        sandbox,
        fixtures,
        dir,
        http: reqwest::Client::new(),
    }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

/// One row of the fixture table: id, name, amount (cents).
type Row = (i64, &'static str, i64);

fn expected(rows: &[Row]) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|(id, name, cents)| {
            vec![
                Value::Integer(*id),
                Value::Text((*name).to_owned()),
                Value::Decimal(Decimal::new(i128::from(*cents), 2)),
            ]
        })
        .collect()
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}/api/{V}/{path}", self.sandbox.server_url())
    }

    fn site_url(&self, path: &str) -> String {
        self.url(&format!("sites/{}/{path}", self.sandbox.site_id()))
    }

    /// Writes a `.hyper` with table `"Extract".<table>` holding `rows`.
    async fn hyper_file(&self, name: &str, table: &str, rows: &[Row]) -> PathBuf {
        let path = self.dir.path().join(name);
        let client = self.fixtures.connect().await.unwrap();
        let p = path.to_string_lossy().replace('"', "\"\"");
        client
            .batch_execute(&format!("CREATE DATABASE \"{p}\""))
            .await
            .unwrap();
        client
            .batch_execute(&format!("ATTACH DATABASE \"{p}\" AS fx"))
            .await
            .unwrap();
        client
            .batch_execute("CREATE SCHEMA fx.\"Extract\"")
            .await
            .unwrap();
        client
            .batch_execute(&format!(
                "CREATE TABLE fx.\"Extract\".\"{table}\" (\"id\" BIGINT NOT NULL, \"name\" TEXT, \"amount\" NUMERIC(18,2))"
            ))
            .await
            .unwrap();
        for (id, text, cents) in rows {
            client
                .batch_execute(&format!(
                    "INSERT INTO fx.\"Extract\".\"{table}\" VALUES ({id}, '{text}', {}.{:02})",
                    cents / 100,
                    cents % 100
                ))
                .await
                .unwrap();
        }
        client.batch_execute("DETACH DATABASE fx").await.unwrap();
        path
    }

    /// Signs in with the PAT (JSON), returns the token.
    async fn sign_in(&self) -> String {
        let body = serde_json::json!({"credentials": {
            "personalAccessTokenName": self.sandbox.pat_name(),
            "personalAccessTokenSecret": self.sandbox.pat_secret().expose(),
            "site": {"contentUrl": self.sandbox.site_content_url()}}});
        let resp = self
            .http
            .post(self.url("auth/signin"))
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "sign-in failed");
        let json: Json = resp.json().await.unwrap();
        json["credentials"]["token"].as_str().unwrap().to_owned()
    }

    async fn get_json(&self, token: &str, url: &str) -> (StatusCode, Json) {
        let resp = self
            .http
            .get(url)
            .header("X-Tableau-Auth", token)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    /// Publishes `file` (one request, multipart/mixed) with a query tail.
    async fn publish(
        &self,
        token: &str,
        name: &str,
        file: &Path,
        query: &str,
        form_data: bool,
    ) -> (StatusCode, Json) {
        let payload = format!(
            "<tsRequest><datasource name=\"{name}\"><project id=\"{}\"/></datasource></tsRequest>",
            self.sandbox.project_id()
        );
        let bytes = std::fs::read(file).unwrap();
        let disposition = if form_data { "form-data; " } else { "" };
        let body = multipart(
            &[
                ("request_payload", None, "text/xml", payload.into_bytes()),
                (
                    "tableau_datasource",
                    Some("data.hyper"),
                    "application/octet-stream",
                    bytes,
                ),
            ],
            disposition,
        );
        let resp = self
            .http
            .post(self.site_url(&format!("datasources?datasourceType=hyper{query}")))
            .header("X-Tableau-Auth", token)
            .header("Accept", "application/json")
            .header(
                "Content-Type",
                format!("multipart/mixed; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    /// Uploads `bytes` in `chunks` pieces, returns the upload session id.
    async fn upload(&self, token: &str, bytes: &[u8], chunks: usize) -> String {
        let resp = self
            .http
            .post(self.site_url("fileUploads"))
            .header("X-Tableau-Auth", token)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let json: Json = resp.json().await.unwrap();
        let id = json["fileUpload"]["uploadSessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        let size = bytes.len().div_ceil(chunks.max(1)).max(1);
        for chunk in bytes.chunks(size) {
            let (status, _) = self.put_chunk(token, &id, chunk).await;
            assert_eq!(status, StatusCode::OK, "chunk append failed");
        }
        id
    }

    async fn put_chunk(&self, token: &str, id: &str, chunk: &[u8]) -> (StatusCode, Json) {
        let body = multipart(
            &[
                ("request_payload", None, "text/xml", Vec::new()),
                (
                    "tableau_file",
                    Some("file"),
                    "application/octet-stream",
                    chunk.to_vec(),
                ),
            ],
            "form-data; ",
        );
        let resp = self
            .http
            .put(self.site_url(&format!("fileUploads/{id}")))
            .header("X-Tableau-Auth", token)
            .header("Accept", "application/json")
            .header(
                "Content-Type",
                format!("multipart/mixed; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    /// PATCH .../data with actions; returns status and JSON.
    async fn update(
        &self,
        token: &str,
        ds_id: &str,
        upload: Option<&str>,
        request_id: &str,
        actions: Json,
    ) -> (StatusCode, Json) {
        let mut url = self.site_url(&format!("datasources/{ds_id}/data"));
        if let Some(upload) = upload {
            url = format!("{url}?uploadSessionId={upload}");
        }
        let resp = self
            .http
            .patch(url)
            .header("X-Tableau-Auth", token)
            .header("Accept", "application/json")
            .header("RequestID", request_id)
            .json(&serde_json::json!({ "actions": actions }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    /// Polls a job until `completedAt` appears.
    async fn wait_job(&self, token: &str, job_id: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, json) = self
                .get_json(token, &self.site_url(&format!("jobs/{job_id}")))
                .await;
            assert_eq!(status, StatusCode::OK, "job query failed: {json}");
            if json["job"].get("completedAt").is_some() {
                return json["job"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} never completed: {json}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn rows(&self, name: &str) -> Vec<Vec<Value>> {
        self.sandbox
            .datasource_rows(name, &["id"])
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no data source {name}"))
    }
}

const BOUNDARY: &str = "b7f3e1d0c9";

fn multipart(parts: &[(&str, Option<&str>, &str, Vec<u8>)], disposition: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let file = filename
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: {disposition}name=\"{name}\"{file}\r\nContent-Type: {content_type}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn error_code(json: &Json) -> String {
    json["error"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}

#[tokio::test]
async fn sign_in_sessions_versions_and_rate_limits() {
    let env = env_with(|c| c.session_ttl = Duration::from_secs(2)).await;
    let http = &env.http;

    // Discovery, XML by default with the namespace.
    let info = http.get(env.url("serverInfo")).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    let text = info.text().await.unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(
        text.contains("<tsResponse xmlns=\"http://tableau.com/api\""),
        "{text}"
    );
    assert!(
        text.contains("<restApiVersion>3.28</restApiVersion>"),
        "{text}"
    );
    let old = http
        .get(format!(
            "{}/api/3.18/sites/x/projects",
            env.sandbox.server_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let text = old.text().await.unwrap();
    assert!(text.contains("<error code=\"404001\">"), "{text}");

    // XML sign-in.
    let xml = format!(
        "<tsRequest><credentials personalAccessTokenName=\"{}\" personalAccessTokenSecret=\"{}\"><site contentUrl=\"{}\"/></credentials></tsRequest>",
        env.sandbox.pat_name(),
        env.sandbox.pat_secret().expose(),
        env.sandbox.site_content_url()
    );
    let resp = http
        .post(env.url("auth/signin"))
        .header("Content-Type", "text/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(&format!("<site id=\"{}\"", env.sandbox.site_id())),
        "{text}"
    );
    let first = text
        .split("token=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_owned();
    let projects = env.site_url("projects");
    assert_eq!(env.get_json(&first, &projects).await.0, StatusCode::OK);

    // A second sign-in with the same PAT ends the first session.
    let second = env.sign_in().await;
    let (status, json) = env.get_json(&first, &projects).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::UNAUTHORIZED, "401002")
    );
    let (status, json) = env
        .get_json(
            &second,
            &format!("{projects}?filter=name:eq:{}", env.sandbox.project_name()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    // The name repeats across nesting levels: one top-level, one nested.
    assert_eq!(json["pagination"]["totalAvailable"], "2", "{json}");
    let top: Vec<&Json> = json["projects"]["project"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("parentProjectId").is_none())
        .collect();
    assert_eq!(top.len(), 1, "{json}");
    assert_eq!(top[0]["id"], env.sandbox.project_id(), "{json}");
    assert_eq!(top[0]["topLevelProject"], true, "{json}");
    let (_, json) = env
        .get_json(
            &second,
            &format!(
                "{projects}?filter=name:eq:{},topLevelProject:eq:true",
                env.sandbox.project_name()
            ),
        )
        .await;
    assert_eq!(json["pagination"]["totalAvailable"], "1", "{json}");
    assert_eq!(
        json["projects"]["project"][0]["id"],
        env.sandbox.project_id()
    );
    let (status, json) = env
        .get_json(&second, &format!("{projects}?pageSize=1001"))
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400006")
    );

    // Bad PAT: 401001; no token: 401000.
    let resp = http
        .post(env.url("auth/signin"))
        .json(&serde_json::json!({"credentials": {"personalAccessTokenName": env.sandbox.pat_name(),
            "personalAccessTokenSecret": "wrong", "site": {"contentUrl": env.sandbox.site_content_url()}}}))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&resp.json().await.unwrap()), "401001");
    let resp = http
        .get(&projects)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(&resp.json().await.unwrap()), "401000");

    // 429 with Retry-After, then served again.
    env.sandbox.faults().rate_limit_next(1, 7);
    let resp = http
        .get(&projects)
        .header("X-Tableau-Auth", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(env.get_json(&second, &projects).await.0, StatusCode::OK);

    // Forced expiry, then natural expiry after the 2 s lifetime.
    env.sandbox.faults().expire_sessions_now();
    assert_eq!(
        error_code(&env.get_json(&second, &projects).await.1),
        "401002"
    );
    let third = env.sign_in().await;
    assert_eq!(env.get_json(&third, &projects).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        error_code(&env.get_json(&third, &projects).await.1),
        "401002"
    );

    // A second PAT has its own session: signing it in leaves the first.
    let other_secret = env.sandbox.add_pat("tenant-b");
    let live = env.sign_in().await;
    let resp = http
        .post(env.url("auth/signin"))
        .header("Accept", "application/json")
        .json(
            &serde_json::json!({"credentials": {"personalAccessTokenName": "tenant-b",
            "personalAccessTokenSecret": other_secret.expose(),
            "site": {"contentUrl": env.sandbox.site_content_url()}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(env.get_json(&live, &projects).await.0, StatusCode::OK);

    // Cloud pod redirect: 301 with Location; POSTing again there works.
    env.sandbox.faults().redirect_sign_in(1);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let creds = serde_json::json!({"credentials": {
        "personalAccessTokenName": env.sandbox.pat_name(),
        "personalAccessTokenSecret": env.sandbox.pat_secret().expose(),
        "site": {"contentUrl": env.sandbox.site_content_url()}}});
    let resp = no_redirects
        .post(env.url("auth/signin"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("/auth/signin"), "{location}");
    let resp = no_redirects
        .post(&location)
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Sign-out ends a session.
    let fourth = env.sign_in().await;
    let resp = http
        .post(env.url("auth/signout"))
        .header("X-Tableau-Auth", &fourth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        error_code(&env.get_json(&fourth, &projects).await.1),
        "401002"
    );
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_conflicts_query_download_delete() {
    let env = env().await;
    let token = env.sign_in().await;
    let file = env
        .hyper_file("orders.hyper", "Extract", &[(1, "a", 150), (2, "b", 250)])
        .await;

    let (status, json) = env.publish(&token, "orders", &file, "", true).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["datasource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json["datasource"]["project"]["name"],
        env.sandbox.project_name()
    );
    assert_eq!(
        env.rows("orders").await,
        expected(&[(1, "a", 150), (2, "b", 250)])
    );

    // CreateNew on an existing name: 403007, nothing changed.
    let other = env
        .hyper_file("other.hyper", "Extract", &[(9, "z", 1)])
        .await;
    let (status, json) = env.publish(&token, "orders", &other, "", false).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::FORBIDDEN, "403007"),
        "{json}"
    );
    // Overwrite keeps the LUID and replaces the rows (no `form-data;` here).
    let (status, json) = env
        .publish(&token, "orders", &other, "&overwrite=true", false)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["datasource"]["id"], id.as_str());
    assert_eq!(env.rows("orders").await, expected(&[(9, "z", 1)]));
    // Append adds rows.
    let (status, json) = env
        .publish(&token, "orders", &file, "&append=true", true)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(
        env.rows("orders").await,
        expected(&[(1, "a", 150), (2, "b", 250), (9, "z", 1)])
    );
    // Not a hyper file: refused.
    let junk = env.dir.path().join("junk.hyper");
    std::fs::write(&junk, b"not a hyper file").unwrap();
    let (status, json) = env.publish(&token, "junk", &junk, "", true).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400011"),
        "{json}"
    );

    // asJob returns a job that publishes.
    let (status, json) = env
        .publish(&token, "payments", &file, "&asJob=true", true)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["job"]["type"], "PublishDatasource");
    let job = env
        .wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["finishCode"], "0", "{job}");
    assert_eq!(
        job["publishDatasourceJob"]["datasource"]["id"].as_str(),
        env.sandbox.datasource_id("payments").as_deref(),
        "{job}"
    );
    // A publish job that fails creates nothing and says why.
    env.sandbox
        .faults()
        .fail_next_job("publish broke (injected)");
    let (status, json) = env
        .publish(&token, "refunds", &file, "&asJob=true", true)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let job = env
        .wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["finishCode"], "1", "{job}");
    assert_eq!(
        job["publishDatasourceJob"]["notes"],
        "publish broke (injected)"
    );
    assert!(env.sandbox.datasource_file("refunds").is_none());

    // Query: filter, sort, paging.
    let list = env.site_url("datasources");
    let (_, json) = env
        .get_json(&token, &format!("{list}?filter=name:eq:orders"))
        .await;
    assert_eq!(json["pagination"]["totalAvailable"], "1", "{json}");
    assert_eq!(json["datasources"]["datasource"][0]["id"], id.as_str());
    let (_, json) = env
        .get_json(
            &token,
            &format!("{list}?sort=name:desc&pageSize=1&pageNumber=2"),
        )
        .await;
    assert_eq!(json["pagination"]["totalAvailable"], "2", "{json}");
    assert_eq!(
        json["datasources"]["datasource"][0]["name"], "orders",
        "{json}"
    );
    let (_, json) = env
        .get_json(
            &token,
            &format!(
                "{list}?filter=projectName:eq:{},name:in:[payments,x]",
                env.sandbox.project_name()
            ),
        )
        .await;
    assert_eq!(
        json["datasources"]["datasource"][0]["name"], "payments",
        "{json}"
    );
    let (status, json) = env
        .get_json(&token, &format!("{list}?filter=colour:eq:red"))
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400065")
    );

    // Get by id, connections, download.
    let (status, json) = env
        .get_json(&token, &env.site_url(&format!("datasources/{id}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["datasource"]["name"], "orders");
    let (_, json) = env
        .get_json(
            &token,
            &env.site_url(&format!("datasources/{id}/connections")),
        )
        .await;
    assert_eq!(
        json["connections"]["connection"][0]["type"], "hyper",
        "{json}"
    );
    let resp = env
        .http
        .get(env.site_url(&format!("datasources/{id}/content")))
        .header("X-Tableau-Auth", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.contains("orders.tdsx"), "{disposition}");
    let downloaded = resp.bytes().await.unwrap();
    let stored = std::fs::read(env.sandbox.datasource_file("orders").unwrap()).unwrap();
    // A .tdsx is a zip; ours stores members uncompressed, so the extract
    // appears byte for byte after its local header.
    assert_eq!(&downloaded[..4], b"PK\x03\x04", "not a zip");
    assert!(
        downloaded.windows(stored.len()).any(|w| w == &stored[..]),
        "the .tdsx does not hold the stored extract"
    );
    let tds = env
        .http
        .get(env.site_url(&format!("datasources/{id}/content?includeExtract=False")))
        .header("X-Tableau-Auth", &token)
        .send()
        .await
        .unwrap();
    assert!(
        tds.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("orders.tds\""),
        "{:?}",
        tds.headers()
    );
    let text = tds.text().await.unwrap();
    assert!(
        text.contains("class='hyper'") && text.contains("Data/Extracts/orders.hyper"),
        "{text}"
    );

    // Refresh: a RefreshExtract job; a failed one carries its notes.
    for fail in [false, true] {
        if fail {
            env.sandbox
                .faults()
                .fail_next_job("refresh broke (injected)");
        }
        let resp = env
            .http
            .post(env.site_url(&format!("datasources/{id}/refresh")))
            .header("X-Tableau-Auth", &token)
            .header("Accept", "application/json")
            .body("<tsRequest/>")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let json: Json = resp.json().await.unwrap();
        assert_eq!(json["job"]["type"], "RefreshExtract", "{json}");
        let job = env
            .wait_job(&token, json["job"]["id"].as_str().unwrap())
            .await;
        if fail {
            assert_eq!(job["finishCode"], "1", "{job}");
            assert_eq!(
                job["extractRefreshJob"]["notes"], "refresh broke (injected)",
                "{job}"
            );
        } else {
            assert_eq!(job["finishCode"], "0", "{job}");
        }
    }

    // Delete: 204, then 404011.
    let resp = env
        .http
        .delete(env.site_url(&format!("datasources/{id}")))
        .header("X-Tableau-Auth", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, json) = env
        .get_json(&token, &env.site_url(&format!("datasources/{id}")))
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::NOT_FOUND, "404011")
    );
    assert!(env.sandbox.datasource_file("orders").is_none());
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn chunked_upload_survives_faults_and_big_single_requests_are_refused() {
    let env = env().await;
    let token = env.sign_in().await;

    // A single request above 64 MB is refused (413), whatever it holds.
    let big = vec![0u8; 65 * 1024 * 1024];
    let body = multipart(
        &[
            (
                "request_payload",
                None,
                "text/xml",
                b"<tsRequest><datasource name=\"big\"/></tsRequest>".to_vec(),
            ),
            (
                "tableau_datasource",
                Some("big.hyper"),
                "application/octet-stream",
                big,
            ),
        ],
        "form-data; ",
    );
    let resp = env
        .http
        .post(env.site_url("datasources?datasourceType=hyper"))
        .header("X-Tableau-Auth", &token)
        .header(
            "Content-Type",
            format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = resp.text().await.unwrap();
    assert!(text.contains("chunked"), "{text}");
    assert!(env.sandbox.datasource_file("big").is_none());

    // Chunked: initiate, append in order (one 503 on the way, and a session
    // expiry plus re-sign-in in the middle), publish with uploadSessionId.
    let file = env
        .hyper_file(
            "orders.hyper",
            "Extract",
            &[(1, "a", 100), (2, "b", 200), (3, "c", 300)],
        )
        .await;
    let bytes = std::fs::read(&file).unwrap();
    let resp = env
        .http
        .post(env.site_url("fileUploads"))
        .header("X-Tableau-Auth", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let text = resp.text().await.unwrap();
    let upload = text
        .split("uploadSessionId=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        upload.contains(':'),
        "upload session ids are opaque text, not GUIDs: {upload}"
    );
    let third = bytes.len() / 3 + 1;
    let chunks: Vec<&[u8]> = bytes.chunks(third).collect();
    assert_eq!(
        env.put_chunk(&token, &upload, chunks[0]).await.0,
        StatusCode::OK
    );
    env.sandbox.faults().fail_next_chunk(503);
    let (status, _) = env.put_chunk(&token, &upload, chunks[1]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    env.sandbox.faults().expire_sessions_now();
    let (status, json) = env.put_chunk(&token, &upload, chunks[1]).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::UNAUTHORIZED, "401002")
    );
    // A big chunk refused before its body is read still gets the answer.
    let (status, json) = env
        .put_chunk(&token, &upload, &vec![0u8; 20 * 1024 * 1024])
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::UNAUTHORIZED, "401002")
    );
    let token = env.sign_in().await;
    assert_eq!(
        env.put_chunk(&token, &upload, chunks[1]).await.0,
        StatusCode::OK
    );
    let (status, json) = env.put_chunk(&token, &upload, chunks[2]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json["fileUpload"]["fileSize"], "0",
        "fileSize is in whole MB: {json}"
    );

    // Unknown session: 404015; no file part: 400020.
    let (status, json) = env.put_chunk(&token, "1:deadbeef-1:0", chunks[0]).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::NOT_FOUND, "404015")
    );
    let resp = env
        .http
        .put(env.site_url(&format!("fileUploads/{upload}")))
        .header("X-Tableau-Auth", &token)
        .header("Accept", "application/json")
        .header(
            "Content-Type",
            format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(multipart(
            &[("request_payload", None, "text/xml", Vec::new())],
            "form-data; ",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp.json().await.unwrap()), "400020");

    let payload = format!(
        "<tsRequest><datasource name=\"orders\"><project id=\"{}\"/></datasource></tsRequest>",
        env.sandbox.project_id()
    );
    let resp = env
        .http
        .post(env.site_url(&format!(
            "datasources?datasourceType=hyper&overwrite=true&uploadSessionId={upload}"
        )))
        .header("X-Tableau-Auth", &token)
        .header(
            "Content-Type",
            format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(multipart(
            &[("request_payload", None, "text/xml", payload.into_bytes())],
            "form-data; ",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(
        env.rows("orders").await,
        expected(&[(1, "a", 100), (2, "b", 200), (3, "c", 300)])
    );
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_single_request_cap_is_on_the_file() {
    let env = env_with(|c| c.single_request_limit = 256 * 1024).await;
    let token = env.sign_in().await;
    let over = env.dir.path().join("over.hyper");
    std::fs::write(&over, vec![1u8; 300 * 1024]).unwrap();
    let (status, json) = env.publish(&token, "over", &over, "", true).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "413000"),
        "{json}"
    );
    // Just under the cap: accepted for reading, then refused as not a .hyper.
    let under = env.dir.path().join("under.hyper");
    std::fs::write(&under, vec![1u8; 255 * 1024]).unwrap();
    let (status, json) = env.publish(&token, "under", &under, "", true).await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400011"),
        "{json}"
    );
    // A chunk above the cap is refused too; a chunk at the cap is fine.
    let upload = env.upload(&token, &vec![2u8; 256 * 1024], 1).await;
    let (status, _) = env.put_chunk(&token, &upload, &vec![3u8; 257 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_the_content() {
    let env = env().await;
    let token = env.sign_in().await;
    let file = env
        .hyper_file("orders.hyper", "Extract", &[(1, "a", 100), (2, "b", 200)])
        .await;
    let (status, json) = env.publish(&token, "orders", &file, "", true).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["datasource"]["id"].as_str().unwrap().to_owned();
    let resp = env
        .http
        .post(env.site_url("webhooks"))
        .header("X-Tableau-Auth", &token)
        .body("<tsRequest><webhook name=\"w\" event=\"DatasourceUpdated\"><webhook-destination><webhook-destination-http method=\"POST\" url=\"https://hooks.example.com/x\"/></webhook-destination></webhook></tsRequest>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (site_id, project_id) = (
        env.sandbox.site_id().to_owned(),
        env.sandbox.project_id().to_owned(),
    );
    let Env {
        sandbox,
        fixtures,
        dir,
        http,
    } = env;
    sandbox.shutdown().await.unwrap();
    let stale = dir.path().join("sandbox/uploads/upload-stale.part");
    std::fs::write(&stale, b"half an upload").unwrap();

    let sandbox = TableauSandbox::start(TableauSandboxConfig {
        data_dir: dir.path().join("sandbox"),
        ..TableauSandboxConfig::default()
    })
    .await
    .unwrap();
    assert!(!stale.exists(), "a stale upload file survived the restart");
    assert_eq!(sandbox.site_id(), site_id, "the site LUID changed");
    assert_eq!(sandbox.project_id(), project_id, "the project LUID changed");
    let env = Env {
        sandbox,
        fixtures,
        dir,
        http,
    };
    let token = env.sign_in().await;
    let (status, json) = env
        .get_json(&token, &env.site_url(&format!("datasources/{id}")))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["datasource"]["name"], "orders");
    assert_eq!(
        env.rows("orders").await,
        expected(&[(1, "a", 100), (2, "b", 200)])
    );
    let (_, hooks) = env.get_json(&token, &env.site_url("webhooks")).await;
    assert_eq!(hooks["webhooks"]["webhook"][0]["name"], "w", "{hooks}");
    env.sandbox.shutdown().await.unwrap();
}

fn upsert_and_delete(source_table: &str) -> Json {
    serde_json::json!([
        {"action": "upsert", "source-schema": "Extract", "source-table": source_table,
         "target-schema": "Extract", "target-table": "Extract",
         "condition": {"op": "eq", "target-col": "id", "source-col": "id"}},
        {"action": "delete", "target-schema": "Extract", "target-table": "Extract",
         "condition": {"op": "lt", "target-col": "amount", "const": {"type": "double", "v": 1.0}}}
    ])
}

#[tokio::test]
async fn update_data_in_hyper_request_ids_failures_and_limits() {
    let env = env_with(|c| c.update_payload_limit = 1024 * 1024).await;
    let token = env.sign_in().await;
    let base = env
        .hyper_file(
            "base.hyper",
            "Extract",
            &[(1, "a", 100), (2, "b", 200), (3, "c", 50)],
        )
        .await;
    let (status, json) = env.publish(&token, "orders", &base, "", true).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["datasource"]["id"].as_str().unwrap().to_owned();

    // Upsert (2 changes, 4 new) then delete amounts below 1.00, atomically.
    let changes = env
        .hyper_file("changes.hyper", "changes", &[(2, "B", 222), (4, "d", 400)])
        .await;
    let upload = env
        .upload(&token, &std::fs::read(&changes).unwrap(), 2)
        .await;
    let (status, json) = env
        .update(
            &token,
            &id,
            Some(&upload),
            "batch-1",
            upsert_and_delete("changes"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["job"]["type"], "UpdateUploadedFile");
    let job_id = json["job"]["id"].as_str().unwrap().to_owned();
    let job = env.wait_job(&token, &job_id).await;
    assert_eq!(job["finishCode"], "0", "{job}");
    assert_eq!(job["progress"], "100");
    assert!(job.get("startedAt").is_some(), "{job}");
    let after = expected(&[(1, "a", 100), (2, "B", 222), (4, "d", 400)]);
    assert_eq!(env.rows("orders").await, after);

    // The same RequestID again (a retry after a lost answer): the original
    // job comes back and nothing is applied twice.
    let upload = env
        .upload(&token, &std::fs::read(&changes).unwrap(), 1)
        .await;
    let insert = serde_json::json!([{"action": "insert", "source-schema": "Extract", "source-table": "changes",
        "target-schema": "Extract", "target-table": "Extract"}]);
    let (status, json) = env
        .update(&token, &id, Some(&upload), "batch-1", insert.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        json["job"]["id"],
        job_id.as_str(),
        "a repeated RequestID must return the original job"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.rows("orders").await,
        after,
        "a repeated RequestID was applied again"
    );

    // A failing action discards the whole batch; the job carries the notes.
    let upload = env
        .upload(&token, &std::fs::read(&changes).unwrap(), 1)
        .await;
    let mut batch = insert.as_array().unwrap().clone();
    batch.push(serde_json::json!({"action": "insert", "source-schema": "Extract", "source-table": "missing",
        "target-schema": "Extract", "target-table": "Extract"}));
    let (status, json) = env
        .update(&token, &id, Some(&upload), "batch-2", Json::Array(batch))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let job = env
        .wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["finishCode"], "1", "{job}");
    let notes = job["updateUploadedFileJob"]["notes"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        notes.contains("Specified table does not exist: missing. (errorCode=410012)"),
        "notes: {notes}"
    );
    assert_eq!(
        env.rows("orders").await,
        after,
        "a failed batch left changes behind"
    );

    // A job failing inside the engine (type mismatch in the second action)
    // is rolled back too, through the connection-scoped URL.
    let (_, conns) = env
        .get_json(
            &token,
            &env.site_url(&format!("datasources/{id}/connections")),
        )
        .await;
    let conn = conns["connections"]["connection"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upload = env
        .upload(&token, &std::fs::read(&changes).unwrap(), 1)
        .await;
    let resp = env
        .http
        .patch(env.site_url(&format!("datasources/{id}/connections/{conn}/data?uploadSessionId={upload}")))
        .header("X-Tableau-Auth", &token)
        .header("Accept", "application/json")
        .header("RequestID", "batch-3")
        .json(&serde_json::json!({"actions": [
            {"action": "insert", "source-schema": "Extract", "source-table": "changes", "target-schema": "Extract", "target-table": "Extract"},
            {"action": "delete", "target-schema": "Extract", "target-table": "Extract",
             "condition": {"op": "eq", "target-col": "id", "const": {"type": "string", "v": "not a number"}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let json: Json = resp.json().await.unwrap();
    let job = env
        .wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["finishCode"], "1", "{job}");
    assert_eq!(
        env.rows("orders").await,
        after,
        "a failed batch left changes behind"
    );

    // Injected failure, with a slow job observed while running.
    env.sandbox.faults().slow_jobs(Duration::from_millis(400));
    env.sandbox
        .faults()
        .fail_next_job("TableauRuntimeException: injected failure (errorCode=500001)");
    let delete_all = serde_json::json!([{"action": "delete", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "gte", "target-col": "id", "const": {"type": "integer", "v": 0}}}]);
    let (status, json) = env
        .update(&token, &id, None, "batch-4", delete_all.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let job_id = json["job"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, running) = env
        .get_json(&token, &env.site_url(&format!("jobs/{job_id}")))
        .await;
    assert!(
        running["job"].get("completedAt").is_none() && running["job"].get("finishCode").is_none(),
        "{running}"
    );
    let job = env.wait_job(&token, &job_id).await;
    assert_eq!(job["finishCode"], "1");
    assert!(
        job["updateUploadedFileJob"]["notes"]
            .as_str()
            .unwrap()
            .contains("injected failure"),
        "{job}"
    );
    env.sandbox.faults().slow_jobs(Duration::ZERO);
    assert_eq!(env.rows("orders").await, after);

    // Jobs on one data source run one after another in submission order,
    // even when the first one is slow.
    let upsert_only = serde_json::json!([{"action": "upsert", "source-schema": "Extract",
        "source-table": "changes", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "eq", "target-col": "id", "source-col": "id"}}]);
    let first = env
        .hyper_file("first.hyper", "changes", &[(1, "first", 100)])
        .await;
    let second = env
        .hyper_file("second.hyper", "changes", &[(1, "second", 100)])
        .await;
    let up1 = env.upload(&token, &std::fs::read(&first).unwrap(), 1).await;
    let up2 = env
        .upload(&token, &std::fs::read(&second).unwrap(), 1)
        .await;
    env.sandbox.faults().slow_jobs(Duration::from_millis(1100));
    let (_, j1) = env
        .update(&token, &id, Some(&up1), "order-1", upsert_only.clone())
        .await;
    let (_, j2) = env
        .update(&token, &id, Some(&up2), "order-2", upsert_only)
        .await;
    let j1 = env
        .wait_job(&token, j1["job"]["id"].as_str().unwrap())
        .await;
    let j2 = env
        .wait_job(&token, j2["job"]["id"].as_str().unwrap())
        .await;
    env.sandbox.faults().slow_jobs(Duration::ZERO);
    assert_eq!(
        (&j1["finishCode"], &j2["finishCode"]),
        (&Json::from("0"), &Json::from("0"))
    );
    assert!(
        j2["startedAt"].as_str().unwrap() >= j1["completedAt"].as_str().unwrap(),
        "the second job started before the first completed: {j1} {j2}"
    );
    let after = expected(&[(1, "second", 100), (2, "B", 222), (4, "d", 400)]);
    assert_eq!(env.rows("orders").await, after, "jobs applied out of order");

    // Payload above the update limit: 413. Malformed actions: 400.
    let upload = env.upload(&token, &vec![7u8; 1024 * 1024 + 1], 1).await;
    let (status, _) = env
        .update(
            &token,
            &id,
            Some(&upload),
            "batch-5",
            upsert_and_delete("changes"),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, json) = env
        .update(
            &token,
            &id,
            None,
            "batch-6",
            serde_json::json!([{"action": "merge"}]),
        )
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400000")
    );
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn update_replace_and_constant_conditions() {
    let env = env().await;
    let token = env.sign_in().await;
    let base = env
        .hyper_file(
            "base.hyper",
            "Extract",
            &[(1, "a", 100), (2, "b", 200), (3, "c", 300), (5, "e", 500)],
        )
        .await;
    let (status, json) = env.publish(&token, "ledger", &base, "", true).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["datasource"]["id"].as_str().unwrap().to_owned();
    let run = |upload: Option<String>, rid: &'static str, actions: Json| {
        let env = &env;
        let token = &token;
        let id = &id;
        async move {
            let (status, json) = env.update(token, id, upload.as_deref(), rid, actions).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{json}");
            let job = env
                .wait_job(token, json["job"]["id"].as_str().unwrap())
                .await;
            assert_eq!(job["finishCode"], "0", "{rid}: {job}");
        }
    };

    // update: only matching rows change; rows without a match stay.
    let change = env
        .hyper_file("change.hyper", "changes", &[(2, "b2", 999), (9, "new", 1)])
        .await;
    let upload = env
        .upload(&token, &std::fs::read(&change).unwrap(), 1)
        .await;
    run(
        Some(upload),
        "u1",
        serde_json::json!([{"action": "update", "source-schema": "Extract",
        "source-table": "changes", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "eq", "target-col": "id", "source-col": "id"}}]),
    )
    .await;
    assert_eq!(
        env.rows("ledger").await,
        expected(&[(1, "a", 100), (2, "b2", 999), (3, "c", 300), (5, "e", 500)])
    );

    // delete with constants only: and / not / or / ne / gte / lte.
    run(None, "d1", serde_json::json!([{"action": "delete", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "or", "args": [
            {"op": "and", "args": [
                {"op": "gte", "target-col": "amount", "const": {"type": "double", "v": 3}},
                {"op": "not", "args": [{"op": "eq", "target-col": "name", "const": {"type": "string", "v": "e"}}]}]},
            {"op": "lte", "target-col": "id", "const": {"type": "integer", "v": 1}}]}}])).await;
    // Removed: id 2 (9.99 >= 3, name b2), id 3 (3.00), id 1 (id <= 1); id 5 kept (name e).
    assert_eq!(env.rows("ledger").await, expected(&[(5, "e", 500)]));
    run(None, "d2", serde_json::json!([{"action": "delete", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "ne", "target-col": "name", "const": {"type": "string", "v": "e"}}}])).await;
    assert_eq!(env.rows("ledger").await, expected(&[(5, "e", 500)]));

    // replace: the target becomes the source.
    let all_new = env
        .hyper_file("all.hyper", "snapshot", &[(7, "x", 1), (8, "y", 2)])
        .await;
    let upload = env
        .upload(&token, &std::fs::read(&all_new).unwrap(), 1)
        .await;
    run(
        Some(upload),
        "r1",
        serde_json::json!([{"action": "replace", "source-schema": "Extract",
        "source-table": "snapshot", "target-schema": "Extract", "target-table": "Extract"}]),
    )
    .await;
    assert_eq!(
        env.rows("ledger").await,
        expected(&[(7, "x", 1), (8, "y", 2)])
    );
    env.sandbox.shutdown().await.unwrap();
}

/// A loopback webhook receiver: answers `fail_first` requests with 500,
/// then 200, and records every body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    fail_first: Arc<Mutex<u32>>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/9f2c", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let fail_first = Arc::new(Mutex::new(0u32));
    let (b, f) = (Arc::clone(&bodies), Arc::clone(&fail_first));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (b, f) = (Arc::clone(&b), Arc::clone(&f));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break String::from_utf8_lossy(&buf[end + 4..end + 4 + len])
                                .into_owned();
                        }
                    }
                };
                let status = {
                    let mut fail = f.lock().unwrap();
                    if *fail > 0 {
                        *fail -= 1;
                        "500 Internal Server Error"
                    } else {
                        b.lock().unwrap().push(body);
                        "200 OK"
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    Receiver {
        url,
        bodies,
        fail_first,
    }
}

impl Receiver {
    /// Waits until `count` bodies arrived; returns them raw.
    async fn wait_for_raw(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bodies = self.bodies.lock().unwrap().clone();
            if bodies.len() >= count {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} webhook calls arrived: {bodies:?}",
                bodies.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` bodies arrived; returns them as JSON.
    async fn wait_for(&self, count: usize) -> Vec<Json> {
        self.wait_for_raw(count)
            .await
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("webhook body {b:?}: {e}")))
            .collect()
    }
}

#[tokio::test]
async fn webhooks_fire_retry_duplicate_and_get_lost() {
    let env = env().await;
    let token = env.sign_in().await;
    let hooks = receiver().await;

    // Create in both documented forms.
    let created = format!(
        "<tsRequest><webhook name=\"created\" event=\"DatasourceCreated\"><webhook-destination><webhook-destination-http method=\"POST\" url=\"{}\"/></webhook-destination></webhook></tsRequest>",
        hooks.url
    );
    let updated = format!(
        "<tsRequest><webhook name=\"updated\"><webhook-source><webhook-source-event-datasource-updated/></webhook-source><webhook-destination><webhook-destination-http method=\"POST\" url=\"{}\"/></webhook-destination></webhook></tsRequest>",
        hooks.url
    );
    let failed = updated
        .replace("\"updated\"", "\"failed\"")
        .replace("datasource-updated", "datasource-refresh-failed");
    let mut ids = Vec::new();
    for body in [created, updated, failed] {
        let resp = env
            .http
            .post(env.site_url("webhooks"))
            .header("X-Tableau-Auth", &token)
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert!(resp.headers().contains_key("location"));
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("<webhook-source><webhook-source-event-datasource-"),
            "{text}"
        );
        ids.push(
            text.split("<webhook id=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let (_, list) = env.get_json(&token, &env.site_url("webhooks")).await;
    assert_eq!(
        list["webhooks"]["webhook"].as_array().unwrap().len(),
        3,
        "{list}"
    );
    let (_, one) = env
        .get_json(&token, &env.site_url(&format!("webhooks/{}", ids[1])))
        .await;
    assert_eq!(one["webhook"]["event"], "DatasourceUpdated", "{one}");
    // Update (3.8+): disabling gets the default reason; a reason while
    // enabled is 400127; enabling again clears it.
    let put = |body: &'static str| {
        env.http
            .put(env.site_url(&format!("webhooks/{}", ids[0])))
            .header("X-Tableau-Auth", &token)
            .header("Accept", "application/json")
            .body(body)
            .send()
    };
    let resp = put("<tsRequest><webhook isEnabled=\"false\"/></tsRequest>")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let json: Json = resp.json().await.unwrap();
    assert_eq!(json["webhook"]["isEnabled"], false, "{json}");
    assert_eq!(
        json["webhook"]["statusChangeReason"],
        "Webhook disabled by user"
    );
    let resp = put("<tsRequest><webhook isEnabled=\"true\" statusChangeReason=\"x\"/></tsRequest>")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp.json().await.unwrap()), "400127");
    let resp = put("<tsRequest><webhook isEnabled=\"true\"/></tsRequest>")
        .await
        .unwrap();
    let json: Json = resp.json().await.unwrap();
    assert_eq!(json["webhook"]["isEnabled"], true, "{json}");
    assert_eq!(json["webhook"]["statusChangeReason"], "", "{json}");
    assert_eq!(json["webhook"]["event"], "DatasourceCreated", "{json}");

    // Plain http off loopback is refused.
    let resp = env
        .http
        .post(env.site_url("webhooks"))
        .header("X-Tableau-Auth", &token)
        .body("<tsRequest><webhook name=\"x\" event=\"DatasourceCreated\"><webhook-destination><webhook-destination-http method=\"POST\" url=\"http://hooks.example.com/x\"/></webhook-destination></webhook></tsRequest>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Test message: an empty body reaches the receiver.
    let (status, test) = env
        .get_json(&token, &env.site_url(&format!("webhooks/{}/test", ids[0])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(test["webhookTestResult"]["status"], "200", "{test}");
    assert_eq!(
        hooks.wait_for_raw(1).await,
        vec![String::new()],
        "the test message has an empty body"
    );
    hooks.bodies.lock().unwrap().clear();

    // Created: the receiver fails twice, the third attempt lands.
    *hooks.fail_first.lock().unwrap() = 2;
    let file = env
        .hyper_file("orders.hyper", "Extract", &[(1, "a", 100)])
        .await;
    let (_, json) = env.publish(&token, "orders", &file, "", true).await;
    let ds_id = json["datasource"]["id"].as_str().unwrap().to_owned();
    let got = hooks.wait_for(1).await;
    assert_eq!(got[0]["event_type"], "DatasourceCreated");
    assert_eq!(got[0]["resource"], "DATASOURCE");
    assert_eq!(got[0]["resource_name"], "orders");
    assert_eq!(got[0]["resource_luid"], ds_id.as_str());
    assert_eq!(got[0]["site_luid"], env.sandbox.site_id());
    assert!(got[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let attempts: Vec<_> = env
        .sandbox
        .webhook_deliveries()
        .into_iter()
        .filter(|d| d.event_type == "DatasourceCreated")
        .map(|d| (d.attempt, d.outcome))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, DeliveryOutcome::Rejected { status: 500 }),
            (2, DeliveryOutcome::Rejected { status: 500 }),
            (3, DeliveryOutcome::Delivered { status: 200 }),
        ]
    );

    // Updated (a successful update job), delivered twice when duplicates are on.
    env.sandbox.faults().duplicate_webhooks(true);
    let delete = serde_json::json!([{"action": "delete", "target-schema": "Extract", "target-table": "Extract",
        "condition": {"op": "eq", "target-col": "id", "const": {"type": "integer", "v": 1}}}]);
    let (_, json) = env.update(&token, &ds_id, None, "r1", delete.clone()).await;
    env.wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    let got = hooks.wait_for(3).await;
    assert_eq!(
        got[1], got[2],
        "a duplicate delivery carries identical JSON"
    );
    assert_eq!(got[1]["event_type"], "DatasourceUpdated");
    env.sandbox.faults().duplicate_webhooks(false);

    // A failed update fires DatasourceRefreshFailed; a lost event never comes.
    env.sandbox.faults().fail_next_job("boom");
    let (_, json) = env.update(&token, &ds_id, None, "r2", delete.clone()).await;
    env.wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    let got = hooks.wait_for(4).await;
    assert_eq!(got[3]["event_type"], "DatasourceRefreshFailed");
    env.sandbox.faults().lose_webhooks(1);
    let (_, json) = env.update(&token, &ds_id, None, "r3", delete).await;
    env.wait_job(&token, json["job"]["id"].as_str().unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hooks.bodies.lock().unwrap().len(),
        4,
        "a lost event was delivered"
    );
    assert!(
        env.sandbox
            .webhook_deliveries()
            .iter()
            .any(|d| d.outcome == DeliveryOutcome::Lost)
    );

    // Delete webhooks.
    for id in &ids {
        let resp = env
            .http
            .delete(env.site_url(&format!("webhooks/{id}")))
            .header("X-Tableau-Auth", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    let (status, json) = env
        .get_json(&token, &env.site_url(&format!("webhooks/{}/test", ids[0])))
        .await;
    assert_eq!(
        (status, error_code(&json).as_str()),
        (StatusCode::BAD_REQUEST, "400113")
    );
    env.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn official_python_client_round_trip() {
    crate::common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = TableauSandbox::start(TableauSandboxConfig {
        data_dir: dir.path().join("sandbox"),
        ..TableauSandboxConfig::default()
    })
    .await
    .unwrap();
    let script = crate::common::workspace_root().join("tests/python/tsc_roundtrip.py");
    let hooks = receiver().await;
    let output = tokio::process::Command::new(crate::common::python())
        .arg(&script)
        .arg(sandbox.server_url())
        .arg(sandbox.site_content_url())
        .arg(sandbox.pat_name())
        .arg(sandbox.project_name())
        .arg(dir.path().join("work"))
        .arg(&hooks.url)
        .env("TSC_PAT_SECRET", sandbox.pat_secret().expose())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tsc_roundtrip.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(stdout.contains("tsc round trip: OK"), "{stdout}");
    // The data source was created and deleted through the client.
    assert!(sandbox.datasource_file("tsc_orders").is_none());
    let bodies = hooks.wait_for_raw(3).await;
    assert!(
        bodies.iter().any(String::is_empty),
        "the webhook test message never arrived: {bodies:?}"
    );
    let mut created: Vec<String> = bodies
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let json: Json = serde_json::from_str(b).unwrap();
            assert_eq!(json["event_type"], "DatasourceCreated", "{json}");
            json["resource_name"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    created.sort();
    assert_eq!(
        created,
        vec!["tsc_chunked", "tsc_orders"],
        "DatasourceCreated events"
    );
    sandbox.shutdown().await.unwrap();
}
