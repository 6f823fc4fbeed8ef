//! Does a resampler target the weighted distribution? A known Gaussian target, weighted draws
//! from a wider Gaussian proposal, and the resampled particles' moments and 1-D Wasserstein
//! distances against multinomial resampling and against the exact target.

use std::fmt;

use super::CheckReport;
use super::stats::{mean_se, w1_to_normal};
use crate::error::{Result, SmcError};
use crate::particles::{Particles, normalise_log_weights, weights_f64};
use crate::resample::{Multinomial, Resampler};
use crate::rng::{Purpose, StreamKey, fill_standard_normal};

/// The stream tag of the proposal draws.
const PROPOSAL_TAG: u32 = 0x7e57_c0de;

/// The set-up and tolerances of [`check_resampler_consistency`].
///
/// Target: `N(0, scale² I_d)`. Proposal: `N(proposal_shift · scale · 1, (proposal_scale ·
/// scale)² I_d)`; each repetition draws `n` particles from the proposal, weights them by the
/// exact density ratio, and resamples them. A coordinate fails when, over the repetitions,
///
/// - its mean is biased by more than `rel_tol` target sds **and** by more than `z_max`
///   standard errors, or
/// - its variance is biased by more than `rel_tol · scale²` **and** by more than `z_max`
///   standard errors, or
/// - its mean 1-Wasserstein distance to the exact target exceeds `w1_ratio_max` times that
///   of multinomial resampling of the same weighted particles.
///
/// Build it with struct-update syntax: `ConsistencyOptions { n: 256, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyOptions {
    /// Particles per repetition (default 512).
    pub n: usize,
    /// Dimension `d` (default 2).
    pub dim: usize,
    /// Independent repetitions (default 64).
    pub reps: usize,
    /// Seed of the proposal draws and of the resampling streams (default 0).
    pub seed: u64,
    /// Target standard deviation: try tiny and huge values (default 1).
    pub scale: f64,
    /// Proposal sd in target sds (default 2; must exceed `1/√2` for finite weight variance).
    pub proposal_scale: f64,
    /// Proposal mean in target sds, every coordinate (default 0.5).
    pub proposal_shift: f64,
    /// z-score bound for the bias tests (default 5).
    pub z_max: f64,
    /// Relative bias that is tolerated even when significant (default 0.05).
    pub rel_tol: f64,
    /// Largest allowed ratio of mean W1 distances, resampler / multinomial (default 2).
    pub w1_ratio_max: f64,
}

impl Default for ConsistencyOptions {
    fn default() -> Self {
        ConsistencyOptions {
            n: 512,
            dim: 2,
            reps: 64,
            seed: 0,
            scale: 1.0,
            proposal_scale: 2.0,
            proposal_shift: 0.5,
            z_max: 5.0,
            rel_tol: 0.05,
            w1_ratio_max: 2.0,
        }
    }
}

impl ConsistencyOptions {
    fn validate(&self) -> Result<()> {
        if self.n < 2 {
            return Err(SmcError::invalid("n", self.n, "at least 2"));
        }
        if self.dim == 0 {
            return Err(SmcError::invalid("dim", self.dim, "at least 1"));
        }
        if self.reps < 2 {
            return Err(SmcError::invalid("reps", self.reps, "at least 2"));
        }
        let pos = |name, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(SmcError::invalid(name, v, "a finite number > 0"))
            }
        };
        pos("scale", self.scale)?;
        pos("z_max", self.z_max)?;
        pos("rel_tol", self.rel_tol)?;
        pos("w1_ratio_max", self.w1_ratio_max)?;
        if !(self.proposal_scale > std::f64::consts::FRAC_1_SQRT_2
            && self.proposal_scale.is_finite())
        {
            return Err(SmcError::invalid(
                "proposal_scale",
                self.proposal_scale,
                "a finite number > 1/√2 (else the importance weights have infinite variance)",
            ));
        }
        if !self.proposal_shift.is_finite() {
            return Err(SmcError::invalid(
                "proposal_shift",
                self.proposal_shift,
                "a finite number",
            ));
        }
        Ok(())
    }
}

/// Averages over the repetitions for one coordinate and one set of particles, in units of the
/// target: the mean's bias in target sds, the variance's relative bias (`var / scale² − 1`)
/// and the 1-Wasserstein distance to the exact marginal in target sds, each with its standard
/// error over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentSummary {
    /// Mean over repetitions of `(mean − m) / s`.
    pub mean_bias: f64,
    /// Its standard error.
    pub mean_bias_se: f64,
    /// Mean over repetitions of `var / s² − 1`.
    pub var_bias: f64,
    /// Its standard error.
    pub var_bias_se: f64,
    /// Mean over repetitions of `W1 / s`.
    pub w1: f64,
    /// Its standard error.
    pub w1_se: f64,
}

impl MomentSummary {
    fn from_samples(means: &[f64], vars: &[f64], w1s: &[f64]) -> Self {
        let (mean_bias, mean_bias_se) = mean_se(means);
        let (var_bias, var_bias_se) = mean_se(vars);
        let (w1, w1_se) = mean_se(w1s);
        MomentSummary {
            mean_bias,
            mean_bias_se,
            var_bias,
            var_bias_se,
            w1,
            w1_se,
        }
    }
}

/// One coordinate: the weighted particles before resampling (the importance-sampling
/// estimate), after multinomial resampling (the baseline), and after the resampler under test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordinateSummary {
    /// The weighted input particles.
    pub weighted: MomentSummary,
    /// After multinomial resampling.
    pub multinomial: MomentSummary,
    /// After the resampler under test.
    pub resampler: MomentSummary,
}

/// What [`check_resampler_consistency`] found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsistencyReport {
    /// The resampler's name.
    pub name: String,
    /// The set-up and tolerances.
    pub options: ConsistencyOptions,
    /// Mean effective sample size of the weighted particles.
    pub mean_ess: f64,
    /// Per coordinate.
    pub coordinates: Vec<CoordinateSummary>,
    /// Repetitions whose output had a non-finite particle or weight (left out of the
    /// resampler's statistics).
    pub non_finite_reps: usize,
    /// Repetitions where the resampler reported that it did not converge.
    pub non_converged_reps: usize,
}

impl ConsistencyReport {
    /// What failed, one line per problem (empty when the check passed).
    pub fn problems(&self) -> Vec<String> {
        let o = &self.options;
        let mut p = Vec::new();
        if self.non_finite_reps > 0 {
            p.push(format!(
                "{} of {} repetitions gave non-finite particles or weights",
                self.non_finite_reps, o.reps
            ));
        }
        if self.non_finite_reps == o.reps {
            return p;
        }
        for (k, c) in self.coordinates.iter().enumerate() {
            let r = &c.resampler;
            if biased(r.mean_bias, r.mean_bias_se, o) {
                p.push(format!(
                    "coordinate {k}: mean biased by {:+.4} target sds (z = {:.1}; multinomial {:+.4})",
                    r.mean_bias,
                    r.mean_bias / r.mean_bias_se,
                    c.multinomial.mean_bias
                ));
            }
            if biased(r.var_bias, r.var_bias_se, o) {
                p.push(format!(
                    "coordinate {k}: variance off by {:+.2}% of the target's (z = {:.1}; multinomial {:+.2}%)",
                    100.0 * r.var_bias,
                    r.var_bias / r.var_bias_se,
                    100.0 * c.multinomial.var_bias
                ));
            }
            let bound = o.w1_ratio_max * c.multinomial.w1;
            if r.w1.is_nan() || bound.is_nan() || r.w1 > bound {
                p.push(format!(
                    "coordinate {k}: W1 to the target {:.4} target sds, {:.2}× multinomial's {:.4} (bound {}×)",
                    r.w1,
                    r.w1 / c.multinomial.w1,
                    c.multinomial.w1,
                    o.w1_ratio_max
                ));
            }
        }
        p
    }

    /// No problems.
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }
}

/// Significant and large: `|b| > z_max · se` and `|b| > rel_tol` (NaN counts as biased).
fn biased(b: f64, se: f64, o: &ConsistencyOptions) -> bool {
    !(b.abs() <= o.z_max * se || b.abs() <= o.rel_tol)
}

impl CheckReport for ConsistencyReport {
    fn passed(&self) -> bool {
        ConsistencyReport::passed(self)
    }
}

impl fmt::Display for ConsistencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let problems = self.problems();
        writeln!(
            f,
            "resampler consistency of `{}` {}: N = {}, d = {}, {} repetitions; target N(0, {}²) per \
             coordinate, proposal N({}, {}²), mean ESS {:.1}",
            self.name,
            if problems.is_empty() {
                "passed"
            } else {
                "FAILED"
            },
            o.n,
            o.dim,
            o.reps,
            o.scale,
            o.proposal_shift * o.scale,
            o.proposal_scale * o.scale,
            self.mean_ess
        )?;
        writeln!(
            f,
            "  mean bias in target sds, variance bias relative to the target's, W1 to the exact \
             marginal in target sds; ± one standard error over repetitions"
        )?;
        writeln!(
            f,
            "  {:>5} {:<12} {:>20} {:>20} {:>20}",
            "coord", "particles", "mean bias", "variance bias", "W1"
        )?;
        for (k, c) in self.coordinates.iter().enumerate() {
            for (label, m) in [
                ("weighted", &c.weighted),
                ("multinomial", &c.multinomial),
                ("resampler", &c.resampler),
            ] {
                writeln!(
                    f,
                    "  {:>5} {:<12} {:>+10.4} ± {:<7.4} {:>+10.4} ± {:<7.4} {:>10.4} ± {:.4}",
                    if label == "weighted" {
                        k.to_string()
                    } else {
                        String::new()
                    },
                    label,
                    m.mean_bias,
                    m.mean_bias_se,
                    m.var_bias,
                    m.var_bias_se,
                    m.w1,
                    m.w1_se
                )?;
            }
        }
        if self.non_converged_reps > 0 {
            writeln!(
                f,
                "  the resampler reported non-convergence in {} repetitions",
                self.non_converged_reps
            )?;
        }
        for p in problems {
            writeln!(f, "  FAIL: {p}")?;
        }
        Ok(())
    }
}

/// Per coordinate: weighted mean, weighted variance and W1 to `N(0, s²)`, in target units.
fn coordinate_stats(x: &Particles<f64>, w: &[f64], k: usize, s: f64) -> (f64, f64, f64) {
    let col: Vec<f64> = x.iter().map(|p| p[k]).collect();
    let total: f64 = w.iter().sum();
    let mean = col.iter().zip(w).map(|(v, w)| v * w).sum::<f64>() / total;
    let var = col
        .iter()
        .zip(w)
        .map(|(v, w)| w * (v - mean) * (v - mean))
        .sum::<f64>()
        / total;
    let w1 = w1_to_normal(&col, w, 0.0, s);
    (mean / s, var / (s * s) - 1.0, w1 / s)
}

/// Checks that a resampler (on `f64`) targets the weighted distribution it is given.
///
/// Each of `options.reps` repetitions draws `n` particles in `R^d` from a Gaussian proposal
/// wider than (and shifted from) the Gaussian target `N(0, scale² I)`, weights them by the
/// exact density ratio, and resamples them with the resampler under test and with
/// [`Multinomial`] (the same stream key). Per coordinate it reports the bias of the mean and
/// of the variance of the resampled particles against the exact target, and their
/// 1-Wasserstein distance to the exact marginal — for the weighted particles themselves, for
/// multinomial resampling and for the resampler under test — and judges the resampler as
/// described in [`ConsistencyOptions`]. Output log-weights are honoured (soft resampling
/// returns non-uniform ones); a resampler that reports it did not resample leaves the weighted
/// particles as they were, as in the filter.
///
/// Biased-by-design resamplers (entropic OT and Gumbel-softmax at finite ε, τ; diffusion with
/// few steps) shrink the variance: the report says by how much, so the same check serves to
/// tune their knobs.
///
/// Errors: invalid options, and any error of the resampler.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::testing::{ConsistencyOptions, check_resampler_consistency};
///
/// let options = ConsistencyOptions { n: 256, reps: 32, ..Default::default() };
/// let report = check_resampler_consistency(&Systematic, &options)?;
/// assert!(report.passed(), "{report}");
/// let diffusion = DiffusionResampler::new(DiffusionConfig::new().with_steps(16)?);
/// let report = check_resampler_consistency(&diffusion, &options)?;
/// println!("{report}");
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn check_resampler_consistency<R: Resampler<f64> + ?Sized>(
    resampler: &R,
    options: &ConsistencyOptions,
) -> Result<ConsistencyReport> {
    options.validate()?;
    let (n, d, s) = (options.n, options.dim, options.scale);
    let (mu_q, s_q) = (options.proposal_shift * s, options.proposal_scale * s);
    let rows = 3;
    // [row][coordinate] → per-repetition samples of (mean, var, w1).
    let mut samples = vec![vec![(Vec::new(), Vec::new(), Vec::new()); d]; rows];
    let mut ess_sum = 0.0;
    let (mut non_finite, mut non_converged) = (0usize, 0usize);
    let mut noise = vec![0.0; n * d];
    let mut out = Particles::<f64>::zeros(n, d);
    let mut out_lw = vec![0.0; n];
    let mut mult = Particles::<f64>::zeros(n, d);
    let mut mult_lw = vec![0.0; n];
    for rep in 0..options.reps {
        fill_standard_normal(
            &mut StreamKey::new(options.seed, rep, Purpose::Other(PROPOSAL_TAG)).rng(0),
            &mut noise,
        );
        let x: Vec<f64> = noise.iter().map(|z| mu_q + s_q * z).collect();
        // log π(x) − log q(x), constants dropped.
        let mut lw: Vec<f64> = x
            .chunks_exact(d)
            .map(|p| {
                p.iter()
                    .map(|v| {
                        let (a, b) = (v / s, (v - mu_q) / s_q);
                        -0.5 * a * a + 0.5 * b * b
                    })
                    .sum()
            })
            .collect();
        normalise_log_weights(&mut lw, rep)?;
        ess_sum += crate::particles::ess(&lw);
        let x = Particles::from_vec(n, d, x)?;
        let key = StreamKey::new(options.seed, rep, Purpose::Resample);
        let w_in = weights_f64(&lw);
        Multinomial.resample(&x, &lw, key, &mut mult, &mut mult_lw)?;
        let w_mult = weights_f64(&mult_lw);
        let info = resampler.resample(&x, &lw, key, &mut out, &mut out_lw)?;
        if !info.converged {
            non_converged += 1;
        }
        let (xr, wr_log) = if info.resampled {
            (&out, &out_lw)
        } else {
            (&x, &lw)
        };
        let finite = xr.as_slice().iter().all(|v| v.is_finite())
            && wr_log.iter().all(|v| !v.is_nan() && *v != f64::INFINITY)
            && wr_log.iter().any(|v| v.is_finite());
        let w_r = if finite {
            let w = weights_f64(wr_log);
            w.iter().all(|v| v.is_finite()).then_some(w)
        } else {
            None
        };
        if w_r.is_none() {
            non_finite += 1;
        }
        for k in 0..d {
            let sets: [(&Particles<f64>, Option<&Vec<f64>>); 3] = [
                (&x, Some(&w_in)),
                (&mult, Some(&w_mult)),
                (xr, w_r.as_ref()),
            ];
            for (row, (p, w)) in sets.into_iter().enumerate() {
                if let Some(w) = w {
                    let (m, v, w1) = coordinate_stats(p, w, k, s);
                    let e = &mut samples[row][k];
                    e.0.push(m);
                    e.1.push(v);
                    e.2.push(w1);
                }
            }
        }
    }
    let summary = |row: usize, k: usize| {
        let (m, v, w) = &samples[row][k];
        MomentSummary::from_samples(m, v, w)
    };
    let coordinates = (0..d)
        .map(|k| CoordinateSummary {
            weighted: summary(0, k),
            multinomial: summary(1, k),
            resampler: summary(2, k),
        })
        .collect();
    Ok(ConsistencyReport {
        name: resampler.name(),
        options: options.clone(),
        mean_ess: ess_sum / options.reps as f64,
        coordinates,
        non_finite_reps: non_finite,
        non_converged_reps: non_converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::{
        DiffusionConfig, DiffusionResampler, Killing, ResampleInfo, Residual, Ssp, StopGradient,
        Stratified, Systematic,
    };

    fn quick() -> ConsistencyOptions {
        ConsistencyOptions {
            n: 256,
            reps: 40,
            seed: 3,
            ..Default::default()
        }
    }

    #[test]
    fn engine_resamplers_pass() {
        let rs: Vec<Box<dyn Resampler<f64>>> = vec![
            Box::new(Multinomial),
            Box::new(Systematic),
            Box::new(Stratified),
            Box::new(Residual),
            Box::new(Ssp),
            Box::new(Killing),
            Box::new(StopGradient),
            Box::new(DiffusionResampler::new(DiffusionConfig::new())),
        ];
        for r in &rs {
            let rep = check_resampler_consistency(r, &quick()).unwrap();
            assert!(rep.passed(), "{rep}");
            assert_eq!(rep.coordinates.len(), 2);
            assert!(rep.mean_ess > 50.0 && rep.mean_ess < 256.0, "{rep}");
        }
    }

    /// Multinomial against itself (same keys): identical rows.
    #[test]
    fn multinomial_matches_the_baseline_exactly() {
        let rep = check_resampler_consistency(&Multinomial, &quick()).unwrap();
        for c in &rep.coordinates {
            assert_eq!(c.multinomial, c.resampler);
        }
    }

    /// Ignores the weights: copies the input (proposal) particles, uniform weights.
    #[derive(Debug)]
    struct IgnoresWeights;
    impl Resampler<f64> for IgnoresWeights {
        fn name(&self) -> String {
            "ignores-weights".into()
        }
        fn resample(
            &self,
            particles: &Particles<f64>,
            _log_weights: &[f64],
            _key: StreamKey,
            out: &mut Particles<f64>,
            out_log_weights: &mut [f64],
        ) -> Result<ResampleInfo> {
            out.as_mut_slice().copy_from_slice(particles.as_slice());
            out_log_weights.fill(-(particles.len() as f64).ln());
            Ok(ResampleInfo::RESAMPLED)
        }
    }

    /// Multinomial, then shrinks every particle towards the weighted mean by 20 %: the mean is
    /// right, the variance is 0.64 of the target's.
    #[derive(Debug)]
    struct Shrinks;
    impl Resampler<f64> for Shrinks {
        fn name(&self) -> String {
            "shrinks".into()
        }
        fn resample(
            &self,
            particles: &Particles<f64>,
            log_weights: &[f64],
            key: StreamKey,
            out: &mut Particles<f64>,
            out_log_weights: &mut [f64],
        ) -> Result<ResampleInfo> {
            let m = crate::particles::weighted_mean(particles, log_weights);
            Multinomial.resample(particles, log_weights, key, out, out_log_weights)?;
            for i in 0..out.len() {
                for (v, mk) in out.particle_mut(i).iter_mut().zip(&m) {
                    *v = mk + 0.8 * (*v - mk);
                }
            }
            Ok(ResampleInfo::RESAMPLED)
        }
    }

    /// Produces a NaN particle.
    #[derive(Debug)]
    struct MakesNan;
    impl Resampler<f64> for MakesNan {
        fn name(&self) -> String {
            "makes-nan".into()
        }
        fn resample(
            &self,
            particles: &Particles<f64>,
            log_weights: &[f64],
            key: StreamKey,
            out: &mut Particles<f64>,
            out_log_weights: &mut [f64],
        ) -> Result<ResampleInfo> {
            Multinomial.resample(particles, log_weights, key, out, out_log_weights)?;
            out.particle_mut(0)[0] = f64::NAN;
            Ok(ResampleInfo::RESAMPLED)
        }
    }

    #[test]
    fn broken_resamplers_fail() {
        let ign = check_resampler_consistency(&IgnoresWeights, &quick()).unwrap();
        assert!(!ign.passed(), "{ign}");
        let p = ign.problems().join("\n");
        assert!(
            p.contains("mean biased") && p.contains("variance off"),
            "{ign}"
        );
        // The proposal's variance is 4× the target's.
        assert!(
            (ign.coordinates[0].resampler.var_bias - 3.0).abs() < 0.5,
            "{ign}"
        );

        let shr = check_resampler_consistency(&Shrinks, &quick()).unwrap();
        assert!(!shr.passed(), "{shr}");
        let p = shr.problems().join("\n");
        assert!(
            p.contains("variance off") && !p.contains("mean biased"),
            "{shr}"
        );
        assert!(
            (shr.coordinates[1].resampler.var_bias + 0.36).abs() < 0.05,
            "{shr}"
        );
        assert!(shr.to_string().contains("FAIL: coordinate"));

        let nan = check_resampler_consistency(&MakesNan, &quick()).unwrap();
        assert_eq!(nan.non_finite_reps, 40);
        assert!(!nan.passed(), "{nan}");
    }

    /// Tiny and huge scales: the verdicts do not change (results are in target units).
    #[test]
    fn scale_free() {
        for scale in [1e-30, 1e30] {
            let o = ConsistencyOptions { scale, ..quick() };
            let ok = check_resampler_consistency(&Systematic, &o).unwrap();
            assert!(ok.passed(), "{ok}");
            let bad = check_resampler_consistency(&Shrinks, &o).unwrap();
            assert!(!bad.passed(), "{bad}");
        }
    }

    #[test]
    fn invalid_options_are_errors() {
        for o in [
            ConsistencyOptions { n: 1, ..quick() },
            ConsistencyOptions { dim: 0, ..quick() },
            ConsistencyOptions { reps: 1, ..quick() },
            ConsistencyOptions {
                scale: 0.0,
                ..quick()
            },
            ConsistencyOptions {
                proposal_scale: 0.5,
                ..quick()
            },
            ConsistencyOptions {
                proposal_shift: f64::NAN,
                ..quick()
            },
        ] {
            assert!(
                check_resampler_consistency(&Systematic, &o).is_err(),
                "{o:?}"
            );
        }
    }
}
