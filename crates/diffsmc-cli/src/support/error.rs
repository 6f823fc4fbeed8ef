//! CLI errors: which flag, file or line is wrong, and what was expected.

use thiserror::Error;

/// An error the CLI reports and exits non-zero on.
#[derive(Debug, Error)]
pub enum CliError {
    /// A data file is malformed.
    #[error("{file}, line {line}: {message}")]
    Data {
        /// The file.
        file: String,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A flag has a bad value.
    #[error("--{flag}: {message}")]
    Flag {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// An output file exists and `--force` was not given.
    #[error("{path} exists; pass --force to overwrite it")]
    Exists {
        /// The path.
        path: String,
    },
    /// A filtering algorithm needs something the chosen model does not provide.
    #[error(
        "--algorithm {algorithm}: model `{model}` does not provide {needs}; use --algorithm bootstrap"
    )]
    Unsupported {
        /// The algorithm asked for.
        algorithm: &'static str,
        /// The model.
        model: String,
        /// What the algorithm needs.
        needs: &'static str,
    },
    /// The engine reported an error.
    #[error(transparent)]
    Engine(#[from] diffsmc::SmcError),
    /// The Gaussian-mixture problem reported an error.
    #[error(transparent)]
    Gm(#[from] diffsmc_gaussian_mixture::GmError),
    /// An optimiser was misconfigured.
    #[error(transparent)]
    Optim(#[from] diffsmc_optim::OptimError),
    /// Plotting failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output path.
        path: String,
        /// The plotting error.
        message: String,
    },
}

impl From<std::convert::Infallible> for CliError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl CliError {
    /// A bad flag value.
    pub fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        CliError::Flag {
            flag,
            message: message.into(),
        }
    }
}
