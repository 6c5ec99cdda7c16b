//! Short visits to the runtime file (tenant list, admin audit log).
//!
//! `serve` does not keep `runtime.redb` open: CLI commands (`tenant list`,
//! `audit --verify`) and other replicas use it too. Each visit opens it,
//! does one thing and closes it; while another process has it open the
//! visit waits a little and tries again.

use std::time::{Duration, Instant};

use mlc_store::{AuditEntry, DataDir, RuntimeStore, StoreError};

/// How long a visit waits for another process to close the file.
const WAIT: Duration = Duration::from_secs(5);

/// Runs `f` on the runtime file, opened for it alone.
pub async fn visit<T, E>(
    data: &DataDir,
    f: impl FnOnce(&RuntimeStore) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let data = data.clone();
    let path = data.runtime_file();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let store = loop {
            match RuntimeStore::open(&data) {
                Ok(s) => break s,
                Err(StoreError::Locked { .. }) if started.elapsed() < WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        f(&store)
    })
    .await
    .unwrap_or_else(|e| {
        Err(StoreError::Corrupt {
            path,
            reason: format!("the visit panicked: {e}"),
        }
        .into())
    })
}

/// The tenant ids the runtime file lists.
pub async fn tenants(data: &DataDir) -> Result<Vec<String>, StoreError> {
    visit(data, |r| {
        Ok::<_, StoreError>(r.tenants()?.into_iter().map(|t| t.id).collect())
    })
    .await
}

/// Appends an admin audit entry.
pub async fn audit(
    data: &DataDir,
    actor: &str,
    action: &str,
    tenant: Option<&str>,
    detail: serde_json::Value,
) -> Result<AuditEntry, StoreError> {
    let (actor, action, tenant) = (
        actor.to_owned(),
        action.to_owned(),
        tenant.map(str::to_owned),
    );
    visit(data, move |r| {
        r.audit(&actor, &action, tenant.as_deref(), detail)
    })
    .await
}
