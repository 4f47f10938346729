#!/usr/bin/env python3
"""Writes a 1.35 GB ONNX file whose weights are embedded (initializer raw_data), to measure
that `trainmem analyze` never reads payloads: peak RSS and time against the same graph
exported weightless (`trainmem export-onnx FILE -o weightless.onnx`).

    python3 bench/make_embedded_onnx.py /tmp/embedded.onnx      # needs numpy and onnx (PyPI)
    /usr/bin/time -f '%e s %M KB' build/bin/trainmem analyze /tmp/embedded.onnx \
        --dim batch=1 --dim seq=1024 --format=json -o /dev/null

The graph: an embedding [50257 x 1024] and 34 blocks of MatMul [1024 x 4096], Relu,
MatMul [4096 x 1024] and a residual Add (fp32).
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper


def main(path):
    pattern = (np.arange(4096 * 1024, dtype=np.float32) % 977 / 977).astype(np.float32)
    emb = np.resize(pattern, (50257, 1024)).astype(np.float32)
    inits = [helper.make_tensor("wte.weight", TensorProto.FLOAT, emb.shape, emb.tobytes(), raw=True)]
    nodes = [helper.make_node("Gather", ["wte.weight", "ids"], ["h0"], name="/wte/Gather")]
    x = "h0"
    for i in range(34):
        w1, w2 = np.resize(pattern, (1024, 4096)), np.resize(pattern, (4096, 1024))
        for name, w in ((f"h.{i}.fc.weight", w1), (f"h.{i}.proj.weight", w2)):
            inits.append(helper.make_tensor(name, TensorProto.FLOAT, w.shape, w.tobytes(), raw=True))
        nodes += [
            helper.make_node("MatMul", [x, f"h.{i}.fc.weight"], [f"a{i}"], name=f"/h.{i}/fc/MatMul"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"/h.{i}/Relu"),
            helper.make_node("MatMul", [f"r{i}", f"h.{i}.proj.weight"], [f"p{i}"], name=f"/h.{i}/proj/MatMul"),
            helper.make_node("Add", [x, f"p{i}"], [f"h{i + 1}"], name=f"/h.{i}/Add"),
        ]
        x = f"h{i + 1}"
    graph = helper.make_graph(
        nodes, "mlp34", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "embedded.onnx")
