#!/usr/bin/env python3
"""The Python reference of the serving benchmark (bench/serve.sh): a minimal KServe v2 REST
server, standard library only (ThreadingHTTPServer), around the same model as the Ocellus
bundle it is given, on the same runtime (PyTorch/libtorch):

- the backbone's model.pt frozen at load in channels_last (its fastest form in
  bench/embed_reference.py), 2 intra-op threads, one forward at a time (a lock: two concurrent
  forwards on 2 cores only oversubscribe them);
- Pillow decode + the manifest's resize/crop/normalise (bench/embed_reference.py's);
- the bundle's PCA projection and linear model (linear/linear.json) with numpy, softmax.

Only image-only bundles with the linear learner are supported: that is what the benchmark
trains. Prints `listening on http://HOST:PORT` when ready.
"""
import argparse
import base64
import io
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch

from embed_reference import Images


class Model:
    def __init__(self, bundle: str):
        manifest = json.load(open(os.path.join(bundle, "bundle.json")))
        assert manifest["learner"] == "Linear" and len(manifest["columns"]) == 1, "image-only linear bundles"
        (image,) = manifest["images"]
        self.name = manifest["experiment"]
        self.column = image["column"]
        self.classes = [str(c) for c in manifest["classes"]]
        backbone = os.path.join(bundle, "backbones", image["backbone"])
        self.preprocess = json.load(open(os.path.join(backbone, "manifest.json")))
        model = torch.jit.load(os.path.join(backbone, "model.pt")).eval().to(memory_format=torch.channels_last)
        self.network = torch.jit.freeze(model)
        pca = json.load(open(os.path.join(bundle, image["projection"])))
        self.pca_mean = np.array(pca["mean"], dtype=np.float64)
        self.components = np.array(pca["components"], dtype=np.float64).reshape(pca["k"], -1)
        linear = json.load(open(os.path.join(bundle, "linear", "linear.json")))
        self.in_mean = np.array([i["mean"] for i in linear["inputs"]])
        self.in_scale = np.array([i["scale"] for i in linear["inputs"]])
        # inputs x outputs, row-major, as ocellus-tabular's linear model stores it.
        self.weights = np.array(linear["weights"]).reshape(len(linear["inputs"]), -1)
        self.intercepts = np.array(linear["intercepts"])
        self.output_columns = [self.classes.index(str(c)) for c in linear["outputClasses"]]
        self.lock = threading.Lock()

    def tensor(self, data: bytes) -> torch.Tensor:
        # The resize/crop/normalise of the embedding benchmark's Python pipeline, on the bytes.
        return Images([io.BytesIO(data)], self.preprocess)[0]

    def predict(self, images: list) -> np.ndarray:
        x = torch.stack([self.tensor(base64.b64decode(i)) for i in images])
        x = x.contiguous(memory_format=torch.channels_last)
        with self.lock, torch.inference_mode():
            features = self.network(x).double().numpy()
        projected = (features - self.pca_mean) @ self.components.T
        logits = ((projected - self.in_mean) / self.in_scale) @ self.weights + self.intercepts
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        probabilities = np.zeros((len(images), len(self.classes)))
        probabilities[:, self.output_columns] = p / p.sum(axis=1, keepdims=True)
        return probabilities


def handler_for(model: Model):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add about 40 ms to every response.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, code: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path in ("/v2/health/live", "/v2/health/ready"):
                self.reply(200, {})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            if self.path != f"/v2/models/{model.name}/infer":
                self.reply(404, {"error": "not found"})
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            (images,) = [i["data"] for i in request["inputs"] if i["name"] == model.column]
            p = model.predict(images)
            rows = len(images)
            outputs = [{"name": "prediction", "datatype": "BYTES", "shape": [rows],
                        "data": [model.classes[i] for i in p.argmax(axis=1)]}]
            outputs += [{"name": f"p_{c}", "datatype": "FP64", "shape": [rows], "data": p[:, k].tolist()}
                        for k, c in enumerate(model.classes)]
            self.reply(200, {"model_name": model.name, "outputs": outputs})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = Model(args.bundle)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(model))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
