"""`streamdream models` and `streamdream layers`: what the model zoo holds on this machine."""

from __future__ import annotations

import argparse


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


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list models and whether their weights are on this machine")
    models.set_defaults(run=run_models)
    layers = commands.add_parser("layers", help="list a model's layers with channel counts")
    layers.add_argument("name", nargs="?", default="efficientnet_lite0", metavar="MODEL")
    layers.add_argument("--weights", metavar="FILE")
    layers.set_defaults(run=run_layers)
