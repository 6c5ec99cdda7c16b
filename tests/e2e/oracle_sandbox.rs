//! The Oracle Fusion sandbox over real HTTP on loopback, checked against
//! what `shared/reference/oracle-fusion-rest.md` says Fusion does: the
//! token endpoint and its error bodies, 401s, both `q` dialects and their
//! quirks, the 499 cap, envelope invariants, `orderBy`, `fields`,
//! `expand`, finders, 404s, `describe`, generator determinism and
//! consistency, fault switches and live changes, and the realism of a real
//! pod: the latency model (base, per record, per child row; concurrent
//! requests wait side by side) and throttling per OAuth client (in flight
//! at once, per minute) with the counters a client test reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use mlc_sandbox_oracle::{Latency, OracleSandbox, SandboxConfig, Throttling};
use reqwest::StatusCode;
use serde_json::Value;

struct Env {
    sb: OracleSandbox,
    http: reqwest::Client,
    token: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn token_for(http: &reqwest::Client, sb: &OracleSandbox) -> String {
    let resp = http
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
        .form(&[("grant_type", "client_credentials"), ("scope", &sb.scope())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn env(config: SandboxConfig) -> Env {
    crate::common::init_tracing();
    let sb = OracleSandbox::start(config).await.unwrap();
    let http = http();
    let token = token_for(&http, &sb).await;
    Env { sb, http, token }
}

async fn small() -> Env {
    env(SandboxConfig {
        invoices: 300,
        seed: 7,
        ..SandboxConfig::default()
    })
    .await
}

impl Env {
    /// GET `path` (relative to the base URL, or absolute) with query
    /// pairs and a framework version (`None`: no header).
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        fv: Option<u8>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/{path}", self.sb.base_url())
        };
        let mut req = self.http.get(&url).bearer_auth(&self.token).query(query);
        if let Some(v) = fv {
            req = req.header("REST-Framework-Version", v.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    async fn ok(&self, path: &str, query: &[(&str, &str)], fv: Option<u8>) -> Value {
        let (status, _, body) = self.get(path, query, fv).await;
        assert_eq!(status, StatusCode::OK, "GET {path} {query:?}: {body}");
        body
    }

    /// Every item of a collection, paging with `offset += count`.
    async fn walk(
        &self,
        path: &str,
        query: &[(&str, &str)],
        fv: Option<u8>,
        limit: u64,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let lim = limit.to_string();
            let off = offset.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", &lim));
            q.push(("offset", &off));
            q.push(("totalResults", "true"));
            let page = self.ok(path, &q, fv).await;
            check_envelope(&page, offset);
            let items = page["items"].as_array().unwrap();
            out.extend(items.iter().cloned());
            offset += items.len() as u64;
            if !page["hasMore"].as_bool().unwrap() {
                break;
            }
        }
        out
    }
}

fn check_envelope(page: &Value, offset: u64) {
    let items = page["items"].as_array().expect("items array");
    let count = page["count"].as_u64().expect("count");
    assert_eq!(count, items.len() as u64, "count == items.len(): {page}");
    assert_eq!(
        page["offset"].as_u64(),
        Some(offset),
        "offset echoes the request"
    );
    assert!(page["limit"].as_u64().is_some(), "limit present");
    assert!(page["links"].is_array(), "links present");
    let has_more = page["hasMore"].as_bool().expect("hasMore");
    if items.is_empty() {
        assert!(!has_more, "hasMore false on an empty page");
    }
    if let Some(total) = page["totalResults"].as_u64() {
        assert!(
            total >= offset + count,
            "totalResults {total} >= offset {offset} + count {count}"
        );
    }
}

fn ids(items: &[Value], key: &str) -> Vec<i64> {
    items.iter().map(|i| i[key].as_i64().unwrap()).collect()
}

fn error_detail(body: &Value) -> String {
    assert!(body["title"].is_string(), "error body has a title: {body}");
    assert!(
        body["status"].is_string(),
        "error body has a status: {body}"
    );
    let detail = &body["o:errorDetails"][0];
    assert!(
        detail["o:errorCode"].is_string(),
        "error body has o:errorCode: {body}"
    );
    detail["detail"].as_str().unwrap().to_owned()
}

// ------------------------------------------------------------------ OAuth

#[tokio::test]
async fn client_credentials_token_and_error_bodies() {
    let sb = OracleSandbox::start(SandboxConfig {
        invoices: 10,
        token_ttl: Duration::from_secs(5),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let http = http();
    let scope = sb.scope();
    assert!(
        scope.starts_with("urn:opc:resource:fa:instanceid=")
            && scope.ends_with("urn:opc:resource:consumer::all")
    );

    let resp = http
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 5, "configured token ttl");
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));

    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            http.post(sb.token_url())
                .basic_auth(sb.client_id(), Some("wrong"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", scope.as_str()),
                ]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            http.post(sb.token_url()).form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
            ]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            http.post(sb.token_url())
                .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "urn:opc:resource:consumer::all"),
                ]),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            http.post(sb.token_url())
                .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
                .form(&[("grant_type", "password"), ("scope", scope.as_str())]),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            http.post(sb.token_url())
                .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", "nope")]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
    ];
    for (req, status, error) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{error}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
    assert_eq!(sb.token_request_count(), 6);
    sb.shutdown().await;
}

#[tokio::test]
async fn authorization_code_and_refresh_token_without_a_browser() {
    let e = env(SandboxConfig {
        invoices: 10,
        ..SandboxConfig::default()
    })
    .await;
    let redirect = "http://127.0.0.1:1/callback";
    let scope = format!("{} offline_access", e.sb.scope());
    let resp = e
        .http
        .get(e.sb.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", &e.sb.client_id()),
            ("redirect_uri", redirect),
            ("scope", &scope),
            ("state", "xyz"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect));
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    let code = q["code"].clone();

    let exchange = |code: String, redirect: &'static str| {
        e.http
            .post(e.sb.token_url())
            .basic_auth(e.sb.client_id(), Some(e.sb.client_secret().expose()))
            .form(&[
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", redirect.to_owned()),
            ])
            .send()
    };
    let resp = exchange(code.clone(), "http://127.0.0.1:1/callback")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("offline_access gives a refresh token")
        .to_owned();
    let resp = e
        .http
        .get(format!("{}/invoices", e.sb.base_url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A code works once.
    let resp = exchange(code, "http://127.0.0.1:1/callback").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let refresh_req = || {
        e.http
            .post(e.sb.token_url())
            .basic_auth(e.sb.client_id(), Some(e.sb.client_secret().expose()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
    };
    e.sb.expire_tokens();
    let resp = refresh_req().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "refresh survives access-token expiry"
    );
    let fresh: Value = resp.json().await.unwrap();
    let resp = e
        .http
        .get(format!("{}/invoices", e.sb.base_url()))
        .bearer_auth(fresh["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    e.sb.revoke_tokens();
    let resp = refresh_req().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "revocation kills refresh tokens"
    );

    // Wrong response_type redirects with an error.
    let resp = e
        .http
        .get(e.sb.authorize_url())
        .query(&[
            ("response_type", "token"),
            ("client_id", &e.sb.client_id()),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=unsupported_response_type")
    );
}

#[tokio::test]
async fn unauthorized_without_expired_or_revoked_token() {
    let mut e = small().await;
    let url = format!("{}/invoices", e.sb.base_url());
    let resp = e.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "no token");
    assert!(resp.headers().contains_key("www-authenticate"));
    error_detail(&resp.json().await.unwrap());
    let resp = e
        .http
        .get(&url)
        .bearer_auth("eyJnot.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "unknown token");

    e.ok("invoices", &[], None).await;
    e.sb.expire_tokens();
    let (status, _, body) = e.get("invoices", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired token");
    assert!(error_detail(&body).contains("expired"), "{body}");

    e.token = token_for(&e.http, &e.sb).await;
    e.ok("invoices", &[], None).await;
    e.sb.revoke_tokens();
    let (status, _, body) = e.get("invoices", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked token");
    assert!(error_detail(&body).contains("revoked"), "{body}");

    // A short-lived token really expires.
    e.sb.set_token_ttl(Duration::from_secs(1));
    e.token = token_for(&e.http, &e.sb).await;
    e.ok("invoices", &[], None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = e.get("invoices", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "token past expires_in");
}

// ------------------------------------------------------------ q dialects

#[tokio::test]
async fn q_v1_query_by_example_and_its_and_hazard() {
    let e = small().await;
    let all = e.sb.snapshot("invoices").unwrap();
    let eur: BTreeSet<i64> = all
        .iter()
        .filter(|r| r["InvoiceCurrency"] == "EUR")
        .map(|r| r["InvoiceId"].as_i64().unwrap())
        .collect();
    assert!(
        !eur.is_empty() && eur.len() < all.len(),
        "the data mixes currencies"
    );

    let got = e
        .walk("invoices", &[("q", "InvoiceCurrency=EUR")], None, 499)
        .await;
    assert_eq!(
        ids(&got, "InvoiceId").into_iter().collect::<BTreeSet<_>>(),
        eur
    );

    let got = e
        .walk(
            "invoices",
            &[("q", "InvoiceCurrency=EUR;CanceledFlag=false")],
            None,
            499,
        )
        .await;
    assert!(
        got.iter()
            .all(|i| i["InvoiceCurrency"] == "EUR" && i["CanceledFlag"] == false)
    );
    assert!(!got.is_empty());

    // The Fusion hazard: ` and ` under v1 is part of the literal: 200, 0 rows.
    let page = e
        .ok(
            "invoices",
            &[("q", "InvoiceCurrency=EUR and CanceledFlag=false")],
            None,
        )
        .await;
    check_envelope(&page, 0);
    assert_eq!(page["count"], 0, "{page}");
    // ...while chained operators on one attribute are a range.
    let page = e
        .ok(
            "invoices",
            &[("q", "InvoiceAmount>=1000 and <=2000"), ("limit", "499")],
            Some(1),
        )
        .await;
    for item in page["items"].as_array().unwrap() {
        let a = item["InvoiceAmount"].as_f64().unwrap();
        assert!((1000.0..=2000.0).contains(&a), "{a}");
    }

    let supplier = all[0]["Supplier"].as_str().unwrap();
    let prefix = &supplier[..5];
    let got = e
        .walk(
            "invoices",
            &[("q", &format!("Supplier LIKE '{prefix}*'"))],
            None,
            499,
        )
        .await;
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|i| i["Supplier"].as_str().unwrap().starts_with(prefix))
    );
    let got = e
        .walk(
            "invoices",
            &[("q", &format!("Supplier {prefix}*"))],
            None,
            499,
        )
        .await;
    assert!(
        !got.is_empty()
            && got
                .iter()
                .all(|i| i["Supplier"].as_str().unwrap().starts_with(prefix))
    );

    let (status, _, body) = e
        .get("invoices", &[("q", "LiabilityDistribution=x")], None)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "non-queryable under v1 too"
    );
    assert!(error_detail(&body).contains("LiabilityDistribution"));
}

#[tokio::test]
async fn q_v2_row_match_operators_and_refusals() {
    let e = small().await;
    let all = e.sb.snapshot("invoices").unwrap();
    let pick = |f: &dyn Fn(&Value) -> bool| -> BTreeSet<i64> {
        all.iter()
            .filter(|r| f(r))
            .map(|r| r["InvoiceId"].as_i64().unwrap())
            .collect()
    };
    let first = all[0]["InvoiceId"].as_i64().unwrap();
    let third = all[2]["InvoiceId"].as_i64().unwrap();
    let cases: Vec<(String, BTreeSet<i64>)> = vec![
        (
            "InvoiceCurrency = 'EUR'".into(),
            pick(&|r| r["InvoiceCurrency"] == "EUR"),
        ),
        (
            "InvoiceCurrency = 'EUR' or InvoiceType = 'Credit memo'".into(),
            pick(&|r| r["InvoiceCurrency"] == "EUR" || r["InvoiceType"] == "Credit memo"),
        ),
        (
            "(InvoiceCurrency = 'EUR' or InvoiceType = 'Credit memo') and PaidStatus <> 'Paid'"
                .into(),
            pick(&|r| {
                (r["InvoiceCurrency"] == "EUR" || r["InvoiceType"] == "Credit memo")
                    && r["PaidStatus"] != "Paid"
            }),
        ),
        (
            format!("InvoiceId in ({first}, {third})"),
            [first, third].into_iter().collect(),
        ),
        (
            format!("InvoiceId between {first} and {third}"),
            pick(&|r| (first..=third).contains(&r["InvoiceId"].as_i64().unwrap())),
        ),
        (
            "InvoiceAmount > 2000.50".into(),
            pick(&|r| r["InvoiceAmount"].as_f64().unwrap() > 2000.5),
        ),
        (
            "InvoiceAmount < 0".into(),
            pick(&|r| r["InvoiceAmount"].as_f64().unwrap() < 0.0),
        ),
        (
            "PaymentTerms like 'Net%'".into(),
            pick(&|r| r["PaymentTerms"].as_str().unwrap().starts_with("Net")),
        ),
        (
            "upper(PaymentTerms) = 'IMMEDIATE'".into(),
            pick(&|r| r["PaymentTerms"] == "Immediate"),
        ),
        ("Description is null".into(), BTreeSet::new()),
        ("Description is not null".into(), pick(&|_| true)),
        (
            "CanceledFlag = true".into(),
            pick(&|r| r["CanceledFlag"] == true),
        ),
        (
            "invoiceLines.LineAmount > 4000".into(),
            BTreeSet::new(), // filled below from the child rows
        ),
    ];
    for (q, want) in &cases[..cases.len() - 1] {
        let got = e.walk("invoices", &[("q", q)], Some(2), 499).await;
        assert_eq!(
            &ids(&got, "InvoiceId").into_iter().collect::<BTreeSet<_>>(),
            want,
            "q={q}"
        );
    }
    // Child path: every returned invoice has a line above 4000, and some do.
    let got = e
        .walk(
            "invoices",
            &[
                ("q", "invoiceLines.LineAmount > 4000"),
                ("expand", "invoiceLines"),
            ],
            Some(2),
            100,
        )
        .await;
    assert!(!got.is_empty());
    for inv in &got {
        assert!(
            inv["invoiceLines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["LineAmount"].as_f64().unwrap() > 4000.0)
        );
    }

    // Timestamps: a LastUpdateDate window with and without milliseconds.
    let lud = all[100]["LastUpdateDate"].as_str().unwrap().to_owned();
    let got = e
        .walk(
            "invoices",
            &[("q", &format!("LastUpdateDate >= '{lud}'"))],
            Some(2),
            499,
        )
        .await;
    assert_eq!(
        got.len(),
        all.len() - 100,
        "base timestamps rise with the key"
    );
    let got = e
        .walk(
            "invoices",
            &[("q", "LastUpdateDate >= '2024-01-01'")],
            Some(9),
            499,
        )
        .await;
    assert_eq!(got.len(), all.len());

    for (q, needle) in [
        ("InvoiceCurrency = 'EUR';CanceledFlag = false", ";"),
        ("LiabilityDistribution = 'x'", "LiabilityDistribution"),
        ("NoSuchField = 1", "NoSuchField"),
        ("InvoiceCurrency = EUR", ""),
        ("(InvoiceAmount > 5", ""),
    ] {
        let (status, headers, body) = e.get("invoices", &[("q", q)], Some(3)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "q={q}: {body}");
        assert!(headers["content-type"].to_str().unwrap().contains("json"));
        assert!(error_detail(&body).contains(needle), "q={q}: {body}");
    }
    let (status, _, _) = e.get("invoices", &[], Some(12)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "framework versions stop at 9"
    );
}

// -------------------------------------------------------- paging & shape

#[tokio::test]
async fn limit_is_silently_capped_at_499_and_pages_keep_the_envelope() {
    let e = env(SandboxConfig {
        invoices: 1200,
        ..SandboxConfig::default()
    })
    .await;
    let page = e
        .ok("invoices", &[("limit", "1000"), ("onlyData", "true")], None)
        .await;
    check_envelope(&page, 0);
    assert_eq!(page["limit"], 499, "limit reports the size actually used");
    assert_eq!(page["count"], 499);
    assert_eq!(page["hasMore"], true);
    let page = e.ok("invoices", &[], None).await;
    assert_eq!(page["limit"], 25, "default page size");
    assert_eq!(page["count"], 25);

    let items = e
        .walk("invoices", &[("onlyData", "true")], Some(2), 97)
        .await;
    assert_eq!(
        ids(&items, "InvoiceId"),
        e.sb.keys("invoices").unwrap(),
        "default order is the key"
    );
    let past = e.ok("invoices", &[("offset", "5000")], None).await;
    check_envelope(&past, 5000);
    assert_eq!(past["count"], 0);
    assert_eq!(past["hasMore"], false);
    for bad in [("limit", "abc"), ("offset", "-1"), ("limit", "0")] {
        let (status, _, body) = e.get("invoices", &[bad], None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        error_detail(&body);
    }
}

#[tokio::test]
async fn order_by_fields_only_data_and_links() {
    let e = small().await;
    let items = e
        .walk(
            "invoices",
            &[
                ("orderBy", "InvoiceAmount:desc,InvoiceId:asc"),
                ("fields", "InvoiceId,InvoiceAmount"),
            ],
            None,
            60,
        )
        .await;
    assert_eq!(items.len(), 300);
    for w in items.windows(2) {
        let (a, b) = (
            w[0]["InvoiceAmount"].as_f64().unwrap(),
            w[1]["InvoiceAmount"].as_f64().unwrap(),
        );
        assert!(
            a > b || (a == b && w[0]["InvoiceId"].as_i64() < w[1]["InvoiceId"].as_i64()),
            "{a} then {b}"
        );
    }
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["InvoiceId", "InvoiceAmount", "links"],
        "fields keeps only those attributes"
    );
    let links = items[0]["links"].as_array().unwrap();
    let self_link = links.iter().find(|l| l["rel"] == "self").unwrap();
    assert_eq!(self_link["kind"], "item");
    assert!(
        self_link["properties"]["changeIndicator"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    assert!(links.iter().any(|l| l["rel"] == "canonical"));
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "child" && l["name"] == "invoiceLines")
    );

    let page = e
        .ok("invoices", &[("onlyData", "true"), ("limit", "3")], None)
        .await;
    for item in page["items"].as_array().unwrap() {
        assert!(item.get("links").is_none(), "onlyData drops item links");
        assert_eq!(
            item["InvoiceId"].as_i64().unwrap().to_string().len(),
            15,
            "15-digit ids"
        );
    }
    let page = e
        .ok("invoices", &[("links", "self"), ("limit", "1")], None)
        .await;
    let links = page["items"][0]["links"].as_array().unwrap();
    assert!(links.iter().all(|l| l["rel"] == "self") && links.len() == 1);

    let (status, _, _) = e.get("invoices", &[("orderBy", "Nope:asc")], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = e.get("invoices", &[("fields", "Nope")], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn exact_decimals_dates_timestamps_and_mixed_flags_on_the_wire() {
    let e = small().await;
    let url = format!("{}/invoices?limit=50&onlyData=true", e.sb.base_url());
    let text = e
        .http
        .get(&url)
        .bearer_auth(&e.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Amounts keep two decimals as written (e.g. 1250.00, never 1250.0).
    let amount_texts: Vec<&str> = text
        .split("\"InvoiceAmount\":")
        .skip(1)
        .map(|s| s.split(',').next().unwrap())
        .collect();
    assert_eq!(amount_texts.len(), 50);
    for a in &amount_texts {
        let frac = a
            .split('.')
            .nth(1)
            .unwrap_or_else(|| panic!("no decimals in {a}"));
        assert_eq!(frac.len(), 2, "{a}");
    }
    let page: Value = serde_json::from_str(&text).unwrap();
    let item = &page["items"][0];
    assert!(item["InvoiceDate"].as_str().unwrap().len() == 10);
    let ts = item["LastUpdateDate"].as_str().unwrap();
    assert!(
        ts.ends_with("+00:00") && ts.len() == 29,
        "with milliseconds: {ts}"
    );
    assert!(
        item["CanceledFlag"].is_boolean(),
        "invoices carry JSON bool flags"
    );
    let sup = e.ok("suppliers", &[("limit", "1")], None).await;
    let ts = sup["items"][0]["LastUpdateDate"].as_str().unwrap();
    assert_eq!(
        ts.len(),
        25,
        "suppliers send timestamps without milliseconds: {ts}"
    );
    let acct = e
        .ok("accountCombinationsLOV", &[("limit", "1")], None)
        .await;
    assert_eq!(acct["items"][0]["EnabledFlag"], "Y", "LOVs carry Y/N flags");
    let page = e
        .ok(
            "accountCombinationsLOV",
            &[("q", "EnabledFlag=Y;_CHART_OF_ACCOUNTS_ID=101")],
            None,
        )
        .await;
    assert!(
        page["count"].as_u64().unwrap() > 0,
        "the v1 form Fusion clients use works"
    );
}

#[tokio::test]
async fn expand_arrays_before_v3_and_collections_from_v3() {
    let e = small().await;
    let v1 = e
        .ok(
            "invoices",
            &[("expand", "invoiceLines"), ("limit", "2")],
            None,
        )
        .await;
    let lines = &v1["items"][0]["invoiceLines"];
    assert!(
        lines.is_array() && !lines.as_array().unwrap().is_empty(),
        "{v1}"
    );
    let v2 = e
        .ok("invoices", &[("expand", "all"), ("limit", "2")], Some(2))
        .await;
    for child in [
        "invoiceLines",
        "invoiceDistributions",
        "invoiceInstallments",
    ] {
        assert!(
            v2["items"][0][child].is_array(),
            "expand=all inlines {child}"
        );
    }
    let v3 = e
        .ok(
            "invoices",
            &[("expand", "invoiceLines"), ("limit", "2")],
            Some(3),
        )
        .await;
    let coll = &v3["items"][0]["invoiceLines"];
    assert!(coll.is_object(), "{coll}");
    assert_eq!(
        coll["count"].as_u64().unwrap() as usize,
        coll["items"].as_array().unwrap().len()
    );
    assert_eq!(coll["hasMore"], false);
    let nested = e
        .ok(
            "invoices",
            &[
                ("expand", "invoiceLines.invoiceDistributions"),
                ("limit", "1"),
            ],
            Some(2),
        )
        .await;
    let line = &nested["items"][0]["invoiceLines"][0];
    let dist = &line["invoiceDistributions"][0];
    assert_eq!(dist["LineNumber"], line["LineNumber"]);
    assert_eq!(dist["DistributionAmount"], line["LineAmount"]);
    // fields with a child part wins over expand.
    let page = e
        .ok(
            "invoices",
            &[
                ("fields", "InvoiceId;invoiceLines:LineNumber"),
                ("expand", "all"),
                ("limit", "1"),
                ("onlyData", "true"),
            ],
            Some(2),
        )
        .await;
    let item = page["items"][0].as_object().unwrap();
    assert_eq!(
        item.keys().collect::<Vec<_>>(),
        ["InvoiceId", "invoiceLines"]
    );
    assert_eq!(
        item["invoiceLines"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["LineNumber"]
    );
}

#[tokio::test]
async fn items_children_hashed_paths_finders_and_404s() {
    let e = small().await;
    let keys = e.sb.keys("invoices").unwrap();
    let id = keys[10];
    let item = e.ok(&format!("invoices/{id}"), &[], None).await;
    assert_eq!(item["InvoiceId"], id);
    let page = e
        .ok(
            "invoices",
            &[("finder", &format!("PrimaryKey;InvoiceId={id}"))],
            None,
        )
        .await;
    assert_eq!(page["count"], 1);
    // The invoicesUniqID form of the same key is accepted too.
    let uniq = format!("00000001ACED000577080000{:016X}", id);
    assert_eq!(
        e.ok(&format!("invoices/{uniq}"), &[], None).await["InvoiceId"],
        id
    );
    assert_eq!(page["items"][0]["InvoiceId"], id);

    // Child lines have hashed UniqID segments; follow the links.
    let lines_href = item["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "invoiceLines")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = e.ok(&lines_href, &[], None).await;
    check_envelope(&lines, 0);
    let line = &lines["items"][0];
    let line_href = line["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "self")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let segment = line_href.rsplit('/').next().unwrap();
    assert!(
        segment.len() > 20 && segment.chars().all(|c| c.is_ascii_hexdigit()),
        "UniqID: {segment}"
    );
    let again = e.ok(&line_href, &[], None).await;
    assert_eq!(again["LineAmount"], line["LineAmount"]);
    assert!(
        again["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["rel"] == "parent")
    );
    let dists = e
        .ok(
            &format!("{line_href}/child/invoiceDistributions"),
            &[],
            None,
        )
        .await;
    assert_eq!(dists["items"][0]["DistributionAmount"], line["LineAmount"]);
    let (status, _, _) = e
        .get(&format!("invoices/{id}/child/invoiceLines/1"), &[], None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a raw line number is not a UniqID"
    );

    // Purchase orders: only the hashed segment addresses an item.
    let po = e.ok("purchaseOrders", &[("limit", "1")], None).await;
    let po_item = &po["items"][0];
    let po_href = po_item["links"][0]["href"].as_str().unwrap().to_owned();
    assert_eq!(
        e.ok(&po_href, &[], None).await["POHeaderId"],
        po_item["POHeaderId"]
    );
    let (status, _, _) = e
        .get(
            &format!("purchaseOrders/{}", po_item["POHeaderId"]),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let schedules = e
        .ok(
            &format!("{po_href}/child/lines"),
            &[("expand", "schedules")],
            None,
        )
        .await;
    assert!(
        !schedules["items"][0]["schedules"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Journals three levels deep, balanced.
    let batch = e
        .ok(
            "journalBatches",
            &[("limit", "1"), ("expand", "journalHeaders")],
            None,
        )
        .await;
    let header_href = batch["items"][0]["journalHeaders"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let jl = e
        .ok(&format!("{header_href}/child/journalLines"), &[], None)
        .await;
    let sum = |f: &str| -> f64 {
        jl["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l[f].as_f64())
            .sum()
    };
    assert!(sum("EnteredDr") > 0.0 && (sum("EnteredDr") - sum("EnteredCr")).abs() < 0.005);

    // Cost centers are the values of the cost-center value set.
    let cc = e
        .ok(
            "valueSets/CORP_COST_CENTER/child/values",
            &[("limit", "100")],
            None,
        )
        .await;
    assert_eq!(cc["count"], 24);

    for path in [
        "nope",
        "invoices/1",
        "invoices/999999999999999",
        "valueSets/NOPE",
        "invoices/abc/child/nope",
    ] {
        let (status, _, body) = e.get(path, &[], None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        error_detail(&body);
    }
    e.sb.delete("invoices", id).unwrap();
    let (status, _, _) = e.get(&format!("invoices/{id}"), &[], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted");
    let page = e
        .ok(
            "invoices",
            &[("finder", &format!("PrimaryKey;InvoiceId={id}"))],
            None,
        )
        .await;
    assert_eq!(page["count"], 0);
    let (status, _, _) = e
        .get("invoices", &[("finder", "NoSuchFinder;x=1")], None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn describe_reports_attributes_queryability_children_and_finders() {
    let e = small().await;
    let d = e.ok("invoices/describe", &[], None).await;
    let inv = &d["Resources"]["invoices"];
    let attrs = inv["attributes"].as_array().unwrap();
    let find = |n: &str| {
        attrs
            .iter()
            .find(|a| a["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(find("InvoiceId")["type"], "integer");
    assert_eq!(find("InvoiceAmount")["type"], "number");
    assert_eq!(find("LastUpdateDate")["queryable"], true);
    assert_eq!(find("LiabilityDistribution")["queryable"], false);
    assert!(inv["children"]["invoiceLines"]["children"]["invoiceDistributions"].is_object());
    assert_eq!(inv["collection"]["finders"][0]["name"], "PrimaryKey");
    let id = e.sb.keys("invoices").unwrap()[0];
    let lines = e
        .ok(
            &format!("invoices/{id}/child/invoiceLines/describe"),
            &[],
            None,
        )
        .await;
    assert!(
        lines["Resources"]["invoiceLines"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "LineAmount")
    );
    let all = e.ok("describe", &[], None).await;
    for r in [
        "invoices",
        "payablesPayments",
        "suppliers",
        "purchaseOrders",
        "receivablesInvoices",
        "journalBatches",
        "accountCombinationsLOV",
        "chartOfAccountsLOV",
        "ledgersLOV",
        "valueSets",
    ] {
        assert!(all["Resources"][r]["attributes"].is_array(), "{r}");
    }
}

// ---------------------------------------------------------------- data

#[tokio::test]
async fn same_seed_same_data_and_the_erp_is_consistent() {
    let cfg = |seed| SandboxConfig {
        invoices: 200,
        seed,
        ..SandboxConfig::default()
    };
    let a = OracleSandbox::start(cfg(3)).await.unwrap();
    let b = OracleSandbox::start(cfg(3)).await.unwrap();
    let c = OracleSandbox::start(cfg(4)).await.unwrap();
    for r in [
        "invoices",
        "payablesPayments",
        "suppliers",
        "journalBatches",
        "accountCombinationsLOV",
    ] {
        assert_eq!(
            a.snapshot_json(r).unwrap(),
            b.snapshot_json(r).unwrap(),
            "{r}: same seed, same data"
        );
    }
    assert_ne!(
        a.snapshot_json("invoices").unwrap(),
        c.snapshot_json("invoices").unwrap()
    );
    drop((b, c));

    let e = Env {
        token: token_for(&http(), &a).await,
        sb: a,
        http: http(),
    };
    let suppliers = e.sb.snapshot("suppliers").unwrap();
    let numbers: HashSet<&str> = suppliers
        .iter()
        .map(|s| s["SupplierNumber"].as_str().unwrap())
        .collect();
    let supplier_ids: HashSet<i64> = suppliers
        .iter()
        .map(|s| s["SupplierId"].as_i64().unwrap())
        .collect();
    let parents: Vec<i64> = suppliers
        .iter()
        .filter_map(|s| s["ParentSupplierId"].as_i64())
        .collect();
    assert!(!parents.is_empty(), "a supplier hierarchy exists");
    assert!(
        parents.iter().all(|p| supplier_ids.contains(p)),
        "parents exist"
    );
    let invoices = e.sb.snapshot("invoices").unwrap();
    let by_id: HashMap<i64, &Value> = invoices
        .iter()
        .map(|i| (i["InvoiceId"].as_i64().unwrap(), i))
        .collect();
    for inv in &invoices {
        assert!(
            numbers.contains(inv["SupplierNumber"].as_str().unwrap()),
            "{inv}"
        );
    }
    let combos: HashSet<String> = e
        .walk("accountCombinationsLOV", &[("onlyData", "true")], None, 499)
        .await
        .iter()
        .map(|c| {
            ["entity", "department", "account", "subAccount", "location"]
                .iter()
                .map(|s| c[*s].as_str().unwrap())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    for inv in invoices.iter().take(20) {
        assert!(combos.contains(inv["LiabilityDistribution"].as_str().unwrap()));
        let id = inv["InvoiceId"].as_i64().unwrap();
        let dists = e
            .ok(
                &format!("invoices/{id}/child/invoiceDistributions"),
                &[],
                None,
            )
            .await;
        for d in dists["items"].as_array().unwrap() {
            assert!(
                combos.contains(d["DistributionCombination"].as_str().unwrap()),
                "{d}"
            );
        }
    }
    let payments = e
        .walk(
            "payablesPayments",
            &[("expand", "relatedInvoices"), ("onlyData", "true")],
            None,
            200,
        )
        .await;
    assert_eq!(payments.len(), 120);
    for p in &payments {
        let rel = &p["relatedInvoices"][0];
        let inv = by_id[&rel["InvoiceId"].as_i64().unwrap()];
        assert_eq!(inv["InvoiceAmount"], p["PaymentAmount"]);
        assert_eq!(inv["SupplierNumber"], p["SupplierNumber"]);
        assert_eq!(inv["PaidStatus"], "Paid");
    }
}

#[tokio::test]
async fn generation_is_lazy_five_million_invoices_start_at_once() {
    let e = env(SandboxConfig {
        invoices: 5_000_000,
        same_timestamp: 1000,
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(e.sb.count("invoices").unwrap(), 5_000_000);
    let page = e
        .ok(
            "invoices",
            &[
                ("offset", "4999990"),
                ("limit", "25"),
                ("totalResults", "true"),
            ],
            None,
        )
        .await;
    check_envelope(&page, 4_999_990);
    assert_eq!(page["count"], 10);
    assert_eq!(page["hasMore"], false);
    assert_eq!(page["totalResults"], 5_000_000);
    assert_eq!(
        page["items"][9]["InvoiceId"],
        300_100_000_000_000_i64 + 4_999_999
    );
    // The incremental shape: a LastUpdateDate window, ordered, deep in.
    let q = [
        ("q", "LastUpdateDate >= '2024-01-01T00:10:00+00:00'"),
        ("orderBy", "LastUpdateDate:asc,InvoiceId:asc"),
        ("limit", "499"),
        ("offset", "3000000"),
    ];
    let page = e.ok("invoices", &q, Some(2)).await;
    assert_eq!(page["count"], 499);
    let first = page["items"][0]["LastUpdateDate"].as_str().unwrap();
    let last = page["items"][498]["LastUpdateDate"].as_str().unwrap();
    assert!(first <= last);
    // 1000 records share each timestamp.
    let same = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["LastUpdateDate"] == page["items"][0]["LastUpdateDate"])
        .count();
    assert!(same >= 2, "many records share one timestamp");
}

// ------------------------------------------------------------ live

#[tokio::test]
async fn fault_switches_429_503_504_slow_and_dropped_connections() {
    let e = small().await;
    e.sb.faults().rate_limit_next(1, 7);
    let (status, headers, body) = e.get("invoices", &[], None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    error_detail(&body);
    e.sb.faults().fail_next(503, 1);
    e.sb.faults().fail_next(504, 1);
    assert_eq!(
        e.get("invoices", &[], None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        e.get("invoices", &[], None).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    e.ok("invoices", &[], None).await;

    e.sb.faults().drop_connections_next(1);
    let resp = e
        .http
        .get(format!("{}/invoices?limit=200", e.sb.base_url()))
        .bearer_auth(&e.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "headers arrive...");
    assert!(
        resp.text().await.is_err(),
        "...then the connection closes mid-body"
    );
    e.ok("invoices", &[], None).await;

    e.sb.faults().malformed_json_next(1);
    let (status, _, body) = e.get("invoices", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_string(), "not valid JSON: {body}");
    e.sb.faults().wrong_envelope_next(1);
    let body = e.ok("invoices", &[], None).await;
    assert!(
        body.get("items").is_none() && body["rows"].is_array(),
        "{body}"
    );

    e.sb.faults().slow(Duration::from_millis(300));
    let started = std::time::Instant::now();
    e.ok("invoices", &[("limit", "1")], None).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    e.sb.faults().slow(Duration::ZERO);

    e.sb.faults().fail_every(2, 503);
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(e.get("invoices", &[("limit", "1")], None).await.0);
        }
        v
    };
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
            .count(),
        2,
        "{statuses:?}"
    );
    e.sb.faults().clear();
    e.sb.reset_request_count();
    e.ok("invoices", &[], None).await;
    assert_eq!(e.sb.request_count(), 1);
}

#[tokio::test]
async fn changes_between_pages_late_commits_inserts_and_deletes_are_visible() {
    let e = small().await;
    let before: HashMap<i64, String> =
        e.sb.snapshot("invoices")
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["InvoiceId"].as_i64().unwrap(),
                    r["LastUpdateDate"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    e.sb.faults().mutate_between_pages(5);
    let q = [
        ("q", "LastUpdateDate >= '2024-01-01T00:00:00Z'"),
        ("orderBy", "LastUpdateDate:asc,InvoiceId:asc"),
    ];
    let pulled = e.walk("invoices", &q, Some(2), 50).await;
    e.sb.faults().mutate_between_pages(0);
    let after = e.sb.snapshot("invoices").unwrap();
    let moved: Vec<&Value> = after
        .iter()
        .filter(|r| {
            before[&r["InvoiceId"].as_i64().unwrap()] != r["LastUpdateDate"].as_str().unwrap()
        })
        .collect();
    assert!(!moved.is_empty(), "records moved while the client paged");
    assert!(
        moved
            .iter()
            .all(|r| r["LastUpdateDate"].as_str().unwrap() > "2025"),
        "stamped now"
    );
    // Offset paging under drift is not a faithful copy: some record is
    // doubled or missing in what the walk saw, exactly as on Fusion.
    let seen: Vec<i64> = ids(&pulled, "InvoiceId");
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    assert!(
        seen.len() != distinct.len() || distinct.len() != after.len(),
        "drift shows up in an offset walk"
    );

    // Updates carry a new version (description, timestamps, changeIndicator).
    let touched = e.sb.mutate(2, 3);
    assert_eq!(touched.len(), 5);
    let inserted = touched[2];
    let item = e.ok(&format!("invoices/{inserted}"), &[], None).await;
    assert_eq!(item["CreationDate"], item["LastUpdateDate"]);
    assert_eq!(e.sb.count("invoices").unwrap(), 303);

    // Late commits land behind a cursor that already passed them: a pull
    // from the cursor misses them, one with an overlap window finds them.
    let cursor =
        e.sb.snapshot("invoices")
            .unwrap()
            .iter()
            .map(|r| r["LastUpdateDate"].as_str().unwrap().to_owned())
            .max()
            .unwrap();
    let late = e.sb.late_commit("invoices", 3, 3600).unwrap();
    assert_eq!(late.len(), 3);
    let from_cursor = e
        .walk(
            "invoices",
            &[("q", &format!("LastUpdateDate >= '{cursor}'"))],
            Some(2),
            499,
        )
        .await;
    let with_overlap = e
        .walk(
            "invoices",
            &[(
                "q",
                &format!("LastUpdateDate >= '{}'", "2025-01-01T00:00:00Z"),
            )],
            Some(2),
            499,
        )
        .await;
    for k in &late {
        assert!(
            !from_cursor.iter().any(|r| r["InvoiceId"] == *k),
            "late row {k} is behind the cursor"
        );
        let row = with_overlap
            .iter()
            .find(|r| r["InvoiceId"] == *k)
            .expect("late row in the overlap window");
        assert!(row["LastUpdateDate"].as_str().unwrap() < cursor.as_str());
    }

    // Deletes vanish from collections and snapshots.
    let victim = e.sb.keys("invoices").unwrap()[0];
    e.sb.delete("invoices", victim).unwrap();
    assert!(
        e.sb.delete("invoices", victim).is_err(),
        "deleting twice is an error"
    );
    let all = e
        .walk("invoices", &[("fields", "InvoiceId")], None, 499)
        .await;
    assert!(!ids(&all, "InvoiceId").contains(&victim));
    assert_eq!(all.len() as u64, e.sb.count("invoices").unwrap());
    assert!(
        e.sb.delete("accountCombinationsLOV", 1).is_err(),
        "LOVs are read-only"
    );
}

#[tokio::test]
async fn background_mutation_rate_changes_data() {
    let e = env(SandboxConfig {
        invoices: 100,
        updates_per_sec: 50.0,
        inserts_per_sec: 20.0,
        ..SandboxConfig::default()
    })
    .await;
    let before = e.sb.snapshot_json("invoices").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.sb.faults().set_mutation_rate(0.0, 0.0);
    let after = e.sb.snapshot_json("invoices").unwrap();
    assert!(after.len() > before.len(), "inserts arrived");
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(changed > 0, "updates arrived");
}

// ------------------------------------------------- latency, throttling

/// `n` GETs of `path` sent at once; each answer's status, `Retry-After`,
/// body and time taken.
async fn concurrently(
    e: &Env,
    n: usize,
    path: &str,
) -> Vec<(StatusCode, Option<String>, Value, Duration)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (http, token) = (e.http.clone(), e.token.clone());
        let url = format!("{}/{path}", e.sb.base_url());
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let resp = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let text = resp.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, retry_after, body, started.elapsed())
        });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn latency_base_delay_applies_to_every_resource_request() {
    let e = env(SandboxConfig {
        invoices: 50,
        latency: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    for path in ["invoices?limit=1", "invoices/describe", "nope"] {
        let started = std::time::Instant::now();
        let (status, _, body) = e.get(path, &[], None).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "{path}: {status} after {took:?}: {body}"
        );
    }
    // Switched at run time, like the faults.
    e.sb.faults().set_latency(Latency {
        base: Duration::from_millis(150),
        ..Latency::default()
    });
    assert_eq!(e.sb.faults().latency().base, Duration::from_millis(150));
    let started = std::time::Instant::now();
    e.ok("invoices", &[("limit", "1")], None).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    e.sb.faults().set_latency(Latency::default());
    assert_eq!(e.sb.faults().latency(), Latency::default(), "off again");
}

#[tokio::test]
async fn latency_grows_with_records_and_expanded_child_rows() {
    let e = env(SandboxConfig {
        invoices: 100,
        latency_per_record: Duration::from_millis(15),
        ..SandboxConfig::default()
    })
    .await;
    for limit in [1u64, 20] {
        let started = std::time::Instant::now();
        let page = e
            .ok("invoices", &[("limit", &limit.to_string())], None)
            .await;
        let took = started.elapsed();
        assert_eq!(page["count"], limit);
        assert!(
            took >= Duration::from_millis(15) * limit as u32,
            "{limit} records took {took:?}"
        );
    }
    let started = std::time::Instant::now();
    e.ok("invoices/300100000000003", &[], None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(15),
        "an item is one record"
    );

    e.sb.faults().set_latency(Latency {
        per_child: Duration::from_millis(20),
        ..Latency::default()
    });
    let started = std::time::Instant::now();
    let page = e
        .ok(
            "invoices",
            &[
                ("limit", "5"),
                ("onlyData", "true"),
                ("expand", "invoiceLines,invoiceLines.invoiceDistributions"),
            ],
            Some(3),
        )
        .await;
    let took = started.elapsed();
    let mut children = 0u32;
    for item in page["items"].as_array().unwrap() {
        for line in item["invoiceLines"]["items"].as_array().unwrap() {
            children += 1 + line["invoiceDistributions"]["items"]
                .as_array()
                .unwrap()
                .len() as u32;
        }
    }
    assert!(
        children >= 10,
        "every invoice has a line and its distribution"
    );
    assert!(
        took >= Duration::from_millis(20) * children,
        "{children} child rows (lines and their distributions) took {took:?}"
    );
}

#[tokio::test]
async fn latency_does_not_serialize_concurrent_requests() {
    let e = env(SandboxConfig {
        invoices: 50,
        latency: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let n = 8;
    let started = std::time::Instant::now();
    let answers = concurrently(&e, n, "invoices?limit=2").await;
    let took = started.elapsed();
    for (status, _, body, each) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(*each >= Duration::from_millis(200), "{each:?}");
    }
    assert!(
        took < Duration::from_millis(200) * n as u32 / 2,
        "{n} requests of 200 ms each took {took:?} together: they must wait side by side"
    );
    let stats = e.sb.stats();
    assert_eq!(stats.served, n as u64, "{stats:?}");
    assert_eq!(stats.throttled, 0);
    assert_eq!(
        stats.max_in_flight, n as u32,
        "all were in flight at once: {stats:?}"
    );
    let client = &stats.clients[&e.sb.client_id()];
    assert_eq!(
        (client.served, client.in_flight, client.max_in_flight),
        (n as u64, 0, n as u32)
    );

    // A client that keeps to 2 at a time is seen at 2.
    e.sb.reset_stats();
    for _ in 0..3 {
        concurrently(&e, 2, "invoices?limit=1").await;
    }
    let stats = e.sb.stats();
    assert_eq!((stats.served, stats.max_in_flight), (6, 2), "{stats:?}");
}

#[tokio::test]
async fn too_many_requests_in_flight_per_client_answer_429() {
    let e = env(SandboxConfig {
        invoices: 50,
        latency: Duration::from_millis(400),
        max_in_flight_per_client: 2,
        throttle_retry_after_secs: 3,
        ..SandboxConfig::default()
    })
    .await;
    let answers = concurrently(&e, 5, "invoices?limit=1").await;
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    assert_eq!(ok, 2, "{answers:?}");
    for (status, retry_after, body, _) in answers.iter().filter(|a| a.0 != StatusCode::OK) {
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(retry_after.as_deref(), Some("3"));
        assert!(error_detail(body).contains("Retry-After"), "{body}");
        assert_eq!(body["status"], "429");
        assert_eq!(body["o:errorDetails"][0]["o:errorCode"], "429");
    }
    let stats = e.sb.stats();
    assert_eq!((stats.served, stats.throttled), (2, 3), "{stats:?}");
    assert_eq!(
        stats.max_in_flight, 3,
        "two in flight, and each refused arrival made a third: {stats:?}"
    );
    // Once the two are done, a request is admitted again; turning the
    // limit off at run time admits all.
    e.ok("invoices", &[("limit", "1")], None).await;
    e.sb.faults().set_throttling(Throttling::default());
    assert_eq!(e.sb.faults().throttling(), Throttling::default());
    let answers = concurrently(&e, 5, "invoices?limit=1").await;
    assert!(answers.iter().all(|a| a.0 == StatusCode::OK), "{answers:?}");
    assert_eq!(e.sb.stats().throttled, 3);
}

#[tokio::test]
async fn the_per_minute_budget_per_client_answers_429_with_retry_after() {
    let e = env(SandboxConfig {
        invoices: 50,
        requests_per_minute_per_client: 3,
        ..SandboxConfig::default()
    })
    .await;
    for _ in 0..3 {
        e.ok("invoices", &[("limit", "1")], None).await;
    }
    let (status, headers, body) = e.get("invoices", &[("limit", "1")], None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&wait),
        "seconds until the oldest request leaves the minute: {wait}"
    );
    assert!(error_detail(&body).contains("Retry-After"), "{body}");
    // The budget belongs to the OAuth client, not to one token.
    let other = token_for(&e.http, &e.sb).await;
    assert_ne!(other, e.token);
    let resp = e
        .http
        .get(format!("{}/invoices?limit=1", e.sb.base_url()))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = e.sb.stats();
    assert_eq!((stats.served, stats.throttled), (3, 2), "{stats:?}");
    assert_eq!(stats.clients[&e.sb.client_id()].throttled, 2);
    // Raised at run time: the window already holds 3, so 2 more fit.
    e.sb.faults().set_throttling(Throttling {
        per_minute: 5,
        ..Throttling::default()
    });
    e.ok("invoices", &[("limit", "1")], None).await;
    e.ok("invoices", &[("limit", "1")], None).await;
    assert_eq!(
        e.get("invoices", &[("limit", "1")], None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn start_line_names_every_connection_fact() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sb = OracleSandbox::start(SandboxConfig {
            invoices: 5,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let line = mlc_sandbox_oracle::cli::start_line(&sb);
        assert_eq!(line["service"], "oracle");
        assert!(
            line["base_url"]
                .as_str()
                .unwrap()
                .ends_with("/fscmRestApi/resources/11.13.18.05")
        );
        assert!(
            line["token_url"]
                .as_str()
                .unwrap()
                .ends_with("/oauth2/v1/token")
        );
        assert_eq!(line["client_id"], sb.client_id());
        assert_eq!(line["client_secret"], sb.client_secret().expose());
        assert_eq!(line["scope"], sb.scope());
        assert!(!line.to_string().contains('\n'), "one line");
        sb.shutdown().await;
    });
}
