//! Resampler specifications: a value that names a resampler and its knobs, parses from and
//! prints to the CLI syntax (`systematic`, `diffusion:T=2,K=8,sde`, …) and builds the resampler
//! for any scalar type.

use std::fmt;
use std::str::FromStr;

use super::{Killing, Multinomial, Resampler, Residual, Ssp, StopGradient, Stratified, Systematic};
use crate::error::{Result, SmcError};
use crate::scalar::Scalar;

/// A resampler by name and knobs, buildable for every scalar type.
///
/// ```
/// use diffsmc::resample::ResamplerSpec;
/// let spec: ResamplerSpec = "systematic".parse().unwrap();
/// assert_eq!(spec, ResamplerSpec::Systematic);
/// assert_eq!(spec.to_string(), "systematic");
/// let r = spec.build::<f64>().unwrap();
/// assert_eq!(r.name(), "systematic");
/// assert!("nonsense".parse::<ResamplerSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResamplerSpec {
    /// [`Multinomial`].
    Multinomial,
    /// [`Systematic`].
    Systematic,
    /// [`Stratified`].
    Stratified,
    /// [`Residual`].
    Residual,
    /// [`Ssp`].
    Ssp,
    /// [`Killing`].
    Killing,
    /// [`StopGradient`].
    StopGradient,
}

/// The `key=value` and bare-flag options after the `:` of a spec.
#[derive(Debug)]
pub(crate) struct SpecArgs<'a> {
    pub spec: &'a str,
    pub items: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> SpecArgs<'a> {
    fn parse(spec: &'a str, rest: Option<&'a str>) -> Self {
        let items = rest
            .map(|r| {
                r.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.trim(), Some(v.trim())),
                        None => (kv, None),
                    })
                    .collect()
            })
            .unwrap_or_default();
        SpecArgs { spec, items }
    }

    pub fn err(&self, reason: impl Into<String>) -> SmcError {
        SmcError::BadSpec {
            spec: self.spec.to_string(),
            reason: reason.into(),
        }
    }

    /// Fails if any option is present (for resamplers without knobs).
    fn none(&self) -> Result<()> {
        match self.items.first() {
            None => Ok(()),
            Some((k, _)) => Err(self.err(format!(
                "unknown option `{k}` (this resampler has no options)"
            ))),
        }
    }

    /// Parses a numeric value of option `k`.
    #[allow(dead_code)]
    pub fn num<T: FromStr>(&self, k: &str, v: Option<&str>) -> Result<T> {
        let v = v.ok_or_else(|| self.err(format!("option `{k}` needs a value, as in `{k}=…`")))?;
        v.parse()
            .map_err(|_| self.err(format!("option `{k}`: cannot parse `{v}` as a number")))
    }
}

impl ResamplerSpec {
    /// Builds the resampler for scalar type `S`.
    pub fn build<S: Scalar>(&self) -> Result<Box<dyn Resampler<S>>> {
        Ok(match self {
            ResamplerSpec::Multinomial => Box::new(Multinomial),
            ResamplerSpec::Systematic => Box::new(Systematic),
            ResamplerSpec::Stratified => Box::new(Stratified),
            ResamplerSpec::Residual => Box::new(Residual),
            ResamplerSpec::Ssp => Box::new(Ssp),
            ResamplerSpec::Killing => Box::new(Killing),
            ResamplerSpec::StopGradient => Box::new(StopGradient),
        })
    }

    /// Whether derivatives flow through the resampling (so the filter's log-likelihood is a
    /// smooth function of the parameters for a fixed seed).
    pub fn is_differentiable(&self) -> bool {
        false
    }

    /// The names accepted by [`FromStr`], for help texts.
    pub const NAMES: &'static [&'static str] = &[
        "multinomial",
        "systematic",
        "stratified",
        "residual",
        "ssp",
        "killing",
        "stop-gradient",
    ];
}

impl FromStr for ResamplerSpec {
    type Err = SmcError;

    fn from_str(s: &str) -> Result<Self> {
        let s_trim = s.trim();
        let (name, rest) = match s_trim.split_once(':') {
            Some((n, r)) => (n.trim(), Some(r)),
            None => (s_trim, None),
        };
        let args = SpecArgs::parse(s_trim, rest);
        let simple = |v: ResamplerSpec| args.none().map(|_| v);
        match name.to_ascii_lowercase().as_str() {
            "multinomial" => simple(ResamplerSpec::Multinomial),
            "systematic" => simple(ResamplerSpec::Systematic),
            "stratified" => simple(ResamplerSpec::Stratified),
            "residual" => simple(ResamplerSpec::Residual),
            "ssp" => simple(ResamplerSpec::Ssp),
            "killing" => simple(ResamplerSpec::Killing),
            "stop-gradient" | "stopgrad" | "stop_gradient" => simple(ResamplerSpec::StopGradient),
            other => Err(args.err(format!(
                "unknown resampler `{other}`; expected one of: {}",
                ResamplerSpec::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for ResamplerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResamplerSpec::Multinomial => write!(f, "multinomial"),
            ResamplerSpec::Systematic => write!(f, "systematic"),
            ResamplerSpec::Stratified => write!(f, "stratified"),
            ResamplerSpec::Residual => write!(f, "residual"),
            ResamplerSpec::Ssp => write!(f, "ssp"),
            ResamplerSpec::Killing => write!(f, "killing"),
            ResamplerSpec::StopGradient => write!(f, "stop-gradient"),
        }
    }
}
