//! Helpers shared by the engine-level test files.

pub mod der;
