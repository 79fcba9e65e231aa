//! Reading flagmaster's logs (docs/logs.md): `read.rs` turns lines into typed
//! records, tolerating what a killed run leaves.

pub mod read;
