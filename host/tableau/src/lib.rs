//! Tableau REST client of ml-connector: Personal Access Token sessions (one
//! per PAT, renewed before expiry and once after a `401`), publishing data
//! sources from `.hyper` files (chunked upload above the chunk size), batch
//! upserts through *Update Data in Hyper Data Source* with deterministic
//! `RequestID`s, job polling, and webhook registration.
//!
//! This crate reads `.hyper` files written elsewhere; it never writes them.
//! See [`client`] for the payload table contract.
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
mod http;
pub mod model;

#[cfg(test)]
mod tests;

pub use auth::{Session, SessionManager};
pub use client::{
    PartOutcome, PayloadPart, PublishMode, SubmittedUpdate, TableauClient, UpdateBatch,
    UploadProgress, UploadProgressFn, parts_needed, request_id,
};
pub use config::{ApiVersion, JobPollConfig, MB, RetryConfig, TableauConfig};
pub use error::{ErrorKind, TableauError};
pub use model::{
    CHANGES_TABLE, DELETED_TABLE, Datasource, EXTRACT_SCHEMA, Job, Project, TARGET_TABLE, Webhook,
    WebhookEvent, WebhookPayload,
};
