//! The paper's pipeline without a resampler: importance weights move the prior sample towards
//! the exact posterior, as measured by the crate's own metrics.

use diffsmc::rng::{Purpose, StreamKey};
use diffsmc_gaussian_mixture::{
    GmProblem, PAPER_COMPONENTS, PAPER_DIM, PAPER_DIRECTIONS, PAPER_PARTICLES, SlicedWasserstein,
    mean_sq_error, weights_from_log,
};

#[test]
fn weighting_moves_the_prior_sample_to_the_posterior() {
    let d = PAPER_DIM;
    let n = PAPER_PARTICLES;
    for seed in [1u64, 2, 3] {
        let problem = GmProblem::paper(d, PAPER_COMPONENTS, seed).unwrap();
        let is = problem
            .importance_sample(n, StreamKey::new(seed, 0, Purpose::Move))
            .unwrap();
        assert_eq!(is.len(), n);
        let ess = is.ess();
        assert!((1.0..=n as f64).contains(&ess));
        let w = weights_from_log(&is.log_weights).unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Re-normalising already normalised log-weights changes them by rounding only.
        let max_diff = w
            .iter()
            .zip(is.weights())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(max_diff < 1e-15);

        let exact = problem.posterior_draws(n, StreamKey::new(seed, 0, Purpose::Simulate));
        let exact2 = problem.posterior_draws(n, StreamKey::new(seed, 1, Purpose::Simulate));
        let mut sw = SlicedWasserstein::new(
            d,
            PAPER_DIRECTIONS / 4,
            StreamKey::new(seed, 0, Purpose::Other(0)),
        )
        .unwrap();
        let unweighted = sw.distance(&is.particles, None, &exact, None).unwrap();
        let weighted = sw.distance(&is.particles, Some(&w), &exact, None).unwrap();
        let exact_vs_exact = sw.distance(&exact2, None, &exact, None).unwrap();
        // Weighting must help, and an independent exact sample must be closer still than the
        // raw prior sample. (No tolerance: these are orderings with wide margins.)
        assert!(
            weighted < unweighted && exact_vs_exact < unweighted,
            "seed {seed}: weighted {weighted}, prior {unweighted}, exact {exact_vs_exact}"
        );

        let truth = problem.posterior_mean();
        let mse_w = mean_sq_error(&is.particles, Some(&w), d, truth.as_slice()).unwrap();
        let mse_prior = mean_sq_error(&is.particles, None, d, truth.as_slice()).unwrap();
        assert!(
            mse_w < mse_prior,
            "seed {seed}: weighted {mse_w} vs prior {mse_prior}"
        );
    }
}
