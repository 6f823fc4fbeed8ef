//! `diffsmc`: differentiable sequential Monte Carlo from the command line.

//!
//! The binary is laid out as `commands/` (one module per command and per experiment, each
//! with its clap `Args`), `models/` (the models `filter` and `fit` run: [`models::CliModel`])
//! and `support/` (arguments, data files, JSON output, plots, progress bars, errors, the
//! optimiser choice). This file only defines and dispatches the commands.

mod commands;
mod models;
mod support;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::experiment::ExperimentCommand;
use crate::commands::{
    bench, crosscheck, demo, filter, fit, plot as plot_cmd, posterior, sample, smooth,
};
use crate::support::error::CliError;

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
    /// Simulate the paper's linear Gaussian model, compare the particle filter with the Kalman
    /// filter, fit θ by L-BFGS through diffusion resampling against the exact MLE, and write
    /// demo.svg and demo-landscape.svg.
    Demo(demo::DemoArgs),
    /// Run a particle filter on observations from a CSV file.
    Filter(filter::FilterArgs),
    /// Estimate parameters by maximising the particle-filter likelihood.
    Fit(fit::FitArgs),
    /// Draw what experiment or fit JSON files hold (landscapes, traces, metric scatter).
    Plot(plot_cmd::PlotArgs),
    /// Time the engine's hot paths.
    #[command(
        subcommand,
        after_help = "Examples:\n  diffsmc bench filter --particles 16384 --resampler systematic\n  diffsmc bench grad --particles 32 --resampler diffusion:T=2,K=8\n  diffsmc bench resample --resampler diffusion:K=4 --particles 8192 --dim 8"
    )]
    Bench(BenchCommand),
    /// Reproduce the paper's experiments.
    #[command(
        subcommand,
        after_help = "Examples:\n  diffsmc experiment lgssm --runs 100 --particles 32 --resampler diffusion:T=2,K=8 --grid 32 --json lgssm.json\n  diffsmc experiment gm --runs 20 --particles 10000 --resampler diffusion:T=3,K=32,sde --json gm.json\n  diffsmc experiment lotka-volterra --runs 20 --resampler diffusion:T=1,K=4,sde --json lv.json\n  diffsmc experiment inverse-gm --runs 10 --particles 4000 --resampler systematic --trigger ess:0.5 --json inverse.json\n  diffsmc experiment pendulum --setting 1 --iterations 3000 --particles 32 --resampler diffusion:T=1,K=4 --json pendulum.json --plot pendulum.svg\n\nEach subcommand's --help has its flags and an example."
    )]
    Experiment(ExperimentCommand),
    /// Smooth a linear Gaussian model with a particle smoother (FFBS, backward simulation,
    /// fixed-lag, PaRIS with the Fisher-identity score), against RTS and Kalman.
    Smooth(smooth::Args),
    /// Sample a static Bayesian target by adaptive tempered SMC (evidence, posterior moments).
    Sample(sample::SampleArgs),
    /// Bayesian parameter inference: PMMH, particle Gibbs, PMALA or PHMC chains with
    /// convergence diagnostics.
    Posterior(posterior::Args),
    /// Cross-check resamplers against another implementation on exported instances (see
    /// docs/crosscheck.md).
    #[command(subcommand)]
    Crosscheck(crosscheck::CrosscheckCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Median time of one negative log-likelihood value-and-gradient on the paper LGSSM (129
    /// steps, 2 parameters) or the neural Lotka–Volterra model (256 steps, 226 parameters), and
    /// of the value alone.
    ///
    /// Example: diffsmc bench grad --model lotka-volterra --particles 64 --resampler diffusion:T=1,K=4,sde --grad reverse --json grad.json
    Grad(bench::GradArgs),
    /// Median time of one bootstrap particle filter run on the paper LGSSM (d = 1, 129 steps).
    ///
    /// Example: diffsmc bench filter --particles 16384 --resampler systematic
    Filter(bench::FilterArgs),
    /// Median time of one resampling.
    ///
    /// Example: diffsmc bench resample --resampler diffusion:K=4 --particles 8192 --dim 8
    Resample(bench::ResampleArgs),
    /// Median time of one training step of `experiment lotka-volterra` (N = 64, 226
    /// parameters, reverse-mode gradient, Lion update).
    ///
    /// Example: diffsmc bench train --model lotka-volterra --json train.json
    Train(bench::TrainArgs),
    /// Resampling time against N: diffusion (one series per K) and OT (one per ε), the
    /// paper's Figure 1; `diffsmc plot` draws the JSON.
    ///
    /// Example: diffsmc bench timing --particles 256,512,1024 --json timing.json
    Timing(bench::TimingArgs),
    /// The machine's exp throughput on one thread: the engine's vectorised kernel and the C
    /// library's `exp`.
    ///
    /// Example: diffsmc bench exp --json exp.json
    Exp(bench::ExpArgs),
}

fn run(cli: Cli) -> Result<(), CliError> {
    let (force, quiet) = (cli.force, cli.quiet);
    match cli.command {
        Command::Demo(a) => demo::demo(&a, force),
        Command::Filter(a) => filter::filter(&a, force, quiet),
        Command::Fit(a) => fit::fit(&a, quiet, force),
        Command::Plot(a) => plot_cmd::plot(&a, force),
        Command::Smooth(a) => smooth::run(&a, force, quiet),
        Command::Sample(a) => sample::run(&a, force, quiet),
        Command::Posterior(a) => posterior::run(&a, force, quiet),
        Command::Experiment(e) => e.execute(force, quiet),
        Command::Crosscheck(c) => crosscheck::execute(&c, force),
        Command::Bench(BenchCommand::Grad(a)) => bench::grad_command(&a, force, quiet),
        Command::Bench(BenchCommand::Filter(a)) => bench::filter_command(&a, force, quiet),
        Command::Bench(BenchCommand::Resample(a)) => bench::resample_command(&a, force, quiet),
        Command::Bench(BenchCommand::Train(a)) => bench::train_command(&a, force, quiet),
        Command::Bench(BenchCommand::Timing(a)) => bench::timing_command(&a, force, quiet),
        Command::Bench(BenchCommand::Exp(a)) => bench::exp_command(&a, force, quiet),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `diffsmc …` command shown in a ```sh block of README.md and docs/*.md parses with
    /// the current CLI (flags, values and resampler specs), so the docs cannot drift from it.
    #[test]
    fn documented_commands_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
            let p = e.expect("readable docs entry").path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        let mut checked = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("readable doc");
            let mut in_sh = false;
            let mut pending = String::new();
            for (lineno, line) in text.lines().enumerate() {
                // Shell line continuations: join `…\` with the next line.
                if in_sh && line.trim_end().ends_with('\\') {
                    pending.push_str(line.trim_end().trim_end_matches('\\'));
                    pending.push(' ');
                    continue;
                }
                let joined = std::mem::take(&mut pending) + line;
                let t = joined.trim();
                if t.starts_with("```") {
                    in_sh = t == "```sh" || t == "```bash";
                    continue;
                }
                if !in_sh {
                    continue;
                }
                let cmd = t.split('#').next().unwrap_or("").trim();
                let args: Option<Vec<&str>> =
                    if let Some(rest) = cmd.strip_prefix("cargo run --release -p diffsmc-cli --") {
                        Some(
                            std::iter::once("diffsmc")
                                .chain(rest.split_whitespace())
                                .collect(),
                        )
                    } else if cmd.starts_with("diffsmc ") {
                        Some(cmd.split_whitespace().collect())
                    } else {
                        None
                    };
                if let Some(args) = args {
                    if let Err(e) = Cli::try_parse_from(&args) {
                        panic!(
                            "{}:{}: `{cmd}` does not parse:\n{e}",
                            f.display(),
                            lineno + 1
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "found only {checked} documented commands");
    }
}
