//! One module per command (and, under `experiment/`, per experiment), each with its clap
//! `Args` and the function that runs it.

pub mod bench;
pub mod crosscheck;
pub mod demo;
pub mod experiment;
pub mod filter;
pub mod fit;
pub mod plot;
pub mod posterior;
pub mod sample;
pub mod smc2;
pub mod smooth;
