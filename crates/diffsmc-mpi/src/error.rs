//! The crate's error type.

use diffsmc::SmcError;

/// What can go wrong in a distributed run. Every rank of a run returns the same error: errors
/// are detected from values all ranks hold (the gathered log-weights, the configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// An error of the engine (degenerate weights naming the step, invalid knobs, …).
    #[error(transparent)]
    Smc(#[from] SmcError),
    /// The distributed filter copies particles by index; this resampler does not.
    #[error(
        "resampler `{spec}` is not supported by the distributed filter: it needs an index \
         resampler (multinomial, systematic, stratified, residual, ssp or killing)"
    )]
    UnsupportedResampler {
        /// The spec as given.
        spec: String,
    },
    /// A knob is out of its valid range.
    #[error("invalid value {value} for `{name}`: {expected}")]
    Invalid {
        /// Which knob.
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A message would exceed what the transport can send in one call.
    #[error("{what} needs {count} values in one message; the MPI transport allows at most {max}")]
    TooLarge {
        /// Which message.
        what: &'static str,
        /// Values needed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A run's result could not be encoded or decoded for gathering.
    #[error("cannot gather the results of rank {rank}: {message}")]
    Gather {
        /// The rank whose results failed.
        rank: usize,
        /// What went wrong.
        message: String,
    },
}

impl DistError {
    /// An [`DistError::Invalid`] for knob `name`.
    pub fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        DistError::Invalid {
            name,
            value: value.to_string(),
            expected,
        }
    }
}

/// `Result` with [`DistError`].
pub type Result<T> = std::result::Result<T, DistError>;
