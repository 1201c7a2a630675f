"""The predict script a user would write: Pillow decode + resize, the exported ONNX model through onnxruntime,
batch 32, two decode threads, CSV out. The reference that ``pneumoscope predict`` is measured against.

    python benchmarks/plain_predict.py MODEL.onnx FOLDER OUT.csv
"""

import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

model, folder, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["pneumoscope"])
size, classes = int(meta["image_size"]), meta["classes"]
threshold, temperature = meta.get("threshold"), float(meta.get("temperature") or 1.0)
files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def load(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


with ThreadPoolExecutor(2) as pool, open(out, "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["path", "label", *[f"p_{c}" for c in classes]])
    for start in range(0, len(files), 32):
        batch = files[start:start + 32]
        x = np.stack(list(pool.map(load, batch)))[:, None]
        logits = session.run(["logits"], {session.get_inputs()[0].name: x})[0] / temperature
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for path, row in zip(batch, p):
            label = classes[int(row[1] >= threshold)] if threshold is not None else classes[int(row.argmax())]
            writer.writerow([str(path), label, *[f"{v:.6f}" for v in row]])
