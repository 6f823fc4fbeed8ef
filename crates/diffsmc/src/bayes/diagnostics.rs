//! Convergence and efficiency diagnostics of MCMC output (Vehtari, Gelman, Simpson, Carpenter
//! & Bürkner 2021, "Rank-normalization, folding, and localization"): split R-hat, bulk
//! effective sample size on rank-normalised split chains, the mean's effective sample size
//! and its Monte Carlo standard error.
//!
//! ```
//! use diffsmc::bayes::diagnostics::{ess_bulk, split_rhat};
//! // Two chains of an AR(1) with φ = 0.5: integrated autocorrelation time (1 + φ)/(1 − φ) = 3.
//! let mut chains = vec![Vec::new(), Vec::new()];
//! for (c, ch) in chains.iter_mut().enumerate() {
//!     let mut x = 0.0;
//!     let mut s = 12345u64 + c as u64;
//!     for _ in 0..4000 {
//!         s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
//!         let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64 - 0.5; // uniform, variance 1/12
//!         x = 0.5 * x + u;
//!         ch.push(x);
//!     }
//! }
//! let ess = ess_bulk(&chains);
//! assert!(ess > 2000.0 && ess < 3500.0, "{ess}"); // ≈ 8000 / 3
//! assert!((split_rhat(&chains) - 1.0).abs() < 0.02);
//! ```

/// Per-parameter summary of a posterior sample.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ParamSummary {
    /// Mean over all chains.
    pub mean: f64,
    /// Standard deviation over all chains.
    pub sd: f64,
    /// Rank-normalised split R-hat (1 at convergence; above 1.01 is suspicious).
    pub rhat: f64,
    /// Bulk effective sample size (rank-normalised split chains).
    pub ess_bulk: f64,
    /// Effective sample size of the mean (split chains, not rank-normalised).
    pub ess_mean: f64,
    /// Monte Carlo standard error of the mean: `sd / sqrt(ess_mean)`.
    pub mcse: f64,
}

/// Everything of [`ParamSummary`] for one parameter's chains (equal lengths expected; the
/// shortest length is used).
pub fn summarise(chains: &[Vec<f64>]) -> ParamSummary {
    let all: Vec<f64> = chains.iter().flatten().copied().collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let sd = if all.len() > 1 {
        (all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    let ess_mean = ess_mean(chains);
    ParamSummary {
        mean,
        sd,
        rhat: split_rhat(chains),
        ess_bulk: ess_bulk(chains),
        ess_mean,
        mcse: sd / ess_mean.sqrt(),
    }
}

/// Each chain cut in two halves (the middle draw of an odd length dropped), all of the same
/// length (that of the shortest chain).
fn split(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = chains.iter().map(|c| c.len()).min().unwrap_or(0);
    let h = n / 2;
    let mut out = Vec::with_capacity(2 * chains.len());
    for c in chains {
        out.push(c[..h].to_vec());
        out.push(c[n - h..n].to_vec());
    }
    out
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, var)
}

/// The classic R-hat `sqrt(((n−1)/n W + B/n) / W)` of equal-length chains.
fn rhat_basic(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len();
    let n = chains.first().map_or(0, |c| c.len());
    if m < 2 || n < 2 {
        return f64::NAN;
    }
    let stats: Vec<(f64, f64)> = chains.iter().map(|c| mean_var(c)).collect();
    let w = stats.iter().map(|s| s.1).sum::<f64>() / m as f64;
    let grand = stats.iter().map(|s| s.0).sum::<f64>() / m as f64;
    let b = n as f64 * stats.iter().map(|s| (s.0 - grand).powi(2)).sum::<f64>() / (m - 1) as f64;
    if w == 0.0 {
        return if b == 0.0 { 1.0 } else { f64::INFINITY };
    }
    (((n as f64 - 1.0) / n as f64 * w + b / n as f64) / w).sqrt()
}

/// The normal quantile function Φ⁻¹(p) (Acklam's rational approximation: relative error
/// below 1.2e-9, far below what rank normalisation needs).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Rank-normalisation over all chains together: `Φ⁻¹((r − 3/8)/(S + 1/4))` with average
/// ranks for ties.
fn rank_normalise(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut idx: Vec<(usize, usize)> = chains
        .iter()
        .enumerate()
        .flat_map(|(c, ch)| (0..ch.len()).map(move |i| (c, i)))
        .collect();
    idx.sort_by(|a, b| chains[a.0][a.1].total_cmp(&chains[b.0][b.1]));
    let s = idx.len() as f64;
    let mut out: Vec<Vec<f64>> = chains.iter().map(|c| vec![0.0; c.len()]).collect();
    let mut k = 0;
    while k < idx.len() {
        let v = chains[idx[k].0][idx[k].1];
        let mut e = k + 1;
        while e < idx.len() && chains[idx[e].0][idx[e].1] == v {
            e += 1;
        }
        let rank = (k + 1 + e) as f64 / 2.0; // average of ranks k+1 ..= e
        let z = normal_quantile((rank - 0.375) / (s + 0.25));
        for &(c, i) in &idx[k..e] {
            out[c][i] = z;
        }
        k = e;
    }
    out
}

/// Effective sample size of equal-length chains (Geyer's initial monotone sequence on the
/// multi-chain autocorrelation estimate of Stan), capped at `M N log10(M N)`.
fn ess_raw(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len();
    let n = chains.first().map_or(0, |c| c.len());
    if m == 0 || n < 4 {
        return f64::NAN;
    }
    let means: Vec<f64> = chains
        .iter()
        .map(|c| c.iter().sum::<f64>() / n as f64)
        .collect();
    let acov = |lag: usize| -> f64 {
        chains
            .iter()
            .zip(&means)
            .map(|(c, &mu)| {
                (0..n - lag)
                    .map(|i| (c[i] - mu) * (c[i + lag] - mu))
                    .sum::<f64>()
                    / n as f64
            })
            .sum::<f64>()
            / m as f64
    };
    let nf = n as f64;
    let acov0 = acov(0);
    let mean_var = acov0 * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if m > 1 {
        let g = means.iter().sum::<f64>() / m as f64;
        var_plus += means.iter().map(|x| (x - g).powi(2)).sum::<f64>() / (m - 1) as f64;
    }
    if var_plus.is_nan() || var_plus <= 0.0 {
        return f64::NAN;
    }
    let rho = |a: f64| 1.0 - (mean_var - a) / var_plus;
    // Pairs Γ_k = ρ_{2k} + ρ_{2k+1}, kept while positive, made monotone.
    let mut tau = 0.0;
    let mut prev_pair = f64::INFINITY;
    let mut t = 0;
    while t + 1 < n {
        let r0 = if t == 0 { 1.0 } else { rho(acov(t)) };
        let r1 = rho(acov(t + 1));
        let mut pair = r0 + r1;
        if pair < 0.0 {
            break;
        }
        if pair > prev_pair {
            pair = prev_pair;
        }
        prev_pair = pair;
        tau += pair;
        t += 2;
    }
    let tau = (-1.0 + 2.0 * tau).max(1.0 / (m as f64 * nf).log10());
    m as f64 * nf / tau
}

/// Bulk effective sample size: [`ess_raw`] of the rank-normalised split chains.
pub fn ess_bulk(chains: &[Vec<f64>]) -> f64 {
    let s = split(chains);
    ess_raw(&rank_normalise(&s))
}

/// Effective sample size of the mean (split chains, no rank normalisation): what the Monte
/// Carlo standard error of the mean uses.
pub fn ess_mean(chains: &[Vec<f64>]) -> f64 {
    ess_raw(&split(chains))
}

/// Rank-normalised split R-hat: the larger of the R-hats of the rank-normalised split chains
/// and of their folded version (`|x − median|`), as in Vehtari et al. (2021).
pub fn split_rhat(chains: &[Vec<f64>]) -> f64 {
    let s = split(chains);
    let bulk = rhat_basic(&rank_normalise(&s));
    let mut all: Vec<f64> = s.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let med = if all.is_empty() {
        0.0
    } else if all.len() % 2 == 1 {
        all[all.len() / 2]
    } else {
        0.5 * (all[all.len() / 2 - 1] + all[all.len() / 2])
    };
    let folded: Vec<Vec<f64>> = s
        .iter()
        .map(|c| c.iter().map(|x| (x - med).abs()).collect())
        .collect();
    let tail = rhat_basic(&rank_normalise(&folded));
    bulk.max(tail)
}

/// Monte Carlo standard error of the mean: `sd / sqrt(ess_mean)`.
pub fn mcse_mean(chains: &[Vec<f64>]) -> f64 {
    summarise(chains).mcse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey, standard_normal};

    fn ar1(phi: f64, chains: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
        (0..chains)
            .map(|c| {
                let mut rng = StreamKey::new(seed, c, Purpose::Other(9)).rng(0);
                let mut x = standard_normal(&mut rng) / (1.0 - phi * phi).sqrt();
                (0..n)
                    .map(|_| {
                        x = phi * x + standard_normal(&mut rng);
                        x
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quantile_matches_statrs() {
        use statrs::distribution::{ContinuousCDF, Normal};
        let n = Normal::new(0.0, 1.0).unwrap();
        for p in [1e-10, 1e-4, 0.01, 0.0242, 0.1, 0.5, 0.77, 0.975, 0.999_99] {
            let a = normal_quantile(p);
            let b = n.inverse_cdf(p);
            assert!((a - b).abs() < 2e-9 * b.abs().max(1.0), "{p}: {a} vs {b}");
        }
    }

    /// iid N(0, 1): ESS ≈ M N. The estimate's relative sd for iid draws is about
    /// sqrt(2 (2K + 1) / (M N)) with a window K of a few lags (Sokal): ~2.5% at M N = 20 000;
    /// 12% covers ~4 sd plus the small positive bias of Geyer's truncation. R-hat of iid
    /// chains exceeds 1 by O(1/N): within 0.01.
    #[test]
    fn iid_normal_draws() {
        let chains = ar1(0.0, 4, 5000, 1);
        let ess = ess_bulk(&chains);
        assert!((ess / 20_000.0 - 1.0).abs() < 0.12, "ess {ess}");
        let em = ess_mean(&chains);
        assert!((em / 20_000.0 - 1.0).abs() < 0.12, "ess mean {em}");
        let r = split_rhat(&chains);
        assert!((r - 1.0).abs() < 0.01, "rhat {r}");
        let s = summarise(&chains);
        assert!((s.sd - 1.0).abs() < 0.03);
        assert!((s.mcse - 1.0 / 20_000f64.sqrt()).abs() < 0.1 / 20_000f64.sqrt() * 2.0);
    }

    /// AR(1) with φ = 0.8: integrated autocorrelation time τ = (1 + φ)/(1 − φ) = 9, so
    /// ESS ≈ M N / 9 = 11 111 for 4 × 25 000 draws. Relative sd of the τ estimate
    /// ≈ sqrt(2 (2K + 1)/(M N)) with K ≈ 5τ = 45: ~4.3%; tolerance 15% (3.5 sd).
    #[test]
    fn ar1_chain_with_known_autocorrelation_time() {
        let chains = ar1(0.8, 4, 25_000, 2);
        let expected = 100_000.0 / 9.0;
        let em = ess_mean(&chains);
        assert!(
            (em / expected - 1.0).abs() < 0.15,
            "ess mean {em} vs {expected}"
        );
        let eb = ess_bulk(&chains);
        assert!(
            (eb / expected - 1.0).abs() < 0.15,
            "ess bulk {eb} vs {expected}"
        );
        // The MCSE is the sd of the mean: sqrt(τ / (M N)) · σ with σ² = 1/(1 − φ²).
        let s = summarise(&chains);
        let exact = (9.0_f64 / 100_000.0 / (1.0 - 0.64)).sqrt();
        assert!((s.mcse / exact - 1.0).abs() < 0.1, "{} vs {exact}", s.mcse);
    }

    /// Chains stuck at different places: R-hat far above 1.
    #[test]
    fn rhat_flags_disagreeing_chains() {
        let mut chains = ar1(0.0, 4, 1000, 3);
        for x in chains[0].iter_mut() {
            *x += 3.0;
        }
        assert!(split_rhat(&chains) > 1.3);
        // A trend inside one chain is caught by splitting.
        let trend: Vec<Vec<f64>> = vec![(0..2000).map(|i| i as f64 / 100.0).collect()];
        assert!(split_rhat(&trend) > 1.5);
    }
}
