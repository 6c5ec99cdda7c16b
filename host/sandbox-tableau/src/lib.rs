//! A Tableau Server / Tableau Cloud REST stand-in for tests and demos.
//!
//! It serves REST API versions 3.19 to 3.28 under `/api/{version}/` with
//! Tableau's XML (default, `<tsResponse xmlns="http://tableau.com/api">`)
//! and JSON (`Accept: application/json`) shapes, error bodies
//! (`<error code="401002"><summary/><detail/></error>`), pagination,
//! filters and sorting; personal-access-token sessions (one per PAT,
//! expiring); a site with projects; data source publish (single request up
//! to 64 MB, or chunked uploads), query, download, delete and refresh;
//! Update Data in Hyper Data Source with RequestID de-duplication; jobs;
//! and webhooks. Every data source is a real `.hyper` file in the data
//! directory, and publishes and update actions are applied to it through
//! one `hyperd`, so a test reads exactly what a dashboard would see.
//!
//! Choices where the public documentation is silent or UNCONFIRMED (see
//! `shared/reference/tableau-rest.md`):
//! - `serverInfo` and `auth/signin|signout` answer from version 2.4 on (a
//!   client such as TSC signs in at 2.4, then discovers the version); every
//!   other call needs 3.19..=3.28, else `404001` "Version '…' is not a valid
//!   version of the API".
//! - Sessions end a fixed `session_ttl` after sign-in (not on idleness);
//!   an expired or superseded token gets `401002`, a missing one `401000`.
//!   Upload sessions belong to the site and survive re-authentication.
//! - The 64 MB single-request cap applies to the file part (and to each
//!   chunk); above it the answer is `413` / `413000` naming chunked upload.
//! - A repeated `RequestID` (24 h) returns the original job whatever its
//!   outcome, and nothing is applied again; a failed batch therefore needs a
//!   new RequestID to be retried.
//! - Update actions match columns by name: every source column must exist
//!   in the target; `update` leaves target-only columns alone and inserts
//!   give them NULL. Conditions: `eq ne gt gte lt lte and or not`, operands
//!   `target-col`, `source-col`, `const` of type `string`, `datetime`,
//!   `date`, `integer`, `double`, `boolean`. A malformed action list is a
//!   `400` at once; a missing table or column, or a statement hyperd
//!   refuses, fails the job (`finishCode` 1) with notes such as
//!   "… Specified table does not exist: changes. (errorCode=410012)", and the
//!   whole batch is rolled back.
//! - Webhook events (also in the `jobs` module): an update job fires
//!   `DatasourceUpdated` on success and `DatasourceRefreshFailed` on failure
//!   (UNCONFIRMED). Delivery: 4 attempts (first plus 3 retries), pauses
//!   doubling from `webhook_retry_delay`; destinations must be `https://`,
//!   or `http://` on loopback. The test message is an empty POST body.
//! - Download (`…/content`) returns a `.tdsx` (uncompressed zip: a minimal
//!   `<name>.tds` whose `hyper` connection points at
//!   `Data/Extracts/<name>.hyper`, plus that file as stored), or the `.tds`
//!   alone with `includeExtract=false`. The `.tds` content is our own
//!   minimal form, not what Tableau generates.
//! - Projects: `Default`, the connector's top-level project, and (unless
//!   `nested_project_decoy` is off) a same-named project nested under
//!   `Default`, listed first, so a client that takes the first name match
//!   publishes into the wrong one.
//! - The catalog (site, user and project LUIDs, data sources, webhooks) is
//!   kept in `catalog.json` in the data directory, so a restart on the same
//!   `--data-dir` serves the same content; sessions, uploads and jobs are
//!   not kept, and the PAT secret is never written.
//! - Error codes not in the reference are the sandbox's own choice:
//!   `404011` data source, `404005` project, `404031` job, `404040`
//!   webhook, `404020` connection, `400006` paging, `400065` filter/sort,
//!   `400011` unusable file, `403000` token for another site.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
//! let sandbox = TableauSandbox::start(TableauSandboxConfig::default()).await?;
//! println!("{} site {}", sandbox.server_url(), sandbox.site_content_url());
//! sandbox.faults().fail_next_job("boom");
//! sandbox.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod actions;
mod api;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod error;
pub mod faults;
mod jobs;
pub mod query;
pub mod render;
pub mod request;
mod server;
pub mod state;
pub mod tdsx;
pub mod webhooks;

pub use engine::EngineError;
pub use error::{ApiError, SandboxError};
pub use faults::Faults;
pub use server::{API_VERSION, MB, TableauSandbox, TableauSandboxConfig};
pub use webhooks::{DeliveryOutcome, WebhookDelivery};
