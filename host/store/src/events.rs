//! Webhook events a tenant received, kept to recognise a delivery seen
//! before (Tableau may deliver an event more than once) and to show what
//! arrived. Keyed by the event's id (a digest of its site, resource, event
//! type and time); the oldest are dropped beyond the number the caller
//! keeps (`serve`'s limits say how many).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::StoreError;
use crate::tenant::{EVENT_ORDER, EVENTS, TenantStore};

impl TenantStore {
    /// Records an event unless one with `id` was recorded before, keeping
    /// the newest `keep`; true when it is new. One transaction.
    pub fn record_event(&self, id: &str, event: &str, keep: u64) -> Result<bool, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("opening"))?;
            let new = {
                let mut events = tx.open_table(EVENTS).map_err(self.err("opening events"))?;
                if events
                    .get(id)
                    .map_err(self.err("reading events"))?
                    .is_some()
                {
                    false
                } else {
                    let mut order = tx
                        .open_table(EVENT_ORDER)
                        .map_err(self.err("opening events"))?;
                    let next = order
                        .last()
                        .map_err(self.err("reading events"))?
                        .map_or(1, |(k, _)| k.value() + 1);
                    events
                        .insert(id, event)
                        .map_err(self.err("writing events"))?;
                    order.insert(next, id).map_err(self.err("writing events"))?;
                    while order.len().map_err(self.err("reading events"))? > keep.max(1) {
                        let Some((_, oldest)) =
                            order.pop_first().map_err(self.err("dropping events"))?
                        else {
                            break;
                        };
                        events
                            .remove(oldest.value())
                            .map_err(self.err("dropping events"))?;
                    }
                    true
                }
            };
            tx.commit().map_err(self.err("committing an event"))?;
            Ok(new)
        })
    }

    /// The last `limit` events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let order = tx
                .open_table(EVENT_ORDER)
                .map_err(self.err("opening events"))?;
            let events = tx.open_table(EVENTS).map_err(self.err("opening events"))?;
            let mut out = Vec::new();
            for entry in order.iter().map_err(self.err("reading events"))?.rev() {
                let (_, id) = entry.map_err(self.err("reading events"))?;
                if let Some(e) = events.get(id.value()).map_err(self.err("reading events"))? {
                    out.push(e.value().to_owned());
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}
