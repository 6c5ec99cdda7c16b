//! Types every part of ml-connector agrees on.
//!
//! A mapping plugin produces [`MappedBatch`]es of [`Row`]s whose [`Value`]s
//! follow a [`Schema`]; the Hyper writer encodes the same values into
//! `.hyper` files. Amounts travel as [`Decimal`] (an unscaled `i128` plus a
//! scale), never through `f64`. Credentials travel as [`Secret`], whose
//! `Debug` and `Display` never show the value.

pub mod decimal;
pub mod fs;
pub mod json_text;
pub mod row;
pub mod secret;
pub mod time;

pub use decimal::{Decimal, DecimalError};
pub use row::{Cell, Column, ColumnType, MappedBatch, Reject, Row, Schema, Value};
pub use secret::Secret;
