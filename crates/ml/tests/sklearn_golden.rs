//! Our estimators against scikit-learn on the diabetes data. Fixtures come from
//! `scripts/export_diabetes.py`; no Python is needed to run this.

use mlops_ml::{LinearRegression, RegressionMetrics};
use ndarray::{Array1, Array2, s};

struct Golden {
    intercept: f64,
    coefficients: Vec<f64>,
    mse: f64,
    mae: f64,
    r2: f64,
    dup_intercept: f64,
    dup_coefficients: Vec<f64>,
}

fn golden() -> Golden {
    let text = include_str!("fixtures/diabetes_ols.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    Golden {
        intercept: v["intercept"].as_f64().unwrap(),
        coefficients: floats(&v["coefficients"]),
        mse: v["mse"].as_f64().unwrap(),
        mae: v["mae"].as_f64().unwrap(),
        r2: v["r2"].as_f64().unwrap(),
        dup_intercept: v["duplicated_last_feature"]["intercept"].as_f64().unwrap(),
        dup_coefficients: floats(&v["duplicated_last_feature"]["coefficients"]),
    }
}

fn diabetes() -> (Array2<f64>, Array1<f64>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/datasets/diabetes.csv"
    );
    let mut reader = csv::Reader::from_path(path).unwrap();
    let rows: Vec<Vec<f64>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(|f| f.parse().unwrap()).collect())
        .collect();
    let table = Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
    let p = table.ncols() - 1;
    (
        table.slice(s![.., ..p]).to_owned(),
        table.column(p).to_owned(),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 * (1.0 + b.abs())
}

#[test]
fn ols_matches_scikit_learn_on_diabetes() {
    let golden = golden();
    let (x, y) = diabetes();
    let model = LinearRegression::fit(x.view(), y.view()).unwrap();
    assert!(
        close(model.intercept, golden.intercept),
        "{} vs {}",
        model.intercept,
        golden.intercept
    );
    for (ours, theirs) in model.coefficients.iter().zip(&golden.coefficients) {
        assert!(close(*ours, *theirs), "{ours} vs {theirs}");
    }
    let metrics = RegressionMetrics::compute(y.view(), model.predict(x.view()).unwrap().view());
    assert!(close(metrics.mse, golden.mse));
    assert!(close(metrics.mae, golden.mae));
    assert!(close(metrics.r2, golden.r2));
}

#[test]
fn duplicated_column_gives_scikit_learns_minimum_norm_solution() {
    let golden = golden();
    let (x, y) = diabetes();
    let last = x
        .column(x.ncols() - 1)
        .to_owned()
        .insert_axis(ndarray::Axis(1));
    let x_dup = ndarray::concatenate![ndarray::Axis(1), x, last];
    let model = LinearRegression::fit(x_dup.view(), y.view()).unwrap();
    assert_eq!(model.rank, 10);
    assert!(close(model.intercept, golden.dup_intercept));
    for (ours, theirs) in model.coefficients.iter().zip(&golden.dup_coefficients) {
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
    }
}
