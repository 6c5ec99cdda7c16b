//! The upload limits ([`crate::UploadLimits`]), checked before anything is
//! compiled: the component, configuration and sample sizes, the plugins
//! per tenant, then the instance shape (`shape`).

use super::PluginRuntime;
use super::records::Sample;
use crate::error::{PluginError, PluginRef};

impl PluginRuntime {
    /// The upload limits, before anything is compiled: sizes, plugins per
    /// tenant, then the instance shape.
    pub(super) fn check_upload(
        &self,
        plugin: &PluginRef,
        wasm: &[u8],
        config: Option<&str>,
        sample: Option<&Sample>,
    ) -> Result<(), PluginError> {
        let limits = &self.inner.uploads;
        let too_large = |what, size, limit| PluginError::TooLarge {
            plugin: plugin.clone(),
            what,
            size,
            limit,
        };
        if wasm.len() > limits.max_component {
            return Err(too_large("component", wasm.len(), limits.max_component));
        }
        if let Some(c) = config
            && c.len() > limits.max_config
        {
            return Err(too_large("configuration", c.len(), limits.max_config));
        }
        if let Some(sample) = sample {
            let (records, bytes) = sample.size();
            if records > limits.max_sample_records {
                return Err(too_large(
                    "sample records",
                    records,
                    limits.max_sample_records,
                ));
            }
            if bytes > limits.max_sample_bytes {
                return Err(too_large("sample", bytes, limits.max_sample_bytes));
            }
        }
        let (tenant, name): (&str, &str) = (&plugin.tenant, &plugin.plugin);
        let others = super::read(&self.inner.slots)
            .keys()
            .filter(|(t, n)| t == tenant && n != name)
            .count();
        if others >= limits.max_plugins_per_tenant {
            return Err(PluginError::TooManyPlugins {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                limit: limits.max_plugins_per_tenant,
            });
        }
        // Not parsing is the compiler's to refuse (a `compile` error).
        match crate::shape::measure(wasm) {
            Some(shape) => shape.check(plugin, &limits.shape),
            None => Ok(()),
        }
    }
}
