//! Pure rules of the service: names, versions, receipts. Nothing here imports actix or diesel,
//! so everything is unit-tested without a server.

pub mod access;
pub mod api_keys;
pub mod changepoint;
pub mod decision;
pub mod digest;
pub mod flakiness;
pub mod fleet;
pub mod gate;
pub mod gate_settings;
pub mod ids;
pub mod key_document;
pub mod names;
pub mod receipt;
pub mod requests;
pub mod stats;
pub mod strict;
pub mod summary;
pub mod time;
pub mod trend;
pub mod triage;
pub mod version;
