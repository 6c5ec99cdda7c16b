//! The status page of `serve` in headless Chromium (Debian's `chromium`,
//! driven through `chromedriver` over WebDriver): it loads, shows the
//! pipelines of a running server, shows a failed batch with its error, and
//! its replay button (which asks for the admin token) retries the batch;
//! its mapping section diffs a pasted candidate and promotes it.
//! Screenshots are kept in `$CARGO_TARGET_TMPDIR/status-page-*.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::serve::{ADMIN_TOKEN, every_minute, free_port};
use support::{World, oracle_invoices, tableau_invoices};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: install Debian's chromium and chromium-driver \
             (`apt-get install chromium chromium-driver`; .ci/run does)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1400,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("connecting to chromedriver: {e}"))
}

/// Waits until `check` says yes, polling the page every 250 ms.
async fn until<F, Fut>(timeout: Duration, what: &str, page: &Client, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > timeout {
            let source = page.source().await.unwrap_or_default();
            panic!("timed out after {timeout:?} waiting for {what}; the page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn text_of(page: &Client, css: &str) -> String {
    match page.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn screenshot(page: &Client, name: &str) -> PathBuf {
    let png = page.screenshot().await.expect("a screenshot");
    assert!(png.len() > 1000, "an empty screenshot");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("status-page-{name}.png"));
    std::fs::write(&path, png).expect("writing the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

/// Clicks `button` of the mapping section and waits for its result to
/// reach `state`.
async fn click_until(page: &Client, button: &str, state: &str) {
    page.find(Locator::Css(button))
        .await
        .unwrap_or_else(|e| panic!("{button}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {button}: {e}"));
    let done = format!("#diff-result[data-state='{state}']");
    until(Duration::from_secs(30), &done, page, || async {
        page.find(Locator::Css(&done)).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_pipelines_and_its_button_replays_a_failed_batch() {
    let driver = start_driver();
    let world = World::start(
        SandboxConfig {
            seed: 31,
            invoices: 60,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.setup_tenant_with(
        "acme",
        &[("invoices", "invoices", "invoices.toml")],
        every_minute,
    );
    let server = world.serve(0, &[]);
    server
        .wait_for(Duration::from_secs(90), "the first load", || async {
            (server.pipeline("acme", "invoices").await["store"]["confirmed_batches"]
                .as_u64()
                .unwrap_or(0)
                >= 1)
                .then_some(())
        })
        .await;

    let profile = tempfile::tempdir().expect("profile dir");
    let page = browser(&driver, profile.path()).await;
    page.goto(&server.url).await.expect("opening the page");
    until(
        Duration::from_secs(20),
        "the page to load its data",
        &page,
        || async {
            page.find(Locator::Css("body[data-loaded='true']"))
                .await
                .is_ok()
        },
    )
    .await;
    let row = "tr[data-pipeline='acme/invoices']";
    let text = text_of(&page, row).await;
    assert!(text.contains("acme / invoices"), "{text}");
    assert!(
        text.contains("acme invoices"),
        "the data source is shown: {text}"
    );
    screenshot(&page, "running").await;

    // Every Tableau job fails from now on: the next batch fails, visibly.
    for _ in 0..1000 {
        world
            .tableau
            .faults()
            .fail_next_job("Hyper refused the update: disk quota exceeded (test)");
    }
    world.oracle.mutate(4, 2);
    until(
        Duration::from_secs(60),
        "the failed batch and its error",
        &page,
        || async {
            text_of(&page, "tr.failure")
                .await
                .contains("disk quota exceeded")
        },
    )
    .await;
    assert!(text_of(&page, row).await.contains("failed"));
    screenshot(&page, "failed").await;
    // Let the retries back off (to 8 s at the test's clock, then 16 s), so
    // the retry that follows is the button's.
    server
        .wait_for(Duration::from_secs(60), "five failed attempts", || async {
            (server.pipeline("acme", "invoices").await["store"]["failed_batch"]["failures"]
                .as_u64()
                .unwrap_or(0)
                >= 5)
                .then_some(())
        })
        .await;
    // While an attempt runs the batch is not failed and the page shows no
    // button; wait for a moment between attempts when the page shows it and
    // the next automatic attempt is at least 5 s away, so clearing the
    // faults cannot let that attempt succeed before the click.
    let button = format!("{row} button.replay");
    until(
        Duration::from_secs(60),
        "the replay button, with the next automatic attempt 5 s away",
        &page,
        || async {
            let p = server.pipeline("acme", "invoices").await;
            let waiting = p["schedule"]["state"] == "scheduled"
                && p["store"]["failed_batch"].is_object()
                && p["schedule"]["next_run"].as_u64().unwrap_or(0) >= unix_now() + 5;
            waiting && page.find(Locator::Css(&button)).await.is_ok()
        },
    )
    .await;

    // Tableau works again; the operator replays from the page.
    world.tableau.faults().clear_job_failures();
    // The page redraws every 3 s: a button found just before a redraw is
    // gone by the click, so find it again.
    let mut clicked = false;
    for _ in 0..10 {
        let Ok(found) = page.find(Locator::Css(&button)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if found.click().await.is_ok() {
            clicked = true;
            break;
        }
    }
    assert!(clicked, "the replay button could not be clicked");
    // The page asks for the admin token.
    until(
        Duration::from_secs(10),
        "the token prompt",
        &page,
        || async { page.get_alert_text().await.is_ok() },
    )
    .await;
    page.send_alert_text(ADMIN_TOKEN)
        .await
        .expect("typing the token");
    page.accept_alert().await.expect("confirming");
    until(
        Duration::from_secs(10),
        "the replay to be accepted",
        &page,
        || async {
            page.find(Locator::Css("body[data-last-replay^='ok ']"))
                .await
                .is_ok()
        },
    )
    .await;
    until(
        Duration::from_secs(60),
        "the batch to be confirmed",
        &page,
        || async {
            text_of(&page, "tr.failure").await.is_empty()
                && text_of(&page, row).await.contains("ok")
        },
    )
    .await;
    screenshot(&page, "replayed").await;
    assert_eq!(
        oracle_invoices(&world),
        tableau_invoices(&world, "acme").await
    );
    let (_, audit) = server.get("/api/v1/audit?limit=100").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "replay.failed" && e["actor"] == "admin-api"),
        "the page's replay went through the audited API: {audit:#}"
    );

    // The mapping section: paste a candidate that relabels one status,
    // diff it (the token is remembered), then promote it.
    let demo = std::fs::read_to_string(support::workspace().join("mappings/demo/invoices.toml"))
        .expect("demo script");
    let from = "\"Needs revalidation\" = \"Needs Revalidation\"";
    assert!(demo.contains(from));
    let candidate = demo.replacen(from, "\"Needs revalidation\" = \"Revalidate\"", 1);
    let needs = world
        .oracle
        .snapshot("invoices")
        .expect("snapshot")
        .iter()
        .filter(|i| i["ValidationStatus"] == "Needs revalidation")
        .count();
    page.execute(
        "const c = document.getElementById('candidate'); c.value = arguments[0]; \
         c.dispatchEvent(new Event('input')); \
         document.getElementById('candidate-pipeline').value = 'acme/invoices';",
        vec![serde_json::json!(candidate)],
    )
    .await
    .expect("pasting the candidate");
    click_until(&page, "#diff", "diffed").await;
    let rows = text_of(&page, "#diff-rows").await;
    assert!(
        rows.contains(&format!("{needs} would change")),
        "{rows} (expected {needs} changed rows)"
    );
    let result = text_of(&page, "#diff-result").await;
    assert!(
        result.contains("Schema unchanged") && result.contains("Revalidate"),
        "{result}"
    );
    screenshot(&page, "diff").await;
    let script = world.mappings_dir().join("acme/invoices.toml");
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        demo,
        "a diff installs nothing"
    );
    // Offered only after a diff of this very text.
    click_until(&page, "#promote:not([disabled])", "promoted").await;
    assert_eq!(std::fs::read_to_string(&script).unwrap(), candidate);
    let (_, audit) = server.get("/api/v1/audit?limit=100").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "mapping.promote" && e["actor"] == "admin-api"),
        "the page's promote went through the audited API: {audit:#}"
    );
    page.close().await.ok();
}
