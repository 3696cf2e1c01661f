"""CAM++ speaker embeddings in numpy: who is speaking, as a 192-number vector, without torch.

CAM++ (Wang et al., 2023; 3D-Speaker, Apache-2.0) is a speaker-verification network: two stretches of
speech by one voice give embeddings of high cosine similarity, two voices low. The weights
(``campplus_cn_en_common.pt``, trained on Chinese and English) reach ``models/campplus/`` through
``callqa model install`` (see :mod:`pipeline.speakers.model`); this module reads that PyTorch
file without PyTorch (a restricted unpickler that builds numpy arrays and refuses anything but tensors)
and runs the network's inference in numpy, with every batch norm that follows a convolution folded
into it. The layer structure is 3D-Speaker's ``CAMPPlus(feat_dim=80, embedding_size=192)``.

Input: 80-dimensional Kaldi filterbanks of 16 kHz audio (:func:`fbank`, kaldi-native-fbank), 10 ms
frames, mean-normalised per window, as 3D-Speaker extracts them.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

EPS = 1e-5  # BatchNorm's
SAMPLE_RATE = 16000
EMBEDDING_SIZE = 192
_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
             "LongStorage": np.int64, "IntStorage": np.int32, "BoolStorage": np.bool_, "ByteStorage": np.uint8}


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``state_dict`` file (zip format) as numpy arrays, without PyTorch.

    Only tensors, parameters and ordered dicts are unpickled; any other object in the file is refused
    (a ``.pt`` file is a pickle, and a pickle can run code).

    Raises:
        pickle.UnpicklingError: the file holds something else.
        zipfile.BadZipFile: it is not a PyTorch zip file.
    """
    archive = zipfile.ZipFile(path)
    root = archive.namelist()[0].split("/")[0]

    def rebuild(storage, offset, size, stride, *_):
        if not size:
            return np.array(storage[offset])
        step = storage.dtype.itemsize
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                               strides=[s * step for s in stride]).copy()

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("torch._utils", "_rebuild_parameter"):
                return lambda data, *_: data
            if module == "torch" and name in _STORAGES:
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{path}: refusing to load {module}.{name} (only tensors are read)")

        def persistent_load(self, pid):
            _, storage, key, _, _ = pid
            return np.frombuffer(archive.read(f"{root}/data/{key}"), dtype=_STORAGES[storage])

    with archive.open(f"{root}/data.pkl") as handle:
        state = Reader(handle).load()
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray) and not k.endswith("num_batches_tracked")}


def fbank(audio: np.ndarray) -> np.ndarray:
    """80 log mel filterbanks per 10 ms frame (Kaldi's defaults, no dither) of 16 kHz mono audio."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.mel_opts.num_bins = 80
    extractor = knf.OnlineFbank(options)
    extractor.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(audio, dtype=np.float32))
    extractor.input_finished()
    n = extractor.num_frames_ready
    if n == 0:
        return np.zeros((0, 80), dtype=np.float32)
    return np.stack([extractor.get_frame(i) for i in range(n)]).astype(np.float32)


class _Affine:
    """A batch norm at inference: x * scale + shift, per channel."""

    def __init__(self, w: dict, name: str):
        mean, var = w[f"{name}.running_mean"], w[f"{name}.running_var"]
        gamma = w.get(f"{name}.weight", np.ones_like(mean))
        beta = w.get(f"{name}.bias", np.zeros_like(mean))
        self.scale = (gamma / np.sqrt(var + EPS)).astype(np.float32)
        self.shift = (beta - mean * self.scale).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)


def _folded(w: dict, conv: str, bn: str | None, bias: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's weight and bias with the batch norm after it folded in."""
    weight = w[f"{conv}.weight"].astype(np.float32)
    b = w[bias] if bias else np.zeros(weight.shape[0], np.float32)
    if bn is None:
        return weight, b.astype(np.float32)
    norm = _Affine(w, bn)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * norm.scale.reshape(shape), (b * norm.scale + norm.shift).astype(np.float32)


def _conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """(B, C, F, T) -> (B, O, F', T): kernel 3x3 or 1x1, padding to keep T, stride on F only."""
    b, c, f, t = x.shape
    k = weight.shape[-1]
    pad = k // 2
    fo = (f + 2 * pad - k) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    cols = np.stack([xp[:, :, i:i + (fo - 1) * stride + 1:stride, j:j + t] for i in range(k) for j in range(k)], axis=2)
    out = weight.reshape(weight.shape[0], -1) @ cols.reshape(b, c * k * k, fo * t)
    return (out + bias[:, None]).reshape(b, -1, fo, t)


def _conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: int = 1,
            dilation: int = 1) -> np.ndarray:
    """(B, C, T) -> (B, O, T'): odd kernel, 'same' padding (times the dilation)."""
    b, c, t = x.shape
    o, _, k = weight.shape
    if k == 1:
        out = weight[:, :, 0] @ x[:, :, ::stride]
    else:
        pad = (k - 1) // 2 * dilation
        to = (t + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
        cols = np.stack([xp[:, :, j * dilation: j * dilation + (to - 1) * stride + 1: stride] for j in range(k)], axis=2)
        out = weight.reshape(o, c * k) @ cols.reshape(b, c * k, to)
    return out if bias is None else out + bias[:, None]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


class CAMPPlus:
    """The network, inference only: ``embed(features)`` for a batch of equal-length windows."""

    def __init__(self, state: dict[str, np.ndarray]):
        w = state
        self.head_conv1 = _folded(w, "head.conv1", "head.bn1")
        self.res_blocks = []
        for layer in ("layer1", "layer2"):
            for i, stride in ((0, 2), (1, 1)):
                p = f"head.{layer}.{i}"
                shortcut = _folded(w, f"{p}.shortcut.0", f"{p}.shortcut.1") if f"{p}.shortcut.0.weight" in w else None
                self.res_blocks.append((stride, _folded(w, f"{p}.conv1", f"{p}.bn1"),
                                        _folded(w, f"{p}.conv2", f"{p}.bn2"), shortcut))
        self.head_conv2 = _folded(w, "head.conv2", "head.bn2")
        self.tdnn = _folded(w, "xvector.tdnn.linear", "xvector.tdnn.nonlinear.batchnorm")
        self.blocks = []
        for b, dilation in ((1, 1), (2, 2), (3, 2)):
            layers, i = [], 1
            while f"xvector.block{b}.tdnnd{i}.linear1.weight" in w:
                p = f"xvector.block{b}.tdnnd{i}"
                layers.append((_Affine(w, f"{p}.nonlinear1.batchnorm"),
                               _folded(w, f"{p}.linear1", f"{p}.nonlinear2.batchnorm"),
                               w[f"{p}.cam_layer.linear_local.weight"],
                               (w[f"{p}.cam_layer.linear1.weight"], w[f"{p}.cam_layer.linear1.bias"]),
                               (w[f"{p}.cam_layer.linear2.weight"], w[f"{p}.cam_layer.linear2.bias"])))
                i += 1
            transit = (_Affine(w, f"xvector.transit{b}.nonlinear.batchnorm"), w[f"xvector.transit{b}.linear.weight"])
            self.blocks.append((dilation, layers, transit))
        self.out_norm = _Affine(w, "xvector.out_nonlinear.batchnorm")
        self.dense = _folded(w, "xvector.dense.linear", "xvector.dense.nonlinear.batchnorm")

    @classmethod
    def load(cls, path: str | Path) -> "CAMPPlus":
        return cls(read_state_dict(path))

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Embeddings (B, 192) of a batch of feature windows (B, T, 80), each mean-normalised here."""
        x = features - features.mean(axis=1, keepdims=True)
        x = x.transpose(0, 2, 1)[:, None].astype(np.float32)  # (B, 1, 80, T)
        x = _relu(_conv2d(x, *self.head_conv1, stride=1))
        for stride, conv1, conv2, shortcut in self.res_blocks:
            out = _relu(_conv2d(x, *conv1, stride=stride))
            out = _conv2d(out, *conv2, stride=1)
            out += _conv2d(x, *shortcut, stride=stride) if shortcut else x
            x = _relu(out)
        x = _relu(_conv2d(x, *self.head_conv2, stride=2))
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, 320, T)
        x = _relu(_conv1d(x, *self.tdnn, stride=2))
        for dilation, layers, (norm, transit) in self.blocks:
            for norm1, linear1, local, (w1, b1), (w2, b2) in layers:
                h = _relu(_conv1d(_relu(norm1(x)), *linear1))
                y = _conv1d(h, local, dilation=dilation)
                context = h.mean(axis=-1, keepdims=True) + _segment_means(h, 100)
                gate = _conv1d(_relu(_conv1d(context, w1, b1)), w2, b2)
                x = np.concatenate([x, y / (1 + np.exp(-gate))], axis=1)
            x = _conv1d(_relu(norm(x)), transit)
        x = _relu(self.out_norm(x))
        stats = np.concatenate([x.mean(axis=-1), x.std(axis=-1, ddof=1)], axis=-1)  # (B, 2C)
        weight, bias = self.dense
        return stats @ weight[:, :, 0].T + bias


def _segment_means(x: np.ndarray, length: int) -> np.ndarray:
    """Each frame replaced by the mean of its segment of ``length`` frames (the last one shorter)."""
    t = x.shape[-1]
    n = -(-t // length)
    padded = np.pad(x, ((0, 0), (0, 0), (0, n * length - t)))
    sums = padded.reshape(*x.shape[:2], n, length).sum(axis=-1)
    counts = np.minimum(length, t - np.arange(n) * length)
    return np.repeat(sums / counts, length, axis=-1)[..., :t]


def to_onnx(state: dict[str, np.ndarray]) -> bytes:
    """The same network as an ONNX graph (batch norms folded, as above), for onnxruntime, which runs it
    about three times faster than numpy. Input ``features`` (B, T, 80), output ``embeddings`` (B, 192).
    Built by ``callqa model install``; :class:`CAMPPlus` is the reference it is checked against."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = CAMPPlus(state)
    nodes, inits, counter = [], [], [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(value: np.ndarray, prefix: str = "c") -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(x: str, weight: np.ndarray, bias: np.ndarray | None, stride: tuple = (), dilation: int = 1) -> str:
        k = weight.shape[2:]
        stride = stride or (1,) * len(k)
        pads = [(s // 2) * dilation for s in k] * 2
        inputs = [x, const(weight.astype(np.float32), "w")] + ([const(bias.astype(np.float32), "b")] if bias is not None else [])
        return op("Conv", inputs, kernel_shape=list(k), strides=list(stride), pads=pads,
                  dilations=[dilation] * len(k))

    def affine(x: str, norm: _Affine, dims: int) -> str:
        shape = (-1,) + (1,) * dims
        return op("Add", [op("Mul", [x, const(norm.scale.reshape(shape))]), const(norm.shift.reshape(shape))])

    relu = lambda x: op("Relu", [x])  # noqa: E731
    axes = lambda *a: const(np.array(a, dtype=np.int64), "axes")  # noqa: E731
    x = op("Transpose", ["features"], perm=[0, 2, 1])
    x = op("Sub", [x, op("ReduceMean", [x, axes(2)], keepdims=1)])
    x = op("Unsqueeze", [x, axes(1)])
    x = relu(conv(x, *net.head_conv1))
    for stride, conv1, conv2, shortcut in net.res_blocks:
        out = conv(relu(conv(x, *conv1, stride=(stride, 1))), *conv2)
        x = relu(op("Add", [out, conv(x, *shortcut, stride=(stride, 1)) if shortcut else x]))
    x = relu(conv(x, *net.head_conv2, stride=(2, 1)))
    shape = op("Shape", [x])
    b_t = [op("Gather", [shape, const(np.array([i], np.int64))], axis=0) for i in (0, 3)]
    x = op("Reshape", [x, op("Concat", [b_t[0], const(np.array([-1], np.int64)), b_t[1]], axis=0)])
    x = relu(conv(x, *net.tdnn, stride=(2,)))
    hundred = const(np.array([100], np.int64))
    for dilation, layers, (norm, transit) in net.blocks:
        for norm1, linear1, local, (w1, b1), (w2, b2) in layers:
            h = relu(conv(relu(affine(x, norm1, 1)), *linear1))
            y = conv(h, local, None, dilation=dilation)
            segments = op("AveragePool", [h], kernel_shape=[100], strides=[100], ceil_mode=1)
            hs = op("Shape", [h])
            spread = op("Expand", [op("Unsqueeze", [segments, axes(3)]),
                                   op("Concat", [op("Shape", [segments]), hundred], axis=0)])
            spread = op("Reshape", [spread, op("Concat", [op("Slice", [hs, axes(0), axes(2)]),
                                                          const(np.array([-1], np.int64))], axis=0)])
            spread = op("Slice", [spread, axes(0), op("Slice", [hs, axes(2), axes(3)]), axes(2)])
            context = op("Add", [op("ReduceMean", [h, axes(2)], keepdims=1), spread])
            gate = op("Sigmoid", [conv(relu(conv(context, w1, b1)), w2, b2)])
            x = op("Concat", [x, op("Mul", [y, gate])], axis=1)
        x = conv(relu(affine(x, norm, 1)), transit, None)
    x = relu(affine(x, net.out_norm, 1))
    mean = op("ReduceMean", [x, axes(2)], keepdims=0)
    centred = op("Sub", [x, op("Unsqueeze", [mean, axes(2)])])
    frames = op("Cast", [op("Gather", [op("Shape", [x]), const(np.array(2, np.int64))], axis=0)], to=TensorProto.FLOAT)
    variance = op("Div", [op("ReduceSum", [op("Mul", [centred, centred]), axes(2)], keepdims=0),
                          op("Sub", [frames, const(np.array(1.0, np.float32))])])
    stats = op("Concat", [mean, op("Sqrt", [variance])], axis=1)
    weight, bias = net.dense
    out = op("Add", [op("MatMul", [stats, const(weight[:, :, 0].T.copy())]), const(bias)])
    nodes.append(helper.make_node("Identity", [out], ["embeddings"]))
    graph = helper.make_graph(nodes, "campplus", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", "T", 80])],
                              [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", EMBEDDING_SIZE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="callqa")
    onnx.checker.check_model(model)
    return model.SerializeToString()
