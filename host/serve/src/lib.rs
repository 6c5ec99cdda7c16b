//! `ml-connector serve`.
