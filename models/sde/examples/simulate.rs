//! Writes a simulated, discretely observed path as CSV (`t,x` — the format `diffsmc filter`
//! and `diffsmc fit` read for `--model ou|double-well`).
//!
//! ```text
//! cargo run --release -p diffsmc-sde --example simulate -- ou 2,0.5,0.5 201 0.1 11 > ou.csv
//! cargo run --release -p diffsmc-sde --example simulate -- double-well 1,1,0.7 201 0.25 3 > dw.csv
//! ```
//!
//! Arguments: model (`ou` or `double-well`), θ (comma-separated), number of observations,
//! spacing Δ (append `:irregular` to draw each gap uniformly in [Δ/2, 3Δ/2]), seed. OU paths
//! are simulated exactly from x0 = μ; the double well by Euler–Maruyama with step 1e-4 from
//! x0 = −√θ2.

use diffsmc::rng::{Purpose, StreamKey};
use diffsmc_sde::{DoubleWell, Observations, Ou, simulate_euler};
use rand::RngExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: simulate ou|double-well THETA N DT[:irregular] SEED");
        std::process::exit(2);
    }
    let theta: Vec<f64> = args[1]
        .split(',')
        .map(|v| v.trim().parse().expect("θ: numbers"))
        .collect();
    let n: usize = args[2].parse().expect("N: an integer");
    let (dt, irregular) = match args[3].split_once(':') {
        Some((d, "irregular")) => (d.parse::<f64>().expect("DT: a number"), true),
        _ => (args[3].parse::<f64>().expect("DT: a number"), false),
    };
    let seed: u64 = args[4].parse().expect("SEED: an integer");
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(1)).rng(0);
    let mut times = vec![0.0];
    for _ in 1..n {
        let gap = if irregular {
            dt * (0.5 + rng.random::<f64>())
        } else {
            dt
        };
        times.push(times.last().unwrap() + gap);
    }
    let obs: Observations = match args[0].as_str() {
        "ou" => {
            let ou = Ou::new(theta[0], theta[1], theta[2], 1).expect("valid θ");
            ou.simulate_exact(&[theta[1]], &times, seed)
                .expect("simulation")
        }
        "double-well" => {
            let dw = DoubleWell::new(theta[0], theta[1], theta[2]).expect("valid θ");
            simulate_euler(&dw, &[-theta[1].sqrt()], &times, 1e-4, seed).expect("simulation")
        }
        other => panic!("unknown model {other}"),
    };
    println!("t,x");
    for k in 0..obs.len() {
        println!("{},{}", obs.times()[k], obs.value(k)[0]);
    }
}
