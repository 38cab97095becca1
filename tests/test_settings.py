"""One settings source: the API, the CLI and the UI meet the same defaults and the same ranges."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from streamdream.apps.cli import build_parser
from streamdream.apps.render import render_options
from streamdream.errors import StreamdreamError
from streamdream.settings import DEFAULT_PRESET, PRESETS, ClassVizSettings, DreamSettings, FoolSettings, InvertSettings, OutputSettings, StyleSettings, TemporalSettings

ALL = [DreamSettings, StyleSettings, TemporalSettings, OutputSettings, FoolSettings, ClassVizSettings, InvertSettings]


@pytest.mark.parametrize("cls", ALL)
def test_every_number_has_a_range_that_refuses_nan_inf_and_out_of_range(cls):
    for spec in fields(cls):
        bounds = spec.metadata["range"]
        if bounds is None:
            continue
        too_low = (bounds.low if bounds.low is not None else bounds.above) - 1
        too_high = [bounds.high + 1] if bounds.high is not None else []
        for bad in (math.nan, math.inf, -math.inf, too_low, *too_high):
            with pytest.raises(StreamdreamError, match=spec.name.replace("_", " ")):
                cls(**{spec.name: bad})


def test_presets_are_valid_and_choices_are_checked():
    assert set(PRESETS) == {"fast", "balanced", "quality"}
    with pytest.raises(StreamdreamError, match="flow preset must be one of ultrafast, fast, medium"):
        TemporalSettings(flow_preset="slow")


@pytest.mark.parametrize(
    "argv, cls",
    [
        (["dream", "in.png", "-o", "out.png"], DreamSettings),
        (["dream", "in.mp4", "-o", "out.mp4"], OutputSettings),
        (["style", "in.png", "-s", "s.png", "-o", "out.png"], StyleSettings),
        (["fool", "in.png", "--target", "1", "-o", "out.png"], FoolSettings),
        (["classviz", "--class", "1", "-o", "out.png"], ClassVizSettings),
        (["invert", "in.png", "--layer", "stem", "-o", "out.png"], InvertSettings),
    ],
)
def test_command_line_defaults_are_the_settings_defaults(argv, cls):
    args = build_parser().parse_args(argv)
    for spec in fields(cls):
        if hasattr(args, spec.name):
            assert getattr(args, spec.name) == spec.default, spec.name


def test_video_options_default_to_the_preset():
    """Unset temporal options stay None, so the chosen preset decides; a given one overrides it."""
    args = build_parser().parse_args(["dream", "in.mp4", "-o", "out.mp4", "--carry", "0.5"])
    assert args.carry == 0.5 and args.frame_iterations is None and args.temporal_preset is None
    settings = render_options(args).settings
    assert settings == PRESETS[DEFAULT_PRESET].with_(carry=0.5)
