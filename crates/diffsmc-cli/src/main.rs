//! `diffsmc`: differentiable sequential Monte Carlo from the command line.

mod bench;
mod data;
mod error;
mod output;
mod plot;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use diffsmc::ResamplerSpec;

use crate::error::CliError;

/// Differentiable sequential Monte Carlo: particle filters whose log-likelihood is
/// differentiable in the model parameters, through the resampling step too.
#[derive(Debug, Parser)]
#[command(name = "diffsmc", version, about, long_about = None)]
struct Cli {
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    /// Overwrite existing output files.
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time the engine's hot paths.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Median time of one resampling.
    ///
    /// Example: diffsmc bench resample --resampler diffusion:K=4 --particles 8192 --dim 8
    Resample {
        /// Resampler spec, e.g. `systematic`, `diffusion:T=2,K=8,sde`, `ot:eps=0.4`.
        #[arg(long, default_value = "systematic")]
        resampler: ResamplerSpec,
        /// Number of particles.
        #[arg(long, default_value_t = 1024)]
        particles: usize,
        /// State dimension.
        #[arg(long, default_value_t = 8)]
        dim: usize,
        /// Scalar type.
        #[arg(long, value_enum, default_value = "f64")]
        scalar: bench::BenchScalar,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Minimum total measuring time in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Bench(BenchCommand::Resample {
            resampler,
            particles,
            dim,
            scalar,
            seed,
            seconds,
            json,
        }) => {
            if let Some(p) = &json {
                output::check_writable(p, cli.force)?;
            }
            let v = bench::resample(&resampler, particles, dim, scalar, seed, seconds)?;
            println!(
                "resample {} N={} d={} {}: median {:.6} s over {} runs",
                resampler,
                particles,
                dim,
                v["scalar"].as_str().unwrap_or(""),
                v["median_seconds"].as_f64().unwrap_or(f64::NAN),
                v["repetitions"]
            );
            if v["all_converged"] == serde_json::Value::Bool(false) {
                eprintln!("warning: the resampler reported non-convergence in some runs");
            }
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
