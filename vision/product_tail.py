"""A gallery's fine-tuned network tail (issue #14): the tuned weights as stored in a gallery file
(:class:`TunedTail`) and the torch module that runs them (:func:`tail_module`). Apart from
:mod:`vision.product_tuning`, which trains them, so that the embedder (:mod:`vision.product_embedder`) can run a
tail without importing the training code (which imports the embedder)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TunedTail:
    """A gallery's fine-tuned tail: ``cut`` the first tuned block (the front is blocks 0 … cut−1), ``concat`` (the
    original tail's features kept beside), ``state`` the tail module's weights (:func:`tail_module`'s
    ``state_dict``: the tuned blocks as ``blocks.<i>.…``, ``conv_head.…``, ``bn1.…``; float32 arrays)."""

    cut: int
    concat: bool
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """SHA-256 (first 12 hex digits) of the cut, the concat flag and every weight (names, shapes, bytes)."""
        h = hashlib.sha256(f"{self.cut}|{int(self.concat)}".encode())
        for k in sorted(self.state):
            v = np.ascontiguousarray(self.state[k], np.float32)
            h.update(f"|{k}{v.shape}".encode())
            h.update(v.tobytes())
        return h.hexdigest()[:12]

    @property
    def tag(self) -> str:
        """The suffix of the tuned embedder's name: ``ft<cut>[+orig]-<digest>``."""
        return f"ft{self.cut}" + ("+orig" if self.concat else "") + f"-{self.digest}"

    def arrays(self) -> dict[str, np.ndarray]:
        """The tail as ``.npz`` entries (``tail_cut``, ``tail_concat``, ``tail.<weight name>``)."""
        return {"tail_cut": np.asarray(self.cut), "tail_concat": np.asarray(int(self.concat)),
                **{f"tail.{k}": np.asarray(v, np.float32) for k, v in self.state.items()}}

    @classmethod
    def from_arrays(cls, z) -> "TunedTail | None":
        """The tail stored by :meth:`arrays` in an open ``.npz`` ``z``; None when it holds none."""
        if "tail_cut" not in z.files:
            return None
        return cls(int(z["tail_cut"]), bool(int(z["tail_concat"])),
                   {k[5:]: z[k] for k in z.files if k.startswith("tail.")})


def _tail_class():
    from torch import nn

    class Tail(nn.Module):
        """Blocks ``cut`` … end, then the head conv, BatchNorm and swish of an EfficientNet-Lite (copies)."""

        def __init__(self, net, cut: int) -> None:
            import copy

            super().__init__()
            self.blocks = nn.ModuleList(copy.deepcopy(b) for b in net._blocks[cut:])
            self.conv_head = copy.deepcopy(net._conv_head)
            self.bn1 = copy.deepcopy(net._bn1)
            self.swish = net._swish

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return self.swish(self.bn1(self.conv_head(x)))

    return Tail


def tail_module(net, tail: TunedTail | None = None, cut: int | None = None):
    """A torch module copying ``net``'s tail from block ``cut`` (default ``tail.cut``), loaded with ``tail``'s
    weights when given; eval mode. Raises ValueError when the weights do not fit (another architecture)."""
    import torch

    m = _tail_class()(net, tail.cut if tail is not None else int(cut or 0))
    if tail is not None:
        try:
            m.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in tail.state.items()})
        except RuntimeError as exc:
            raise ValueError(f"the gallery's tuned tail does not fit this network: {exc}") from None
    return m.eval()
