//! One module per subcommand.

pub mod diarize;
