//! Hyper extracts for ml-connector.
//!
//! [`hyperd`] finds, starts, supervises and stops Tableau's `hyperd` server
//! (shipped in the `tableauhyperapi` Python package). Everything else talks
//! to it over the PostgreSQL wire protocol through the re-exported
//! [`tokio_postgres`], so callers share the exact driver version.

pub mod error;
pub mod hyperd;

pub use error::{HyperError, INSTALL_HINT};
pub use hyperd::{Hyperd, HyperdConfig, locate_hyperd};
pub use tokio_postgres;
