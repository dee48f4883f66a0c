#!/usr/bin/env python3
"""Golden numbers for the ML library's scikit-learn parity tests (crates/ml/tests/sklearn_parity.rs),
and the bundled classification datasets.

Writes:
  examples/datasets/breast_cancer.csv  Wisconsin diagnostic breast cancer (569 x 30, binary target)
  examples/datasets/iris.csv           Fisher's iris (150 x 4, three species)
  crates/ml/tests/fixtures/sklearn.json

Both datasets are public domain / CC BY 4.0 via the UCI repository, as shipped by scikit-learn.
Every number comes from scikit-learn itself; the Rust tests only compare. Iterative solvers run
to a tight tolerance here so the comparison measures our solver, not the stopping rule.

Usage: python3 -m venv .venv && .venv/bin/pip install scikit-learn==1.9.1 &&
       .venv/bin/python scripts/export_sklearn_fixtures.py
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.feature_selection import (SelectFromModel, SelectKBest, VarianceThreshold,
                                       f_classif, f_regression)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import (accuracy_score, confusion_matrix, explained_variance_score, f1_score,
                             log_loss, mean_absolute_error, mean_squared_error, precision_score,
                             r2_score, recall_score, roc_auc_score)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.preprocessing import (KBinsDiscretizer, MinMaxScaler, PolynomialFeatures,
                                   PowerTransformer, RobustScaler, StandardScaler)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATASETS = ROOT / "examples" / "datasets"
FIXTURE = ROOT / "crates" / "ml" / "tests" / "fixtures" / "sklearn.json"


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=float).ravel()]


def matrix(a):
    return [floats(row) for row in np.asarray(a, dtype=float)]


def write_csv(path, names, x, y_name, y):
    with path.open("w") as out:
        out.write(",".join(list(names) + [y_name]) + "\n")
        for row, target in zip(x, y):
            out.write(",".join(repr(float(v)) for v in row) + f",{target}\n")


def regression_fixtures():
    x, y = load_diabetes(return_X_y=True)
    out = {}
    for alpha in (0.1, 1.0):
        m = Ridge(alpha=alpha).fit(x, y)
        out[f"ridge_{alpha}"] = {"coefficients": floats(m.coef_), "intercept": float(m.intercept_)}
    m = Lasso(alpha=0.1, tol=1e-12, max_iter=1_000_000).fit(x, y)
    out["lasso_0.1"] = {"coefficients": floats(m.coef_), "intercept": float(m.intercept_)}
    m = ElasticNet(alpha=0.01, l1_ratio=0.7, tol=1e-12, max_iter=1_000_000).fit(x, y)
    out["elastic_net_0.01_0.7"] = {"coefficients": floats(m.coef_), "intercept": float(m.intercept_)}

    pred = Ridge(alpha=1.0).fit(x, y).predict(x)
    out["metrics_of_ridge_1.0"] = {
        "mse": float(mean_squared_error(y, pred)),
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)),
        "explained_variance": float(explained_variance_score(y, pred)),
    }
    out["cv_ridge_1.0_r2_kfold5"] = floats(cross_val_score(Ridge(alpha=1.0), x, y, cv=KFold(5), scoring="r2"))

    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, y)
    out["tree_depth4_predictions"] = floats(tree.predict(x))

    out["standard_scaler_row0"] = floats(StandardScaler().fit_transform(x)[0])
    out["min_max_scaler_row0"] = floats(MinMaxScaler(feature_range=(-1, 2)).fit_transform(x)[0])
    out["robust_scaler_row0"] = floats(RobustScaler().fit_transform(x)[0])
    pt = PowerTransformer(method="yeo-johnson").fit(x)
    out["yeo_johnson_lambdas"] = floats(pt.lambdas_)
    out["yeo_johnson_row0"] = floats(pt.transform(x)[:1])
    out["bins_uniform_4_row0"] = floats(
        KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="uniform").fit_transform(x)[0])
    out["bins_quantile_4_edges_col0"] = floats(
        KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile",
                         quantile_method="linear").fit(x).bin_edges_[0])
    out["polynomial_2_row0_first3"] = floats(
        PolynomialFeatures(degree=2, include_bias=False).fit_transform(x[:, :3])[0])
    out["f_regression"] = floats(f_regression(x, y)[0])
    out["select_k_best_4"] = [bool(v) for v in SelectKBest(f_regression, k=4).fit(x, y).get_support()]
    out["select_from_lasso_1.0"] = [bool(v) for v in SelectFromModel(Lasso(alpha=1.0)).fit(x, y).get_support()]
    x_var = np.hstack([x, np.full((len(x), 1), 3.0)])
    out["variance_threshold_0_with_constant_column"] = [bool(v) for v in VarianceThreshold().fit(x_var).get_support()]

    # Missing values: every 7th row of column 0 and every 5th of column 2.
    x_nan = x.copy()
    x_nan[::7, 0] = np.nan
    x_nan[::5, 2] = np.nan
    for strategy in ("mean", "median", "most_frequent"):
        out[f"impute_{strategy}"] = floats(SimpleImputer(strategy=strategy).fit(x_nan).statistics_[[0, 2]])
    return out


def binary_fixtures():
    data = load_breast_cancer()
    x, y = data.data, data.target
    write_csv(DATASETS / "breast_cancer.csv", [n.replace(" ", "_") for n in data.feature_names], x,
              "malignant", 1 - y)
    y = 1 - y  # 1 = malignant, matching the CSV
    xs = StandardScaler().fit_transform(x)
    m = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(xs, y)
    proba = m.predict_proba(xs)
    pred = m.predict(xs)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    return {
        "logistic_C1": {"coefficients": floats(m.coef_), "intercept": floats(m.intercept_),
                        "proba1": floats(proba[:, 1])},
        "metrics": {
            "accuracy": float(accuracy_score(y, pred)),
            "precision": float(precision_score(y, pred)),
            "recall": float(recall_score(y, pred)),
            "f1": float(f1_score(y, pred)),
            "roc_auc": float(roc_auc_score(y, proba[:, 1])),
            "log_loss": float(log_loss(y, proba)),
            "confusion_matrix": confusion_matrix(y, pred).tolist(),
        },
        "tree_depth3_proba1": floats(tree.predict_proba(x)[:, 1]),
    }


def multiclass_fixtures():
    data = load_iris()
    x, y = data.data, data.target
    names = [n.replace(" (cm)", "").replace(" ", "_") for n in data.feature_names]
    species = np.array(data.target_names)[y]
    write_csv(DATASETS / "iris.csv", names, x, "species", species)
    m = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(x, y)
    proba = m.predict_proba(x)
    pred = m.predict(x)
    skf = StratifiedKFold(5)
    return {
        "logistic_C1": {"coefficients": matrix(m.coef_), "intercept": floats(m.intercept_ - m.intercept_.mean()),
                        "proba": matrix(proba)},
        "metrics": {
            "accuracy": float(accuracy_score(y, pred)),
            "precision_macro": float(precision_score(y, pred, average="macro")),
            "recall_macro": float(recall_score(y, pred, average="macro")),
            "f1_macro": float(f1_score(y, pred, average="macro")),
            "precision_weighted": float(precision_score(y, pred, average="weighted")),
            "recall_weighted": float(recall_score(y, pred, average="weighted")),
            "f1_weighted": float(f1_score(y, pred, average="weighted")),
            "roc_auc_ovr_macro": float(roc_auc_score(y, proba, multi_class="ovr")),
            "log_loss": float(log_loss(y, proba)),
        },
        "stratified_kfold5_test_folds": [[int(i) for i in test] for _, test in skf.split(x, y)],
        "f_classif": floats(f_classif(x, y)[0]),
        "tree_depth3_predictions": [int(v) for v in DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y).predict(x)],
    }


def main() -> None:
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    fixture = {
        "sklearn_version": sklearn.__version__,
        "regression": regression_fixtures(),
        "binary": binary_fixtures(),
        "multiclass": multiclass_fixtures(),
    }
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {FIXTURE}, {DATASETS / 'breast_cancer.csv'}, {DATASETS / 'iris.csv'}")


if __name__ == "__main__":
    main()
