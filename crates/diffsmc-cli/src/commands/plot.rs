//! `diffsmc plot FILE.json… --out X.svg`: draws what experiment and fit JSON files hold.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::error::CliError;
use crate::support::output::check_writable;
use crate::support::plot::{Chart, Series, Style, draw_grid, draw_heatmaps, landscape_panels};

/// Arguments of `diffsmc plot`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  diffsmc plot gm-multinomial.json gm-diffusion.json --out gm.svg\n  diffsmc plot lgssm.json --out landscape.svg\n  diffsmc plot lv-diffusion.json lv-ot.json --out traces.svg"
)]
pub struct PlotArgs {
    /// JSON files written by `diffsmc experiment …`, `diffsmc fit` or `diffsmc bench timing`;
    /// files of the same kind
    /// are overlaid, one series per file (labelled by resampler).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn load(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::Data {
        file: path.display().to_string(),
        line: e.line(),
        message: format!("not valid JSON: {e}"),
    })
}

fn kind(v: &Value) -> &str {
    if v.get("samples").is_some() && v.get("summary").is_some() {
        "posterior"
    } else if v["bench"].as_str() == Some("timing") {
        "timing"
    } else if let Some(k) = v["experiment"].as_str() {
        k
    } else if v.get("theta_hat").is_some() && v.get("loss_trace").is_some() {
        "fit"
    } else {
        "unknown"
    }
}

fn label(v: &Value, path: &Path) -> String {
    v["resampler"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| path.display().to_string())
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Element-wise median of several traces (shorter traces end early).
pub fn median_trace(traces: &[Vec<f64>]) -> Vec<f64> {
    let len = traces.iter().map(Vec::len).max().unwrap_or(0);
    (0..len)
        .map(|k| {
            let mut col: Vec<f64> = traces
                .iter()
                .filter_map(|t| t.get(k).copied())
                .filter(|x| x.is_finite())
                .collect();
            col.sort_by(f64::total_cmp);
            if col.is_empty() {
                f64::NAN
            } else if col.len() % 2 == 1 {
                col[col.len() / 2]
            } else {
                0.5 * (col[col.len() / 2 - 1] + col[col.len() / 2])
            }
        })
        .collect()
}

fn traces_of(v: &Value) -> Vec<Vec<f64>> {
    let one = |t: &Value| t.as_array().map(|a| a.iter().map(f).collect::<Vec<f64>>());
    if let Some(t) = one(&v["loss_trace"]) {
        return vec![t];
    }
    v["runs"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|r| one(&r["loss_trace"])).collect())
        .unwrap_or_default()
}

/// Runs `diffsmc plot`.
pub fn plot(args: &PlotArgs, force: bool) -> Result<(), CliError> {
    check_writable(&args.out, force)?;
    let docs: Vec<(PathBuf, Value)> = args
        .files
        .iter()
        .map(|p| load(p).map(|v| (p.clone(), v)))
        .collect::<Result<_, _>>()?;
    let k0 = kind(&docs[0].1).to_string();
    if let Some((p, v)) = docs.iter().find(|(_, v)| kind(v) != k0) {
        return Err(CliError::Data {
            file: p.display().to_string(),
            line: 0,
            message: format!(
                "is a `{}` file; the first file is `{k0}`: plot files of one kind together",
                kind(v)
            ),
        });
    }
    match k0.as_str() {
        "gm" | "inverse-gm" => {
            let series = docs
                .iter()
                .enumerate()
                .map(|(i, (p, v))| Series {
                    name: label(v, p),
                    points: v["runs"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .map(|r| (f(&r["swd"]), f(&r["mean_sq_error"])))
                                .collect()
                        })
                        .unwrap_or_default(),
                    style: Style::Points,
                    color: i,
                })
                .collect();
            Chart {
                title: "Per-run sliced Wasserstein distance and squared error of the mean".into(),
                x_label: "sliced W1 to exact posterior draws".into(),
                y_label: "squared error of the mean".into(),
                series,
                bands: vec![],
                log_y: true,
            }
            .draw_svg(&args.out)
        }
        "lgssm" => {
            if docs.len() == 1 && !docs[0].1["landscape_run0"].is_null() {
                let l = &docs[0].1["landscape_run0"];
                let axis = |k: &str| {
                    l[k].as_array()
                        .map(|a| a.iter().map(f).collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                let grid = |k: &str| {
                    l[k].as_array()
                        .map(|rows| {
                            rows.iter()
                                .map(|r| {
                                    r.as_array()
                                        .map(|a| a.iter().map(f).collect())
                                        .unwrap_or_default()
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let truth = [f(&docs[0].1["theta"][0]), f(&docs[0].1["theta"][1])];
                let label = docs[0].1["resampler"].as_str().unwrap_or("particle filter");
                let panels = landscape_panels(
                    &axis("theta1"),
                    &axis("theta2"),
                    truth,
                    [
                        ("Kalman NLL (run 0)".into(), grid("kalman_nll")),
                        (format!("PF NLL, {label} (run 0)"), grid("pf_nll")),
                    ],
                );
                draw_heatmaps(&args.out, &panels)
            } else {
                let series = docs
                    .iter()
                    .enumerate()
                    .map(|(i, (p, v))| Series {
                        name: label(v, p),
                        points: v["runs"]
                            .as_array()
                            .map(|r| {
                                r.iter()
                                    .map(|r| (f(&r["loss_error"]), f(&r["filtering_kl"])))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        style: Style::Points,
                        color: i,
                    })
                    .collect();
                Chart {
                    title: "LGSSM: per-run loss-landscape error and filtering KL".into(),
                    x_label: "loss error (RMS NLL difference to Kalman)".into(),
                    y_label: "filtering KL".into(),
                    series,
                    bands: vec![],
                    log_y: true,
                }
                .draw_svg(&args.out)
            }
        }
        "posterior" => {
            if docs.len() != 1 {
                return Err(CliError::flag(
                    "files",
                    "plot one posterior JSON at a time".to_string(),
                ));
            }
            let (p, v) = &docs[0];
            draw_grid(&args.out, &posterior_charts(v, p)?, 2)
        }
        "lotka-volterra" | "fit" => {
            // One series per resampler: LV files hold one entry per resampler in
            // `by_resampler`; fit files hold one trace.
            let mut entries: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
            for (p, v) in &docs {
                match v["by_resampler"].as_array() {
                    Some(list) => {
                        for b in list {
                            entries.push((label(b, p), traces_of(b)));
                        }
                    }
                    None => entries.push((label(v, p), traces_of(v))),
                }
            }
            let series = entries
                .into_iter()
                .enumerate()
                .map(|(i, (name, traces))| {
                    let m = median_trace(&traces);
                    Series {
                        name: format!("{name} (median loss)"),
                        points: m.iter().enumerate().map(|(k, &y)| (k as f64, y)).collect(),
                        style: Style::Line,
                        color: i,
                    }
                })
                .collect();
            Chart {
                title: "Loss per iteration".into(),
                x_label: "iteration".into(),
                y_label: "negative log-likelihood".into(),
                series,
                bands: vec![],
                log_y: false,
            }
            .draw_svg(&args.out)
        }
        "timing" => {
            // One series per resampler of every file, coloured diffusion first, then OT.
            let mut series = Vec::new();
            for (_, v) in &docs {
                for s in v["series"].as_array().into_iter().flatten() {
                    // `diffusion:K=8` prints as `diffusion` (K = 8 is the default): label
                    // by family and parameter instead of the spec.
                    let name = match s["family"].as_str() {
                        Some("diffusion") => format!("diffusion K = {}", f(&s["parameter"])),
                        Some("ot") => format!("OT ε = {}", f(&s["parameter"])),
                        _ => s["resampler"].as_str().unwrap_or("?").to_string(),
                    };
                    let points = s["points"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    (f(&p["particles"]).log2(), f(&p["median_seconds"]).log10())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let color = series.len();
                    series.push(Series {
                        name,
                        points,
                        style: Style::Line,
                        color,
                    });
                }
            }
            let d = &docs[0].1;
            Chart {
                title: format!(
                    "Resampling time, d = {}, {} thread(s): diffusion (K) vs OT (ε)",
                    d["dim"], d["threads"]
                ),
                x_label: "log2 N".into(),
                y_label: "log10 median seconds per resampling".into(),
                series,
                bands: vec![],
                log_y: false,
            }
            .draw_svg(&args.out)
        }
        other => Err(CliError::Data {
            file: docs[0].0.display().to_string(),
            line: 0,
            message: format!(
                "do not know how to plot a `{other}` file (expected an experiment or fit JSON)"
            ),
        }),
    }
}

/// Per parameter: the trace of every chain, and a histogram of all chains' samples
/// (density scale, √n bins) with one line per chain.
fn posterior_charts(v: &Value, path: &Path) -> Result<Vec<Chart>, CliError> {
    let bad = |m: &str| CliError::Data {
        file: path.display().to_string(),
        line: 0,
        message: m.to_string(),
    };
    let chains: Vec<Vec<Vec<f64>>> = v["samples"]
        .as_array()
        .ok_or_else(|| bad("`samples` is not an array of chains"))?
        .iter()
        .map(|c| {
            c.as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            r.as_array()
                                .map(|x| x.iter().map(f).collect())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let names: Vec<String> = v["parameters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let p = chains
        .iter()
        .flat_map(|c| c.first())
        .map(Vec::len)
        .next()
        .ok_or_else(|| bad("no samples"))?;
    let method = v["method"].as_str().unwrap_or("posterior");
    let mut charts = Vec::new();
    for j in 0..p {
        let name = names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("theta{}", j + 1));
        let traces: Vec<Series> = chains
            .iter()
            .enumerate()
            .map(|(c, ch)| Series {
                name: format!("chain {c}"),
                points: ch
                    .iter()
                    .enumerate()
                    .filter_map(|(k, r)| r.get(j).map(|&x| (k as f64, x)))
                    .collect(),
                style: Style::Line,
                color: c,
            })
            .collect();
        charts.push(Chart {
            title: format!("{method}: trace of {name}"),
            x_label: "iteration after burn-in".into(),
            y_label: name.clone(),
            series: traces,
            bands: vec![],
            log_y: false,
        });
        let all: Vec<f64> = chains
            .iter()
            .flatten()
            .filter_map(|r| r.get(j).copied())
            .filter(|x| x.is_finite())
            .collect();
        let (lo, hi) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let bins = ((all.len() as f64).sqrt() as usize).clamp(10, 80);
        let width = ((hi - lo) / bins as f64).max(f64::MIN_POSITIVE);
        let hist = |xs: &[f64]| -> Vec<(f64, f64)> {
            let mut counts = vec![0usize; bins];
            for &x in xs {
                let b = (((x - lo) / width) as usize).min(bins - 1);
                counts[b] += 1;
            }
            let n = xs.len().max(1) as f64;
            counts
                .iter()
                .enumerate()
                .map(|(b, &k)| (lo + (b as f64 + 0.5) * width, k as f64 / (n * width)))
                .collect()
        };
        let mut series = vec![Series {
            name: "all chains".into(),
            points: hist(&all),
            style: Style::Line,
            color: 0,
        }];
        for (c, ch) in chains.iter().enumerate() {
            let xs: Vec<f64> = ch.iter().filter_map(|r| r.get(j).copied()).collect();
            series.push(Series {
                name: format!("chain {c}"),
                points: hist(&xs),
                style: Style::Points,
                color: c + 1,
            });
        }
        charts.push(Chart {
            title: format!("{method}: posterior density of {name}"),
            x_label: name,
            y_label: "density".into(),
            series,
            bands: vec![],
            log_y: false,
        });
    }
    Ok(charts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_traces() {
        let m = median_trace(&[
            vec![1.0, 5.0, 9.0],
            vec![3.0, 1.0],
            vec![2.0, f64::NAN, 4.0],
        ]);
        assert_eq!(m, vec![2.0, 3.0, 6.5]);
    }
}
