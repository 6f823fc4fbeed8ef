//! Resampler specifications: a value that names a resampler and its knobs, parses from and
//! prints to the CLI syntax (`systematic`, `diffusion:T=2,K=8,sde`, …) and builds the resampler
//! for any scalar type.
//!
//! Differentiable baselines:
//!
//! - `ot[:eps=E][,iters=I][,tol=T][,scale=mean|max|none][,anneal=RHO|none][,relax=W]` —
//!   [`OtResampler`]; defaults `eps=0.1,iters=1000,tol=0.001,scale=none,anneal=0.7,relax=1.5` (see
//!   [`OtConfig`]): ε absolute, on squared Euclidean distances, as in the paper and OTT-JAX.
//! - `gumbel[:tau=T]` — [`GumbelSoftmaxResampler`]; default `tau=0.1`.
//! - `soft[:alpha=A]` — [`SoftResampler`]; default `alpha=0.5`.

use std::fmt;
use std::str::FromStr;

use super::diffusion::DEFAULT_JITTER;
use super::{
    CostScale, DiffusionConfig, DiffusionResampler, Dynamics, GumbelSoftmaxResampler, Integrator,
    Killing, Multinomial, OtConfig, OtResampler, Reference, Resampler, Residual, SoftResampler,
    Ssp, StopGradient, Stratified, Systematic,
};
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
///
/// let spec: ResamplerSpec = "diffusion:T=2,K=8,integrator=jk,sde".parse().unwrap();
/// assert!(spec.is_differentiable());
/// assert_eq!(spec.to_string(), "diffusion:T=2,integrator=jentzen-kloeden,sde");
/// assert_eq!(spec.to_string().parse::<ResamplerSpec>().unwrap(), spec);
/// let ot: ResamplerSpec = "ot:eps=0.4,iters=50".parse().unwrap();
/// assert_eq!(ot.to_string(), "ot:eps=0.4,iters=50,tol=0.001,scale=none,anneal=0.7,relax=1.5");
/// assert!(ot.is_differentiable());
/// assert_eq!("gumbel:tau=0.1".parse::<ResamplerSpec>().unwrap(), ResamplerSpec::Gumbel { tau: 0.1 });
/// assert_eq!("soft:alpha=0.9".parse::<ResamplerSpec>().unwrap(), ResamplerSpec::Soft { alpha: 0.9 });
/// assert!("ot:epsilon=abc".parse::<ResamplerSpec>().is_err());
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
    /// [`DiffusionResampler`] with its knobs. Spec syntax: `diffusion` or
    /// `diffusion:a=-1,T=2,K=8,integrator=jentzen-kloeden,sde,cov=diag,jitter=1e-9`; also
    /// `grid=0;0.5;1` (an explicit time grid instead of `T`, `K`) and `mean=0;0,cov=1;0;0;1`
    /// (a fixed reference, row-major covariance). Integrators: `euler-maruyama` (`em`),
    /// `lord-rougemont` (`lr`), `jentzen-kloeden` (`jk`), `tweedie` (needs `sde`).
    Diffusion(DiffusionConfig),
    /// [`OtResampler`] with its knobs.
    Ot(OtConfig),
    /// [`GumbelSoftmaxResampler`] with temperature `tau` (validated by [`ResamplerSpec::build`]).
    Gumbel {
        /// Temperature `τ > 0`.
        tau: f64,
    },
    /// [`SoftResampler`] with mixing parameter `alpha` (validated by [`ResamplerSpec::build`]).
    Soft {
        /// Mixing parameter `α ∈ (0, 1]`.
        alpha: f64,
    },
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

    /// The error for an option this resampler does not have.
    pub fn unknown(&self, k: &str, expected: &str) -> SmcError {
        self.err(format!("unknown option `{k}` (expected: {expected})"))
    }

    /// Parses a numeric value of option `k`.
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
            ResamplerSpec::Diffusion(c) => Box::new(DiffusionResampler::new(c.clone())),
            ResamplerSpec::Ot(c) => Box::new(OtResampler::new(*c)),
            ResamplerSpec::Gumbel { tau } => Box::new(GumbelSoftmaxResampler::new(*tau)?),
            ResamplerSpec::Soft { alpha } => Box::new(SoftResampler::new(*alpha)?),
        })
    }

    /// Whether derivatives flow through the resampling (so the filter's log-likelihood is a
    /// smooth function of the parameters for a fixed seed): `true` for diffusion, OT and
    /// Gumbel-softmax, whose outputs are smooth functions of the particles and log-weights.
    ///
    /// `false` for the index resamplers, and also for stop-gradient and soft resampling: their
    /// ancestor indices are discrete, so for a fixed seed the log-likelihood jumps where an
    /// ancestor changes, even though their output log-weights carry derivatives of the input
    /// log-weights (which is what makes their gradient estimates informative).
    pub fn is_differentiable(&self) -> bool {
        matches!(
            self,
            ResamplerSpec::Diffusion(_) | ResamplerSpec::Ot(_) | ResamplerSpec::Gumbel { .. }
        )
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
        "diffusion",
        "ot",
        "gumbel",
        "soft",
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
            "diffusion" => parse_diffusion(&args).map(ResamplerSpec::Diffusion),
            "ot" => parse_ot(&args).map(ResamplerSpec::Ot),
            "gumbel" | "gumbel-softmax" => {
                let mut tau = GumbelSoftmaxResampler::DEFAULT_TAU;
                for &(k, v) in &args.items {
                    match k {
                        "tau" => tau = args.num(k, v)?,
                        _ => return Err(args.unknown(k, "tau")),
                    }
                }
                GumbelSoftmaxResampler::new(tau)?;
                Ok(ResamplerSpec::Gumbel { tau })
            }
            "soft" => {
                let mut alpha = SoftResampler::DEFAULT_ALPHA;
                for &(k, v) in &args.items {
                    match k {
                        "alpha" => alpha = args.num(k, v)?,
                        _ => return Err(args.unknown(k, "alpha")),
                    }
                }
                SoftResampler::new(alpha)?;
                Ok(ResamplerSpec::Soft { alpha })
            }
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
            ResamplerSpec::Diffusion(c) => fmt_diffusion(c, f),
            ResamplerSpec::Ot(c) => write!(f, "{c}"),
            ResamplerSpec::Gumbel { tau } => write!(f, "gumbel:tau={tau}"),
            ResamplerSpec::Soft { alpha } => write!(f, "soft:alpha={alpha}"),
        }
    }
}

/// A number as printed in specs: shortest round-trip form, exponent notation for very small or
/// large magnitudes.
fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e15) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn fmt_list(v: &[f64]) -> String {
    v.iter().map(|&x| fmt_num(x)).collect::<Vec<_>>().join(";")
}

/// Prints the non-default knobs of a diffusion config in canonical order.
fn fmt_diffusion(c: &DiffusionConfig, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let d = DiffusionConfig::default();
    let mut items = Vec::new();
    if c.rate() != d.rate() {
        items.push(format!("a={}", fmt_num(c.rate())));
    }
    match c.explicit_grid() {
        Some(g) => items.push(format!("grid={}", fmt_list(g))),
        None => {
            if c.horizon() != d.horizon() {
                items.push(format!("T={}", fmt_num(c.horizon())));
            }
            if c.steps() != d.steps() {
                items.push(format!("K={}", c.steps()));
            }
        }
    }
    if c.integrator() != d.integrator() {
        items.push(format!("integrator={}", c.integrator().name()));
    }
    if c.dynamics() == Dynamics::Sde {
        items.push("sde".to_string());
    }
    match c.reference() {
        Reference::Diagonal => items.push("cov=diag".to_string()),
        Reference::Fixed { mean, cov } => {
            items.push(format!("mean={}", fmt_list(mean)));
            items.push(format!("cov={}", fmt_list(cov)));
        }
        _ => {}
    }
    if c.jitter() != DEFAULT_JITTER {
        items.push(format!("jitter={}", fmt_num(c.jitter())));
    }
    if items.is_empty() {
        write!(f, "diffusion")
    } else {
        write!(f, "diffusion:{}", items.join(","))
    }
}

/// Parses the options of `diffusion:…` (see [`ResamplerSpec::Diffusion`]).
fn parse_diffusion(args: &SpecArgs<'_>) -> Result<DiffusionConfig> {
    let mut rate = None;
    let mut horizon = None;
    let mut steps = None;
    let mut grid = None;
    let mut integrator = None;
    let mut dynamics = None;
    let mut cov: Option<(&str, &str)> = None;
    let mut mean = None;
    let mut jitter = None;
    let mut seen: Vec<&str> = Vec::new();

    let list = |k: &str, v: Option<&str>| -> Result<Vec<f64>> {
        let v =
            v.ok_or_else(|| args.err(format!("option `{k}` needs a value, as in `{k}=0;1`")))?;
        v.split(';')
            .map(|x| {
                x.trim().parse::<f64>().map_err(|_| {
                    args.err(format!(
                        "option `{k}`: cannot parse `{x}` as a number (expected numbers separated by `;`)"
                    ))
                })
            })
            .collect()
    };

    for &(key, value) in &args.items {
        let canon = match key.to_ascii_lowercase().as_str() {
            "a" | "rate" => "a",
            "t" | "horizon" => "T",
            "k" | "steps" => "K",
            "grid" => "grid",
            "integrator" | "int" => "integrator",
            "sde" | "ode" => "sde/ode",
            "cov" => "cov",
            "mean" => "mean",
            "jitter" => "jitter",
            _ => {
                return Err(args.err(format!(
                    "unknown option `{key}`; expected a, T, K, grid, integrator, sde, ode, cov, \
                     mean or jitter"
                )));
            }
        };
        if seen.contains(&canon) {
            return Err(args.err(format!("option `{canon}` given twice")));
        }
        seen.push(canon);
        match canon {
            "a" => rate = Some(args.num::<f64>("a", value)?),
            "T" => horizon = Some(args.num::<f64>("T", value)?),
            "K" => {
                let v = value.ok_or_else(|| args.err("option `K` needs a value, as in `K=8`"))?;
                steps = Some(v.parse::<usize>().map_err(|_| {
                    args.err(format!(
                        "option `K`: cannot parse `{v}` as a number of steps (a positive integer)"
                    ))
                })?);
            }
            "grid" => grid = Some(list("grid", value)?),
            "integrator" => {
                let v = value.ok_or_else(|| {
                    args.err("option `integrator` needs a value, as in `integrator=jk`")
                })?;
                integrator = Some(Integrator::from_name(v).ok_or_else(|| {
                    args.err(format!(
                        "option `integrator`: unknown integrator `{v}`; expected euler-maruyama \
                         (em), lord-rougemont (lr), jentzen-kloeden (jk) or tweedie"
                    ))
                })?);
            }
            "sde/ode" => {
                if value.is_some() {
                    return Err(args.err(format!(
                        "option `{key}` is a bare flag (write `{key}`, not `{key}=…`)"
                    )));
                }
                dynamics = Some(if key.eq_ignore_ascii_case("sde") {
                    Dynamics::Sde
                } else {
                    Dynamics::Ode
                });
            }
            "cov" => {
                let v = value.ok_or_else(|| {
                    args.err("option `cov` needs a value: full, diag, or a `;`-separated matrix")
                })?;
                cov = Some(("cov", v));
            }
            "mean" => mean = Some(list("mean", value)?),
            _ => jitter = Some(args.num::<f64>("jitter", value)?),
        }
    }

    let at = |key: &str, e: SmcError| args.err(format!("option `{key}`: {e}"));
    let mut c = DiffusionConfig::new();
    if let Some(a) = rate {
        c = c.with_rate(a).map_err(|e| at("a", e))?;
    }
    if let Some(g) = grid {
        if horizon.is_some() || steps.is_some() {
            return Err(args.err("option `grid` sets T and K: give either `grid` or `T`/`K`"));
        }
        c = c.with_grid(g).map_err(|e| at("grid", e))?;
    }
    if let Some(t) = horizon {
        c = c.with_horizon(t).map_err(|e| at("T", e))?;
    }
    if let Some(k) = steps {
        c = c.with_steps(k).map_err(|e| at("K", e))?;
    }
    if let Some(dy) = dynamics {
        c = c.with_dynamics(dy).map_err(|e| at("sde/ode", e))?;
    }
    if let Some(i) = integrator {
        if i == Integrator::Tweedie && dynamics.is_none() {
            return Err(args.err(
                "option `integrator`: tweedie is SDE-only and the default is the ODE: add `sde`",
            ));
        }
        c = c.with_integrator(i).map_err(|e| at("integrator", e))?;
    }
    match (cov, mean) {
        (None, None) => {}
        (Some((_, v)), None) if v.eq_ignore_ascii_case("full") => {
            c = c
                .with_reference(Reference::Full)
                .map_err(|e| at("cov", e))?;
        }
        (Some((_, v)), None)
            if v.eq_ignore_ascii_case("diag") || v.eq_ignore_ascii_case("diagonal") =>
        {
            c = c
                .with_reference(Reference::Diagonal)
                .map_err(|e| at("cov", e))?;
        }
        (Some((_, v)), None) => {
            return Err(args.err(format!(
                "option `cov`: `{v}` is not full or diag; a covariance matrix needs `mean=…` too"
            )));
        }
        (None, Some(_)) => {
            return Err(args
                .err("option `mean` needs `cov=…` (a `;`-separated row-major covariance matrix)"));
        }
        (Some((k, v)), Some(m)) => {
            let cv = list(k, Some(v))?;
            c = c
                .with_fixed_reference(m, cv)
                .map_err(|e| at("mean/cov", e))?;
        }
    }
    if let Some(j) = jitter {
        c = c.with_jitter(j).map_err(|e| at("jitter", e))?;
    }
    Ok(c)
}
/// `ot[:eps=…][,iters=…][,tol=…][,scale=…][,anneal=…][,relax=…]`: parse errors name the option; out-of-range values
/// are [`SmcError::InvalidParameter`]s naming the knob.
fn parse_ot(args: &SpecArgs<'_>) -> Result<OtConfig> {
    let mut c = OtConfig::default();
    for &(k, v) in &args.items {
        match k {
            "eps" | "epsilon" => c = c.with_epsilon(args.num(k, v)?)?,
            "iters" | "max_iters" | "iterations" => c = c.with_max_iterations(args.num(k, v)?)?,
            "tol" | "tolerance" => c = c.with_tolerance(args.num(k, v)?)?,
            "scale" => {
                let v = v.ok_or_else(|| {
                    args.err("option `scale` needs a value: `scale=mean|max|none`")
                })?;
                let s: CostScale = v.parse().map_err(|_| {
                    args.err(format!(
                        "option `scale`: `{v}` is not one of `mean`, `max`, `none`"
                    ))
                })?;
                c = c.with_scale(s);
            }
            "anneal" => {
                let v = v.ok_or_else(|| {
                    args.err("option `anneal` needs a value: `anneal=RHO` (0 < RHO < 1) or `anneal=none`")
                })?;
                c = if v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") {
                    c.with_anneal(None)?
                } else {
                    c.with_anneal(Some(args.num(k, Some(v))?))?
                };
            }
            "relax" => c = c.with_relaxation(args.num(k, v)?)?,
            _ => return Err(args.unknown(k, "eps, iters, tol, scale, anneal, relax")),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ot_gumbel_soft_specs_round_trip_and_build() {
        for s in [
            "ot",
            "ot:eps=0.4",
            "ot:eps=0.8,iters=20,tol=1e-6,scale=max",
            "ot:scale=none",
            "ot:eps=0.3,scale=none,anneal=0.7",
            "ot:anneal=none",
            "ot:eps=0.3,anneal=none,relax=1",
            "gumbel",
            "gumbel:tau=0.1",
            "soft",
            "soft:alpha=0.9",
            "soft:alpha=1",
        ] {
            let spec: ResamplerSpec = s.parse().unwrap();
            let again: ResamplerSpec = spec.to_string().parse().unwrap();
            assert_eq!(spec, again, "{s}");
            assert_eq!(spec.build::<f64>().unwrap().name(), spec.to_string());
            spec.build::<num_dual::Dual64>().unwrap();
        }
        let ot: ResamplerSpec = "ot:eps=0.4,iters=7,tol=0.01".parse().unwrap();
        let ResamplerSpec::Ot(c) = ot else {
            panic!("not ot")
        };
        assert_eq!(
            (c.epsilon(), c.max_iterations(), c.tolerance()),
            (0.4, 7, 0.01)
        );
        assert_eq!(c.scale(), CostScale::None);
        assert!(ot.is_differentiable());
        assert!(ResamplerSpec::Gumbel { tau: 1.0 }.is_differentiable());
        assert!(!ResamplerSpec::Soft { alpha: 0.5 }.is_differentiable());
        assert!(!ResamplerSpec::Systematic.is_differentiable());
    }

    #[test]
    fn ot_gumbel_soft_bad_specs_are_typed_errors() {
        let bad_spec = |s: &str, key: &str| match s.parse::<ResamplerSpec>() {
            Err(SmcError::BadSpec { reason, .. }) => {
                assert!(reason.contains(key), "{s}: {reason}")
            }
            other => panic!("{s}: expected BadSpec, got {other:?}"),
        };
        bad_spec("ot:eps=abc", "eps");
        bad_spec("ot:eps", "eps");
        bad_spec("ot:iters=2.5", "iters");
        bad_spec("ot:tol=", "tol");
        bad_spec("ot:scale=median", "scale");
        assert!(matches!(
            "ot:anneal=1".parse::<ResamplerSpec>(),
            Err(SmcError::InvalidParameter { name: "anneal", .. })
        ));
        assert!(matches!(
            "ot:relax=2".parse::<ResamplerSpec>(),
            Err(SmcError::InvalidParameter { name: "relax", .. })
        ));
        bad_spec("ot:relax=x", "relax");
        bad_spec("ot:bogus=1", "bogus");
        bad_spec("gumbel:temperature=1", "temperature");
        bad_spec("gumbel:tau=x", "tau");
        bad_spec("soft:alpha=", "alpha");
        bad_spec("soft:a=0.5", "`a`");
        let invalid = |s: &str, key: &str| match s.parse::<ResamplerSpec>() {
            Err(SmcError::InvalidParameter { name, .. }) => assert_eq!(name, key, "{s}"),
            other => panic!("{s}: expected InvalidParameter, got {other:?}"),
        };
        invalid("ot:eps=0", "eps");
        invalid("ot:eps=-1", "eps");
        invalid("ot:iters=0", "iters");
        invalid("ot:tol=0", "tol");
        invalid("gumbel:tau=0", "tau");
        invalid("gumbel:tau=-0.5", "tau");
        invalid("soft:alpha=0", "alpha");
        invalid("soft:alpha=1.5", "alpha");
        // Directly built variants are validated by `build`.
        assert!(ResamplerSpec::Gumbel { tau: -1.0 }.build::<f64>().is_err());
        assert!(ResamplerSpec::Soft { alpha: 2.0 }.build::<f64>().is_err());
    }
}
