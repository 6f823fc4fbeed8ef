//! What the commands share: argument parsing helpers, data files, JSON output, plots,
//! progress bars, the error type and the optimiser choice.

pub mod args;
pub mod data;
pub mod error;
pub mod optimise;
pub mod output;
pub mod plot;
pub mod progress;
