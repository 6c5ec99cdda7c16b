//! Where a tenant's commands go: its store, opened here, or the running
//! `serve` that holds it (redb's lock decides), reached through the admin
//! API named in the data directory's `serve-<replica>.json`. Both answer
//! with the same documents ([`mlc_serve::views`]), so a command prints the
//! same either way.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::failure::CliError;
use mlc_common::Secret;
use mlc_serve::ServerFile;
use mlc_store::{StoreError, TenantStore};
use reqwest::Method;
use serde_json::Value;

use super::runtime::RuntimeArgs;

/// Where a tenant is.
pub enum Place {
    /// Its store, open and locked by this command.
    Local(Arc<TenantStore>),
    /// A running server holds it.
    Server(Remote),
}

/// A running server's admin API, for one tenant.
pub struct Remote {
    url: String,
    token: Secret,
    http: reqwest::Client,
    /// The tenant.
    pub tenant: String,
}

impl RuntimeArgs {
    /// Opens `tenant`'s store, or finds the running server that holds it.
    /// The runtime file is not kept open (a server visits it too).
    pub fn place(&self, tenant: &str) -> Result<Place> {
        let store = {
            let runtime = self.runtime()?;
            self.tenant_store(&runtime, tenant)
        };
        match store {
            Ok(store) => Ok(Place::Local(store)),
            Err(e) => match e.downcast_ref::<StoreError>() {
                Some(StoreError::Locked { .. }) => match self.server_for(tenant)? {
                    Some(remote) => Ok(Place::Server(remote)),
                    None => Err(e),
                },
                _ => Err(e),
            },
        }
    }

    /// The live server whose replica owns `tenant`, if one is running.
    fn server_for(&self, tenant: &str) -> Result<Option<Remote>> {
        let server = ServerFile::find(&self.data()).into_iter().find(|s| {
            std::path::Path::new(&format!("/proc/{}", s.pid)).exists()
                && mlc_serve::scheduler::owner(tenant, s.replicas) == s.replica
        });
        let Some(server) = server else {
            return Ok(None);
        };
        let token = self.admin_token().with_context(|| {
            format!(
                "tenant {tenant} is held by the server at {}: its admin token is needed",
                server.url
            )
        })?;
        Ok(Some(Remote {
            url: server.url,
            token,
            http: reqwest::Client::new(),
            tenant: tenant.to_owned(),
        }))
    }
}

impl Remote {
    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /api/v1/tenants/{tenant}{path}`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// A call under `/api/v1/tenants/{tenant}`; the answer, or the
    /// server's error as it said it.
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let url = format!("{}/api/v1/tenants/{}{path}", self.url, self.tenant);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose());
        if let Some(b) = body {
            request = request.body(b);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| CliError::ServerUnreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = doc["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or(text);
            bail!(
                "the server at {} refused ({}): {message}",
                self.url,
                status.as_u16()
            );
        }
        Ok(doc)
    }
}
