"""The head: a small MLP over the flattened (16, 96) window, trained with scikit-learn, exported to ONNX by hand.

Why by hand: the graph is five nodes (reshape, normalise, two dense layers,
sigmoid); writing it with onnx.helper keeps skl2onnx and torch out of the
dependencies and gives exactly openWakeWord's head format: input (N, 16, 96)
float, output (N, 1) score in [0, 1].
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from device.wakeword.frontend import EMBEDDING_DIM, HEAD_EMBEDDINGS

logger = logging.getLogger(__name__)

N_INPUT = HEAD_EMBEDDINGS * EMBEDDING_DIM


def fit_mlp(x: np.ndarray, y: np.ndarray, weights: np.ndarray, hidden: int = 64, epochs: int = 60, seed: int = 0,
            alpha: float = 1e-3, norm: tuple[np.ndarray, np.ndarray] | None = None):
    """Fit on flattened windows; returns (mean, std, sklearn model). `norm` reuses a normalisation (mining rounds)."""
    from sklearn.neural_network import MLPClassifier

    flat = x.reshape(len(x), N_INPUT).astype(np.float32)
    if norm is None:
        mean = flat.mean(axis=0)
        std = flat.std(axis=0) + 1e-3
    else:
        mean, std = norm
    model = MLPClassifier(
        hidden_layer_sizes=(hidden, hidden // 2), alpha=alpha, batch_size=256, learning_rate_init=1e-3,
        max_iter=epochs, random_state=seed, early_stopping=False, n_iter_no_change=epochs,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected: we stop by budget
        model.fit((flat - mean) / std, y, sample_weight=weights)
    return mean, std, model


def predict(mean: np.ndarray, std: np.ndarray, model, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Scores of (N, 16, 96) windows, as the exported head computes them."""
    out = np.zeros(len(x), np.float32)
    for s in range(0, len(x), batch):
        flat = x[s:s + batch].reshape(-1, N_INPUT).astype(np.float32)
        out[s:s + batch] = model.predict_proba((flat - mean) / std)[:, 1]
    return out


def export_onnx(path: str | Path, mean: np.ndarray, std: np.ndarray, model, phrase: str = "") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([-1, N_INPUT], np.int64), "flat_shape"),
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(std.astype(np.float32), "std"),
    ]
    nodes = [
        helper.make_node("Reshape", ["embeddings", "flat_shape"], ["flat"]),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["h0"]),
    ]
    last = "h0"
    n_layers = len(model.coefs_)
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"), numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [f"z{i}"]))
        last = f"z{i}"
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [last], [f"h{i + 1}"]))
            last = f"h{i + 1}"
    nodes.append(helper.make_node("Sigmoid", [last], ["score"]))
    graph = helper.make_graph(
        nodes, "wakeword_head",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", HEAD_EMBEDDINGS, EMBEDDING_DIM])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="voxlens-wakeword")
    onnx_model.ir_version = 8
    if phrase:
        helper.set_model_props(onnx_model, {"phrase": phrase})
    onnx.checker.check_model(onnx_model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(path))
    return path
