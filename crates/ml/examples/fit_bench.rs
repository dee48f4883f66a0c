//! The training benchmark's Rust side (scripts/bench/train.sh drives it, next to a scikit-learn
//! peer on the same files).
//!
//!   fit_bench generate DIR ROWS FEATURES      write X.f64, y_reg.f64, y_cls.f64 (raw little-endian)
//!   fit_bench fit DIR ROWS FEATURES MODEL     MODEL: ols_svd | ols_normal | ridge | logistic
//!   fit_bench stream DIR ROWS FEATURES CHUNK  ridge from sufficient statistics, CHUNK rows at a time
//!
//! Each `fit`/`stream` prints one JSON line: seconds (the fit alone for `fit`, reading included
//! for `stream`), the training loss, and the process's peak RSS.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use mlops_ml::linear::{LinearRegression, SufficientStats, ridge};
use mlops_ml::logistic::{LogisticRegression, LogisticSettings};
use mlops_ml::metrics::{RegressionMetrics, log_loss};
use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn write_f64(path: &Path, values: impl Iterator<Item = f64>) {
    let mut out = BufWriter::new(File::create(path).expect("create"));
    for v in values {
        out.write_all(&v.to_le_bytes()).expect("write");
    }
}

fn generate(dir: &Path, rows: usize, features: usize) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let weights: Vec<f64> = (0..features).map(|_| normal(&mut rng)).collect();
    let mut x = BufWriter::new(File::create(dir.join("X.f64")).expect("create"));
    let (mut y_reg, mut y_cls) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let scale = 1.0 / (features as f64).sqrt();
    let mut row = vec![0.0; features];
    for _ in 0..rows {
        row.iter_mut().for_each(|v| *v = normal(&mut rng));
        for v in &row {
            x.write_all(&v.to_le_bytes()).expect("write");
        }
        let score: f64 = row.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>();
        y_reg.push(score + 3.0 + normal(&mut rng));
        let p = 1.0 / (1.0 + (-(score * scale * 3.0)).exp());
        y_cls.push(f64::from(u8::from(rng.random::<f64>() < p)));
    }
    write_f64(&dir.join("y_reg.f64"), y_reg.into_iter());
    write_f64(&dir.join("y_cls.f64"), y_cls.into_iter());
}

fn read_f64(path: &Path, count: usize) -> Vec<f64> {
    let mut bytes = vec![0u8; count * 8];
    File::open(path)
        .expect("open")
        .read_exact(&mut bytes)
        .expect("read");
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn report(model: &str, rows: usize, seconds: f64, loss_name: &str, loss: f64) {
    println!(
        "{{\"impl\":\"ours\",\"model\":\"{model}\",\"rows\":{rows},\"seconds\":{seconds:.4},\"{loss_name}\":{loss:.10},\"peak_rss_mb\":{:.1}}}",
        peak_rss_mb()
    );
}

fn fit(dir: &Path, rows: usize, features: usize, model: &str) {
    let x = Array2::from_shape_vec(
        (rows, features),
        read_f64(&dir.join("X.f64"), rows * features),
    )
    .expect("shape");
    let y_name = if model == "logistic" {
        "y_cls.f64"
    } else {
        "y_reg.f64"
    };
    let y = Array1::from(read_f64(&dir.join(y_name), rows));
    let started = Instant::now();
    match model {
        "ols_svd" | "ols_normal" | "ridge" => {
            let fitted = match model {
                "ols_svd" => LinearRegression::fit(x.view(), y.view())
                    .expect("fit")
                    .model(),
                "ols_normal" => {
                    let mut stats = SufficientStats::new(features);
                    stats.update(x.view(), y.view()).expect("stats");
                    stats.ols().expect("fit")
                }
                _ => ridge(x.view(), y.view(), 1.0).expect("fit"),
            };
            let seconds = started.elapsed().as_secs_f64();
            let p = fitted.predict(x.view()).expect("predict");
            report(
                model,
                rows,
                seconds,
                "mse",
                RegressionMetrics::compute(y.view(), p.view()).mse,
            );
        }
        "logistic" => {
            let labels: Vec<usize> = y.iter().map(|v| *v as usize).collect();
            let fitted =
                LogisticRegression::fit(x.view(), &labels, 2, &LogisticSettings::default())
                    .expect("fit");
            let seconds = started.elapsed().as_secs_f64();
            let proba = fitted.predict_proba(x.view()).expect("predict");
            report(
                model,
                rows,
                seconds,
                "log_loss",
                log_loss(&labels, proba.view()),
            );
        }
        other => panic!("unknown model {other}"),
    }
}

fn stream(dir: &Path, rows: usize, features: usize, chunk: usize) {
    let started = Instant::now();
    let mut x_file = File::open(dir.join("X.f64")).expect("open");
    let mut y_file = File::open(dir.join("y_reg.f64")).expect("open");
    let mut stats = SufficientStats::new(features);
    let mut x_bytes = vec![0u8; chunk * features * 8];
    let mut y_bytes = vec![0u8; chunk * 8];
    let mut done = 0;
    while done < rows {
        let n = chunk.min(rows - done);
        x_file
            .read_exact(&mut x_bytes[..n * features * 8])
            .expect("read");
        y_file.read_exact(&mut y_bytes[..n * 8]).expect("read");
        let decode = |b: &[u8]| -> Vec<f64> {
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        let x = Array2::from_shape_vec((n, features), decode(&x_bytes[..n * features * 8]))
            .expect("shape");
        let y = Array1::from(decode(&y_bytes[..n * 8]));
        stats.update(x.view(), y.view()).expect("update");
        done += n;
    }
    let model = stats.ridge(1.0).expect("fit");
    let seconds = started.elapsed().as_secs_f64();
    // The training MSE needs a second pass; the first chunk's is enough to show the fit is sane.
    let n = chunk.min(rows);
    let x = read_f64(&dir.join("X.f64"), n * features);
    let x: ArrayView2<f64> = ArrayView2::from_shape((n, features), &x).expect("shape");
    let y = Array1::from(read_f64(&dir.join("y_reg.f64"), n));
    let p = model.predict(x).expect("predict");
    report(
        &format!("ridge_stream_{chunk}"),
        rows,
        seconds,
        "mse_first_chunk",
        RegressionMetrics::compute(y.view(), p.view()).mse,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fit_bench generate|fit|stream DIR ROWS FEATURES [MODEL|CHUNK]";
    let [_, command, dir, rows, features, rest @ ..] = args.as_slice() else {
        panic!("{usage}")
    };
    let (dir, rows, features) = (
        Path::new(dir),
        rows.parse().expect("ROWS"),
        features.parse().expect("FEATURES"),
    );
    match (command.as_str(), rest) {
        ("generate", []) => generate(dir, rows, features),
        ("fit", [model]) => fit(dir, rows, features, model),
        ("stream", [chunk]) => stream(dir, rows, features, chunk.parse().expect("CHUNK")),
        _ => panic!("{usage}"),
    }
}
