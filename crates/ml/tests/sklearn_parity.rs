//! The toolkit against scikit-learn on real data. Fixtures come from
//! `scripts/export_sklearn_fixtures.py` (scikit-learn 1.9.1); no Python is needed to run this.
//! Closed-form results agree within 1e-8 relative, iterative ones within their tolerance,
//! metrics within 1e-12.

use std::collections::BTreeMap;

use mlops_ml::frame::{Column, Frame, Values};
use mlops_ml::linear::{ElasticNet, ridge};
use mlops_ml::logistic::{LogisticRegression, LogisticSettings};
use mlops_ml::metrics::{ClassificationMetrics, RegressionMetrics};
use mlops_ml::model::{Estimator, ModelKind, Prediction};
use mlops_ml::preprocess::{BinStrategy, FittedStep, ImputeStrategy, Preprocessor, StepSpec};
use mlops_ml::selection::{f_scores, k_fold, stratified_k_fold};
use mlops_ml::train::{build_target, evaluate};
use mlops_ml::tree::{DecisionTree, TreeSettings, TreeTarget};
use mlops_ml::{Target, model};
use ndarray::{Array1, Array2, Axis};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/sklearn.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Reads a bundled CSV: numeric features, and the last column as text.
fn dataset(name: &str) -> (Vec<String>, Array2<f64>, Vec<String>) {
    let path = format!(
        "{}/../../examples/datasets/{name}.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let p = headers.len() - 1;
    let x = Array2::from_shape_fn((rows.len(), p), |(i, j)| rows[i][j].parse().unwrap());
    let y = rows.iter().map(|r| r[p].clone()).collect();
    (headers[..p].to_vec(), x, y)
}

fn diabetes() -> (Vec<String>, Array2<f64>, Array1<f64>) {
    let (names, x, y) = dataset("diabetes");
    (names, x, y.iter().map(|v| v.parse().unwrap()).collect())
}

fn assert_close(ours: &[f64], theirs: &[f64], relative: f64, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= relative * scale.max(b.abs()),
            "{what}[{i}]: ours {a} vs scikit-learn {b} (relative tolerance {relative})"
        );
    }
}

fn frame(names: &[String], x: &Array2<f64>) -> Frame {
    Frame::from_matrix(names, x.view()).unwrap()
}

fn fit_steps(specs: Vec<StepSpec>, names: &[String], x: &Array2<f64>, y: &Array1<f64>) -> Frame {
    Preprocessor::fit(&specs, frame(names, x), &Target::Regression(y.clone()))
        .unwrap()
        .1
}

#[test]
fn ridge_lasso_and_elastic_net_match() {
    let f = &fixture()["regression"];
    let (_, x, y) = diabetes();
    for (alpha, key) in [(0.1, "ridge_0.1"), (1.0, "ridge_1.0")] {
        let m = ridge(x.view(), y.view(), alpha).unwrap();
        let golden = &f[key];
        assert_close(
            m.coefficients.as_slice().unwrap(),
            &floats(&golden["coefficients"]),
            1e-8,
            "ridge coef",
        );
        assert_close(
            &[m.intercept],
            &[golden["intercept"].as_f64().unwrap()],
            1e-8,
            "ridge intercept",
        );
    }
    let lasso = ElasticNet::fit(x.view(), y.view(), 0.1, 1.0, 1e-12, 1_000_000).unwrap();
    assert!(lasso.converged);
    assert_close(
        lasso.coefficients.as_slice().unwrap(),
        &floats(&f["lasso_0.1"]["coefficients"]),
        1e-6,
        "lasso coef",
    );
    let enet = ElasticNet::fit(x.view(), y.view(), 0.01, 0.7, 1e-12, 1_000_000).unwrap();
    assert_close(
        enet.coefficients.as_slice().unwrap(),
        &floats(&f["elastic_net_0.01_0.7"]["coefficients"]),
        1e-6,
        "enet coef",
    );
    assert_close(
        &[enet.intercept],
        &[f["elastic_net_0.01_0.7"]["intercept"].as_f64().unwrap()],
        1e-6,
        "enet intercept",
    );
}

#[test]
fn regression_metrics_and_cross_validation_match() {
    let f = &fixture()["regression"];
    let (_, x, y) = diabetes();
    let pred = ridge(x.view(), y.view(), 1.0)
        .unwrap()
        .predict(x.view())
        .unwrap();
    let m = RegressionMetrics::compute(y.view(), pred.view());
    let golden = &f["metrics_of_ridge_1.0"];
    for (name, value) in m.named() {
        assert_close(&[value], &[golden[name].as_f64().unwrap()], 1e-12, name);
    }
    // cross_val_score(Ridge(1.0), cv=KFold(5)): our k_fold assigns the same folds.
    let folds = k_fold(x.nrows(), 5, None).unwrap();
    let scores: Vec<f64> = folds
        .iter()
        .map(|test| {
            let train = mlops_ml::selection::complement(x.nrows(), test);
            let model = ridge(
                x.select(Axis(0), &train).view(),
                y.select(Axis(0), &train).view(),
                1.0,
            )
            .unwrap();
            let p = model.predict(x.select(Axis(0), test).view()).unwrap();
            RegressionMetrics::compute(y.select(Axis(0), test).view(), p.view()).r2
        })
        .collect();
    assert_close(
        &scores,
        &floats(&f["cv_ridge_1.0_r2_kfold5"]),
        1e-8,
        "cv r2",
    );
}

#[test]
fn regression_tree_matches() {
    let f = &fixture()["regression"];
    let (_, x, y) = diabetes();
    let tree = DecisionTree::fit(
        x.view(),
        TreeTarget::Regression(y.as_slice().unwrap()),
        &TreeSettings {
            max_depth: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    let p = tree.predict(x.view()).unwrap();
    assert_close(
        p.column(0).to_vec().as_slice(),
        &floats(&f["tree_depth4_predictions"]),
        1e-10,
        "tree",
    );
}

#[test]
fn scalers_power_transform_bins_and_polynomials_match() {
    let f = &fixture()["regression"];
    let (names, x, y) = diabetes();
    let row0 = |frame: Frame| frame.to_matrix().unwrap().row(0).to_vec();
    let out = fit_steps(
        vec![StepSpec::StandardScale { columns: None }],
        &names,
        &x,
        &y,
    );
    assert_close(
        &row0(out),
        &floats(&f["standard_scaler_row0"]),
        1e-10,
        "standard",
    );
    let out = fit_steps(
        vec![StepSpec::MinMaxScale {
            columns: None,
            min: Some(-1.0),
            max: Some(2.0),
        }],
        &names,
        &x,
        &y,
    );
    assert_close(
        &row0(out),
        &floats(&f["min_max_scaler_row0"]),
        1e-10,
        "min-max",
    );
    let out = fit_steps(
        vec![StepSpec::RobustScale { columns: None }],
        &names,
        &x,
        &y,
    );
    assert_close(
        &row0(out),
        &floats(&f["robust_scaler_row0"]),
        1e-10,
        "robust",
    );

    let (fitted, out) = Preprocessor::fit(
        &[StepSpec::YeoJohnson { columns: None }],
        frame(&names, &x),
        &Target::Regression(y.clone()),
    )
    .unwrap();
    let FittedStep::YeoJohnson { columns } = &fitted.steps[0] else {
        panic!()
    };
    let lambdas: Vec<f64> = columns.iter().map(|c| c.lambda).collect();
    // Brent's method stops at 1.48e-8 relative in lambda, in scipy and here.
    assert_close(
        &lambdas,
        &floats(&f["yeo_johnson_lambdas"]),
        1e-6,
        "yeo-johnson lambdas",
    );
    assert_close(
        &row0(out),
        &floats(&f["yeo_johnson_row0"]),
        1e-6,
        "yeo-johnson row 0",
    );

    let out = fit_steps(
        vec![StepSpec::Bin {
            columns: None,
            bins: Some(4),
            strategy: BinStrategy::Uniform,
        }],
        &names,
        &x,
        &y,
    );
    assert_close(
        &row0(out),
        &floats(&f["bins_uniform_4_row0"]),
        0.0,
        "uniform bins",
    );
    let (fitted, _) = Preprocessor::fit(
        &[StepSpec::Bin {
            columns: Some(vec![names[0].clone()]),
            bins: Some(4),
            strategy: BinStrategy::Quantile,
        }],
        frame(&names, &x),
        &Target::Regression(y.clone()),
    )
    .unwrap();
    let FittedStep::Bin { columns } = &fitted.steps[0] else {
        panic!()
    };
    assert_close(
        &columns[0].edges,
        &floats(&f["bins_quantile_4_edges_col0"]),
        1e-12,
        "quantile edges",
    );

    let first3 = names[..3].to_vec();
    let out = fit_steps(
        vec![StepSpec::Polynomial {
            columns: Some(first3.clone()),
            degree: Some(2),
            interaction_only: false,
        }],
        &names,
        &x,
        &y,
    );
    // Our output keeps the other columns first, then the expansion of the chosen three.
    let expansion: Vec<f64> = row0(out)[7..].to_vec();
    assert_close(
        &expansion,
        &floats(&f["polynomial_2_row0_first3"]),
        1e-12,
        "polynomial",
    );
}

#[test]
fn imputation_statistics_match() {
    let f = &fixture()["regression"];
    let (names, mut x, y) = diabetes();
    for i in (0..x.nrows()).step_by(7) {
        x[[i, 0]] = f64::NAN;
    }
    for i in (0..x.nrows()).step_by(5) {
        x[[i, 2]] = f64::NAN;
    }
    for (strategy, key) in [
        (ImputeStrategy::Mean, "impute_mean"),
        (ImputeStrategy::Median, "impute_median"),
        (ImputeStrategy::MostFrequent, "impute_most_frequent"),
    ] {
        let out = fit_steps(
            vec![StepSpec::Impute {
                strategy,
                fill_value: None,
                columns: None,
            }],
            &names,
            &x,
            &y,
        );
        let m = out.to_matrix().unwrap();
        assert_close(&[m[[0, 0]], m[[0, 2]]], &floats(&f[key]), 1e-12, key);
    }
}

#[test]
fn feature_selection_matches() {
    let f = &fixture()["regression"];
    let (names, x, y) = diabetes();
    let scores = f_scores(x.view(), &Target::Regression(y.clone()));
    assert_close(&scores, &floats(&f["f_regression"]), 1e-10, "f_regression");
    let kept = |out: Frame, all: &[String]| -> Vec<bool> {
        let left = out.names();
        all.iter().map(|n| left.contains(n)).collect()
    };
    let support = |key: &str| -> Vec<bool> {
        f[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect()
    };
    let out = fit_steps(vec![StepSpec::SelectKBest { k: 4 }], &names, &x, &y);
    assert_eq!(kept(out, &names), support("select_k_best_4"));
    let out = fit_steps(
        vec![StepSpec::SelectFromLasso {
            alpha: 1.0,
            threshold: None,
        }],
        &names,
        &x,
        &y,
    );
    assert_eq!(kept(out, &names), support("select_from_lasso_1.0"));
    let mut with_constant = names.clone();
    with_constant.push("constant".into());
    let x_var = ndarray::concatenate![Axis(1), x, Array2::from_elem((x.nrows(), 1), 3.0)];
    let out = fit_steps(
        vec![StepSpec::VarianceThreshold { threshold: 0.0 }],
        &with_constant,
        &x_var,
        &y,
    );
    assert_eq!(
        kept(out, &with_constant),
        support("variance_threshold_0_with_constant_column")
    );
}

fn standardized(x: &Array2<f64>) -> Array2<f64> {
    let mean = x.mean_axis(Axis(0)).unwrap();
    let std = x.std_axis(Axis(0), 0.0);
    (x - &mean) / &std
}

#[test]
fn binary_logistic_regression_and_metrics_match() {
    let f = &fixture()["binary"];
    let (_, x, y) = dataset("breast_cancer");
    let (target, classes) = build_target(
        mlops_ml::model::Task::Classification,
        &Values::Categorical(y.iter().cloned().map(Some).collect()),
    )
    .unwrap();
    assert_eq!(classes, vec!["0", "1"]);
    let Target::Classification { labels, .. } = &target else {
        panic!()
    };
    let xs = standardized(&x);
    let model = LogisticRegression::fit(
        xs.view(),
        labels,
        2,
        &LogisticSettings {
            c: 1.0,
            tol: 1e-10,
            max_iter: 10_000,
        },
    )
    .unwrap();
    assert!(model.converged, "{} iterations", model.iterations);
    let golden = &f["logistic_C1"];
    assert_close(
        model.coefficients.row(0).to_vec().as_slice(),
        &floats(&golden["coefficients"]),
        1e-5,
        "coef",
    );
    assert_close(
        &model.intercepts,
        &floats(&golden["intercept"]),
        1e-5,
        "intercept",
    );
    let proba = model.predict_proba(xs.view()).unwrap();
    assert_close(
        proba.column(1).to_vec().as_slice(),
        &floats(&golden["proba1"]),
        1e-6,
        "proba",
    );

    // Metrics on scikit-learn's own probabilities, so they compare at 1e-12.
    let theirs = floats(&golden["proba1"]);
    let theirs = Array2::from_shape_fn((theirs.len(), 2), |(i, k)| {
        if k == 1 { theirs[i] } else { 1.0 - theirs[i] }
    });
    let m = ClassificationMetrics::compute(labels, theirs.view());
    let g = &f["metrics"];
    for name in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
    ] {
        let ours = m.named().into_iter().find(|(n, _)| *n == name).unwrap().1;
        assert_close(&[ours], &[g[name].as_f64().unwrap()], 1e-12, name);
    }
    let confusion: Vec<Vec<u64>> = serde_json::from_value(g["confusion_matrix"].clone()).unwrap();
    assert_eq!(m.confusion_matrix, confusion);

    let tree = DecisionTree::fit(
        x.view(),
        TreeTarget::Classes { labels, classes: 2 },
        &TreeSettings {
            max_depth: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let p = tree.predict(x.view()).unwrap();
    assert_close(
        p.column(1).to_vec().as_slice(),
        &floats(&f["tree_depth3_proba1"]),
        1e-12,
        "tree proba",
    );
}

#[test]
fn multinomial_logistic_regression_folds_and_metrics_match() {
    let f = &fixture()["multiclass"];
    let (_, x, y) = dataset("iris");
    let (target, classes) = build_target(
        mlops_ml::model::Task::Classification,
        &Values::Categorical(y.iter().cloned().map(Some).collect()),
    )
    .unwrap();
    assert_eq!(classes, vec!["setosa", "versicolor", "virginica"]);
    let Target::Classification { labels, .. } = &target else {
        panic!()
    };
    let model = LogisticRegression::fit(
        x.view(),
        labels,
        3,
        &LogisticSettings {
            c: 1.0,
            tol: 1e-10,
            max_iter: 10_000,
        },
    )
    .unwrap();
    assert!(model.converged, "{} iterations", model.iterations);
    let golden = &f["logistic_C1"];
    let coef: Vec<f64> = golden["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close(model.coefficients.as_slice().unwrap(), &coef, 1e-5, "coef");
    assert_close(
        &model.intercepts,
        &floats(&golden["intercept"]),
        1e-5,
        "intercept",
    );
    let proba = model.predict_proba(x.view()).unwrap();
    let theirs: Vec<f64> = golden["proba"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close(proba.as_slice().unwrap(), &theirs, 1e-6, "proba");

    let theirs = Array2::from_shape_vec((x.nrows(), 3), theirs).unwrap();
    let m = ClassificationMetrics::compute(labels, theirs.view());
    let g = &f["metrics"];
    let named: BTreeMap<&str, f64> = m.named().into_iter().collect();
    for name in [
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "log_loss",
    ] {
        assert_close(&[named[name]], &[g[name].as_f64().unwrap()], 1e-12, name);
    }
    assert_close(
        &[m.roc_auc],
        &[g["roc_auc_ovr_macro"].as_f64().unwrap()],
        1e-12,
        "roc_auc ovr",
    );

    let folds = stratified_k_fold(labels, 5).unwrap();
    let theirs: Vec<Vec<usize>> =
        serde_json::from_value(f["stratified_kfold5_test_folds"].clone()).unwrap();
    assert_eq!(folds, theirs);
    assert_close(
        &f_scores(x.view(), &target),
        &floats(&f["f_classif"]),
        1e-10,
        "f_classif",
    );

    let tree = DecisionTree::fit(
        x.view(),
        TreeTarget::Classes { labels, classes: 3 },
        &TreeSettings {
            max_depth: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let predicted = mlops_ml::metrics::argmax_rows(tree.predict(x.view()).unwrap().view());
    let theirs: Vec<usize> = serde_json::from_value(f["tree_depth3_predictions"].clone()).unwrap();
    assert_eq!(predicted, theirs);
}

#[test]
fn a_fitted_pipeline_predicts_through_its_bundle_like_the_parts() {
    let (names, x, y) = diabetes();
    let (estimator, _) = model::fit(
        ModelKind::Ridge,
        &BTreeMap::from([("alpha".to_string(), 1.0.into())]),
        x.view(),
        &Target::Regression(y.clone()),
        0,
        &mut |_, _| {},
    )
    .unwrap();
    let Estimator::Linear { coefficients, .. } = &estimator else {
        panic!()
    };
    assert_eq!(coefficients.len(), names.len());
    let prediction = estimator.predict(x.view(), 0).unwrap();
    let metrics = evaluate(&Target::Regression(y), &prediction).unwrap();
    let golden = fixture()["regression"]["metrics_of_ridge_1.0"]["r2"]
        .as_f64()
        .unwrap();
    assert_close(&[metrics["r2"]], &[golden], 1e-10, "r2 through model::fit");
    assert!(matches!(prediction, Prediction::Values(_)));
    let _ = Column::numeric("unused", vec![]);
}
