//! Unbiased offspring counts of index resamplers.

use std::fmt;

use super::CheckReport;
use crate::error::{Result, SmcError};
use crate::resample::IndexResampler;
use crate::rng::{Purpose, StreamKey};

/// Default z-score bound of [`check_offspring_unbiased`]: a two-sided normal tail beyond 6
/// standard errors has probability 2·10⁻⁹, so even over 10⁴ indices a correct resampler
/// fails with probability below 2·10⁻⁵ (Bonferroni).
pub const DEFAULT_Z_MAX: f64 = 6.0;

/// Slack `C / R` added to every tolerance: an event of probability `≥ C/R` shows up in `R`
/// draws with probability `≥ 1 − e^{−C}`, so events too rare to be seen (whose count sd
/// estimate is 0) move the mean by less than `C/R`.
const RARE_EVENT_SLACK: f64 = 20.0;

/// What [`check_offspring_unbiased`] found: per index the mean offspring count over the draws
/// against its expectation `N w_i`, with CLT z-scores.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OffspringReport {
    /// The resampler's name.
    pub name: String,
    /// Number of particles `N`.
    pub n: usize,
    /// Number of independent draws `R`.
    pub draws: usize,
    /// `N w_i`.
    pub expected: Vec<f64>,
    /// Mean offspring count of index `i` over the draws.
    pub mean: Vec<f64>,
    /// Sample standard deviation of the count of index `i`.
    pub sd: Vec<f64>,
    /// `(mean_i − N w_i) / (sd_i / √R)`; when the count never varied: 0 if its mean is within
    /// the rare-event slack `20 / R` of `N w_i`, else `±∞`.
    pub z: Vec<f64>,
    /// The largest `|mean_i − N w_i|` allowed: `z_max · sd_i / √R + 20 / R`.
    pub allowed: Vec<f64>,
    /// The z-score bound used.
    pub z_max: f64,
    /// Draws whose ancestors were out of range (`≥ N`): such draws are not counted.
    pub out_of_range_draws: usize,
    /// Draws that copied an index of weight exactly 0.
    pub zero_weight_draws: usize,
}

impl OffspringReport {
    /// Whether index `i` passed.
    pub fn index_passed(&self, i: usize) -> bool {
        (self.mean[i] - self.expected[i]).abs() <= self.allowed[i]
    }

    /// Every index within tolerance, no out-of-range ancestor, no zero-weight copy.
    pub fn passed(&self) -> bool {
        self.out_of_range_draws == 0
            && self.zero_weight_draws == 0
            && (0..self.n).all(|i| self.index_passed(i))
    }

    /// The indices that failed.
    pub fn failures(&self) -> Vec<usize> {
        (0..self.n).filter(|&i| !self.index_passed(i)).collect()
    }

    /// The largest `|z|` over the indices (finite ones; `∞` if some count was constant and
    /// wrong).
    pub fn max_abs_z(&self) -> f64 {
        self.z.iter().fold(0.0, |m, z| m.max(z.abs()))
    }
}

impl CheckReport for OffspringReport {
    fn passed(&self) -> bool {
        OffspringReport::passed(self)
    }
}

impl fmt::Display for OffspringReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures();
        writeln!(
            f,
            "offspring check of `{}` {}: N = {}, {} draws, max |z| = {:.2} (bound {} standard errors + 20/R)",
            self.name,
            if self.passed() { "passed" } else { "FAILED" },
            self.n,
            self.draws,
            self.max_abs_z(),
            self.z_max
        )?;
        if self.out_of_range_draws > 0 {
            writeln!(
                f,
                "  {} draws had an ancestor index ≥ N (not counted)",
                self.out_of_range_draws
            )?;
        }
        if self.zero_weight_draws > 0 {
            writeln!(
                f,
                "  {} draws copied a particle of weight 0",
                self.zero_weight_draws
            )?;
        }
        // All indices for small N, else the failures and the five largest |z|.
        let mut show: Vec<usize> = if self.n <= 12 {
            (0..self.n).collect()
        } else {
            let mut by_z: Vec<usize> = (0..self.n).collect();
            by_z.sort_by(|&a, &b| self.z[b].abs().total_cmp(&self.z[a].abs()));
            let mut s: Vec<usize> = failed.iter().copied().take(20).collect();
            s.extend(by_z.into_iter().take(5));
            s.sort_unstable();
            s.dedup();
            s
        };
        show.truncate(25);
        writeln!(
            f,
            "  {:>6} {:>12} {:>12} {:>10} {:>10} {:>10}",
            "index", "N w_i", "mean count", "sd", "z", "allowed"
        )?;
        for i in show {
            writeln!(
                f,
                "  {:>6} {:>12.6} {:>12.6} {:>10.4} {:>10.2} {:>10.2e}{}",
                i,
                self.expected[i],
                self.mean[i],
                self.sd[i],
                self.z[i],
                self.allowed[i],
                if self.index_passed(i) {
                    ""
                } else {
                    "  <- FAIL"
                }
            )?;
        }
        Ok(())
    }
}

/// Checks that an index resampler's offspring counts are unbiased: over `draws` independent
/// draws (stream keys `StreamKey::new(seed, k, Purpose::Resample)`, `k = 0 .. draws`) of `N`
/// ancestors from the normalised `weights`, the mean count of every index `i` must be within
/// `z_max` standard errors of `N w_i` ([`DEFAULT_Z_MAX`] = 6, plus a `20 / R` rare-event
/// slack). Also reports ancestors out of range and copies of zero-weight particles.
///
/// `weights` must be finite, non-negative and not all zero; they are normalised here. Cost:
/// `draws` calls of [`IndexResampler::ancestors`]. With `R` draws a bias `b` in a count of
/// standard deviation `s` is detected once `b > 6 s / √R`: 10⁴ draws see a bias of 0.06 `s`.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::testing::check_offspring_unbiased;
///
/// let w = [0.05, 0.3, 0.1, 0.0, 0.25, 0.3];
/// let report = check_offspring_unbiased(&Systematic, &w, 4000, 1)?;
/// assert!(report.passed(), "{report}");
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn check_offspring_unbiased<R: IndexResampler + ?Sized>(
    resampler: &R,
    weights: &[f64],
    draws: usize,
    seed: u64,
) -> Result<OffspringReport> {
    check_offspring_unbiased_with(resampler, weights, draws, seed, DEFAULT_Z_MAX)
}

/// [`check_offspring_unbiased`] with an explicit z-score bound `z_max > 0`.
pub fn check_offspring_unbiased_with<R: IndexResampler + ?Sized>(
    resampler: &R,
    weights: &[f64],
    draws: usize,
    seed: u64,
    z_max: f64,
) -> Result<OffspringReport> {
    let n = weights.len();
    if n == 0 {
        return Err(SmcError::invalid("weights", "[]", "at least one weight"));
    }
    if let Some((i, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        return Err(SmcError::NonFinite {
            what: "weight (must be finite and ≥ 0)",
            step: 0,
            component: i,
            value: *w,
        });
    }
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(SmcError::invalid("weights", total, "a positive finite sum"));
    }
    if draws < 2 {
        return Err(SmcError::invalid("draws", draws, "at least 2"));
    }
    if z_max.is_nan() || z_max <= 0.0 {
        return Err(SmcError::invalid("z_max", z_max, "a number > 0"));
    }
    let w: Vec<f64> = weights.iter().map(|v| v / total).collect();
    let mut sum = vec![0.0f64; n];
    let mut sum_sq = vec![0.0f64; n];
    let mut counts = vec![0usize; n];
    let mut ancestors = vec![0usize; n];
    let mut counted = 0usize;
    let (mut out_of_range, mut zero_weight) = (0usize, 0usize);
    for k in 0..draws {
        ancestors.fill(0);
        resampler.ancestors(
            &w,
            StreamKey::new(seed, k, Purpose::Resample),
            &mut ancestors,
        );
        if ancestors.iter().any(|&a| a >= n) {
            out_of_range += 1;
            continue;
        }
        counts.fill(0);
        for &a in &ancestors {
            counts[a] += 1;
        }
        if counts.iter().zip(&w).any(|(&c, &wi)| c > 0 && wi == 0.0) {
            zero_weight += 1;
        }
        for i in 0..n {
            let c = counts[i] as f64;
            sum[i] += c;
            sum_sq[i] += c * c;
        }
        counted += 1;
    }
    let r = counted.max(1) as f64;
    let expected: Vec<f64> = w.iter().map(|wi| n as f64 * wi).collect();
    let mean: Vec<f64> = sum.iter().map(|s| s / r).collect();
    let sd: Vec<f64> = (0..n)
        .map(|i| {
            let var = if counted > 1 {
                ((sum_sq[i] - r * mean[i] * mean[i]) / (r - 1.0)).max(0.0)
            } else {
                0.0
            };
            var.sqrt()
        })
        .collect();
    let z = (0..n)
        .map(|i| {
            let diff = mean[i] - expected[i];
            let se = sd[i] / r.sqrt();
            if se > 0.0 {
                diff / se
            } else if diff.abs() <= RARE_EVENT_SLACK / r {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            }
        })
        .collect();
    let allowed = sd
        .iter()
        .map(|s| z_max * s / r.sqrt() + RARE_EVENT_SLACK / r)
        .collect();
    Ok(OffspringReport {
        name: resampler.index_name().to_string(),
        n,
        draws,
        expected,
        mean,
        sd,
        z,
        allowed,
        z_max,
        out_of_range_draws: out_of_range,
        zero_weight_draws: zero_weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::{Killing, Multinomial, Residual, Ssp, Stratified, Systematic};
    use rand::RngExt;

    /// N = 16 weights from e^-4 to 1, with one weight 0 and one tiny one.
    fn weights() -> Vec<f64> {
        let mut rng = StreamKey::new(3, 0, Purpose::Other(9)).rng(0);
        let mut w: Vec<f64> = (0..16)
            .map(|_| (rng.random::<f64>() * 4.0 - 4.0).exp())
            .collect();
        w[2] = 0.0;
        w[9] = 1e-9;
        w[12] = 3.0;
        w
    }

    #[test]
    fn the_engine_resamplers_pass() {
        let w = weights();
        let rs: [&dyn IndexResampler; 6] = [
            &Multinomial,
            &Systematic,
            &Stratified,
            &Residual,
            &Ssp,
            &Killing,
        ];
        for r in rs {
            let rep = check_offspring_unbiased(r, &w, 20_000, 11).unwrap();
            assert!(rep.passed(), "{rep}");
            assert_eq!(rep.zero_weight_draws, 0);
        }
    }

    /// Systematic resampling that forgot to draw its uniform (always `u = 0.5`): counts are
    /// deterministic roundings of `N w_i`, biased wherever `N w_i` is not a multiple of 1/2.
    #[derive(Debug)]
    struct FixedSystematic;
    impl IndexResampler for FixedSystematic {
        fn index_name(&self) -> &'static str {
            "systematic-fixed-u"
        }
        fn ancestors(&self, w: &[f64], _key: StreamKey, ancestors: &mut [usize]) {
            let m = ancestors.len();
            let mut j = 0;
            let mut cum = w[0];
            for (i, a) in ancestors.iter_mut().enumerate() {
                let u = (i as f64 + 0.5) / m as f64;
                while u >= cum && j + 1 < w.len() {
                    j += 1;
                    cum += w[j];
                }
                *a = j;
            }
        }
    }

    /// Multinomial on tempered weights `w^0.9`: mildly favours small weights.
    #[derive(Debug)]
    struct Tempered;
    impl IndexResampler for Tempered {
        fn index_name(&self) -> &'static str {
            "multinomial-tempered"
        }
        fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
            let t: Vec<f64> = w.iter().map(|v| v.powf(0.9)).collect();
            let s: f64 = t.iter().sum();
            let t: Vec<f64> = t.iter().map(|v| v / s).collect();
            Multinomial.ancestors(&t, key, ancestors)
        }
    }

    /// Copies index N (out of range) once in a while.
    #[derive(Debug)]
    struct OffByOne;
    impl IndexResampler for OffByOne {
        fn index_name(&self) -> &'static str {
            "off-by-one"
        }
        fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
            Multinomial.ancestors(w, key, ancestors);
            if key.rng(7).random::<f64>() < 0.01 {
                ancestors[0] = w.len();
            }
        }
    }

    #[test]
    fn biased_resamplers_fail() {
        let w = weights();
        let fixed = check_offspring_unbiased(&FixedSystematic, &w, 20_000, 11).unwrap();
        assert!(!fixed.passed(), "{fixed}");
        assert!(fixed.max_abs_z().is_infinite());
        let tempered = check_offspring_unbiased(&Tempered, &w, 20_000, 11).unwrap();
        assert!(!tempered.passed(), "{tempered}");
        // The biggest weight loses offspring, visibly.
        assert!(tempered.failures().contains(&12), "{tempered}");
        assert!(tempered.z[12] < -6.0);
        let text = tempered.to_string();
        assert!(
            text.contains("FAILED") && text.contains("<- FAIL"),
            "{text}"
        );
        let off = check_offspring_unbiased(&OffByOne, &w, 5_000, 11).unwrap();
        assert!(!off.passed() && off.out_of_range_draws > 0, "{off}");
    }

    #[test]
    fn zero_weight_copies_fail() {
        // Ignores the weights: copies 0, 1, …, N-1 (index 2 has weight 0).
        #[derive(Debug)]
        struct Identity;
        impl IndexResampler for Identity {
            fn index_name(&self) -> &'static str {
                "identity"
            }
            fn ancestors(&self, _w: &[f64], _key: StreamKey, ancestors: &mut [usize]) {
                for (i, a) in ancestors.iter_mut().enumerate() {
                    *a = i;
                }
            }
        }
        let r = check_offspring_unbiased(&Identity, &weights(), 100, 0).unwrap();
        assert_eq!(r.zero_weight_draws, 100);
        assert!(!r.passed(), "{r}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(check_offspring_unbiased(&Multinomial, &[], 10, 0).is_err());
        assert!(check_offspring_unbiased(&Multinomial, &[0.0, 0.0], 10, 0).is_err());
        assert!(check_offspring_unbiased(&Multinomial, &[0.5, -0.1], 10, 0).is_err());
        assert!(check_offspring_unbiased(&Multinomial, &[0.5, f64::NAN], 10, 0).is_err());
        assert!(check_offspring_unbiased(&Multinomial, &[0.5, 0.5], 1, 0).is_err());
        assert!(check_offspring_unbiased_with(&Multinomial, &[0.5, 0.5], 10, 0, 0.0).is_err());
        // Unnormalised weights are fine.
        let r = check_offspring_unbiased(&Systematic, &[1.0, 3.0], 100, 0).unwrap();
        assert_eq!(r.expected, vec![0.5, 1.5]);
    }
}
