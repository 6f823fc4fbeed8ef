//! Typed errors of the engine.

use thiserror::Error;

/// Everything that can go wrong in the engine, with enough context to act on it.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SmcError {
    /// A knob is out of its valid range.
    #[error("invalid value {value} for `{name}`: {expected}")]
    InvalidParameter {
        /// Which knob.
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// Two things that must agree in size do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was being compared.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size found.
        got: usize,
    },
    /// All weights are `-inf` or NaN after weighting at a step: the filter cannot continue.
    #[error("all particle weights are zero or NaN at step {step}")]
    DegenerateWeights {
        /// The time step at which the weights degenerated.
        step: usize,
    },
    /// A non-finite value where the model does not allow one (observations: ±inf; NaN means
    /// missing and is allowed).
    #[error("non-finite {what} at step {step}, component {component}: {value}")]
    NonFinite {
        /// What quantity (e.g. "observation").
        what: &'static str,
        /// The time step.
        step: usize,
        /// The component index.
        component: usize,
        /// The offending value.
        value: f64,
    },
    /// A matrix that must be symmetric positive definite is not.
    #[error("matrix `{what}` is not positive definite")]
    NotPositiveDefinite {
        /// Which matrix.
        what: &'static str,
    },
    /// The model does not provide something an algorithm needs (e.g. a transition density for
    /// smoothing or particle Gibbs).
    #[error("{needed_by} needs the model's {what}, which this model does not provide")]
    Unsupported {
        /// What is missing, e.g. `"transition density"`.
        what: &'static str,
        /// The method that needs it, e.g. `"FFBS smoothing"`.
        needed_by: &'static str,
    },
    /// The model's weights are only valid when every resampled particle is a copy of a
    /// weighted particle (see [`crate::FeynmanKac::requires_index_resampling`]), and the
    /// resampler moves particles to new points (diffusion, OT, Gumbel-softmax).
    #[error(
        "resampler `{resampler}` moves particles to new points, but this model needs an index \
         resampler (multinomial, systematic, stratified, residual, ssp, killing, stop-gradient, soft): \
         {reason}"
    )]
    IncompatibleResampler {
        /// The resampler's name.
        resampler: String,
        /// Why the model needs index resampling.
        reason: &'static str,
    },
    /// A resampler specification string could not be parsed.
    #[error("cannot parse resampler spec `{spec}`: {reason}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias for the engine.
pub type Result<T, E = SmcError> = std::result::Result<T, E>;

impl SmcError {
    /// Shorthand for [`SmcError::InvalidParameter`].
    pub fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        SmcError::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        }
    }
}
