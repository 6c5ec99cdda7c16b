//! A Tableau Server / Tableau Cloud REST stand-in for tests and demos.
//!
//! It serves REST API versions 3.19 to 3.28 under `/api/{version}/` with
//! Tableau's XML (default) and JSON shapes, error bodies, pagination,
//! filters and sorting; personal-access-token sessions (one per PAT,
//! expiring); a site with projects; data source publish (single request up
//! to 64 MB, or chunked uploads), query, download, delete and refresh;
//! Update Data in Hyper Data Source with RequestID de-duplication; jobs;
//! and webhooks. Every data source is a real `.hyper` file in the data
//! directory, and publishes and update actions are applied to it through
//! one `hyperd`, so a test reads exactly what a dashboard would see.
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
pub mod webhooks;

pub use engine::EngineError;
pub use error::{ApiError, SandboxError};
pub use faults::Faults;
pub use server::{API_VERSION, MB, TableauSandbox, TableauSandboxConfig};
pub use webhooks::{DeliveryOutcome, WebhookDelivery};
