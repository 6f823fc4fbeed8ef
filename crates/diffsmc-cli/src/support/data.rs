//! Reading observation files.

use std::path::Path;

use crate::support::error::CliError;

/// Observations read from a CSV file: one row per time step, one column per dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// Column names (from the header row, or `y0`, `y1`, … without one).
    pub columns: Vec<String>,
    /// Row-major values; NaN marks a missing value.
    pub values: Vec<Vec<f64>>,
    /// The 1-based line number of each row in the file (for error messages).
    pub lines: Vec<usize>,
}

impl Observations {
    /// Number of time steps.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.columns.len()
    }
}

fn parse_cell(cell: &str) -> Option<f64> {
    let c = cell.trim().trim_matches('"');
    if c.is_empty() || c.eq_ignore_ascii_case("nan") || c.eq_ignore_ascii_case("na") {
        return Some(f64::NAN);
    }
    c.parse::<f64>().ok()
}

/// Parses CSV text: an optional header row (a first row with any non-numeric cell), then
/// rows of numbers; an empty, `NaN` or `NA` cell is a missing value. Errors name the line.
pub fn parse_csv(text: &str, source: &str) -> Result<Observations, CliError> {
    let mut columns: Option<Vec<String>> = None;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let mut first = true;
    for (lineno, line) in text.lines().enumerate() {
        let lineno = lineno + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let parsed: Vec<Option<f64>> = cells.iter().map(|c| parse_cell(c)).collect();
        if first {
            first = false;
            if parsed.iter().any(|p| p.is_none()) {
                columns = Some(
                    cells
                        .iter()
                        .map(|c| c.trim().trim_matches('"').to_string())
                        .collect(),
                );
                continue;
            }
            columns = Some((0..cells.len()).map(|k| format!("y{k}")).collect());
        }
        let ncol = columns.as_ref().map_or(cells.len(), Vec::len);
        if cells.len() != ncol {
            return Err(CliError::Data {
                file: source.to_string(),
                line: lineno,
                message: format!("expected {ncol} columns, found {}", cells.len()),
            });
        }
        let mut row = Vec::with_capacity(ncol);
        for (k, (p, c)) in parsed.into_iter().zip(&cells).enumerate() {
            match p {
                Some(v) if v.is_infinite() => {
                    return Err(CliError::Data {
                        file: source.to_string(),
                        line: lineno,
                        message: format!("column {}: infinite value `{}`", k + 1, c.trim()),
                    });
                }
                Some(v) => row.push(v),
                None => {
                    return Err(CliError::Data {
                        file: source.to_string(),
                        line: lineno,
                        message: format!(
                            "column {}: `{}` is not a number (use an empty cell or NaN for a missing value)",
                            k + 1,
                            c.trim()
                        ),
                    });
                }
            }
        }
        values.push(row);
        lines.push(lineno);
    }
    let columns = columns.ok_or_else(|| CliError::Data {
        file: source.to_string(),
        line: 0,
        message: "the file has no rows".into(),
    })?;
    if values.is_empty() {
        return Err(CliError::Data {
            file: source.to_string(),
            line: 0,
            message: "the file has a header but no data rows".into(),
        });
    }
    Ok(Observations {
        columns,
        values,
        lines,
    })
}

/// Reads and parses a CSV file.
pub fn read_csv(path: &Path) -> Result<Observations, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_csv(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_missing_values_and_errors() {
        let o = parse_csv("y\n1.0\n\nNaN\n2.5\n", "t").unwrap();
        assert_eq!(o.columns, vec!["y"]);
        assert_eq!(o.len(), 3);
        assert!(o.values[1][0].is_nan());
        assert_eq!(o.lines, vec![2, 4, 5]);
        let o = parse_csv("1,2\n3,\n", "t").unwrap();
        assert_eq!(o.dim(), 2);
        assert!(o.values[1][1].is_nan());
        let e = parse_csv("a,b\n1,2\n3\n", "f.csv").unwrap_err();
        assert!(matches!(e, CliError::Data { line: 3, .. }), "{e}");
        let e = parse_csv("a\n1\nx\n", "f.csv").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(parse_csv("a\n", "f").is_err());
        assert!(parse_csv("", "f").is_err());
        assert!(parse_csv("1\ninf\n", "f").is_err());
    }
}
