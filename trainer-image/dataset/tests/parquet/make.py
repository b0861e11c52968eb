"""Writes the Parquet fixtures of the dataset import tests, with pyarrow as data platforms do.

Run from this folder: `python make.py` (needs `pip install pyarrow pillow`). The files are
committed, so the tests need neither; rerun only to change them.

- pets-bytes.parquet: 9 rows, Hugging Face's image layout (`image` is a struct of `bytes` and
  `path`), PNG and JPEG alternating; string label; a zip code stored as a string; int64 with a
  null; double; bool; date32; a list column (not importable: dropped). Snappy.
- raw-bytes.parquet: 6 rows, `picture` a plain binary column of PNG bytes, int64 label. Gzip.
- photo-paths.parquet: 4 rows, `photo` relative paths `photos/car<i>.png` (the test writes the
  images beside it), double with a null, string. Zstd.
"""

import datetime
import io

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def encoded(color, fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, format=fmt)
    return buffer.getvalue()


labels = ["cat", "dog", "bird"]
rows = 9
images = [
    {"bytes": encoded((40 * i, 200 - 20 * i, 90), "PNG" if i % 2 == 0 else "JPEG"), "path": f"img{i}.png"}
    for i in range(rows)
]
pets = pa.table(
    {
        "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array([labels[i % 3] for i in range(rows)], type=pa.string()),
        "zip": pa.array([f"0213{i}" for i in range(rows)], type=pa.string()),
        "age": pa.array([None if i == 3 else i + 1 for i in range(rows)], type=pa.int64()),
        "weight": pa.array([2.5 + i * 0.25 for i in range(rows)], type=pa.float64()),
        "indoor": pa.array([i % 2 == 0 for i in range(rows)], type=pa.bool_()),
        "seen": pa.array([datetime.date(2024, 1, 1 + i) for i in range(rows)], type=pa.date32()),
        "tags": pa.array([["a", "b"][: i % 3] for i in range(rows)], type=pa.list_(pa.string())),
    }
)
pq.write_table(pets, "pets-bytes.parquet", compression="snappy")

raw = pa.table(
    {
        "picture": pa.array([encoded((30 * i, 30 * i, 30 * i), "PNG") for i in range(6)], type=pa.binary()),
        "label": pa.array([i % 2 for i in range(6)], type=pa.int64()),
    }
)
pq.write_table(raw, "raw-bytes.parquet", compression="gzip")

paths = pa.table(
    {
        "photo": pa.array([f"photos/car{i}.png" for i in range(4)], type=pa.string()),
        "price": pa.array([10000.0, 12500.5, None, 9000.0], type=pa.float64()),
        "make": pa.array(["ford", "audi", "ford", "bmw"], type=pa.string()),
    }
)
pq.write_table(paths, "photo-paths.parquet", compression="zstd")
