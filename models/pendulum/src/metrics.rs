//! Image metrics: PSNR and SSIM (Wang, Bovik, Sheikh & Simoncelli 2004).

use diffsmc::{Result, SmcError};

/// SSIM constants `K₁ = 0.01`, `K₂ = 0.03` (Wang et al. 2004).
pub const SSIM_K1: f64 = 0.01;
/// See [`SSIM_K1`].
pub const SSIM_K2: f64 = 0.03;

/// The local window of [`ssim_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// A `size × size` Gaussian of standard deviation `sigma`, normalised to sum 1
    /// (Wang et al.: 11, 1.5).
    Gaussian {
        /// Side.
        size: usize,
        /// Standard deviation in pixels.
        sigma: f64,
    },
    /// A `size × size` box (equal weights).
    Uniform {
        /// Side.
        size: usize,
    },
}

fn check_pair(x: &[f64], y: &[f64], w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 || x.len() != w * h {
        return Err(SmcError::DimensionMismatch {
            what: "image pixels (width × height)",
            expected: w * h,
            got: x.len(),
        });
    }
    if y.len() != x.len() {
        return Err(SmcError::DimensionMismatch {
            what: "second image pixels",
            expected: x.len(),
            got: y.len(),
        });
    }
    Ok(())
}

/// Peak signal-to-noise ratio `10 log₁₀(L² / MSE)` in dB for data range `L`
/// (`+∞` for identical images).
///
/// ```
/// use diffsmc_pendulum::psnr;
/// let x = vec![0.2; 16];
/// let y = vec![0.3; 16];
/// // MSE = 0.01 ⇒ PSNR = 20 dB.
/// assert!((psnr(&x, &y, 1.0)? - 20.0).abs() < 1e-9);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn psnr(x: &[f64], y: &[f64], data_range: f64) -> Result<f64> {
    if x.is_empty() || x.len() != y.len() {
        return Err(SmcError::DimensionMismatch {
            what: "second image pixels",
            expected: x.len(),
            got: y.len(),
        });
    }
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(SmcError::invalid(
            "PSNR data range",
            data_range,
            "a finite number > 0",
        ));
    }
    let mse = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / x.len() as f64;
    Ok(10.0 * (data_range * data_range / mse).log10())
}

/// SSIM with the standard settings: an 11×11 Gaussian window of σ = 1.5, `K₁ = 0.01`,
/// `K₂ = 0.03`, data range 1, averaged over the positions where the window fits
/// ("valid"); images `w × h` row-major.
pub fn ssim(x: &[f64], y: &[f64], w: usize, h: usize) -> Result<f64> {
    ssim_with(
        x,
        y,
        w,
        h,
        Window::Gaussian {
            size: 11,
            sigma: 1.5,
        },
        1.0,
    )
}

/// SSIM with a chosen window and data range `L`: at every window position, with the
/// window-weighted means `μ`, variances `σ²` and covariance `σ_xy` (weights summing to 1),
/// `((2μ_xμ_y + C₁)(2σ_xy + C₂)) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂))`,
/// `C₁ = (K₁L)²`, `C₂ = (K₂L)²`; the mean over positions.
///
/// ```
/// use diffsmc_pendulum::{ssim_with, Window};
/// let x = [0.0, 1.0, 1.0, 0.0];
/// assert!((ssim_with(&x, &x, 2, 2, Window::Uniform { size: 2 }, 1.0)? - 1.0).abs() < 1e-15);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn ssim_with(
    x: &[f64],
    y: &[f64],
    w: usize,
    h: usize,
    window: Window,
    data_range: f64,
) -> Result<f64> {
    check_pair(x, y, w, h)?;
    let (size, weights) = match window {
        Window::Gaussian { size, sigma } => {
            if !(sigma.is_finite() && sigma > 0.0) {
                return Err(SmcError::invalid(
                    "SSIM window sigma",
                    sigma,
                    "a finite number > 0",
                ));
            }
            let c = (size as f64 - 1.0) / 2.0;
            let g: Vec<f64> = (0..size)
                .map(|i| (-(i as f64 - c).powi(2) / (2.0 * sigma * sigma)).exp())
                .collect();
            let mut k: Vec<f64> = (0..size * size)
                .map(|i| g[i / size] * g[i % size])
                .collect();
            let s: f64 = k.iter().sum();
            k.iter_mut().for_each(|v| *v /= s);
            (size, k)
        }
        Window::Uniform { size } => (size, vec![1.0 / (size * size) as f64; size * size]),
    };
    if size == 0 || size > w || size > h {
        return Err(SmcError::invalid(
            "SSIM window size",
            size,
            "between 1 and the image's smaller side",
        ));
    }
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(SmcError::invalid(
            "SSIM data range",
            data_range,
            "a finite number > 0",
        ));
    }
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let mut total = 0.0;
    let mut count = 0usize;
    for r0 in 0..=h - size {
        for c0 in 0..=w - size {
            let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for i in 0..size {
                for j in 0..size {
                    let k = weights[i * size + j];
                    let (a, b) = (x[(r0 + i) * w + c0 + j], y[(r0 + i) * w + c0 + j]);
                    mx += k * a;
                    my += k * b;
                    xx += k * a * a;
                    yy += k * b * b;
                    xy += k * a * b;
                }
            }
            let (vx, vy, cxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    Ok(total / count as f64)
}

/// Mean SSIM and mean PSNR over two equally long image sequences (32×32 frames, data range
/// 1; a frame pair with PSNR `+∞` is counted as 100 dB so the mean stays finite).
pub fn sequence_scores(pred: &[Vec<f64>], truth: &[Vec<f64>], side: usize) -> Result<(f64, f64)> {
    if pred.len() != truth.len() || pred.is_empty() {
        return Err(SmcError::DimensionMismatch {
            what: "frames of the predicted sequence",
            expected: truth.len(),
            got: pred.len(),
        });
    }
    let (mut s, mut p) = (0.0, 0.0);
    for (a, b) in pred.iter().zip(truth) {
        s += ssim(a, b, side, side)?;
        p += psnr(a, b, 1.0)?.min(100.0);
    }
    let n = pred.len() as f64;
    Ok((s / n, p / n))
}
