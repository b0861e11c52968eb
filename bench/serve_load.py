#!/usr/bin/env python3
"""Loopback load generator of the serving benchmark (bench/serve.sh), the same for both servers.

Each request is one image (a 640x480 JPEG, base64) for the model's image column, in a body
built before the clock starts. `latency`: one client, requests one after another, p50/p99.
`load`: CLIENTS clients on keep-alive connections for SECONDS, rows/s and p50/p99 under load.
`answers`: the probabilities of the first images, to check that both servers compute the same.
Prints one JSON line.
"""
import argparse
import base64
import http.client
import json
import os
import threading
import time
from urllib.parse import urlparse


def bodies(folder: str, column: str, count: int) -> list:
    names = sorted(os.listdir(folder))[:count]
    out = []
    for name in names:
        data = base64.b64encode(open(os.path.join(folder, name), "rb").read()).decode()
        out.append(json.dumps({"inputs": [{"name": column, "datatype": "BYTES", "shape": [1], "data": [data]}]}))
    return out


def post(connection, path: str, body: str) -> dict:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    assert response.status == 200, (response.status, data[:300])
    return json.loads(data)


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["latency", "load", "answers"])
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("--impl", required=True)
    parser.add_argument("--column", default="image")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    address = urlparse(args.url)
    path = f"/v2/models/{args.model}/infer"
    requests = bodies(args.images, args.column, 64)
    connect = lambda: http.client.HTTPConnection(address.hostname, address.port, timeout=300)  # noqa: E731

    if args.mode == "answers":
        connection = connect()
        answers = [post(connection, path, body)["outputs"] for body in requests[:5]]
        print(json.dumps({"impl": args.impl, "answers": [
            {o["name"]: o["data"][0] for o in outputs if o["name"].startswith("p_")} for outputs in answers]}))
        return

    connection = connect()
    for body in requests[:5]:  # warm-up
        post(connection, path, body)
    if args.mode == "latency":
        times = []
        for i in range(args.requests):
            started = time.perf_counter()
            post(connection, path, requests[i % len(requests)])
            times.append(time.perf_counter() - started)
        print(json.dumps({"impl": args.impl, "mode": "latency", "requests": args.requests,
                          "p50_ms": round(1000 * percentile(times, 0.5), 1),
                          "p99_ms": round(1000 * percentile(times, 0.99), 1)}))
        return

    times, lock = [], threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def client(index: int) -> None:
        own = connect()
        i = index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            post(own, path, requests[i % len(requests)])
            with lock:
                times.append(time.perf_counter() - started)
            i += args.clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"impl": args.impl, "mode": "load", "clients": args.clients, "requests": len(times),
                      "rows_per_second": round(len(times) / elapsed, 2),
                      "p50_ms": round(1000 * percentile(times, 0.5), 1),
                      "p99_ms": round(1000 * percentile(times, 0.99), 1)}))


if __name__ == "__main__":
    main()
