//! One module per subcommand.

pub mod admin;
pub mod diarize;
pub mod serve;
