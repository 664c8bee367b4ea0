//! Pieces shared by the Parley binaries.

pub mod telemetry;
