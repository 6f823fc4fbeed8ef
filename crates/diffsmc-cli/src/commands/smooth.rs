//! `diffsmc smooth`: particle smoothing of the linear Gaussian model (FFBS, backward
//! simulation, fixed-lag, PaRIS with the Fisher-identity score), against RTS and Kalman.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use diffsmc::grad::{GradOptions, KalmanNll, gradient};
use diffsmc::smooth::{
    AdditiveFunctional, BackwardConfig, BackwardMethod, ParisConfig, backward_simulation, ffbs,
    fisher_score, fixed_lag, paris,
};
use diffsmc::{Bootstrap, ResamplerSpec, Smc, SmcConfig, SmcOutput, Trigger};
use diffsmc_lgssm::{Lgssm, PaperParams};
use serde::Serialize;

use crate::support::data::read_csv;
use crate::support::error::CliError;
use crate::support::output::{check_writable, write_json};
use crate::support::plot::{Band, Chart, Series, Style};

/// A smoothing method, as given to `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Forward-filtering backward-smoothing of the marginals, O(N²) per step.
    Ffbs,
    /// Backward simulation of M trajectories.
    Backward(usize),
    /// Fixed-lag smoothing with lag L (index resamplers only).
    FixedLag(usize),
    /// PaRIS: smoothed moments as additive functionals and the Fisher-identity score.
    Paris,
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let count = |v: &str, what: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("`{s}`: {what} must be a non-negative integer"))
        };
        match s.trim() {
            "ffbs" => Ok(Method::Ffbs),
            "paris" => Ok(Method::Paris),
            t => {
                if let Some(m) = t.strip_prefix("backward:") {
                    Ok(Method::Backward(count(m, "M")?))
                } else if let Some(l) = t.strip_prefix("fixed-lag:") {
                    Ok(Method::FixedLag(count(l, "L")?))
                } else {
                    Err(format!(
                        "unknown method `{s}`; expected ffbs, backward:M, fixed-lag:L or paris"
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Ffbs => write!(f, "ffbs"),
            Method::Backward(m) => write!(f, "backward:{m}"),
            Method::FixedLag(l) => write!(f, "fixed-lag:{l}"),
            Method::Paris => write!(f, "paris"),
        }
    }
}

/// Arguments of `diffsmc smooth`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc smooth --model lgssm --theta 0.5,1.0 --data ys.csv --particles 512 \\\n      --method ffbs --kalman --seed 1 --json smooth.json --plot smooth.svg"
)]
pub struct Args {
    /// Model: `lgssm` (the paper's linear Gaussian SSM in the data's dimension).
    #[arg(long, default_value = "lgssm")]
    pub model: String,
    /// Parameters θ1,θ2, comma-separated, given once.
    #[arg(long, default_value = "0.5,1.0", allow_hyphen_values = true)]
    pub theta: crate::support::args::Theta,
    /// Observations: CSV, one row per time step, one column per dimension, optional header;
    /// an empty or NaN cell is a missing value.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of particles.
    #[arg(long, default_value_t = 512)]
    pub particles: usize,
    /// Smoother: `ffbs`, `backward:M` (M trajectories), `fixed-lag:L` or `paris` (also
    /// estimates the score ∇θ log p(y) by Fisher's identity).
    #[arg(long, default_value = "ffbs")]
    pub method: Method,
    /// Backward simulation and PaRIS: draw backward indices by rejection with at most this
    /// many proposals before the exact fallback (default: exact draws for backward:M,
    /// rejection with 32 tries for paris).
    #[arg(long)]
    pub rejection_tries: Option<usize>,
    /// PaRIS: backward draws per particle Ñ.
    #[arg(long, default_value_t = 2)]
    pub backward_draws: usize,
    /// Resampler spec of the filter (systematic, …, diffusion:…, ot:…); fixed-lag needs an
    /// index resampler.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// When to resample: `always`, `never` or `ess:FRAC`.
    #[arg(long, default_value = "always")]
    pub trigger: Trigger,
    /// Seed of the filter and of the backward draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also run the exact RTS smoother (and, with paris, the exact Kalman score).
    #[arg(long)]
    pub kalman: bool,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Plot the smoothed mean ± 2 sd (dimension 0), against RTS with --kalman, as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The JSON report of `diffsmc smooth`.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    theta: Vec<f64>,
    data: String,
    particles: usize,
    method: String,
    resampler: String,
    trigger: String,
    seed: u64,
    steps: usize,
    log_likelihood: Option<f64>,
    filter_means: Vec<Vec<f64>>,
    filter_variances: Vec<Vec<f64>>,
    smoothed_means: Vec<Vec<f64>>,
    smoothed_variances: Vec<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rts_means: Option<Vec<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rts_variances: Option<Vec<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kalman_score: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backward_fallbacks: Option<usize>,
    seconds: f64,
}

/// The additive functional whose smoothed expectation is every step's first and second
/// moments: component `(t, k)` of `s_t(x)` is `x[k]`, component `(T + t, k)` is `x[k]²`.
struct MarginalMoments {
    steps: usize,
    d: usize,
}

impl AdditiveFunctional for MarginalMoments {
    fn dim(&self) -> usize {
        2 * self.steps * self.d
    }
    fn state_term(&self, t: usize, x: &[f64], out: &mut [f64]) -> diffsmc::Result<()> {
        out.fill(0.0);
        let (d, s) = (self.d, self.steps);
        for k in 0..d {
            out[t * d + k] = x[k];
            out[(s + t) * d + k] = x[k] * x[k];
        }
        Ok(())
    }
    fn pair_term(
        &self,
        _t: usize,
        _xp: &[f64],
        _x: &[f64],
        out: &mut [f64],
    ) -> diffsmc::Result<()> {
        out.fill(0.0);
        Ok(())
    }
}

fn diag(covs: &[Vec<f64>], d: usize) -> Vec<Vec<f64>> {
    covs.iter()
        .map(|c| (0..d).map(|k| c[k * d + k]).collect())
        .collect()
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Runs `diffsmc smooth`.
pub fn run(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    if args.model != "lgssm" {
        return Err(CliError::flag(
            "model",
            format!("unknown model `{}`; expected `lgssm`", args.model),
        ));
    }
    if args.theta.len() != 2 {
        return Err(CliError::flag(
            "theta",
            format!("lgssm takes 2 parameters θ1,θ2; got {}", args.theta.len()),
        ));
    }
    for p in [&args.json, &args.plot].into_iter().flatten() {
        check_writable(p, force)?;
    }
    let rejection = args
        .rejection_tries
        .map(BackwardMethod::rejection)
        .transpose()?;
    let obs = read_csv(&args.data)?;
    let (d, steps) = (obs.dim(), obs.len());
    let data = Lgssm::paper(args.theta[0], args.theta[1], d)?.with_data(obs.values.clone())?;
    let config = SmcConfig::new(args.particles)?
        .with_trigger(args.trigger)?
        .with_filter_moments(true)
        .with_history(true);
    let resampler = args.resampler.build::<f64>()?;
    let t0 = Instant::now();
    let pb = crate::support::progress::spinner("smooth", quiet);
    let pf: Result<SmcOutput<f64>, _> =
        Smc::new(config.clone()).run(&Bootstrap(&data), &resampler, args.seed);
    let pf = pf?;
    let mut score = None;
    let mut fallbacks = None;
    let (means, variances) = match args.method {
        Method::Ffbs => {
            let s = ffbs(&data, &pf)?.moments;
            (s.means, s.variances)
        }
        Method::Backward(m) => {
            let mut c = BackwardConfig::new(m)?.with_seed(args.seed);
            if let Some(r) = rejection {
                c = c.with_method(r)?;
            }
            let b = backward_simulation(&data, &pf, &c)?;
            fallbacks = Some(b.fallbacks);
            (b.moments.means, b.moments.variances)
        }
        Method::FixedLag(l) => {
            let s = fixed_lag(&pf, l)?;
            (s.means, s.variances)
        }
        Method::Paris => {
            let mut c = ParisConfig::new()
                .with_backward_draws(args.backward_draws)?
                .with_seed(args.seed);
            if let Some(r) = rejection {
                c = c.with_method(r)?;
            }
            let f = MarginalMoments { steps, d };
            let out = paris(&data, &pf, &f, &c)?;
            fallbacks = Some(out.fallbacks);
            let e = &out.estimate;
            let means: Vec<Vec<f64>> = (0..steps).map(|t| e[t * d..(t + 1) * d].to_vec()).collect();
            let variances = (0..steps)
                .map(|t| {
                    (0..d)
                        .map(|k| e[(steps + t) * d + k] - means[t][k] * means[t][k])
                        .collect()
                })
                .collect();
            let p = PaperParams::new(d, obs.values.clone())?;
            // The same filter configuration and seed: the same run as above.
            let est = fisher_score(&p, &args.theta, &config, &resampler, args.seed, &c)?;
            score = Some(est.score);
            (means, variances)
        }
    };
    pb.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    let (rts_means, rts_variances, kalman_score) = if args.kalman {
        let (_, rts) = data.smooth()?;
        let ks = if args.method == Method::Paris {
            let p = PaperParams::new(d, obs.values.clone())?;
            let (_, g) = gradient(&KalmanNll(&p), &args.theta, &GradOptions::default())?;
            Some(g.iter().map(|v| -v).collect::<Vec<f64>>())
        } else {
            None
        };
        (Some(rts.means.clone()), Some(diag(&rts.covs, d)), ks)
    } else {
        (None, None, None)
    };

    println!(
        "smooth: lgssm d = {d}, {steps} steps, N = {}, method {}, resampler {}",
        args.particles, args.method, args.resampler
    );
    println!(
        "  log-likelihood (particle filter) {:.6}",
        pf.log_likelihood
    );
    if let (Some(rm), Some(rv)) = (&rts_means, &rts_variances) {
        let n = (steps * d) as f64;
        let err = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            (a.iter()
                .zip(b)
                .flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v) * (u - v)))
                .sum::<f64>()
                / n)
                .sqrt()
        };
        println!("  RMSE of smoothed means vs RTS     {:.5}", err(&means, rm));
        println!(
            "  RMSE of smoothed variances vs RTS {:.5}",
            err(&variances, rv)
        );
    }
    if let Some(s) = &score {
        println!("  score (PaRIS, Fisher identity)   {s:?}");
    }
    if let Some(k) = &kalman_score {
        println!("  score (Kalman, exact)            {k:?}");
    }
    if let Some(f) = fallbacks.filter(|&f| f > 0) {
        println!("  backward draws that fell back to the exact sampler: {f}");
    }
    println!("  {:.3} ms", elapsed * 1e3);

    if let Some(p) = &args.json {
        let report = Report {
            model: args.model.clone(),
            theta: args.theta.0.clone(),
            data: args.data.display().to_string(),
            particles: args.particles,
            method: args.method.to_string(),
            resampler: args.resampler.to_string(),
            trigger: format!("{:?}", args.trigger),
            seed: args.seed,
            steps,
            log_likelihood: finite(pf.log_likelihood),
            filter_means: pf.filter_means.clone(),
            filter_variances: diag(&pf.filter_covs, d),
            smoothed_means: means.clone(),
            smoothed_variances: variances.clone(),
            rts_means: rts_means.clone(),
            rts_variances: rts_variances.clone(),
            score,
            kalman_score,
            backward_fallbacks: fallbacks,
            seconds: elapsed,
        };
        let v = serde_json::to_value(&report).map_err(|e| CliError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        write_json(p, &v, force)?;
    }
    if let Some(p) = &args.plot {
        let t: Vec<f64> = (0..steps).map(|k| k as f64).collect();
        let mut series = vec![Series {
            name: format!("{} smoothed mean (dim 0)", args.method),
            points: t.iter().copied().zip(means.iter().map(|m| m[0])).collect(),
            style: Style::Line,
            color: 1,
        }];
        let mut bands = vec![Band {
            name: format!("{} ± 2 sd", args.method),
            points: means
                .iter()
                .zip(&variances)
                .enumerate()
                .map(|(k, (m, v))| {
                    let s = v[0].max(0.0).sqrt();
                    (k as f64, m[0] - 2.0 * s, m[0] + 2.0 * s)
                })
                .collect(),
            color: 1,
        }];
        if let (Some(rm), Some(rv)) = (&rts_means, &rts_variances) {
            series.push(Series {
                name: "RTS mean (dim 0)".into(),
                points: t.iter().copied().zip(rm.iter().map(|m| m[0])).collect(),
                style: Style::Line,
                color: 0,
            });
            bands.push(Band {
                name: "RTS ± 2 sd".into(),
                points: rm
                    .iter()
                    .zip(rv)
                    .enumerate()
                    .map(|(k, (m, v))| {
                        let s = v[0].sqrt();
                        (k as f64, m[0] - 2.0 * s, m[0] + 2.0 * s)
                    })
                    .collect(),
                color: 0,
            });
        }
        Chart {
            title: format!("Smoothed means, {} ({})", args.method, args.resampler),
            x_label: "time step".into(),
            y_label: "state".into(),
            series,
            bands,
            log_y: false,
        }
        .draw_svg(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_print() {
        for s in ["ffbs", "backward:100", "fixed-lag:3", "paris"] {
            assert_eq!(s.parse::<Method>().unwrap().to_string(), s);
        }
        assert!("backward:x".parse::<Method>().is_err());
        assert!("rts".parse::<Method>().is_err());
    }

    /// A PaRIS run writes the documented JSON fields, and the score is near the exact one
    /// (N = 200, T = 30: the score's sd is below 1 per component here).
    #[test]
    fn paris_run_writes_json_with_scores() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ys) = Lgssm::paper(0.5, 1.0, 1).unwrap().simulate(30, 2);
        let csv: String = ys.iter().map(|y| format!("{}\n", y[0])).collect();
        let data = dir.path().join("ys.csv");
        std::fs::write(&data, csv).unwrap();
        let json = dir.path().join("out.json");
        let args = Args {
            model: "lgssm".into(),
            theta: crate::support::args::Theta(vec![0.5, 1.0]),
            data,
            particles: 200,
            method: Method::Paris,
            rejection_tries: None,
            backward_draws: 2,
            resampler: ResamplerSpec::Systematic,
            trigger: Trigger::Always,
            seed: 1,
            kalman: true,
            json: Some(json.clone()),
            plot: Some(dir.path().join("out.svg")),
        };
        run(&args, false, true).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for k in [
            "smoothed_means",
            "smoothed_variances",
            "rts_means",
            "rts_variances",
            "score",
            "kalman_score",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["smoothed_means"].as_array().unwrap().len(), 30);
        for k in 0..2 {
            let (s, e) = (
                v["score"][k].as_f64().unwrap(),
                v["kalman_score"][k].as_f64().unwrap(),
            );
            assert!((s - e).abs() < 4.0, "{s} vs {e}");
        }
        // Without --force the existing file is kept.
        assert!(matches!(
            run(&args, false, true),
            Err(CliError::Exists { .. })
        ));
    }
}
