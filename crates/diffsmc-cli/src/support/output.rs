//! Writing outputs without clobbering: an existing file is kept unless `--force` is given.

use std::path::Path;

use crate::support::error::CliError;

/// Fails with [`CliError::Exists`] if `path` exists and `force` is false.
pub fn check_writable(path: &Path, force: bool) -> Result<(), CliError> {
    if !force && path.exists() {
        return Err(CliError::Exists {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

/// Writes `value` (a command's typed `Serialize` report) as pretty JSON to `path` (checked
/// with [`check_writable`]). Non-finite numbers become `null`.
pub fn write_json<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
    force: bool,
) -> Result<(), CliError> {
    check_writable(path, force)?;
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Mean and (sample) standard deviation of finite values; NaN when there are none.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = f.len() as f64;
    let m = f.iter().sum::<f64>() / n;
    let s = if f.len() > 1 {
        (f.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

/// `{"mean": m, "std": s}` of finite values.
pub fn summary(v: &[f64]) -> Summary {
    let (mean, std) = mean_std(v);
    Summary {
        mean,
        std,
        n: v.iter().filter(|x| x.is_finite()).count(),
    }
}

/// Mean, standard deviation and count of the finite values of a metric over runs (JSON
/// `{"mean", "std", "n"}`, `null` for a non-finite mean or sd).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    /// Mean of the finite values.
    pub mean: f64,
    /// Sample standard deviation of the finite values.
    pub std: f64,
    /// Number of finite values.
    pub n: usize,
}
