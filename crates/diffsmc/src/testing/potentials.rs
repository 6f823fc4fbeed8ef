//! Non-finite log-potentials and states, found by propagating particles through a model.

use std::fmt;

use super::CheckReport;
use crate::error::{Result, SmcError};
use crate::model::FeynmanKac;
use crate::particles::{Particles, weights_f64};
use crate::resample::{IndexResampler, Multinomial};
use crate::rng::{Purpose, StreamKey};

/// How many problem sites a report lists (all are counted).
pub const MAX_LISTED: usize = 20;

/// What is wrong at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PotentialProblem {
    /// `log G` is NaN.
    NanPotential,
    /// `log G` is `+∞`.
    InfinitePotential,
    /// A coordinate of the sampled state is NaN or infinite.
    NonFiniteState {
        /// The coordinate.
        coordinate: usize,
    },
}

/// One problem: where and what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    /// The step (0 = the initial step).
    pub step: usize,
    /// The particle index.
    pub particle: usize,
    /// What is wrong.
    pub problem: PotentialProblem,
    /// The offending value.
    pub value: f64,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.problem {
            PotentialProblem::NanPotential | PotentialProblem::InfinitePotential => {
                "log-potential".to_string()
            }
            PotentialProblem::NonFiniteState { coordinate } => format!("state[{coordinate}]"),
        };
        write!(
            f,
            "step {}, particle {}: {what} = {}",
            self.step, self.particle, self.value
        )
    }
}

/// The problems found at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProblems {
    /// The step.
    pub step: usize,
    /// NaN log-potentials.
    pub nan_potentials: usize,
    /// `+∞` log-potentials.
    pub infinite_potentials: usize,
    /// Non-finite state coordinates.
    pub non_finite_states: usize,
}

/// What [`check_finite_potentials`] found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PotentialsReport {
    /// Particles propagated.
    pub n: usize,
    /// The seed.
    pub seed: u64,
    /// The model's number of steps.
    pub steps: usize,
    /// Steps propagated (fewer than `steps` when all weights vanished).
    pub steps_run: usize,
    /// Number of NaN log-potentials.
    pub nan_potentials: usize,
    /// Number of `+∞` log-potentials.
    pub infinite_potentials: usize,
    /// Number of `−∞` log-potentials (zero weight: allowed, e.g. hard constraints; counted).
    pub zero_potentials: usize,
    /// The first `−∞` log-potential (step, particle).
    pub first_zero_potential: Option<(usize, usize)>,
    /// Number of non-finite state coordinates.
    pub non_finite_states: usize,
    /// The step at which every particle had zero (or NaN) weight, which stops a filter.
    pub all_weights_zero_at: Option<usize>,
    /// Smallest and largest finite log-potential seen.
    pub finite_range: Option<(f64, f64)>,
    /// Per step with problems, how many of each kind.
    pub steps_with_problems: Vec<StepProblems>,
    /// The first [`MAX_LISTED`] problems, in the order found.
    pub sites: Vec<Site>,
}

impl PotentialsReport {
    /// No NaN or `+∞` log-potential, no non-finite state, and some weight left at every step.
    pub fn passed(&self) -> bool {
        self.nan_potentials == 0
            && self.infinite_potentials == 0
            && self.non_finite_states == 0
            && self.all_weights_zero_at.is_none()
    }

    /// The first problem found, if any.
    pub fn first(&self) -> Option<&Site> {
        self.sites.first()
    }
}

impl CheckReport for PotentialsReport {
    fn passed(&self) -> bool {
        PotentialsReport::passed(self)
    }
}

impl fmt::Display for PotentialsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "finite potentials {}: N = {}, seed {}, {} of {} steps propagated",
            if self.passed() { "passed" } else { "FAILED" },
            self.n,
            self.seed,
            self.steps_run,
            self.steps
        )?;
        writeln!(
            f,
            "  NaN log-potentials {}, +inf log-potentials {}, non-finite state coordinates {}, \
             -inf log-potentials (zero weight, allowed) {}",
            self.nan_potentials,
            self.infinite_potentials,
            self.non_finite_states,
            self.zero_potentials
        )?;
        if let Some((lo, hi)) = self.finite_range {
            writeln!(f, "  finite log-potentials in [{lo:.4e}, {hi:.4e}]")?;
        }
        if let Some((t, i)) = self.first_zero_potential {
            writeln!(f, "  first -inf log-potential: step {t}, particle {i}")?;
        }
        if let Some(t) = self.all_weights_zero_at {
            writeln!(
                f,
                "  every particle has zero or NaN weight at step {t}: a filter stops here"
            )?;
        }
        for p in self.steps_with_problems.iter().take(MAX_LISTED) {
            writeln!(
                f,
                "  step {}: {} NaN, {} +inf log-potentials, {} non-finite state coordinates",
                p.step, p.nan_potentials, p.infinite_potentials, p.non_finite_states
            )?;
        }
        if self.steps_with_problems.len() > MAX_LISTED {
            writeln!(
                f,
                "  … and {} more steps",
                self.steps_with_problems.len() - MAX_LISTED
            )?;
        }
        let total = self.nan_potentials + self.infinite_potentials + self.non_finite_states;
        if total > 0 {
            writeln!(f, "  first problems:")?;
        }
        for s in self.sites.iter().take(5) {
            writeln!(f, "    {s}")?;
        }
        if total > 5 {
            writeln!(
                f,
                "    … and {} more (the first {} are in `sites`)",
                total - 5,
                self.sites.len()
            )?;
        }
        Ok(())
    }
}

/// Propagates `n` particles through a model — initial draws, then at every step multinomial
/// resampling on the finite weights and a transition, with the filter's own random streams for
/// `seed` — and reports every non-finite log-potential and state coordinate by step and
/// particle.
///
/// NaN and `+∞` log-potentials fail, as do non-finite states and a step at which every weight
/// is zero or NaN (where the filter would stop with [`SmcError::DegenerateWeights`]). `−∞`
/// (zero weight) is legitimate — a hard constraint, an impossible observation for one particle
/// — and is counted but does not fail. Particles with a NaN weight or state are not resampled,
/// so one bad particle does not hide the rest of the run.
///
/// Errors: `n = 0`, a model with no steps or dimension 0.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::testing::check_finite_potentials;
///
/// /// y_t ~ Poisson(e^{x_t}): the log-pmf `y x − e^x − ln y!` is finite for any finite state.
/// struct PoissonAr { ys: Vec<u32> }
/// impl<S: Scalar> StateSpaceModel<S> for PoissonAr {
///     fn state_dim(&self) -> usize { 1 }
///     fn n_observations(&self) -> usize { self.ys.len() }
///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = S::cst(standard_normal(rng));
///     }
///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = xp[0] * 0.8 + standard_normal(rng) * 0.5;
///     }
///     fn observation_log_density(&self, t: usize, x: &[S]) -> S {
///         let y = f64::from(self.ys[t]);
///         let ln_fact: f64 = (1..=self.ys[t]).map(|k| f64::from(k).ln()).sum();
///         x[0] * y - x[0].exp() - ln_fact
///     }
/// }
///
/// let model = Bootstrap(PoissonAr { ys: vec![0, 2, 1, 5, 3] });
/// let report = check_finite_potentials(&model, 500, 1)?;
/// assert!(report.passed(), "{report}");
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn check_finite_potentials<M: FeynmanKac<f64> + ?Sized>(
    model: &M,
    n: usize,
    seed: u64,
) -> Result<PotentialsReport> {
    if n == 0 {
        return Err(SmcError::invalid("particles", n, "at least 1"));
    }
    let (d, steps) = (model.dim(), model.n_steps());
    if steps == 0 {
        return Err(SmcError::invalid("model steps", 0, "at least one step"));
    }
    if d == 0 {
        return Err(SmcError::invalid("model dimension", 0, "at least 1"));
    }
    let mut rep = PotentialsReport {
        n,
        seed,
        steps,
        steps_run: 0,
        nan_potentials: 0,
        infinite_potentials: 0,
        zero_potentials: 0,
        first_zero_potential: None,
        non_finite_states: 0,
        all_weights_zero_at: None,
        finite_range: None,
        steps_with_problems: Vec::new(),
        sites: Vec::new(),
    };
    let push = |rep: &mut PotentialsReport, s: Site| {
        if rep.steps_with_problems.last().map(|p| p.step) != Some(s.step) {
            rep.steps_with_problems.push(StepProblems {
                step: s.step,
                nan_potentials: 0,
                infinite_potentials: 0,
                non_finite_states: 0,
            });
        }
        let p = rep.steps_with_problems.last_mut().expect("just pushed");
        match s.problem {
            PotentialProblem::NanPotential => p.nan_potentials += 1,
            PotentialProblem::InfinitePotential => p.infinite_potentials += 1,
            PotentialProblem::NonFiniteState { .. } => p.non_finite_states += 1,
        }
        if rep.sites.len() < MAX_LISTED {
            rep.sites.push(s);
        }
    };
    let mut cur = Particles::<f64>::zeros(n, d);
    let mut prev = Particles::<f64>::zeros(n, d);
    let mut lw = vec![0.0f64; n];
    let mut ancestors = vec![0usize; n];
    for t in 0..steps {
        let key = StreamKey::new(seed, t, Purpose::Move);
        if t > 0 {
            // Multinomial resampling on the usable weights.
            let usable: Vec<f64> = lw
                .iter()
                .map(|&v| {
                    if v.is_nan() || v == f64::INFINITY {
                        f64::NEG_INFINITY
                    } else {
                        v
                    }
                })
                .collect();
            let w = weights_f64(&usable);
            Multinomial.ancestors(
                &w,
                StreamKey::new(seed, t, Purpose::Resample),
                &mut ancestors,
            );
            for (i, &a) in ancestors.iter().enumerate() {
                prev.particle_mut(i).copy_from_slice(cur.particle(a));
            }
        }
        for i in 0..n {
            let mut rng = key.rng(i);
            let g = if t == 0 {
                let x = cur.particle_mut(i);
                model.sample_initial(&mut rng, x);
                model.log_potential_initial(x)
            } else {
                let xp = prev.particle(i);
                let x = cur.particle_mut(i);
                model.sample_transition(t, xp, &mut rng, x);
                model.log_potential(t, xp, x)
            };
            let mut state_ok = true;
            for (k, &v) in cur.particle(i).iter().enumerate() {
                if !v.is_finite() {
                    rep.non_finite_states += 1;
                    state_ok = false;
                    push(
                        &mut rep,
                        Site {
                            step: t,
                            particle: i,
                            problem: PotentialProblem::NonFiniteState { coordinate: k },
                            value: v,
                        },
                    );
                }
            }
            if g.is_nan() {
                rep.nan_potentials += 1;
                push(
                    &mut rep,
                    Site {
                        step: t,
                        particle: i,
                        problem: PotentialProblem::NanPotential,
                        value: g,
                    },
                );
            } else if g == f64::INFINITY {
                rep.infinite_potentials += 1;
                push(
                    &mut rep,
                    Site {
                        step: t,
                        particle: i,
                        problem: PotentialProblem::InfinitePotential,
                        value: g,
                    },
                );
            } else if g == f64::NEG_INFINITY {
                rep.zero_potentials += 1;
                rep.first_zero_potential.get_or_insert((t, i));
            } else {
                let (lo, hi) = rep.finite_range.unwrap_or((g, g));
                rep.finite_range = Some((lo.min(g), hi.max(g)));
            }
            lw[i] = if state_ok { g } else { f64::NAN };
        }
        rep.steps_run = t + 1;
        if !lw.iter().any(|v| v.is_finite()) {
            rep.all_weights_zero_at = Some(t);
            break;
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bootstrap, StateSpaceModel};
    use crate::rng::{StreamRng, standard_normal};
    use crate::scalar::Scalar;

    /// A 1-D model with optional bugs.
    #[derive(Default)]
    struct Model {
        /// `log(x)` of a state that can be negative, at this step only: NaN for x < 0.
        nan_at: Option<usize>,
        /// The transition blows up (exp of exp) at this step.
        blow_up_at: Option<usize>,
        /// A hard constraint x > 0 (log-potential −∞ for x ≤ 0): legitimate.
        constraint: bool,
        /// An observation no particle can explain at this step.
        impossible_at: Option<usize>,
    }
    impl<S: Scalar> StateSpaceModel<S> for Model {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            8
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::cst(standard_normal(rng));
        }
        fn sample_transition(&self, t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] * 0.7 + standard_normal(rng);
            if self.blow_up_at == Some(t) {
                x[0] = (x[0].exp() * 1000.0).exp();
            }
        }
        fn observation_log_density(&self, t: usize, x: &[S]) -> S {
            if self.impossible_at == Some(t) {
                return S::cst(f64::NEG_INFINITY);
            }
            if self.constraint && x[0].re() <= 0.0 {
                return S::cst(f64::NEG_INFINITY);
            }
            if self.nan_at == Some(t) {
                return x[0].ln();
            }
            let r = x[0] - 0.5;
            r * r * -0.5
        }
    }

    #[test]
    fn a_correct_model_passes_and_constraints_are_allowed() {
        let rep = check_finite_potentials(&Bootstrap(Model::default()), 300, 2).unwrap();
        assert!(rep.passed(), "{rep}");
        assert_eq!((rep.steps_run, rep.zero_potentials), (8, 0));
        let c = check_finite_potentials(
            &Bootstrap(Model {
                constraint: true,
                ..Default::default()
            }),
            300,
            2,
        )
        .unwrap();
        assert!(c.passed(), "{c}");
        assert!(c.zero_potentials > 0 && c.first_zero_potential.is_some());
    }

    #[test]
    fn nan_potential_at_step_3_is_reported() {
        let rep = check_finite_potentials(
            &Bootstrap(Model {
                nan_at: Some(3),
                ..Default::default()
            }),
            300,
            2,
        )
        .unwrap();
        assert!(!rep.passed(), "{rep}");
        assert!(rep.nan_potentials > 50 && rep.nan_potentials < 250, "{rep}");
        let first = rep.first().unwrap();
        assert_eq!(first.step, 3);
        assert_eq!(first.problem, PotentialProblem::NanPotential);
        assert!(rep.sites.iter().all(|s| s.step == 3));
        assert_eq!(rep.sites.len(), MAX_LISTED);
        assert_eq!(rep.steps_with_problems.len(), 1);
        assert_eq!(rep.steps_with_problems[0].step, 3);
        assert_eq!(
            rep.steps_with_problems[0].nan_potentials,
            rep.nan_potentials
        );
        // The run goes on past the bad step.
        assert_eq!(rep.steps_run, 8);
        let text = rep.to_string();
        assert!(
            text.contains("FAILED") && text.contains("step 3, particle"),
            "{text}"
        );
    }

    #[test]
    fn blown_up_states_and_dead_steps_are_reported() {
        let rep = check_finite_potentials(
            &Bootstrap(Model {
                blow_up_at: Some(5),
                ..Default::default()
            }),
            200,
            4,
        )
        .unwrap();
        assert!(!rep.passed(), "{rep}");
        assert!(rep.non_finite_states > 0, "{rep}");
        assert_eq!(rep.first().unwrap().step, 5);
        let dead = check_finite_potentials(
            &Bootstrap(Model {
                impossible_at: Some(6),
                ..Default::default()
            }),
            50,
            4,
        )
        .unwrap();
        assert!(!dead.passed(), "{dead}");
        assert_eq!(dead.all_weights_zero_at, Some(6));
        assert_eq!(dead.steps_run, 7);
        assert_eq!(dead.zero_potentials, 50);
    }

    #[test]
    fn zero_particles_is_an_error() {
        assert!(check_finite_potentials(&Bootstrap(Model::default()), 0, 1).is_err());
    }
}
