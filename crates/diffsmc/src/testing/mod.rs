//! A testing kit for your own models and resamplers (cargo feature `testing`).
//!
//! ```toml
//! [dev-dependencies]
//! diffsmc = { version = "…", features = ["testing"] }
//! ```
//!
//! - [`strategies`]: `proptest` strategies for log-weight vectors (normalised or not,
//!   including the degenerate ones) and particle clouds (repeated particles, tiny and huge
//!   scales), to throw at a resampler or any function of weighted particles.
//! - Checkers, each returning a report with `passed()`, the numbers, and a `Display` that says
//!   what failed and by how much:
//!   - [`check_gradient`]: dual-number gradient against central finite differences of the
//!     same seeded estimator, per parameter ([`GradientReport`]);
//!   - [`check_offspring_unbiased`]: mean offspring counts of an index resampler against
//!     `N w_i`, with CLT z-scores ([`OffspringReport`]);
//!   - [`check_resampler_consistency`]: a resampler's output on a known Gaussian target
//!     against multinomial resampling and the exact target ([`ConsistencyReport`]);
//!   - `check_thread_determinism` (feature `rayon`, on by default): bit-identical filter
//!     output in 1- and 2-thread pools (`DeterminismReport`);
//!   - [`check_finite_potentials`]: every non-finite log-potential or state, by step and
//!     particle ([`PotentialsReport`]).
//! - [`models`]: small models with exact answers (an AR(1) state-space model and its
//!   `θ = (φ, c)` family), shared by the crate's own tests and the workspace's test crate.
//!
//! In a test, assert with the report as the message, or call
//! [`CheckReport::assert_passed`]:
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc::testing::{CheckReport, check_offspring_unbiased};
//!
//! let report = check_offspring_unbiased(&Stratified, &[0.1, 0.2, 0.3, 0.4], 2000, 5)?;
//! assert!(report.passed(), "{report}");
//! report.assert_passed(); // the same, panicking with the report
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod consistency;
#[cfg(feature = "rayon")]
mod determinism;
mod gradient;
pub mod models;
mod offspring;
mod potentials;
mod stats;
pub mod strategies;

pub use consistency::{
    ConsistencyOptions, ConsistencyReport, CoordinateSummary, MomentSummary,
    check_resampler_consistency,
};
#[cfg(feature = "rayon")]
pub use determinism::{
    DeterminismReport, Mismatch, check_thread_determinism, check_thread_determinism_with,
};
pub use gradient::{FdScheme, GradientReport, GradientTolerance, check_gradient};
pub use offspring::{
    DEFAULT_Z_MAX, OffspringReport, check_offspring_unbiased, check_offspring_unbiased_with,
};
pub use potentials::{
    MAX_LISTED, PotentialProblem, PotentialsReport, Site, StepProblems, check_finite_potentials,
};

/// What every report of the kit offers: a verdict and a readable account (its `Display`).
pub trait CheckReport: std::fmt::Display {
    /// Whether the check passed.
    fn passed(&self) -> bool;

    /// Panics with the report when the check failed.
    #[track_caller]
    fn assert_passed(&self) {
        if !self.passed() {
            panic!("{self}");
        }
    }
}
