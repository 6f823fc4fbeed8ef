//! SVG plots (plotters, SVG backend; no system fonts needed).

use std::path::Path;

use plotters::prelude::*;

use crate::support::error::CliError;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// A solid line.
    Line,
    /// Small dots.
    Points,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// The points (non-finite points are dropped).
    pub points: Vec<(f64, f64)>,
    /// Drawing style.
    pub style: Style,
    /// Palette index.
    pub color: usize,
}

/// A shaded band between `lower` and `upper` at each `x`.
#[derive(Debug, Clone)]
pub struct Band {
    /// Legend label.
    pub name: String,
    /// `(x, lower, upper)`.
    pub points: Vec<(f64, f64, f64)>,
    /// Palette index.
    pub color: usize,
}

/// A chart of lines, points and bands.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Series.
    pub series: Vec<Series>,
    /// Bands (drawn under the series).
    pub bands: Vec<Band>,
    /// Use a log scale on y.
    pub log_y: bool,
}

/// Colour `i` of a colour-blind-friendly palette.
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
        RGBColor(240, 228, 66),
    ];
    P[i % P.len()]
}

/// Short tick labels: up to 4 significant decimals, scientific outside [1e-2, 1e5).
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-2..1e5).contains(&a) {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

fn pad(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let m = 0.05 * (hi - lo);
    (lo - m, hi + m)
}

fn perr(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Chart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
        let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
        let mut add = |x: f64, y: f64| {
            if x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0) {
                xs = (xs.0.min(x), xs.1.max(x));
                ys = (ys.0.min(y), ys.1.max(y));
            }
        };
        for s in &self.series {
            for &(x, y) in &s.points {
                add(x, y);
            }
        }
        for b in &self.bands {
            for &(x, l, u) in &b.points {
                add(x, l);
                add(x, u);
            }
        }
        let (y0, y1) = pad(ys.0, ys.1);
        (pad(xs.0, xs.1), self.legend_headroom(y0, y1))
    }

    /// Raises the top of the y-range so that the legend (upper left, one line of about 22 px
    /// per entry in a plotting area of about 440 px) sits above the data instead of on it.
    fn legend_headroom(&self, y0: f64, y1: f64) -> (f64, f64) {
        let entries = self.series.len() + self.bands.len();
        if entries == 0 {
            return (y0, y1);
        }
        let frac = ((entries as f64 * 22.0 + 16.0) / 440.0).min(0.6);
        if self.log_y {
            let (l0, l1) = (y0.max(1e-300).log10(), y1.max(1e-300).log10());
            let l1 = l1 + (l1 - l0).max(1.0) * frac / (1.0 - frac);
            (y0, 10f64.powf(l1))
        } else {
            (y0, y1 + (y1 - y0) * frac / (1.0 - frac))
        }
    }

    /// Draws the chart to an SVG file (the caller checks overwriting).
    pub fn draw_svg(&self, path: &Path) -> Result<(), CliError> {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(path, e))?;
        self.draw_on(&root).map_err(|e| perr(path, e))?;
        root.present().map_err(|e| perr(path, e))?;
        Ok(())
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60);
        if self.log_y {
            let (y0, y1) = (y0.max(1e-300), y1.max(y0.max(1e-300) * 10.0));
            let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            self.draw_series(&mut chart)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            self.draw_series(&mut chart)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    }

    fn draw_series<'a, DB, X, Y>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        for b in &self.bands {
            let c = color(b.color);
            let mut poly: Vec<(f64, f64)> = b.points.iter().map(|&(x, _, u)| (x, u)).collect();
            poly.extend(b.points.iter().rev().map(|&(x, l, _)| (x, l)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2).filled())))?
                .label(&b.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.mix(0.3).filled())
                });
        }
        for s in &self.series {
            let c = color(s.color);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
                .collect();
            match s.style {
                Style::Line => {
                    chart
                        .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                        .label(&s.name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                }
                Style::Points => {
                    chart
                        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?
                        .label(&s.name)
                        .legend(move |(x, y)| Circle::new((x + 8, y), 3, c.filled()));
                }
            }
        }
        Ok(())
    }
}

/// A heat map of `values[i][j]` at `(xs[i], ys[j])` with marked points.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Panel title.
    pub title: String,
    /// Grid x coordinates (increasing).
    pub xs: Vec<f64>,
    /// Grid y coordinates (increasing).
    pub ys: Vec<f64>,
    /// `values[i][j]` at `(xs[i], ys[j])`.
    pub values: Vec<Vec<f64>>,
    /// Marked points: (label, x, y, palette index).
    pub marks: Vec<(String, f64, f64, usize)>,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
}

fn viridis(t: f64) -> RGBColor {
    // A few anchor points of the viridis colour map, linearly interpolated.
    const A: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let x = t * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let c = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(
        c(A[i].0, A[i + 1].0),
        c(A[i].1, A[i + 1].1),
        c(A[i].2, A[i + 1].2),
    )
}

/// Draws heat maps side by side into one SVG (colours scaled per panel; the caller checks
/// overwriting).
pub fn draw_heatmaps(path: &Path, panels: &[Heatmap]) -> Result<(), CliError> {
    let w = 520 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (w, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| perr(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, h) in areas.iter().zip(panels) {
        draw_heatmap(area, h).map_err(|e| perr(path, e))?;
    }
    root.present().map_err(|e| perr(path, e))?;
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    h: &Heatmap,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (nx, ny) = (h.xs.len(), h.ys.len());
    if nx == 0 || ny == 0 {
        return Ok(());
    }
    let dx = if nx > 1 { h.xs[1] - h.xs[0] } else { 1.0 };
    let dy = if ny > 1 { h.ys[1] - h.ys[0] } else { 1.0 };
    let (x0, x1) = (h.xs[0] - dx / 2.0, h.xs[nx - 1] + dx / 2.0);
    let (y0, y1) = (h.ys[0] - dy / 2.0, h.ys[ny - 1] + dy / 2.0);
    let finite = h.values.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&h.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(&h.x_label)
        .y_desc(&h.y_label)
        .disable_mesh()
        .draw()?;
    chart.draw_series(h.xs.iter().enumerate().flat_map(|(i, &x)| {
        h.ys.iter().enumerate().map(move |(j, &y)| {
            let c = viridis((h.values[i][j] - lo) / span);
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                c.filled(),
            )
        })
    }))?;
    for (label, x, y, ci) in &h.marks {
        let c = color(*ci);
        chart
            .draw_series(std::iter::once(Cross::new((*x, *y), 7, c.stroke_width(3))))?
            .label(label.as_str())
            .legend(move |(px, py)| Cross::new((px + 8, py), 5, c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The two panels of a loss landscape (Kalman and particle-filter NLL over a θ grid), each
/// with the true θ and the surface's own minimum marked.
pub fn landscape_panels(
    theta1: &[f64],
    theta2: &[f64],
    truth: [f64; 2],
    surfaces: [(String, Vec<Vec<f64>>); 2],
) -> Vec<Heatmap> {
    surfaces
        .into_iter()
        .map(|(title, values)| {
            let mut best = (0, 0, f64::INFINITY);
            for (i, row) in values.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    if v < best.2 {
                        best = (i, j, v);
                    }
                }
            }
            let (mx, my) = (
                theta1.get(best.0).copied().unwrap_or(f64::NAN),
                theta2.get(best.1).copied().unwrap_or(f64::NAN),
            );
            Heatmap {
                title,
                xs: theta1.to_vec(),
                ys: theta2.to_vec(),
                values,
                marks: vec![
                    ("true θ".into(), truth[0], truth[1], 6),
                    ("minimum".into(), mx, my, 1),
                ],
                x_label: "θ1".into(),
                y_label: "θ2".into(),
            }
        })
        .collect()
}

/// Draws charts on a grid of `cols` columns into one SVG (the caller checks overwriting).
pub fn draw_grid(path: &Path, charts: &[Chart], cols: usize) -> Result<(), CliError> {
    let cols = cols.max(1);
    let rows = charts.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (620 * cols as u32, 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| perr(path, e))?;
    let areas = root.split_evenly((rows, cols));
    for (area, c) in areas.iter().zip(charts) {
        c.draw_on(area).map_err(|e| perr(path, e))?;
    }
    root.present().map_err(|e| perr(path, e))?;
    Ok(())
}
