"""Every knob of ``carts.fusion_config.FusionConfig`` is documented where it is declared (a ``#:`` comment right above
it, as Sphinx reads attribute docs), and the model's description (``carts.fusion``'s module docstring and
docs/fusion.md, where the model is described) names only knobs that exist (issue #16)."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import carts.fusion as fusion
import carts.fusion_config as fusion_config

MODEL_PAGE = Path(__file__).resolve().parent.parent / "docs" / "fusion.md"


def test_every_fusion_knob_is_documented_where_it_is_declared():
    source = inspect.getsource(fusion_config.FusionConfig)
    lines = source.splitlines()
    body = ast.parse(source).body[0].body
    undocumented = [node.target.id for node in body if isinstance(node, ast.AnnAssign)
                    and not lines[node.lineno - 2].strip().startswith("#:")]
    assert undocumented == []
    assert {f.name for f in dataclasses.fields(fusion_config.FusionConfig)} == \
        {node.target.id for node in body if isinstance(node, ast.AnnAssign)}


def test_the_model_description_names_knobs_by_their_field_names():
    text = fusion.__doc__ + MODEL_PAGE.read_text()
    fields = {f.name for f in dataclasses.fields(fusion_config.FusionConfig)}
    named = set(re.findall(r"``([a-z][a-z0-9_]*)(?: = [^`]*)?``", text))
    knob_like = {n for n in named if re.search(r"_(m|s|prior|share|sigma_m|m_s|units|min)$", n) or n in
                 {"m0", "m_s", "f"}}
    assert knob_like <= fields, knob_like - fields
    assert "Defaults and their sources" not in text  # the tuning history lives in docs/accuracy.md
