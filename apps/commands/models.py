"""`streamdream models` and `streamdream layers`: what the model zoo holds on this machine."""

from __future__ import annotations

import argparse

from streamdream.settings import DEFAULT_MODEL


def run_models(args: argparse.Namespace) -> None:
    from streamdream.models import list_models

    for entry in list_models():
        path = entry.weights_path()
        state = f"ready   {path}" if path else f"missing (put weights at {entry.locate()} or pass --weights)"
        print(f"{entry.name:20s} {state}\n{'':20s} {entry.description}")


def run_layers(args: argparse.Namespace) -> None:
    from streamdream.models import create_model

    model = create_model(args.name, weights=args.weights, device="cpu")
    defaults = model.defaults
    print(f"{model.name}: default dream objective {defaults.dream}; content {', '.join(defaults.content)}; style {', '.join(defaults.style)}")
    for name in model.public_layers():
        info = model.layers[name]
        alias = f"= {model.aliases[name]}" if name in model.aliases else ""
        stride = f"stride {info.stride}" if info.stride else "vector"
        print(f"  {name:24s} {info.channels:5d} ch  {stride:10s} {alias}")


COMMANDS = {
    "models": (
        run_models,
        "list models and whether their weights are on this machine",
        "List the model zoo: which backbones can run here, where their weights are, or where to put them.",
        ["streamdream models", "streamdream dream photo.jpg -o dream.png --model vgg19 --weights vgg19-dcbb9e9d.pth"],
    ),
    "layers": (
        run_layers,
        "list a model's layers with channel counts",
        "List a model's layer names, channel counts and strides: the words objectives are made of.",
        ["streamdream layers", "streamdream layers vgg19 --weights vgg19-dcbb9e9d.pth", 'streamdream dream photo.jpg -o out.png --objective "blocks.4:39"   # a channel of a listed layer'],
    ),
}


def register(commands: argparse._SubParsersAction) -> None:
    parsers = {}
    for name, (run, help_text, description, examples) in COMMANDS.items():
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        parsers[name] = commands.add_parser(name, help=help_text, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        parsers[name].set_defaults(run=run)
    parsers["layers"].add_argument("name", nargs="?", default=DEFAULT_MODEL, metavar="MODEL", help="model name (default %(default)s)")
    parsers["layers"].add_argument("--weights", metavar="FILE", help="weights file for a torchvision model")
