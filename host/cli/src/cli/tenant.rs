//! `tenant apply|list|show|remove`, `secret set` and `keys
//! generate|rotate`: setting a tenant up in the data directory. Every
//! change goes into the admin audit log; secret values never reach the
//! output, the log or the files in clear.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mlc_common::Secret;
use mlc_store::{MasterKey, TenantStore};
use mlc_sync::definition::{self, TenantDefinition, format_duration};
use serde_json::json;

use super::Output;
use super::remote::{Place, Remote};
use super::runtime::{RuntimeArgs, actor, blocking, print};
use crate::failure::CliError;

/// Set up, inspect and remove tenants.
#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Apply a tenant definition (TOML; see host/sync/TENANT_FILE.md).
    Apply {
        /// The definition file.
        file: PathBuf,
    },
    /// List the tenants of the data directory.
    List,
    /// Show a tenant: its definition, secrets (names only) and pipelines.
    Show {
        /// The tenant id.
        id: String,
    },
    /// Remove a tenant: unlisted, its store file kept under tenants/removed/.
    Remove {
        /// The tenant id.
        id: String,
    },
    /// Sign a tenant with `grant = "authorization_code"` in: prints the
    /// URL to open, takes the code Oracle's identity domain sent to the
    /// redirect URI, and stores the refresh token sealed.
    Authorize {
        /// The tenant id.
        id: String,
        /// The code (the `code` parameter of the redirect); read from
        /// stdin when not given.
        #[arg(long)]
        code: Option<String>,
    },
}

/// Store a tenant's secret.
#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Set a secret: the value is read from stdin (without echo on a terminal).
    Set {
        /// The tenant id.
        tenant: String,
        /// The secret's name, as `secret:NAME` in the definition.
        name: String,
    },
    /// List the names of a tenant's stored secrets (never their values).
    List {
        /// The tenant id.
        tenant: String,
    },
}

/// Manage the master key.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (base64) to stdout.
    Generate,
    /// Re-seal every secret of every tenant under a new key (resumable:
    /// secrets already under the new key are skipped).
    Rotate {
        /// A file holding the new key (base64 of 32 bytes).
        #[arg(long, env = "ML_CONNECTOR_NEW_MASTER_KEY_FILE")]
        new_key_file: PathBuf,
    },
}

impl TenantCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        match self {
            Self::Apply { file } => apply(args, output, &file).await,
            Self::List => list(args, output),
            Self::Show { id } => show(args, output, &id),
            Self::Remove { id } => remove(args, output, &id),
            Self::Authorize { id, code } => authorize(args, output, &id, code).await,
        }
    }
}

async fn apply(args: &RuntimeArgs, output: Output, file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let id = definition::parse(&name, &text)?.id;
    let listed = args.runtime()?.tenant(&id)?.is_some();
    if listed && let Place::Server(remote) = args.place(&id)? {
        let doc = remote
            .call(reqwest::Method::PUT, "", Some(text.into_bytes()))
            .await?;
        print(output, &doc, || {
            format!(
                "tenant {id} {} by the running server at {} (it restarts with it)",
                if doc["changed"] == true {
                    "applied"
                } else {
                    "unchanged"
                },
                remote.url()
            )
        });
        return Ok(());
    }
    let runtime = args.runtime()?;
    let applied =
        blocking(|| mlc_sync::apply_definition(&args.data(), &runtime, &name, &text, &actor()))?;
    let def = &applied.definition;
    let (changed, missing, removed) = (
        applied.changed,
        &applied.missing_secrets,
        &applied.removed_pipelines,
    );
    let path = &applied.store;
    let scripts_missing = mlc_sync::missing_scripts(&args.mappings_dir, def);
    let pipelines: Vec<&str> = def.pipelines.iter().map(|p| p.id.as_str()).collect();
    let doc = json!({
        "tenant": def.id,
        "changed": changed,
        "pipelines": pipelines,
        "pipelines_removed": removed,
        "secrets_missing": missing,
        "mapping_scripts_missing": scripts_missing,
        "store": path.display().to_string(),
    });
    print(output, &doc, || {
        let mut t = format!(
            "tenant {} {} ({} pipelines: {})\n",
            def.id,
            if changed { "applied" } else { "unchanged" },
            pipelines.len(),
            pipelines.join(", ")
        );
        if !removed.is_empty() {
            t.push_str(&format!(
                "pipelines no longer defined (their history is kept): {}\n",
                removed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for s in missing {
            t.push_str(&format!(
                "secret `{s}` is not set yet: ml-connector secret set {} {s}\n",
                def.id
            ));
        }
        for p in &scripts_missing {
            t.push_str(&format!("mapping script {p} does not exist yet\n"));
        }
        t
    });
    Ok(())
}

fn list(args: &RuntimeArgs, output: Output) -> Result<()> {
    let runtime = args.runtime()?;
    let tenants = runtime.tenants()?;
    let doc = json!({ "tenants": tenants });
    print(output, &doc, || {
        if tenants.is_empty() {
            return "no tenants: apply one with `ml-connector tenant apply FILE`".into();
        }
        let mut t = format!("{:<20} {:<26} {}\n", "tenant", "applied", "from");
        for e in &tenants {
            t.push_str(&format!("{:<20} {:<26} {}\n", e.id, e.applied_at, e.source));
        }
        t
    });
    Ok(())
}

/// A tenant's stored definition, parsed.
pub fn stored_definition(store: &TenantStore) -> Result<TenantDefinition> {
    Ok(mlc_sync::stored_definition(store)?)
}

fn show(args: &RuntimeArgs, output: Output, id: &str) -> Result<()> {
    let runtime = args.runtime()?;
    let store = args.tenant_store(&runtime, id)?;
    let def = stored_definition(&store)?;
    let stored = store.secret_names()?;
    let secrets: Vec<serde_json::Value> = def
        .secrets()
        .iter()
        .map(|s| json!({"name": s.name(), "set": stored.contains(&s.name().to_owned())}))
        .collect();
    let mut pipelines = Vec::new();
    for p in &def.pipelines {
        let state = store.pipeline(&p.id)?;
        pipelines.push(json!({
            "id": p.id,
            "resource": p.resource.name(),
            "datasource": p.datasource,
            "every": format_duration(p.every),
            "paused": state.paused,
            "confirmed_batches": state.confirmed_seq,
            "datasource_id": state.datasource_id,
        }));
    }
    let doc = json!({
        "tenant": def.id,
        "oracle": {"url": def.oracle.url, "token_url": def.oracle.token_url,
                   "client_id": def.oracle.client_id, "grant": def.oracle.grant.name()},
        "tableau": {"url": def.tableau.url, "site": def.tableau.site,
                    "project": def.tableau.project, "pat_name": def.tableau.pat_name},
        "secrets": secrets,
        "pipelines": pipelines,
    });
    print(output, &doc, || {
        let mut t = format!(
            "tenant {}\n  oracle  {} (client {}, {})\n  tableau {} site `{}` project `{}` (token {})\n  secrets ",
            def.id,
            def.oracle.url,
            def.oracle.client_id,
            def.oracle.grant.name(),
            def.tableau.url,
            def.tableau.site,
            def.tableau.project,
            def.tableau.pat_name
        );
        let names: Vec<String> = def
            .secrets()
            .iter()
            .map(|s| {
                let set = stored.contains(&s.name().to_owned());
                format!("{}{}", s.name(), if set { "" } else { " (not set)" })
            })
            .collect();
        t.push_str(&names.join(", "));
        t.push_str("\n  pipelines\n");
        for p in &pipelines {
            t.push_str(&format!(
                "    {:<22} {:<22} → {:<28} every {:<6}{}\n",
                p["id"].as_str().unwrap_or_default(),
                p["resource"].as_str().unwrap_or_default(),
                p["datasource"].as_str().unwrap_or_default(),
                p["every"].as_str().unwrap_or_default(),
                if p["paused"].as_bool() == Some(true) {
                    " (paused)"
                } else {
                    ""
                }
            ));
        }
        t
    });
    Ok(())
}

fn remove(args: &RuntimeArgs, output: Output, id: &str) -> Result<()> {
    let runtime = args.runtime()?;
    if runtime.tenant(id)?.is_none() {
        return Err(CliError::TenantNotListed {
            tenant: id.to_owned(),
            data_dir: args.data_dir.clone(),
        }
        .into());
    }
    let data = args.data();
    let from = data.tenant_file(id);
    let stamp = mlc_store::now_rfc3339().replace([':', '-'], "");
    let to = data.removed_file(id, &stamp);
    if from.exists() {
        // Fails while another process holds the tenant: nothing changes.
        drop(TenantStore::open(&from, id)?);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    runtime.remove_tenant(id, &actor(), json!({"kept_as": to.display().to_string()}))?;
    let doc = json!({"tenant": id, "removed": true, "kept_as": to.display().to_string()});
    print(output, &doc, || {
        format!("tenant {id} removed; its store is kept as {}", to.display())
    });
    Ok(())
}

async fn authorize(
    args: &RuntimeArgs,
    output: Output,
    id: &str,
    code: Option<String>,
) -> Result<()> {
    let key = args.master_key()?;
    let runtime = args.runtime()?;
    let store = args.tenant_store(&runtime, id)?;
    check_key(&store, &key)?;
    let def = stored_definition(&store)?;
    let o = &def.oracle;
    let (Some(authorize_url), Some(redirect_uri)) = (&o.authorize_url, &o.redirect_uri) else {
        bail!(
            "tenant {id} uses grant = \"{}\": only grant = \"authorization_code\" (with authorize_url and redirect_uri) is authorized this way",
            o.grant.name()
        );
    };
    let client_secret = match &o.client_secret {
        Some(r) => store.secret(&key, r.name()).with_context(|| {
            format!(
                "secret `{}`: set it with `ml-connector secret set {id} {}`",
                r.name(),
                r.name()
            )
        })?,
        None => Secret::new(String::new()),
    };
    let state = MasterKey::generate_base64().expose()[..16].replace(['+', '/'], "x");
    let url = mlc_oracle::auth::authorize_url(
        authorize_url,
        &o.client_id,
        redirect_uri,
        &o.scope,
        &state,
    );
    let code = match code {
        Some(c) => c,
        None => {
            eprintln!(
                "open this URL, sign in, and paste the `code` parameter of the page it redirects to:\n{url}"
            );
            let mut text = String::new();
            std::io::stdin()
                .read_line(&mut text)
                .context("reading the code from stdin")?;
            text.trim().to_owned()
        }
    };
    if code.is_empty() {
        bail!("no code given: nothing was stored");
    }
    let mut config = mlc_oracle::OracleConfig::new(
        o.base_url(),
        o.token_url.clone(),
        o.client_id.clone(),
        client_secret,
        o.scope.clone(),
    );
    config.request_timeout_secs = 30;
    let refresh = mlc_oracle::auth::exchange_code(&config, &code, redirect_uri)
        .await
        .with_context(|| format!("tenant {id}: exchanging the code at {}", o.token_url))?;
    store.set_secret(&key, mlc_sync::REFRESH_TOKEN_SECRET, &refresh)?;
    runtime.audit(
        &actor(),
        "tenant.authorize",
        Some(id),
        json!({"token_url": o.token_url}),
    )?;
    print(
        output,
        &json!({"tenant": id, "authorized": true, "authorize_url": url}),
        || format!("tenant {id} authorized: its refresh token is stored sealed"),
    );
    Ok(())
}

impl SecretCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        match self {
            Self::Set { tenant, name } => set_secret(args, output, &tenant, &name).await,
            Self::List { tenant } => {
                let runtime = args.runtime()?;
                let store = args.tenant_store(&runtime, &tenant)?;
                let names = store.secret_names()?;
                print(output, &json!({"tenant": tenant, "secrets": names}), || {
                    names.join("\n")
                });
                Ok(())
            }
        }
    }
}

async fn set_secret(args: &RuntimeArgs, output: Output, tenant: &str, name: &str) -> Result<()> {
    definition::SecretRef::new(name).map_err(|e| anyhow::anyhow!("secret name `{name}`: {e}"))?;
    let store = match args.place(tenant)? {
        Place::Local(store) => store,
        Place::Server(remote) => return set_secret_remote(&remote, output, tenant, name).await,
    };
    let key = args.master_key()?;
    let runtime = args.runtime()?;
    check_key(&store, &key)?;
    let value = read_secret_value(name)?;
    if value.expose().is_empty() {
        bail!("the value of secret `{name}` is empty: nothing was stored");
    }
    store.set_secret(&key, name, &value)?;
    let referenced = stored_definition(&store)
        .map(|d| d.secrets().iter().any(|s| s.name() == name))
        .unwrap_or(false);
    runtime.audit(
        &actor(),
        "secret.set",
        Some(tenant),
        json!({"name": name, "referenced": referenced}),
    )?;
    print(
        output,
        &json!({"tenant": tenant, "secret": name, "set": true, "referenced": referenced}),
        || {
            let mut t = format!("secret `{name}` of tenant {tenant} stored (sealed)");
            if !referenced {
                t.push_str("\nnote: the tenant's definition does not refer to it");
            }
            t
        },
    );
    Ok(())
}

async fn set_secret_remote(
    remote: &Remote,
    output: Output,
    tenant: &str,
    name: &str,
) -> Result<()> {
    let value = read_secret_value(name)?;
    if value.expose().is_empty() {
        bail!("the value of secret `{name}` is empty: nothing was stored");
    }
    let doc = remote
        .call(
            reqwest::Method::PUT,
            &format!("/secrets/{name}"),
            Some(value.expose().as_bytes().to_vec()),
        )
        .await?;
    print(output, &doc, || {
        format!(
            "secret `{name}` of tenant {tenant} stored (sealed) by the running server at {}; the tenant restarts with it",
            remote.url()
        )
    });
    Ok(())
}

/// Refuses a key that did not seal the tenant's existing secrets, before
/// anything is written under it.
fn check_key(store: &TenantStore, key: &MasterKey) -> Result<()> {
    if let Some(existing) = store.secret_names()?.first() {
        store.secret(key, existing).with_context(|| {
            format!(
                "the master key given is not the one that sealed tenant {}'s secrets",
                store.tenant()
            )
        })?;
    }
    Ok(())
}

fn read_secret_value(name: &str) -> Result<Secret> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value of secret `{name}`: "))
            .context("reading the secret from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the secret from stdin")?;
        let trimmed = text.trim_end_matches(['\n', '\r']).len();
        text.truncate(trimmed);
        text
    };
    Ok(Secret::new(value))
}

impl KeysCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        match self {
            Self::Generate => {
                let key = MasterKey::generate_base64();
                // The one place a key is printed: on request, to stdout.
                println!("{}", key.expose());
                Ok(())
            }
            Self::Rotate { new_key_file } => rotate(args, output, &new_key_file),
        }
    }
}

fn rotate(args: &RuntimeArgs, output: Output, new_key_file: &std::path::Path) -> Result<()> {
    let old = args.master_key()?;
    let new = MasterKey::from_env_or_file(Some(new_key_file))?;
    let runtime = args.runtime()?;
    let mut resealed = Vec::new();
    for entry in runtime.tenants()? {
        let store = args.tenant_store(&runtime, &entry.id)?;
        let n = store
            .reseal(&old, &new)
            .with_context(|| format!("re-sealing tenant {}'s secrets", entry.id))?;
        resealed.push(json!({"tenant": entry.id, "secrets": n}));
    }
    runtime.audit(
        &actor(),
        "keys.rotate",
        None,
        json!({"tenants": resealed, "new_key_id": new.id().to_string()}),
    )?;
    print(output, &json!({"resealed": resealed}), || {
        let mut t = String::new();
        for r in &resealed {
            t.push_str(&format!(
                "tenant {}: {} secrets re-sealed\n",
                r["tenant"].as_str().unwrap_or_default(),
                r["secrets"]
            ));
        }
        t.push_str("use the new key from now on (--master-key-file or ML_CONNECTOR_MASTER_KEY)");
        t
    });
    Ok(())
}
