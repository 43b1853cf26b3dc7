"""What the store above vision provides to it, registered when Django starts (``carts.apps.CartsConfig.ready``).

Vision publishes camera and tracker observations to the store loop and asks the review queue which moments to
keep as review clips; both belong to ``carts``, which imports vision. Injected callbacks keep the imports one way
(the layers contract in ``pyproject.toml``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store.recording import TrackObservations

#: ``(store_code, source, obs, t_last)``: append a source's observations (s UTC up to ``t_last``) to the store's stream.
ObservationPublisher = Callable[[str, str, TrackObservations, "float | None"], None]
#: ``(store_code, camera, frames, t_last)``: append a camera's tracked frames (``vision.tracking.FrameTracks``, s UTC up
#: to ``t_last``) to the store's stream for the store worker's join of its cameras.
FramePublisher = Callable[[str, str, list, float], None]
#: ``(store_id=, since=)`` → ``(list[vision.clips.ClipRequest], new cursor)``: review items created after ``since``.
ReviewClipSource = Callable[..., "tuple[list[Any], Any]"]

_publish: ObservationPublisher | None = None
_publish_frames: FramePublisher | None = None
_loop_enabled: Callable[[], bool] | None = None
_review_clips: ReviewClipSource | None = None


def set_store_hooks(*, publish_observations: ObservationPublisher, store_loop_enabled: Callable[[], bool],
                    review_clip_requests: ReviewClipSource, publish_frames: FramePublisher | None = None) -> None:
    """Register the store's callbacks (the ``carts`` app, at start-up; idempotent)."""
    global _publish, _loop_enabled, _review_clips, _publish_frames
    _publish, _loop_enabled, _review_clips = publish_observations, store_loop_enabled, review_clip_requests
    _publish_frames = publish_frames


def _missing(what: str) -> RuntimeError:
    return RuntimeError(f"no {what} registered: the carts app registers it when Django starts "
                        "(is 'carts' in INSTALLED_APPS?)")


def publish_observations(store_code: str, source: str, obs: TrackObservations, t_last: float | None = None) -> None:
    """Publish ``obs`` of ``source`` (``camera:<name>``, ``tracker:<name>``) to the store loop of ``store_code``.
    Raises ``RuntimeError`` when nothing is registered."""
    if _publish is None:
        raise _missing("observation publisher")
    _publish(store_code, source, obs, t_last)


def publish_frames(store_code: str, camera: str, frames: list, t_last: float) -> None:
    """Publish a camera's tracked frames (``vision.tracking.FrameTracks`` of ``camera``, time order, up to
    ``t_last`` s UTC) for the store loop of ``store_code`` to join with its other cameras' (``run_camera --join``).
    Raises ``RuntimeError`` when nothing is registered."""
    if _publish_frames is None:
        raise _missing("frame publisher")
    _publish_frames(store_code, camera, frames, t_last)


def store_loop_enabled() -> bool:
    """Whether a store loop takes observations in this deployment (False when nothing is registered)."""
    return bool(_loop_enabled is not None and _loop_enabled())


def review_clip_requests(*, store_id: int, since: Any = None) -> tuple[list[Any], Any]:
    """The review items of ``store_id`` created after the cursor ``since`` as ``vision.clips.ClipRequest`` and the
    new cursor (``since`` None: nothing, the cursor is now). Raises ``RuntimeError`` when nothing is registered."""
    if _review_clips is None:
        raise _missing("review clip source")
    return _review_clips(store_id=store_id, since=since)
