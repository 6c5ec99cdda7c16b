//! Which class an error chain belongs to: each link is downcast to the
//! typed errors of the libraries (and the CLI's [`CliError`]); the
//! innermost link that says something specific wins, since it is closest
//! to what actually went wrong. Plain I/O and HTTP errors only decide when
//! nothing more specific is in the chain.

use std::error::Error as StdError;

use super::{Cause, CliError, Diagnosis, ExitKind, MappingRefused};

/// How sure a link is of its class.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// A generic error (I/O, HTTP) that any layer may carry.
    Fallback,
    /// A library's or the CLI's own typed failure.
    Specific,
}

/// The class, code and hint of `error`; `runtime_failure` (exit 1) when no
/// link is recognised.
pub fn classify(error: &anyhow::Error) -> Diagnosis {
    // A CliError given as `.context(...)` is not a chain link of its own
    // type (the link is anyhow's context wrapper): anyhow finds it.
    let mut found: Option<(Strength, Diagnosis)> = error
        .downcast_ref::<CliError>()
        .and_then(cli)
        .map(|d| (Strength::Specific, d));
    for link in error.chain() {
        // A wrapped error's own top link is not in the chain (the wrapper
        // stands for it): look at it too.
        let wrapped: Option<&(dyn StdError + 'static)> =
            link.downcast_ref::<Cause>().map(|c| c.0.as_ref());
        for link in std::iter::once(link).chain(wrapped) {
            let Some((strength, diagnosis)) = link_diagnosis(link) else {
                continue;
            };
            // Later links are inner ones: they win at equal strength.
            if found.as_ref().is_none_or(|(s, _)| strength >= *s) {
                found = Some((strength, diagnosis));
            }
        }
    }
    found.map_or_else(
        || Diagnosis::bare(ExitKind::Runtime, "runtime_failure"),
        |(_, d)| d,
    )
}

fn link_diagnosis(link: &(dyn StdError + 'static)) -> Option<(Strength, Diagnosis)> {
    use Strength::{Fallback, Specific};
    if let Some(e) = link.downcast_ref::<CliError>() {
        return cli(e).map(|d| (Specific, d));
    }
    if link.downcast_ref::<MappingRefused>().is_some() {
        return Some((Specific, mapping_refused()));
    }
    #[cfg(feature = "runtime")]
    if let Some(d) = runtime::specific(link) {
        return Some((Specific, d));
    }
    #[cfg(feature = "plugin")]
    if let Some(e) = down::<mlc_plugin::PluginError>(link) {
        return plugin(e).map(|d| (Specific, d));
    }
    #[cfg(feature = "plugin")]
    if down::<mlc_plugin::ReferenceError>(link).is_some() {
        return Some((
            Specific,
            Diagnosis::new(
                ExitKind::Config,
                "reference_data_invalid",
                "give --reference a directory of <dataset>.json files, each a JSON object of objects",
            ),
        ));
    }
    #[cfg(feature = "tableau")]
    if let Some(e) = down::<mlc_hyper::HyperError>(link) {
        return match e {
            mlc_hyper::HyperError::HyperdNotFound { given: None, .. } => Some((
                Specific,
                Diagnosis::new(ExitKind::Config, "hyperd_missing", "cargo xtask setup"),
            )),
            mlc_hyper::HyperError::HyperdNotFound { given: Some(_), .. } => Some((
                Specific,
                Diagnosis::new(
                    ExitKind::Config,
                    "hyperd_missing",
                    "point --hyperd (ML_CONNECTOR_HYPERD) at an existing hyperd, or leave it unset to use the one `cargo xtask setup` installs",
                ),
            )),
            _ => None,
        };
    }
    #[cfg(feature = "runtime")]
    if let Some(e) = down::<reqwest::Error>(link)
        && (e.is_connect() || e.is_timeout())
    {
        return Some((
            Fallback,
            Diagnosis::bare(ExitKind::Unreachable, "unreachable"),
        ));
    }
    if let Some(e) = down::<std::io::Error>(link)
        && e.kind() == std::io::ErrorKind::AddrInUse
    {
        return Some((Fallback, listen_taken()));
    }
    None
}

/// `link` as a `T`, or as the `Box<T>` or `Arc<T>` a library kept it in (a
/// boxed or shared source's link is the box, which does not downcast to
/// what it holds).
fn down<'a, T: StdError + 'static>(link: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    link.downcast_ref::<T>()
        .or_else(|| link.downcast_ref::<Box<T>>().map(AsRef::as_ref))
        .or_else(|| link.downcast_ref::<std::sync::Arc<T>>().map(AsRef::as_ref))
}

/// The CLI's own failures; `None` for one that only wraps its cause.
fn cli(e: &CliError) -> Option<Diagnosis> {
    Some(match e {
        CliError::PluginsNotBuilt { .. } => Diagnosis::new(
            ExitKind::Config,
            "plugins_not_built",
            "rustup target add wasm32-wasip2 && cargo xtask build-plugins",
        ),
        CliError::TenantNotListed { .. } => Diagnosis::new(
            ExitKind::Config,
            "tenant_not_applied",
            "ml-connector tenant apply FILE",
        ),
        CliError::AdminTokenMissing { .. } => Diagnosis::new(
            ExitKind::Config,
            "admin_token_missing",
            "openssl rand -hex 32 > admin-token && ml-connector --admin-token-file admin-token ...",
        ),
        CliError::ListenTaken { .. } => listen_taken(),
        CliError::InvalidName { .. } => Diagnosis::bare(ExitKind::Config, "invalid_name"),
        CliError::NotFound(_) => Diagnosis::bare(ExitKind::Config, "not_found"),
        CliError::ServerUnreachable { .. } => Diagnosis::new(
            ExitKind::Unreachable,
            "server_unreachable",
            "start it with `ml-connector serve`, or remove its stale serve-*.json from the data directory",
        ),
        CliError::PipelinesFailed { .. } => return None,
    })
}

fn listen_taken() -> Diagnosis {
    Diagnosis::new(
        ExitKind::Runtime,
        "listen_address_in_use",
        "pass another address with --listen, e.g. `--listen 127.0.0.1:8090`",
    )
}

fn mapping_refused() -> Diagnosis {
    Diagnosis::new(
        ExitKind::Config,
        "mapping_refused",
        "fix the mapping and check it with `ml-connector plugin check FILE --mapping SCRIPT`",
    )
}

/// The plugin runtime's refusals of a component or its configuration; a
/// plugin that fails while mapping (a trap, a deadline) is a runtime failure.
#[cfg(feature = "plugin")]
fn plugin(e: &mlc_plugin::PluginError) -> Option<Diagnosis> {
    use mlc_plugin::{GuestError, PluginError as P};
    match e {
        P::ForbiddenImport { .. }
        | P::ContractVersion { .. }
        | P::Compile { .. }
        | P::Incompatible { .. }
        | P::InvalidSchema { .. }
        | P::Guest {
            error: GuestError::InvalidConfig(_),
            ..
        } => Some(mapping_refused()),
        _ => None,
    }
}

/// The runtime's libraries: store, sealing, tenant files, composing a
/// tenant, Oracle, Tableau, serve.
#[cfg(feature = "runtime")]
mod runtime {
    use std::error::Error as StdError;

    use mlc_oracle::OracleError;
    use mlc_store::{SealError, StoreError};
    use mlc_sync::ComposeError;
    use mlc_sync::definition::DefinitionError;
    use mlc_tableau::{ErrorKind as TableauKind, TableauError};

    use super::super::{Diagnosis, ExitKind};
    use super::down;

    pub(super) fn specific(link: &(dyn StdError + 'static)) -> Option<Diagnosis> {
        if let Some(e) = down::<DefinitionError>(link) {
            return Some(Diagnosis::new(
                ExitKind::Config,
                "tenant_file_invalid",
                format!(
                    "fix {}:{}, then run `ml-connector tenant apply {}` again (the format: host/sync/TENANT_FILE.md)",
                    e.file, e.line, e.file
                ),
            ));
        }
        if let Some(e) = down::<mlc_sync::ApplyError>(link) {
            return match e {
                mlc_sync::ApplyError::OtherTenant { .. } => {
                    Some(Diagnosis::bare(ExitKind::Config, "tenant_mismatch"))
                }
                // The transparent variants: their inner error is this link.
                mlc_sync::ApplyError::Definition(d) => specific(d),
                mlc_sync::ApplyError::Store(s) => store(s),
            };
        }
        if let Some(e) = down::<SealError>(link) {
            return Some(seal(e));
        }
        if let Some(e) = down::<StoreError>(link) {
            return store(e);
        }
        if let Some(e) = down::<ComposeError>(link) {
            return compose(e);
        }
        if let Some(e) = down::<OracleError>(link) {
            return oracle(e);
        }
        if let Some(e) = down::<TableauError>(link) {
            return tableau(e);
        }
        if let Some(e) = down::<mlc_sync::ShadowError>(link) {
            return shadow(e);
        }
        if let Some(e) = down::<mlc_serve::ServeError>(link) {
            return match e {
                mlc_serve::ServeError::Bind { .. } => Some(super::listen_taken()),
                _ => None,
            };
        }
        None
    }

    fn shadow(e: &mlc_sync::ShadowError) -> Option<Diagnosis> {
        use mlc_sync::ShadowError as S;
        match e {
            S::Compose(c) => compose(c),
            S::Store { source, .. } => store(source),
            S::UnknownPipeline { tenant, .. } => Some(Diagnosis::new(
                ExitKind::Config,
                "pipeline_unknown",
                format!("list the pipelines with `ml-connector pipeline list {tenant}`"),
            )),
            S::WrongKind { .. } => Some(Diagnosis::new(
                ExitKind::Config,
                "candidate_wrong_kind",
                "give a mapping script (.toml) for a pipeline with `mapping = …`, a component (.wasm) for one with `plugin = …`",
            )),
            S::PluginPipeline { .. } => Some(Diagnosis::bare(
                ExitKind::Config,
                "candidate_plugin_pipeline",
            )),
            S::Refused { .. } => Some(Diagnosis::new(
                ExitKind::Config,
                "candidate_refused",
                "fix the candidate where the error says, then diff it again; nothing was installed",
            )),
            S::Map { .. } | S::Write { .. } => None,
        }
    }

    fn seal(e: &SealError) -> Diagnosis {
        match e {
            SealError::Missing => Diagnosis::new(
                ExitKind::Config,
                "master_key_missing",
                "export ML_CONNECTOR_MASTER_KEY=$(ml-connector keys generate)",
            ),
            SealError::Malformed { .. } => Diagnosis::new(
                ExitKind::Config,
                "master_key_malformed",
                "set ML_CONNECTOR_MASTER_KEY to the base64 of 32 bytes (`openssl rand -base64 32`)",
            ),
            SealError::File { .. } => Diagnosis::new(
                ExitKind::Config,
                "master_key_unreadable",
                "point --master-key-file (ML_CONNECTOR_MASTER_KEY_FILE) at a readable key file",
            ),
            SealError::WrongKey { .. } => Diagnosis::new(
                ExitKind::Config,
                "master_key_wrong",
                "set ML_CONNECTOR_MASTER_KEY (or --master-key-file) to the key this data directory was set up with",
            ),
            SealError::Corrupt { tenant, name } => Diagnosis::new(
                ExitKind::Config,
                "secret_corrupt",
                format!("ml-connector secret set {tenant} {name}"),
            ),
        }
    }

    fn store(e: &StoreError) -> Option<Diagnosis> {
        Some(match e {
            StoreError::Seal(s) => seal(s),
            StoreError::Locked { .. } => Diagnosis::new(
                ExitKind::Runtime,
                "store_locked",
                "stop the other `serve` or `sync`, or send the command to the running server",
            ),
            StoreError::NewerSchema { .. } => Diagnosis::new(
                ExitKind::Config,
                "store_newer_schema",
                "upgrade ml-connector to the version that wrote this data directory",
            ),
            StoreError::Corrupt { .. } => Diagnosis::new(
                ExitKind::Runtime,
                "store_corrupt",
                "restore the store file from a backup",
            ),
            StoreError::NotFound { .. } => Diagnosis::bare(ExitKind::Config, "not_found"),
            _ => return None,
        })
    }

    fn compose(e: &ComposeError) -> Option<Diagnosis> {
        Some(match e {
            ComposeError::NoDefinition { .. } => Diagnosis::new(
                ExitKind::Config,
                "tenant_not_applied",
                "ml-connector tenant apply FILE",
            ),
            ComposeError::Definition { .. } => {
                Diagnosis::bare(ExitKind::Config, "stored_definition_refused")
            }
            ComposeError::MissingSecret { tenant, name } => Diagnosis::new(
                ExitKind::Config,
                "secret_missing",
                format!("ml-connector secret set {tenant} {name}"),
            ),
            ComposeError::NotAuthorized { tenant } => Diagnosis::new(
                ExitKind::Config,
                "not_authorized",
                format!("ml-connector tenant authorize {tenant}"),
            ),
            ComposeError::Mapping { .. } => super::mapping_refused(),
            ComposeError::Client { .. } => Diagnosis::bare(ExitKind::Config, "client_config"),
            _ => return None,
        })
    }

    fn oracle(e: &OracleError) -> Option<Diagnosis> {
        let credentials = || {
            Diagnosis::new(
                ExitKind::Config,
                "oracle_credentials_refused",
                "check client_id and scope in the tenant file and set the client secret again with `ml-connector secret set TENANT NAME`",
            )
        };
        Some(match e {
            OracleError::Config(_) => Diagnosis::bare(ExitKind::Config, "oracle_config"),
            OracleError::TokenRejected { .. } | OracleError::Unauthorized { .. } => credentials(),
            OracleError::RefreshRevoked { .. } => Diagnosis::new(
                ExitKind::Config,
                "oracle_refresh_revoked",
                "ml-connector tenant authorize TENANT",
            ),
            OracleError::RetriesExhausted { .. } => oracle_unreachable(),
            OracleError::Http { source, .. } if source.is_connect() || source.is_timeout() => {
                oracle_unreachable()
            }
            _ => return None,
        })
    }

    fn oracle_unreachable() -> Diagnosis {
        Diagnosis::new(
            ExitKind::Unreachable,
            "oracle_unreachable",
            "check [oracle] url and token_url in the tenant file and that the host answers from here",
        )
    }

    fn tableau(e: &TableauError) -> Option<Diagnosis> {
        let unreachable = || {
            Diagnosis::new(
                ExitKind::Unreachable,
                "tableau_unreachable",
                "check [tableau] url in the tenant file and that the server answers from here",
            )
        };
        Some(match e.kind.as_ref() {
            TableauKind::Transport(_) | TableauKind::RetriesExhausted { .. } => unreachable(),
            TableauKind::Api { status: 401, .. } => Diagnosis::new(
                ExitKind::Config,
                "tableau_credentials_refused",
                "check site and pat_name in the tenant file and set the token again with `ml-connector secret set TENANT NAME`",
            ),
            TableauKind::Config(_) | TableauKind::ProjectNotFound(_) => {
                Diagnosis::bare(ExitKind::Config, "tableau_config")
            }
            _ => return None,
        })
    }
}

#[cfg(all(test, feature = "runtime"))]
mod tests {
    use super::*;
    use mlc_store::{KeyId, SealError, StoreError};

    fn wrong_key() -> StoreError {
        StoreError::Seal(SealError::WrongKey {
            tenant: "acme".into(),
            name: "tableau-pat".into(),
            sealed_with: KeyId([1; 8]),
            given: KeyId([2; 8]),
        })
    }

    #[test]
    fn an_unknown_error_is_a_runtime_failure() {
        let d = classify(&anyhow::anyhow!("something broke"));
        assert_eq!((d.kind, d.code), (ExitKind::Runtime, "runtime_failure"));
    }

    #[test]
    fn a_boxed_source_is_looked_into() {
        let error = mlc_sync::ComposeError::Secret {
            tenant: "acme".into(),
            name: "tableau-pat".into(),
            source: Box::new(wrong_key()),
        };
        let d = classify(&anyhow::Error::new(error).context("starting the tenant"));
        assert_eq!(
            (d.kind, d.code),
            (ExitKind::Config, "master_key_wrong"),
            "{d:?}"
        );
    }

    #[test]
    fn a_failed_sync_takes_the_class_of_its_first_pipeline_failure() {
        let first = anyhow::Error::new(wrong_key()).context("pipeline acme/invoices");
        let error = CliError::PipelinesFailed {
            failed: 1,
            total: 2,
            tenant: "acme".into(),
            first: Cause(first),
        };
        let d = classify(&anyhow::Error::new(error));
        assert_eq!(d.code, "master_key_wrong", "{d:?}");
    }

    #[test]
    fn a_typed_error_wins_over_a_plain_io_error_below_it() {
        let bind = mlc_serve::ServeError::Bind {
            addr: ([127, 0, 0, 1], 8080).into(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let d = classify(&anyhow::Error::new(bind));
        assert_eq!(
            (d.kind, d.code),
            (ExitKind::Runtime, "listen_address_in_use")
        );
        let missing = CliError::PluginsNotBuilt {
            path: "target/plugins/scripted.wasm".into(),
        };
        let d = classify(
            &anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::AddrInUse))
                .context(missing),
        );
        // The outer CliError is the only specific link: it decides.
        assert_eq!(
            (d.kind, d.code),
            (ExitKind::Config, "plugins_not_built"),
            "{d:?}"
        );
        assert!(
            d.hint
                .is_some_and(|h| h.contains("cargo xtask build-plugins"))
        );
    }
}
