//! The models `filter` and `fit` run, chosen by `--model`: the typed [`CliModel`] parsed
//! once from the flag; the SDE models implement [`sde::SdeModel`] (their family for the data,
//! parameters and exact references), over which the commands are generic.

pub mod sde;

use std::fmt;
use std::str::FromStr;

use crate::support::error::CliError;

/// A `--model` of `filter` and `fit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliModel {
    /// The paper's linear Gaussian state-space model, θ = (θ1, θ2).
    Lgssm,
    /// A discretely observed SDE.
    Sde(sde::Model),
}

impl CliModel {
    /// The name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CliModel::Lgssm => "lgssm",
            CliModel::Sde(m) => m.name(),
        }
    }
}

impl FromStr for CliModel {
    type Err = CliError;

    /// Parses a `--model` value; an unknown name is a flag error listing the known ones.
    fn from_str(s: &str) -> Result<Self, CliError> {
        match s {
            "lgssm" => Ok(CliModel::Lgssm),
            "ou" => Ok(CliModel::Sde(sde::Model::Ou)),
            "double-well" => Ok(CliModel::Sde(sde::Model::DoubleWell)),
            _ => Err(CliError::flag(
                "model",
                format!("unknown model `{s}`; expected `lgssm`, `ou` or `double-well`"),
            )),
        }
    }
}

impl fmt::Display for CliModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
