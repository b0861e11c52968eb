#!/usr/bin/env python3
"""A KServe v2 client for `ocellus serve`, standard library only: scores rows of a CSV.

    python3 examples/serving/client.py http://127.0.0.1:8080 photo-prices rows.csv --rows 3

The model's metadata says which inputs it needs and their datatypes; each CSV column of that
name becomes one input. A cell of a BYTES input that names a file (relative to the CSV) is sent
as the file's bytes, base64; an http(s) URL is sent as it is (the server downloads it); an
empty cell is a missing value. Prints the outputs as CSV, one line per row.
"""
import argparse
import base64
import csv
import json
import os
import sys
import time
import urllib.error
import urllib.request


def call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        sys.exit(f"{url}: {error.code}: {json.load(error).get('error', '')}")


def wait_ready(server: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{server}/v2/health/ready", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                sys.exit(f"{server} is not ready after {seconds:.0f} s")
            time.sleep(0.2)


def cell(value: str, datatype: str, folder: str):
    if value == "":
        return None
    if datatype != "BYTES":
        return float(value)
    path = os.path.join(folder, value)
    if not value.startswith(("http://", "https://")) and os.path.isfile(path):
        return base64.b64encode(open(path, "rb").read()).decode()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("model")
    parser.add_argument("table", help="CSV with a column per model input")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows")
    parser.add_argument("--wait", type=float, default=0, help="wait up to S seconds for readiness")
    args = parser.parse_args()
    server = args.server.rstrip("/")
    if args.wait:
        wait_ready(server, args.wait)
    base = f"{server}/v2/models/{args.model}"
    metadata = call(base)
    with open(args.table, newline="") as file:
        rows = list(csv.DictReader(file))[: args.rows]
    folder = os.path.dirname(os.path.abspath(args.table))
    inputs = []
    for spec in metadata["inputs"]:
        name, datatype = spec["name"], spec["datatype"]
        if rows and name not in rows[0]:
            sys.exit(f"{args.table} has no column {name!r}; the model needs "
                     + ", ".join(i["name"] for i in metadata["inputs"]))
        data = [cell(row[name], datatype, folder) for row in rows]
        inputs.append({"name": name, "datatype": datatype, "shape": [len(data)], "data": data})
    response = call(f"{base}/infer", {"id": os.path.basename(args.table), "inputs": inputs})
    outputs = response["outputs"]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([o["name"] for o in outputs])
    for i in range(len(rows)):
        writer.writerow([o["data"][i] for o in outputs])


if __name__ == "__main__":
    main()
