#!/usr/bin/env python3
"""Builds the real-image datasets the tests, the demo and the benchmarks run on, from packages
only (no downloads):

``digits/<label>/<n>.png``  scikit-learn's handwritten digits (real 8x8 scans of 43 people's
    handwriting), upscaled to 32x32 RGB PNGs, in class folders: image classification.

``photo-prices/table.csv`` + ``photo-prices/images/*.jpg``  a car-deals-like mixed table on
    real photos: each row is a random crop (flipped half the time) of one of six scikit-image
    photos standing for a "model", with numeric ``mileage``, categorical ``color``, text
    ``description`` and a numeric ``price``. The price is synthetic but honest about it: a base
    price per photo (so the model must recognise the photo from its embedding), lowered by
    mileage, raised by some colours and by "leather" in the description, plus noise.

``photo-values/table.csv`` + ``photo-values/images/*.jpg``  image-only regression for the auto
    image model: random crops of the same six photos, each with the base price of its photo in
    thousands plus noise (``value``), so the value is learnable from the image alone.

Deterministic for a seed; files are written to a temporary folder and renamed into place.
"""
import argparse
import csv
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

PHOTO_MODELS = {  # scikit-image sample photo -> base price
    "chelsea.png": 9000.0,
    "coffee.png": 14000.0,
    "rocket.jpg": 31000.0,
    "astronaut.png": 22000.0,
    "motorcycle_left.png": 26000.0,
    "brick.png": 18000.0,
}
COLORS = {"black": 1500.0, "white": 800.0, "red": 0.0, "silver": 400.0}
WORDS = ["clean", "one owner", "new tyres", "service history", "city car", "family", "garage kept"]


def digits(out: str, per_class: int, seed: int) -> None:
    for label, index, image in digit_images(per_class, seed):
        folder = os.path.join(out, str(label))
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{index:04d}.png"))


def digit_images(per_class: int, seed: int):
    """(label, index, 32x32 RGB image) of `per_class` scans per digit."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        indices = np.flatnonzero(data.target == label)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False)
        for index in sorted(chosen):
            gray = (255 - data.images[index] * (255.0 / 16.0)).astype(np.uint8)  # dark ink on white
            yield label, index, Image.fromarray(gray, mode="L").resize((32, 32), Image.BICUBIC).convert("RGB")


def photo_crops(rows: int, seed: int):
    """(photo name, 128x128 random crop, flipped half the time, rng) per row."""
    import skimage

    rng = np.random.default_rng(seed)
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos = {name: Image.open(os.path.join(data, name)).convert("RGB") for name in PHOTO_MODELS}
    for _ in range(rows):
        model = list(PHOTO_MODELS)[rng.integers(len(PHOTO_MODELS))]
        photo = photos[model]
        width, height = photo.size
        scale = rng.uniform(0.6, 1.0)
        w, h = int(width * scale), int(height * scale)
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        crop = photo.crop((left, top, left + w, top + h)).resize((128, 128), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        yield model, crop, rng


def photo_values(out: str, rows: int, seed: int) -> None:
    os.makedirs(os.path.join(out, "images"))
    with open(os.path.join(out, "table.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "value"])
        for row, (model, crop, rng) in enumerate(photo_crops(rows, seed + 1)):
            name = f"images/{row:05d}.jpg"
            crop.save(os.path.join(out, name), quality=90)
            writer.writerow([name, round(PHOTO_MODELS[model] / 1000 + rng.normal(0, 1), 3)])


def photo_prices(out: str, rows: int, seed: int) -> None:
    os.makedirs(os.path.join(out, "images"))
    with open(os.path.join(out, "table.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["photo", "mileage", "color", "description", "price"])
        for row, (model, crop, rng) in enumerate(photo_crops(rows, seed)):
            name = f"images/{row:05d}.jpg"
            crop.save(os.path.join(out, name), quality=90)
            mileage = int(rng.uniform(5_000, 200_000))
            color = list(COLORS)[rng.integers(len(COLORS))]
            words = list(rng.choice(WORDS, size=2, replace=False))
            leather = rng.random() < 0.3
            if leather:
                words.append("leather seats")
            price = PHOTO_MODELS[model] * (1 - mileage / 400_000) + COLORS[color] + (2000 if leather else 0)
            price += rng.normal(0, 500)
            writer.writerow([name, mileage, color, ", ".join(words), round(price, 2)])


def write_atomically(out: str, build) -> None:
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        build(tmp)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder that gets digits/ and photo-prices/")
    parser.add_argument("--digits-per-class", type=int, default=12)
    parser.add_argument("--photo-rows", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    write_atomically(os.path.join(args.out, "digits"), lambda d: digits(d, args.digits_per_class, args.seed))
    if args.photo_rows > 0:
        write_atomically(os.path.join(args.out, "photo-prices"), lambda d: photo_prices(d, args.photo_rows, args.seed))
        write_atomically(os.path.join(args.out, "photo-values"), lambda d: photo_values(d, args.photo_rows, args.seed))
    print(f"wrote {args.out}/digits, photo-prices and photo-values")


if __name__ == "__main__":
    main()
