//! Typed errors of the Gaussian-mixture crate.

use thiserror::Error;

/// Everything that can go wrong when building a mixture, a problem or a metric, with enough
/// context to act on it.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum GmError {
    /// A knob is out of its valid range (a dimension or a count of zero, a negative size, ...).
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
    /// A matrix that must be symmetric positive definite is not (its Cholesky factorisation
    /// failed).
    #[error("matrix `{what}`{} is not positive definite", index_suffix(*.index))]
    NotPositiveDefinite {
        /// Which matrix.
        what: &'static str,
        /// The mixture component it belongs to, if any.
        index: Option<usize>,
    },
    /// A matrix that must be symmetric is not, beyond rounding.
    #[error("matrix `{what}`{} is not symmetric", index_suffix(*.index))]
    NotSymmetric {
        /// Which matrix.
        what: &'static str,
        /// The mixture component it belongs to, if any.
        index: Option<usize>,
    },
    /// A NaN or infinite value where only finite values are allowed.
    #[error("non-finite value {value} in {what} at position {index}")]
    NonFinite {
        /// What quantity (e.g. "sample").
        what: &'static str,
        /// The flat position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// Weights that cannot be normalised: negative, NaN or infinite entries, or a zero total.
    #[error("invalid weights in {what}: {reason}")]
    InvalidWeights {
        /// Which weights.
        what: &'static str,
        /// What is wrong with them.
        reason: &'static str,
    },
}

fn index_suffix(index: Option<usize>) -> String {
    match index {
        Some(i) => format!(" (component {i})"),
        None => String::new(),
    }
}

/// Result alias of this crate.
pub type Result<T, E = GmError> = std::result::Result<T, E>;

impl GmError {
    /// Shorthand for [`GmError::InvalidParameter`].
    pub fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        GmError::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit() {
        let e = GmError::NotPositiveDefinite {
            what: "covariance",
            index: Some(3),
        };
        assert_eq!(
            e.to_string(),
            "matrix `covariance` (component 3) is not positive definite"
        );
        let e = GmError::NotSymmetric {
            what: "Xi",
            index: None,
        };
        assert_eq!(e.to_string(), "matrix `Xi` is not symmetric");
        let e = GmError::invalid("d", 0, "at least 1");
        assert_eq!(e.to_string(), "invalid value 0 for `d`: at least 1");
    }
}
