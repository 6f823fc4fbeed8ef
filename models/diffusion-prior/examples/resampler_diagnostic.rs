//! Why particle-moving resamplers break the diffusion-prior sampler: a measurement.
//!
//! The potential of step `k + 1` divides by the step-`k` target at the *previous* point,
//! `γ_k(x_prev) = p_{τ_k}(x_prev) ỹ_k(x_prev)`. An index resampler only ever hands the move
//! points that were already in the weighted cloud; a resampler that moves particles (diffusion,
//! OT) can hand it new points. This example resamples every step and reports, per resampler,
//! how far below the weighted cloud's `log γ_k` the resampled points fall, and how often the
//! next step's weights then collapse onto one particle.
//!
//! ```sh
//! cargo run --release -p diffsmc-diffusion-prior --example resampler_diagnostic [SPEC ...]
//! ```
use std::sync::Mutex;

use diffsmc::prelude::*;
use diffsmc::resample::{ResampleInfo, ResamplerSpec};
use diffsmc::rng::StreamKey;
use diffsmc_diffusion_prior::{
    DiffusionPosterior, DiffusionPrior, GaussianMixturePrior, LinearObservation, PosteriorConfig,
    TimeGrid, VpSde,
};
use diffsmc_gaussian_mixture::PaperConfig;

/// Per resampling call: the minimum of `log γ_k` over the input cloud's particles of
/// non-negligible weight, the minimum over the output points, and how many outputs fall below
/// the input minimum.
#[derive(Debug, Default, Clone, Copy)]
struct Call {
    input_min: f64,
    output_min: f64,
    below_input_min: usize,
}

#[derive(Debug)]
struct Recording<'a, P> {
    inner: Box<dyn Resampler<f64>>,
    model: &'a DiffusionPosterior<P>,
    calls: Mutex<Vec<Call>>,
}

impl<P: DiffusionPrior<f64> + std::fmt::Debug + Send + Sync> Recording<'_, P> {
    fn log_target(&self, k: usize, x: &[f64]) -> f64 {
        let t = self.model.grid().times()[k];
        let lp = self.model.prior().log_density(t, x).expect("exact prior");
        lp + self.model.log_twist(k, x)
    }
}

impl<P: DiffusionPrior<f64> + std::fmt::Debug + Send + Sync> Resampler<f64> for Recording<'_, P> {
    fn name(&self) -> String {
        self.inner.name()
    }
    /// Claimed for every inner resampler, so that the driver runs the pairs it would refuse
    /// (`SmcError::IncompatibleResampler`): measuring why it refuses them is the point here.
    fn copies_by_index(&self) -> bool {
        true
    }
    fn resample(
        &self,
        particles: &Particles<f64>,
        log_weights: &[f64],
        key: StreamKey,
        out: &mut Particles<f64>,
        out_log_weights: &mut [f64],
    ) -> diffsmc::Result<ResampleInfo> {
        let info = self
            .inner
            .resample(particles, log_weights, key, out, out_log_weights)?;
        // Trigger::Always: the k-th call resamples the cloud of grid level k.
        let k = self.calls.lock().unwrap().len();
        let n = particles.len();
        let mut min_in = f64::INFINITY;
        for i in 0..n {
            let g = self.log_target(k, particles.particle(i));
            if log_weights[i].exp() > 1e-3 / n as f64 {
                min_in = min_in.min(g);
            }
        }
        let mut min_out = f64::INFINITY;
        let mut below = 0;
        for i in 0..n {
            let g = self.log_target(k, out.particle(i));
            min_out = min_out.min(g);
            if g < min_in {
                below += 1;
            }
        }
        self.calls.lock().unwrap().push(Call {
            input_min: min_in,
            output_min: min_out,
            below_input_min: below,
        });
        Ok(info)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, runs, steps) = (1000, 10, 100);
    // Resampler specs from the command line, else these.
    let mut specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        specs = [
            "systematic",
            "diffusion:T=2,K=8,integrator=jentzen-kloeden,sde",
            "diffusion:T=3,K=32,integrator=jentzen-kloeden,ode",
            "ot:eps=0.4,scale=mean",
        ]
        .map(String::from)
        .to_vec();
    }
    println!(
        "| resampler | runs with a collapsed step (ESS < 2) | mean log Ẑ error | median over steps of (input min − output min) of log γ_k | outputs below the input cloud's min log γ_k (%) |"
    );
    println!("|---|---|---|---|---|");
    for spec in &specs {
        let spec: ResamplerSpec = spec.parse()?;
        let (mut collapsed, mut err, mut gaps, mut below, mut total) = (0, 0.0, vec![], 0, 0);
        for run in 0..runs {
            let problem = PaperConfig::new(8, 5)?.build(run as u64)?;
            let cov = problem.prior().covariance();
            let rho2 = (0..8).map(|i| cov[(i, i)]).sum::<f64>() / 8.0;
            let sde = VpSde::default();
            let prior = GaussianMixturePrior::new(problem.prior(), sde)?;
            let model = DiffusionPosterior::new(
                &prior,
                LinearObservation::from_problem(&problem)?,
                TimeGrid::uniform(sde.t_max(), steps)?,
                PosteriorConfig::default().with_prior_scale(rho2)?,
            )?;
            let rec = Recording {
                inner: spec.build::<f64>()?,
                model: &model,
                calls: Mutex::new(Vec::new()),
            };
            let smc = Smc::new(SmcConfig::new(n)?.with_trigger(Trigger::Always)?);
            let out: SmcOutput<f64> = smc.run(&model, &rec, 100 + run as u64)?;
            if out.ess.iter().any(|e| *e < 2.0) {
                collapsed += 1;
            }
            err += (out.log_likelihood - problem.log_evidence()) / runs as f64;
            for c in rec.calls.lock().unwrap().iter() {
                gaps.push(c.input_min - c.output_min);
                below += c.below_input_min;
                total += n;
            }
        }
        gaps.sort_by(f64::total_cmp);
        println!(
            "| {} | {collapsed}/{runs} | {err:+.3} | {:.2} | {:.3} |",
            spec,
            gaps[gaps.len() / 2],
            100.0 * below as f64 / total as f64
        );
    }
    Ok(())
}
