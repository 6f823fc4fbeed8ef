//! Argument types and checks shared by the commands: a validated parameter vector, and an
//! up-front memory estimate so that an impossible particle count is refused with a clear
//! message instead of an allocation abort or the OOM killer.

use std::str::FromStr;

use crate::support::error::CliError;

/// A parameter vector given as comma-separated finite numbers, e.g. `--theta 0.5,1.0`.
///
/// The flag takes one value: giving it twice is an error (clap reports it), rather than the
/// two lists being silently concatenated.
#[derive(Debug, Clone, PartialEq)]
pub struct Theta(pub Vec<f64>);

impl FromStr for Theta {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut v = Vec::new();
        for (i, part) in s.split(',').enumerate() {
            let part = part.trim();
            let x: f64 = part
                .parse()
                .map_err(|_| format!("entry {i} (`{part}`) is not a number"))?;
            if !x.is_finite() {
                return Err(format!("entry {i} (`{part}`) is not a finite number"));
            }
            v.push(x);
        }
        Ok(Theta(v))
    }
}

impl std::ops::Deref for Theta {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.0
    }
}

/// Bytes of memory the process may still use: `MemAvailable` from `/proc/meminfo`, or `None`
/// where that is not available.
fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Refuses a run whose particle storage alone would not fit in memory: `particles` particles
/// of about `bytes_per_particle` bytes each, against 80 % of the memory available now.
///
/// The bootstrap filter keeps three particle buffers and two log-weight buffers (about
/// `(3 d + 4) · 8` bytes per particle on `f64`; see [`filter_bytes_per_particle`]).
pub fn check_memory(
    flag: &'static str,
    particles: usize,
    bytes_per_particle: usize,
) -> Result<(), CliError> {
    let need = particles as f64 * bytes_per_particle as f64;
    let too_many = |avail: String| {
        CliError::flag(
            flag,
            format!(
                "{particles} particles need about {} ({bytes_per_particle} B each), more than \
                 the {avail} this machine has available; use fewer particles",
                human(need)
            ),
        )
    };
    if particles.checked_mul(bytes_per_particle).is_none() {
        return Err(too_many("memory".into()));
    }
    if let Some(avail) = available_bytes()
        && need > 0.8 * avail as f64
    {
        return Err(too_many(human(avail as f64)));
    }
    Ok(())
}

/// Bytes per particle of a bootstrap filter in dimension `d` on a scalar of `scalar_bytes`
/// bytes (8 for `f64`): three particle buffers, two log-weight buffers and the resampler's
/// per-particle scratch.
pub fn filter_bytes_per_particle(d: usize, scalar_bytes: usize) -> usize {
    (3 * d.max(1) + 2) * scalar_bytes + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theta_parses_and_names_the_bad_entry() {
        assert_eq!("0.5, 1".parse::<Theta>().unwrap().0, vec![0.5, 1.0]);
        let e = "0.5,nan".parse::<Theta>().unwrap_err();
        assert!(e.contains("entry 1") && e.contains("nan"), "{e}");
        let e = "0.5,abc".parse::<Theta>().unwrap_err();
        assert!(e.contains("entry 1") && e.contains("abc"), "{e}");
        assert!("inf".parse::<Theta>().is_err());
    }

    #[test]
    fn absurd_particle_counts_are_refused() {
        let e = check_memory(
            "particles",
            100_000_000_000,
            filter_bytes_per_particle(1, 8),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--particles: 100000000000 particles need about"),
            "{e}"
        );
        assert!(check_memory("particles", usize::MAX, 64).is_err());
        assert!(check_memory("particles", 1024, filter_bytes_per_particle(1, 8)).is_ok());
    }
}
