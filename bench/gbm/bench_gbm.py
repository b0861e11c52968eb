"""LightGBM (through ocellus-tabular) against scikit-learn's HistGradientBoosting on the same
features and the same train/valid/test split.

Data sets ship with scikit-learn (no download): digits (multiclass), breast_cancer (binary),
diabetes (regression), and 20,000-row make_classification / make_regression. Each is split
60/20/20 with a fixed seed and written as CSV into --work; the Rust side reads those files.

Both sides stop early on the same validation split and use 2 threads. Reported: test metrics
and fit seconds of HistGradientBoosting (defaults, early stopping on the validation split),
ocellus LightGBM with one trial (its defaults), and ocellus LightGBM with its search within a
budget.
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
from sklearn import datasets, metrics  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

SEED = 0


def load(name):
    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        return x, y, "multiclass"
    if name == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        return x, y, "binary"
    if name == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
        return x, y, "regression"
    if name == "synthetic_classification_20k":
        x, y = datasets.make_classification(
            n_samples=20_000, n_features=40, n_informative=15, n_classes=3, random_state=SEED
        )
        return x, y, "multiclass"
    if name == "synthetic_regression_20k":
        x, y = datasets.make_regression(n_samples=20_000, n_features=40, n_informative=15, noise=10.0, random_state=SEED)
        # A non-linear target, so that trees have something to learn beyond a hyperplane.
        return x, y + 50.0 * np.sin(x[:, 0]) * x[:, 1], "regression"
    raise ValueError(name)


NAMES = ["digits", "breast_cancer", "diabetes", "synthetic_classification_20k", "synthetic_regression_20k"]


def split(x, y, task):
    stratify = y if task != "regression" else None
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=SEED, stratify=stratify)
    stratify = y_rest if task != "regression" else None
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=SEED, stratify=stratify
    )
    return {"train": (x_train, y_train), "valid": (x_valid, y_valid), "test": (x_test, y_test)}


def write(parts, directory):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in parts.items():
        np.savetxt(directory / f"X_{name}.csv", x, delimiter=",", fmt="%.9g")
        np.savetxt(directory / f"y_{name}.csv", y, fmt="%.9g")


def scores(task, y, predicted):
    """The same metrics ocellus-tabular reports."""
    if task == "regression":
        return {
            "RMSE": metrics.root_mean_squared_error(y, predicted),
            "MAE": metrics.mean_absolute_error(y, predicted),
            "R2": metrics.r2_score(y, predicted),
        }
    labels = predicted.argmax(axis=1)
    out = {"LogLoss": metrics.log_loss(y, predicted), "Accuracy": metrics.accuracy_score(y, labels)}
    if task == "binary":
        out["AUC"] = metrics.roc_auc_score(y, predicted[:, 1])
        out["F1"] = metrics.f1_score(y, labels)
    else:
        out["AUC"] = metrics.roc_auc_score(y, predicted, multi_class="ovr", average="macro")
        out["F1"] = metrics.f1_score(y, labels, average="macro")
    return out


def hist_gradient_boosting(task, parts):
    model_class = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    model = model_class(early_stopping=True, max_iter=2000, n_iter_no_change=50, random_state=SEED)
    (x, y), (xv, yv), (xt, yt) = parts["train"], parts["valid"], parts["test"]
    start = time.perf_counter()
    model.fit(x, y, X_val=xv, y_val=yv)
    seconds = time.perf_counter() - start
    predicted = model.predict(xt) if task == "regression" else model.predict_proba(xt)
    return {"fit_seconds": seconds, "rounds": int(model.n_iter_), "test": scores(task, yt, predicted)}


def ocellus(binary, directory, task, trials, budget):
    out = subprocess.run(
        [binary, str(directory), task, str(trials), str(budget)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True, help="the bench_gbm example binary")
    parser.add_argument("--work", default="target/bench-gbm")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds for the ocellus search")
    parser.add_argument("--json", help="also write all results here")
    args = parser.parse_args()

    results = []
    header = ["data set", "task", "rows", "model", "fit s", "rounds", "test metrics"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in NAMES:
        x, y, task = load(name)
        parts = split(x, y, task)
        directory = Path(args.work) / name
        write(parts, directory)
        runs = {
            "sklearn HistGradientBoosting": hist_gradient_boosting(task, parts),
            "ocellus LightGBM, 1 trial": ocellus(args.binary, directory, task, 1, args.budget),
            f"ocellus LightGBM, search {args.budget:g} s": ocellus(args.binary, directory, task, 16, args.budget),
        }
        for model, run in runs.items():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(run["test"].items()))
            rows = f"{x.shape[0]} x {x.shape[1]}"
            print(f"| {name} | {task} | {rows} | {model} | {run['fit_seconds']:.2f} | {run['rounds']} | {shown} |")
            results.append({"dataset": name, "task": task, "model": model, **run})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
