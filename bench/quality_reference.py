#!/usr/bin/env python3
"""Python reference for the quality benchmark (bench/quality.sh): the same train/test split
(read from the datasets an `ocellus run` imported), the same backbone and preprocessing in
PyTorch, then scikit-learn: logistic regression on frozen embeddings for classification (C by
3-fold cross-validation on all training rows, by log loss),
HistGradientBoosting on embeddings + tabular columns for regression. Prints one JSON line.
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def load(dataset):
    meta = json.load(open(os.path.join(dataset, "dataset.json")))
    rows = [json.loads(line) for line in open(os.path.join(dataset, "table.jsonl"))]
    return meta, rows


def embed(model, manifest, paths, batch=16):
    shorter, crop = manifest["resize"]["shorterSide"], manifest["resize"]["centerCrop"]
    mean, std = np.array(manifest["mean"], np.float32), np.array(manifest["std"], np.float32)
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch):
            arrays = []
            for path in paths[start:start + batch]:
                image = Image.open(path).convert("RGB")
                w, h = image.size
                scale = shorter / min(w, h)
                size = (max(crop, int(w * scale + 0.5)), max(crop, int(h * scale + 0.5)))
                image = image.resize(size, Image.BILINEAR)
                left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
                image = image.crop((left, top, left + crop, top + crop))
                arrays.append(((np.asarray(image, np.float32) / 255 - mean) / std).transpose(2, 0, 1))
            out.append(model(torch.from_numpy(np.stack(arrays))).numpy())
    return np.concatenate(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--task", choices=["classification", "regression"], required=True)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.set_num_threads(2)
    manifest = json.load(open(os.path.join(args.backbone, "manifest.json")))
    model = torch.jit.load(os.path.join(args.backbone, "model.pt")).eval()
    meta, train = load(args.train)
    _, test = load(args.test)
    image_column = meta["imageColumns"][0]
    x_train = embed(model, manifest, [os.path.join(args.train, r[image_column]) for r in train])
    x_test = embed(model, manifest, [os.path.join(args.test, r[image_column]) for r in test])
    if args.task == "classification":
        y_train = [str(r[args.target]) for r in train]
        y_test = [str(r[args.target]) for r in test]
        # C by 3-fold cross-validation on all training rows, by log loss, over the strengths
        # Ocellus tries (C = 1 / alpha).
        search = LogisticRegressionCV(Cs=[10.0, 1.0, 0.1, 0.01, 0.001, 0.0001], cv=3, scoring="neg_log_loss",
                                      max_iter=3000, random_state=args.seed)
        clf = make_pipeline(StandardScaler(), search)
        clf.fit(x_train, y_train)
        proba = clf.predict_proba(x_test)
        accuracy = accuracy_score(y_test, clf.predict(x_test))
        result = {"Accuracy": accuracy, "AccuracyStdErr": (accuracy * (1 - accuracy) / len(y_test)) ** 0.5,
                  "LogLoss": log_loss(y_test, proba, labels=clf.classes_), "C": float(search.C_[0])}
    else:
        columns = [c for c in meta["columns"] if c["name"] not in (args.target, image_column)]
        blocks_train, blocks_test, categorical = [x_train], [x_test], []
        for column in columns:
            name, kind = column["name"], column["type"]
            if kind == "Numeric":
                blocks_train.append(np.array([[r[name] if r[name] is not None else np.nan] for r in train], float))
                blocks_test.append(np.array([[r[name] if r[name] is not None else np.nan] for r in test], float))
            elif kind == "Categorical":
                levels = sorted({r[name] for r in train if r[name] is not None})
                code = {v: i for i, v in enumerate(levels)}
                offset = sum(b.shape[1] for b in blocks_train)
                categorical.append(offset)
                blocks_train.append(np.array([[code.get(r[name], np.nan)] for r in train], float))
                blocks_test.append(np.array([[code.get(r[name], np.nan)] for r in test], float))
            elif kind == "Text":
                text = make_pipeline(HashingVectorizer(ngram_range=(1, 2), alternate_sign=False),
                                     TfidfTransformer(sublinear_tf=True), TruncatedSVD(10, random_state=args.seed))
                blocks_train.append(text.fit_transform([r[name] or "" for r in train]))
                blocks_test.append(text.transform([r[name] or "" for r in test]))
        features_train, features_test = np.hstack(blocks_train), np.hstack(blocks_test)
        mask = np.zeros(features_train.shape[1], bool)
        mask[categorical] = True
        y_train = np.array([r[args.target] for r in train], float)
        y_test = np.array([r[args.target] for r in test], float)
        hgb = HistGradientBoostingRegressor(categorical_features=mask, random_state=args.seed, early_stopping=True)
        hgb.fit(features_train, y_train)
        predicted = hgb.predict(features_test)
        result = {"RMSE": root_mean_squared_error(y_test, predicted), "MAE": mean_absolute_error(y_test, predicted),
                  "R2": r2_score(y_test, predicted)}
    print(json.dumps({"impl": "python-reference", "task": args.task, "rows_train": len(train),
                      "rows_test": len(test), **{k: round(float(v), 6) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
