//! Reference data that mappings look up: suppliers with their parent,
//! segment values (companies, cost centers, accounts), account
//! combinations. Read from Oracle Fusion in full and kept per tenant: in
//! each tenant's store for the durable runtime ([`StoreReference`]), or in
//! memory ([`ReferenceStore`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mlc_oracle::{NothingExported, OracleClient, ResourceSpec};
use mlc_plugin::{LookupError, ReferenceData};
use mlc_store::TenantStore;
use serde_json::{Map, Value};

use crate::SyncError;

/// Which Oracle data fills which lookup dataset.
#[derive(Clone, Debug)]
pub struct ReferenceSources {
    /// Fill `suppliers` (keyed by `SupplierNumber`, with `ParentSupplier`
    /// and `ParentSupplierNumber` resolved from `ParentSupplierId`).
    pub suppliers: bool,
    /// Segment value sets: (value set code, dataset name), keyed by `Value`.
    pub value_sets: Vec<(String, String)>,
    /// Fill `account-combinations` keyed by the segment attributes of
    /// `accountCombinationsLOV` joined with `-`, in this order.
    pub combination_segments: Vec<String>,
}

/// A dataset: key → record JSON.
pub type Dataset = HashMap<String, String>;

/// Tenant-scoped reference data in memory.
#[derive(Debug, Default)]
pub struct ReferenceStore {
    datasets: RwLock<HashMap<(String, String), Dataset>>,
}

impl ReferenceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces one dataset of a tenant.
    pub fn replace(&self, tenant: &str, dataset: &str, records: Dataset) {
        let mut guard = self
            .datasets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.insert((tenant.to_owned(), dataset.to_owned()), records);
    }

    /// How many records a tenant's dataset holds.
    pub fn len(&self, tenant: &str, dataset: &str) -> usize {
        let guard = self
            .datasets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .get(&(tenant.to_owned(), dataset.to_owned()))
            .map_or(0, HashMap::len)
    }

    /// Reads the tenant's reference data from Oracle Fusion in full and
    /// replaces the datasets `sources` names.
    pub async fn sync_from_oracle(
        &self,
        tenant: &str,
        oracle: &OracleClient,
        sources: &ReferenceSources,
    ) -> Result<(), SyncError> {
        for (dataset, records) in read_reference(tenant, oracle, sources).await? {
            self.replace(tenant, &dataset, records);
        }
        Ok(())
    }
}

/// Reads the datasets `sources` names from Oracle Fusion in full: (dataset
/// name, key → record JSON) each.
pub async fn read_reference(
    tenant: &str,
    oracle: &OracleClient,
    sources: &ReferenceSources,
) -> Result<Vec<(String, Dataset)>, SyncError> {
    let mut out = Vec::new();
    if sources.suppliers {
        let items = read_all(tenant, oracle, &ResourceSpec::suppliers(), "suppliers").await?;
        out.push(("suppliers".to_owned(), suppliers_dataset(&items)));
    }
    for (code, dataset) in &sources.value_sets {
        let spec = ResourceSpec::value_set_values(code);
        let items = read_all(tenant, oracle, &spec, dataset).await?;
        let mut records = Dataset::new();
        for item in items {
            if let Some(value) = item.get("Value").and_then(text) {
                records.insert(value, Value::Object(item).to_string());
            }
        }
        out.push((dataset.clone(), records));
    }
    if !sources.combination_segments.is_empty() {
        let items = read_all(
            tenant,
            oracle,
            &ResourceSpec::account_combinations(),
            "account-combinations",
        )
        .await?;
        let mut records = Dataset::new();
        for item in items {
            let parts: Option<Vec<String>> = sources
                .combination_segments
                .iter()
                .map(|s| item.get(s).and_then(text))
                .collect();
            if let Some(parts) = parts {
                records.insert(parts.join("-"), Value::Object(item).to_string());
            }
        }
        out.push(("account-combinations".to_owned(), records));
    }
    Ok(out)
}

/// Reference data read from each tenant's store: what mappings look up in
/// the durable runtime. Tenants are registered as their stores open.
#[derive(Debug, Default)]
pub struct StoreReference {
    stores: RwLock<HashMap<String, Arc<TenantStore>>>,
}

impl StoreReference {
    /// No tenants yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a tenant's store the source of its lookups.
    pub fn register(&self, store: Arc<TenantStore>) {
        let mut guard = self
            .stores
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.insert(store.tenant().to_owned(), store);
    }

    /// Forgets a tenant (its store is closing).
    pub fn unregister(&self, tenant: &str) {
        let mut guard = self
            .stores
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.remove(tenant);
    }

    fn store(&self, tenant: &str) -> Option<Arc<TenantStore>> {
        let guard = self
            .stores
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.get(tenant).cloned()
    }
}

/// Reads the tenant's reference data from Oracle and replaces each dataset
/// in its store, one transaction per dataset; returns (dataset, records).
pub async fn sync_reference_into_store(
    store: &TenantStore,
    oracle: &OracleClient,
    sources: &ReferenceSources,
) -> Result<Vec<(String, usize)>, SyncError> {
    let tenant = store.tenant().to_owned();
    let mut counts = Vec::new();
    for (dataset, records) in read_reference(&tenant, oracle, sources).await? {
        let mut rows: Vec<(String, String)> = records.into_iter().collect();
        rows.sort();
        tokio::task::block_in_place(|| store.replace_dataset(&dataset, &rows)).map_err(
            |source| SyncError::Store {
                pipeline: format!("{tenant}/reference:{dataset}"),
                source,
            },
        )?;
        counts.push((dataset, rows.len()));
    }
    Ok(counts)
}

impl ReferenceData for StoreReference {
    fn lookup(
        &self,
        tenant: &str,
        dataset: &str,
        key: &str,
    ) -> Result<Option<String>, LookupError> {
        let Some(store) = self.store(tenant) else {
            return Err(LookupError::UnknownDataset(dataset.to_owned()));
        };
        let unavailable = |e: mlc_store::StoreError| LookupError::Unavailable(e.to_string());
        match store.lookup(dataset, key).map_err(unavailable)? {
            Some(json) => Ok(Some(json)),
            None if store.has_dataset(dataset).map_err(unavailable)? => Ok(None),
            None => Err(LookupError::UnknownDataset(dataset.to_owned())),
        }
    }
}

impl ReferenceData for ReferenceStore {
    fn lookup(
        &self,
        tenant: &str,
        dataset: &str,
        key: &str,
    ) -> Result<Option<String>, LookupError> {
        let guard = self
            .datasets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.get(&(tenant.to_owned(), dataset.to_owned())) {
            Some(records) => Ok(records.get(key).cloned()),
            None => Err(LookupError::UnknownDataset(dataset.to_owned())),
        }
    }
}

/// A JSON scalar as lookup-key text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

async fn read_all(
    tenant: &str,
    oracle: &OracleClient,
    spec: &ResourceSpec,
    dataset: &str,
) -> Result<Vec<Map<String, Value>>, SyncError> {
    let mut pull = oracle.pull(spec, None, &NothingExported);
    let mut items = Vec::new();
    while let Some(page) = pull.next_page().await.map_err(|source| SyncError::Pull {
        pipeline: format!("{tenant}/reference:{dataset}"),
        resource: spec.path.clone(),
        source: source.into(),
    })? {
        for record in page.records {
            match serde_json::from_str::<Value>(&record.json) {
                Ok(Value::Object(map)) => items.push(map),
                Ok(_) | Err(_) => {
                    return Err(SyncError::Reference {
                        tenant: tenant.to_owned(),
                        dataset: dataset.to_owned(),
                        reason: format!("record {} is not a JSON object", record.key),
                    });
                }
            }
        }
    }
    Ok(items)
}

/// Suppliers keyed by number, each with its parent's name and number.
fn suppliers_dataset(items: &[Map<String, Value>]) -> Dataset {
    let by_id: HashMap<String, &Map<String, Value>> = items
        .iter()
        .filter_map(|s| s.get("SupplierId").and_then(text).map(|id| (id, s)))
        .collect();
    let mut records = Dataset::new();
    for supplier in items {
        let Some(number) = supplier.get("SupplierNumber").and_then(text) else {
            continue;
        };
        let mut record = supplier.clone();
        record.remove("links");
        let parent = supplier
            .get("ParentSupplierId")
            .and_then(text)
            .and_then(|id| by_id.get(&id));
        if let Some(parent) = parent {
            if let Some(name) = parent.get("Supplier") {
                record.insert("ParentSupplier".into(), name.clone());
            }
            if let Some(num) = parent.get("SupplierNumber") {
                record.insert("ParentSupplierNumber".into(), num.clone());
            }
        }
        records.insert(number, Value::Object(record).to_string());
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppliers_get_their_parent() {
        let items: Vec<Map<String, Value>> = serde_json::from_str::<Vec<Value>>(
            r#"[{"SupplierId":1,"SupplierNumber":"100","Supplier":"Acme Holdings"},
                {"SupplierId":2,"SupplierNumber":"101","Supplier":"Acme East","ParentSupplierId":1},
                {"SupplierId":3,"SupplierNumber":"102","Supplier":"Orphan","ParentSupplierId":99}]"#,
        )
        .unwrap()
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let dataset = suppliers_dataset(&items);
        let east: Value = serde_json::from_str(&dataset["101"]).unwrap();
        assert_eq!(east["ParentSupplier"], "Acme Holdings");
        assert_eq!(east["ParentSupplierNumber"], "100");
        let orphan: Value = serde_json::from_str(&dataset["102"]).unwrap();
        assert!(orphan.get("ParentSupplier").is_none(), "{orphan}");
    }

    #[test]
    fn lookups_are_tenant_scoped() {
        let store = ReferenceStore::new();
        store.replace(
            "acme",
            "cost-centers",
            HashMap::from([("110".to_owned(), r#"{"Description":"Finance"}"#.to_owned())]),
        );
        assert_eq!(
            store
                .lookup("acme", "cost-centers", "110")
                .unwrap()
                .as_deref(),
            Some(r#"{"Description":"Finance"}"#)
        );
        assert_eq!(store.lookup("acme", "cost-centers", "999").unwrap(), None);
        assert!(matches!(
            store.lookup("globex", "cost-centers", "110"),
            Err(LookupError::UnknownDataset(_))
        ));
    }
}
