//! `diffsmc experiment …`: the paper's experiments, one module each.

pub mod gm;
pub mod inverse_gm;
pub mod lgssm;
pub mod lv;
pub mod pendulum;

use clap::Subcommand;

use crate::support::error::CliError;

/// The experiments.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Prey–predator (Lotka–Volterra) dynamics learnt end to end by a neural transition
    /// (MLP 4→32→2) through the particle filter; RMSE of 100 predictions against the truth.
    ///
    /// Example: diffsmc experiment lotka-volterra --runs 20 --iterations 1000 --particles 64 --resampler diffusion:T=1,K=4,sde --resampler multinomial --optimizer lion --lr 0.005 --json lv.json --plot traces.svg
    #[command(name = "lotka-volterra", alias = "lv")]
    LotkaVolterra(lv::Args),
    /// Linear Gaussian SSM: loss-landscape error against Kalman, filtering KL, and L-BFGS
    /// parameter estimation from θ + 1.
    ///
    /// Example: diffsmc experiment lgssm --runs 100 --particles 32 --resampler diffusion:T=2,K=8,integrator=jentzen-kloeden,sde --grid 32 --json lgssm.json --plot landscape.svg
    Lgssm(lgssm::Args),
    /// Gaussian-mixture importance resampling: sliced Wasserstein distance and squared error
    /// of the mean against the exact posterior.
    ///
    /// Example: diffsmc experiment gm --runs 20 --particles 10000 --resampler diffusion:T=3,K=32,sde --json gm.json
    Gm(gm::Args),
    /// SMC posterior sampling with a diffusion prior (Gaussian-mixture prior, exact score) for
    /// y = H x + N(0, R): sliced Wasserstein distance and squared error of the mean against the
    /// exact posterior, beside importance sampling from the prior and unweighted guidance.
    ///
    /// Example: diffsmc experiment inverse-gm --runs 10 --particles 4000 --resampler systematic --trigger ess:0.5 --steps 100 --json inverse.json
    #[command(name = "inverse-gm")]
    InverseGm(inverse_gm::Args),
    /// Vision-based pendulum: SIREN dynamics and a transposed-convolution decoder learnt
    /// from 32×32 frames through the particle filter (reverse-mode gradients, Adam with
    /// clipping); SSIM and PSNR of the unrolled predicted image sequence.
    ///
    /// Example: diffsmc experiment pendulum --setting 1 --runs 1 --iterations 3000 --particles 32 --resampler diffusion:T=1,K=4 --seed 0 --json pendulum.json --plot pendulum.svg
    Pendulum(pendulum::Args),
}

impl ExperimentCommand {
    /// Runs the chosen experiment.
    pub fn execute(&self, force: bool, quiet: bool) -> Result<(), CliError> {
        match self {
            ExperimentCommand::LotkaVolterra(a) => lv::execute(a, force, quiet),
            ExperimentCommand::Lgssm(a) => lgssm::execute(a, force, quiet),
            ExperimentCommand::Gm(a) => gm::execute(a, force, quiet),
            ExperimentCommand::InverseGm(a) => inverse_gm::execute(a, force, quiet),
            ExperimentCommand::Pendulum(a) => pendulum::execute(a, force, quiet),
        }
    }
}
