//! Oracle's authorization-code grant: a tenant with `grant =
//! "authorization_code"` is refused until an operator runs `tenant
//! authorize`, which prints the sign-in URL, takes the code the identity
//! domain sends to the redirect URI and stores the refresh token sealed;
//! `sync` then gets its tokens with that refresh token, and a revoked one
//! fails the sync with an error saying to authorize again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{World, explain, oracle_invoices, tableau_invoices};

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

/// What a browser does with the URL: the sandbox signs in at once and
/// redirects to the redirect URI with `code`; returns that code.
async fn sign_in(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let answer = http.get(url).send().await.expect("GET the sign-in URL");
    assert!(answer.status().is_redirection(), "{answer:?}");
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap_or_else(|| panic!("no code in {location}"));
    code.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_tenant_syncs_with_its_refresh_token_until_it_is_revoked() {
    let world = World::start(
        SandboxConfig {
            seed: 21,
            invoices: 40,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    let authorize_url = world.oracle.authorize_url();
    world.setup_tenant_with("acme", &[("invoices", "invoices", "invoices.toml")], |text| {
        text.replacen(
            "client_secret = ",
            &format!(
                "grant = \"authorization_code\"\nauthorize_url = \"{authorize_url}\"\nredirect_uri = \"{REDIRECT}\"\nclient_secret = "
            ),
            1,
        )
    });

    // Not signed in yet: refused, naming the command.
    let out = world.run(&["sync", "acme", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("run `ml-connector tenant authorize acme`"),
        "{}",
        explain(&out)
    );

    // Without a code it prints the URL and stores nothing.
    let out = world.run(&["tenant", "authorize", "acme"]);
    assert!(!out.status.success(), "{}", explain(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let url = stderr
        .lines()
        .find(|l| l.starts_with(&authorize_url))
        .unwrap_or_else(|| panic!("no sign-in URL printed: {}", explain(&out)))
        .to_owned();
    assert!(url.contains("offline_access"), "{url}");
    let names = world.json(&["secret", "list", "acme"]);
    assert!(
        !names.to_string().contains("oracle-refresh-token"),
        "{names}"
    );

    let code = sign_in(&url).await;
    world.ok(&["tenant", "authorize", "acme", "--code", &code]);
    let names = world.json(&["secret", "list", "acme"]);
    assert!(
        names.to_string().contains("oracle-refresh-token"),
        "{names}"
    );
    // A code is good once.
    let again = world.run(&["tenant", "authorize", "acme", "--code", &code]);
    assert!(!again.status.success(), "{}", explain(&again));

    world.ok(&["sync", "acme", "--once"]);
    world.oracle.mutate(3, 2);
    world.ok(&["sync", "acme", "--once"]);
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );
    let log = world.json(&["audit", "--log"]);
    assert!(log.to_string().contains("tenant.authorize"), "{log:#}");

    // The identity domain revokes every token: the next sync fails, saying
    // what to do, and leaves a failed batch to resume once authorized.
    world.oracle.revoke_tokens();
    world.oracle.mutate(2, 0);
    let out = world.run(&["sync", "acme", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("authorize again with `ml-connector tenant authorize TENANT`"),
        "{}",
        explain(&out)
    );
    let code = sign_in(&url).await;
    world.ok(&["tenant", "authorize", "acme", "--code", &code]);
    world.ok(&["sync", "acme", "--once"]);
    assert_eq!(
        tableau_invoices(&world, "acme").await,
        oracle_invoices(&world)
    );
}
