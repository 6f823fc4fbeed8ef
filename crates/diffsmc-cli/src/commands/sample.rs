//! `diffsmc sample`: adaptive tempered SMC on a built-in static target (correlated Gaussian,
//! Bayesian logistic regression from a CSV design matrix, bimodal mixture).

use std::path::{Path, PathBuf};
use std::time::Instant;

use diffsmc::ResamplerSpec;
use diffsmc::samplers::{
    GaussianTarget, LogisticRegression, MixtureTarget, MoveKind, StaticTarget, TemperingConfig,
    TemperingOutput, TemperingSampler,
};
use serde::Serialize;

use crate::support::data::read_csv;
use crate::support::error::CliError;
use crate::support::output::{check_writable, write_json};

/// Arguments of `diffsmc sample`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc sample --target gaussian --dim 3 --particles 2000 --move mala --seed 1 --json sample.json\n  diffsmc sample --target logistic --data docs/data/logistic.csv --particles 2000 --move hmc --waste-free 20 --json logistic.json"
)]
pub struct SampleArgs {
    /// Target: `gaussian` (correlated Gaussian likelihood, Gaussian prior: exact evidence and
    /// posterior), `logistic` (Bayesian logistic regression on --data) or `mixture` (two
    /// well-separated modes with weights 0.3 and 0.7: exact evidence and mode weights).
    #[arg(long)]
    pub target: String,
    /// Dimension (gaussian, mixture; logistic takes the number of design columns).
    #[arg(long, default_value_t = 3)]
    pub dim: usize,
    /// Logistic regression data: CSV, optional header, one row per observation, the design
    /// columns then the 0/1 response in the last column.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Prior sd of the logistic regression coefficients.
    #[arg(long, default_value_t = 2.5)]
    pub prior_sd: f64,
    /// Number of particles N.
    #[arg(long, default_value_t = 1000)]
    pub particles: usize,
    /// MCMC move: `rw`, `mala`, `hmc` or `hmc:L` (L leapfrog steps, default 10).
    #[arg(long = "move", default_value = "rw")]
    pub move_kind: MoveKind,
    /// Waste-free SMC with chains of length P (P must divide N).
    #[arg(long)]
    pub waste_free: Option<usize>,
    /// Conditional-ESS fraction kept by each new temperature, in (0, 1).
    #[arg(long, default_value_t = 0.5)]
    pub ess_target: f64,
    /// Resampler spec (waste-free needs an index resampler: systematic, multinomial, …).
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Maximum MCMC moves per tempering step.
    #[arg(long, default_value_t = 100)]
    pub max_moves: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The JSON report of `diffsmc sample`.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// `gaussian`, `logistic` or `mixture`.
    pub target: String,
    /// Dimension.
    pub dim: usize,
    /// Number of particles.
    pub particles: usize,
    /// The move, e.g. `mala`.
    #[serde(rename = "move")]
    pub move_kind: String,
    /// Waste-free chain length, if any.
    pub waste_free: Option<usize>,
    /// The conditional-ESS target.
    pub ess_target: f64,
    /// The resampler spec.
    pub resampler: String,
    /// The seed.
    pub seed: u64,
    /// `log Ẑ`.
    pub log_evidence: f64,
    /// The exact log evidence (gaussian, mixture).
    pub exact_log_evidence: Option<f64>,
    /// `β_0 = 0, …, β_K = 1`.
    pub temperatures: Vec<f64>,
    /// Per step: ESS after reweighting.
    pub ess: Vec<f64>,
    /// Per step: mean acceptance probability of the moves.
    pub acceptance: Vec<f64>,
    /// Per step: number of move sweeps.
    pub moves: Vec<usize>,
    /// Per step: the adapted step size.
    pub step_sizes: Vec<f64>,
    /// Final particles' weighted mean per coordinate.
    pub mean: Vec<f64>,
    /// Final particles' weighted sd per coordinate.
    pub sd: Vec<f64>,
    /// Exact posterior mean (gaussian, mixture).
    pub exact_mean: Option<Vec<f64>>,
    /// Exact posterior sd (gaussian, mixture).
    pub exact_sd: Option<Vec<f64>>,
    /// Mixture: weighted fraction of particles in the mode at +μ.
    pub mode_weight: Option<f64>,
    /// Mixture: its exact value.
    pub exact_mode_weight: Option<f64>,
    /// Wall-clock seconds of the sampler.
    pub seconds: f64,
}

/// Reads a logistic-regression CSV: design columns, then the 0/1 response.
pub fn read_logistic(path: &Path, prior_sd: f64) -> Result<LogisticRegression, CliError> {
    let obs = read_csv(path)?;
    let file = path.display().to_string();
    if obs.dim() < 2 {
        return Err(CliError::Data {
            file,
            line: 0,
            message: "need at least one design column and the response column".into(),
        });
    }
    let mut rows = Vec::with_capacity(obs.len());
    let mut y = Vec::with_capacity(obs.len());
    for (r, &line) in obs.values.iter().zip(&obs.lines) {
        if r.iter().any(|v| v.is_nan()) {
            return Err(CliError::Data {
                file,
                line,
                message: "missing value (logistic regression needs complete rows)".into(),
            });
        }
        let (x, resp) = r.split_at(r.len() - 1);
        if resp[0] != 0.0 && resp[0] != 1.0 {
            return Err(CliError::Data {
                file,
                line,
                message: format!("response `{}` is not 0 or 1", resp[0]),
            });
        }
        rows.push(x.to_vec());
        y.push(resp[0]);
    }
    Ok(LogisticRegression::new(rows, y, prior_sd)?)
}

fn sample_target<T: StaticTarget>(
    target: &T,
    args: &SampleArgs,
    quiet: bool,
) -> Result<(TemperingOutput, f64), CliError> {
    let config = TemperingConfig::new(args.particles)?
        .with_move(args.move_kind)?
        .with_ess_target(args.ess_target)?
        .with_waste_free(args.waste_free)?
        .with_moves(1, args.max_moves.max(1), 0.01)?;
    let resampler = args.resampler.build::<f64>()?;
    let pb = crate::support::progress::spinner("tempered SMC", quiet);
    let t0 = Instant::now();
    let out = TemperingSampler::new(config).run(target, &resampler, args.seed);
    pb.finish_and_clear();
    Ok((out?, t0.elapsed().as_secs_f64()))
}

/// Runs the sampler and builds the report (no printing, no files).
pub fn sample(args: &SampleArgs, quiet: bool) -> Result<SampleReport, CliError> {
    if args.max_moves == 0 {
        return Err(CliError::flag("max-moves", "must be at least 1"));
    }
    let need_dim = |d: usize| {
        if d == 0 {
            Err(CliError::flag("dim", "must be at least 1"))
        } else {
            Ok(d)
        }
    };
    let (out, secs, exact_z, exact_m, exact_sd, mode, exact_mode) = match args.target.as_str() {
        "gaussian" => {
            let t = GaussianTarget::example(need_dim(args.dim)?)?;
            let (out, secs) = sample_target(&t, args, quiet)?;
            let (m, sd) = t.posterior_mean_sd();
            (
                out,
                secs,
                Some(t.log_evidence()),
                Some(m),
                Some(sd),
                None,
                None,
            )
        }
        "mixture" => {
            let t = MixtureTarget::example(need_dim(args.dim)?)?;
            let (out, secs) = sample_target(&t, args, quiet)?;
            let w = diffsmc::weights_f64(&out.log_weights);
            let frac = out
                .particles
                .iter()
                .zip(&w)
                .filter(|(x, _)| t.in_first_mode(x))
                .map(|(_, w)| w)
                .sum::<f64>();
            let (m, sd) = t.posterior_mean_sd();
            let z = t.log_evidence();
            (
                out,
                secs,
                Some(z),
                Some(m),
                Some(sd),
                Some(frac),
                Some(t.weight()),
            )
        }
        "logistic" => {
            let path = args.data.as_ref().ok_or_else(|| {
                CliError::flag("data", "the logistic target needs --data FILE.csv")
            })?;
            let t = read_logistic(path, args.prior_sd)?;
            let (out, secs) = sample_target(&t, args, quiet)?;
            (out, secs, None, None, None, None, None)
        }
        other => {
            return Err(CliError::flag(
                "target",
                format!("unknown target `{other}`; expected `gaussian`, `logistic` or `mixture`"),
            ));
        }
    };
    let (mean, sd) = out.mean_sd();
    Ok(SampleReport {
        target: args.target.clone(),
        dim: out.particles.dim(),
        particles: args.particles,
        move_kind: args.move_kind.to_string(),
        waste_free: args.waste_free,
        ess_target: args.ess_target,
        resampler: args.resampler.to_string(),
        seed: args.seed,
        log_evidence: out.log_evidence,
        exact_log_evidence: exact_z,
        temperatures: out.temperatures.clone(),
        ess: out.ess.clone(),
        acceptance: out.acceptance.clone(),
        moves: out.n_moves.clone(),
        step_sizes: out.step_sizes.clone(),
        mean,
        sd,
        exact_mean: exact_m,
        exact_sd,
        mode_weight: mode,
        exact_mode_weight: exact_mode,
        seconds: secs,
    })
}

fn fmt_vec(v: &[f64]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", s.join(", "))
}

/// Runs `diffsmc sample`.
pub fn run(args: &SampleArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    if let Some(p) = &args.json {
        check_writable(p, force)?;
    }
    let r = sample(args, quiet)?;
    println!(
        "sample: {} d = {}, N = {}, move {}{}, resampler {}, {} tempering steps, {:.3} s",
        r.target,
        r.dim,
        r.particles,
        r.move_kind,
        r.waste_free
            .map_or(String::new(), |p| format!(" (waste-free, P = {p})")),
        r.resampler,
        r.temperatures.len() - 1,
        r.seconds
    );
    match r.exact_log_evidence {
        Some(z) => println!(
            "  log evidence {:.4}   exact {:.4}   error {:+.4}",
            r.log_evidence,
            z,
            r.log_evidence - z
        ),
        None => println!("  log evidence {:.4}", r.log_evidence),
    }
    println!("  posterior mean {}", fmt_vec(&r.mean));
    if let Some(m) = &r.exact_mean {
        println!("           exact {}", fmt_vec(m));
    }
    println!("  posterior sd   {}", fmt_vec(&r.sd));
    if let Some(s) = &r.exact_sd {
        println!("           exact {}", fmt_vec(s));
    }
    if let (Some(w), Some(e)) = (r.mode_weight, r.exact_mode_weight) {
        println!("  weight of the mode at +μ {w:.4}   exact {e:.4}");
    }
    let acc: Vec<f64> = r
        .acceptance
        .iter()
        .copied()
        .filter(|a| a.is_finite())
        .collect();
    if !acc.is_empty() {
        println!(
            "  acceptance {:.3} (mean over steps), moves per step {:?}",
            acc.iter().sum::<f64>() / acc.len() as f64,
            r.moves
        );
    }
    if let Some(p) = &args.json {
        let v = serde_json::to_value(&r).map_err(|e| CliError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        write_json(p, &v, force)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: &str, mv: &str) -> SampleArgs {
        SampleArgs {
            target: target.into(),
            dim: 2,
            data: None,
            prior_sd: 2.5,
            particles: 500,
            move_kind: mv.parse().unwrap(),
            waste_free: None,
            ess_target: 0.5,
            resampler: ResamplerSpec::Systematic,
            max_moves: 100,
            seed: 1,
            json: None,
        }
    }

    /// Writes simulated logistic-regression data as CSV text (header `x0,…,y`).
    fn logistic_csv(rows: &[Vec<f64>], y: &[f64]) -> String {
        let d = rows.first().map_or(0, Vec::len);
        let mut s: String = (0..d).map(|k| format!("x{k},")).collect();
        s.push_str("y\n");
        for (r, yi) in rows.iter().zip(y) {
            for v in r {
                s.push_str(&format!("{v},"));
            }
            s.push_str(&format!("{yi}\n"));
        }
        s
    }

    /// The committed example data are exactly what the seeded simulator writes (regenerate
    /// with `DIFFSMC_REGENERATE_DATA=1 cargo test -p diffsmc-cli example_logistic`).
    #[test]
    fn example_logistic_data_is_the_simulators() {
        let (rows, y) = LogisticRegression::simulate(200, 3, 1).unwrap();
        let text = logistic_csv(&rows, &y);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/data/logistic.csv");
        if std::env::var_os("DIFFSMC_REGENERATE_DATA").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let t = read_logistic(&path, 2.5).unwrap();
        assert_eq!((t.dim(), t.n_rows()), (3, 200));
    }

    /// The report of the Gaussian target: exact evidence present, the estimate within 0.5
    /// nats (its sd at N = 500 is about 0.1, see docs/smc-samplers.md), β ends at 1, one
    /// entry per step.
    #[test]
    fn gaussian_report() {
        let r = sample(&args("gaussian", "mala"), true).unwrap();
        let z = r.exact_log_evidence.unwrap();
        assert!(
            (r.log_evidence - z).abs() < 0.5,
            "{} vs {z}",
            r.log_evidence
        );
        assert_eq!(*r.temperatures.last().unwrap(), 1.0);
        assert_eq!(r.ess.len(), r.temperatures.len() - 1);
        assert_eq!(r.acceptance.len(), r.ess.len());
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["exact_log_evidence"].is_number() && v["move"] == "mala");
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(sample(&args("nonsense", "rw"), true).is_err());
        let e = sample(&args("logistic", "rw"), true).unwrap_err();
        assert!(e.to_string().contains("--data"), "{e}");
        let mut a = args("gaussian", "rw");
        a.ess_target = 1.0;
        assert!(sample(&a, true).is_err());
        let mut a = args("gaussian", "rw");
        a.waste_free = Some(7);
        assert!(sample(&a, true).is_err());
        let mut a = args("gaussian", "rw");
        a.dim = 0;
        assert!(sample(&a, true).is_err());
    }

    #[test]
    fn logistic_csv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, "x0,y\n1.0,1\n0.5,2\n").unwrap();
        let e = read_logistic(&p, 1.0).unwrap_err();
        assert!(matches!(e, CliError::Data { line: 3, .. }), "{e}");
        std::fs::write(&p, "y\n1\n").unwrap();
        assert!(read_logistic(&p, 1.0).is_err());
    }
}
