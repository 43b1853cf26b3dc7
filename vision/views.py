"""Manager pages of vision (``is_staff`` only): the live store map and per-camera debug snapshots.

URLs (``vision.urls``, namespace ``vision``; mount under ``/manage/vision/``):

* ``map/<store_code>/`` (``vision:store_map``): GET, the floor plan with shopper dots and ids, refreshed live.
* ``map/<store_code>.json`` (``vision:store_map_json``): GET, ``{"store", "gondolas": [[[x, y]...]...],
  "gondola_labels": [{"number", "x", "y"}], "zones": [{"name", "kind", "polygon"}], "cameras": [{"name", "x", "y"}],
  "shoppers": [{"id", "x", "y", "t", "visit", "label"}]}`` metres; ``id`` is the track, ``visit`` the visit bound
  to it (None when none is) and ``label`` what people read ("Visit 12 · ann", or "not checked in").
* ``cameras/<camera_id>/`` (``vision:camera``): GET, the camera's page: the recent frame its camera worker kept, with
  its tracks drawn and its age; where no worker kept one, says so and offers the still below (never passed off as
  live). ``cameras/<camera_id>/recent.jpg`` (``vision:camera_recent``): that frame (404 when there is none).
* ``cameras/<camera_id>/snapshot.png`` (``vision:camera_snapshot``): GET ``?frame=N``, one frame of the camera
  with detected people (boxes, confidence), their floor position, and the store's zones drawn; 503 with the reason
  when the camera's source cannot be read.
"""
from __future__ import annotations

import logging

import numpy as np
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from store.layout.models import Bin, Store, Zone as ZoneRow

from .models import Camera
from .services import FRAME_TTL_S, camera_frame_recent, camera_model_for, store_map_positions
from store.accounts.permissions import staff_required
from .zones import shelf_zones, zones_from_store
from store.gates.models import Visit
from .detector import DetectorError, PersonDetector
from .config import vision_settings
from .tracking import FrameSource, SourceError

log = logging.getLogger(__name__)



def _store_dict(store: Store) -> dict:
    gondolas: dict[int, dict] = {}
    for b in Bin.objects.filter(store=store).select_related("shelf__gondola"):
        g = gondolas.setdefault(b.shelf.gondola.number, {"number": b.shelf.gondola.number, "shelves": []})
        if not g["shelves"]:
            g["shelves"].append({"bins": []})
        g["shelves"][0]["bins"].append({"x": b.x, "y": b.y, "width_m": b.width_m, "depth_m": b.depth_m,
                                        "yaw_rad": b.yaw_rad})
    zones = [{"name": z.name, "kind": z.kind, "polygon": z.polygon} for z in ZoneRow.objects.filter(store=store)]
    return {"gondolas": list(gondolas.values()), "zones": zones}


@require_safe
@staff_required
def store_map_json(request: HttpRequest, store_code: str) -> JsonResponse:
    """The store map as JSON (metres, store coordinates)."""
    store = get_object_or_404(Store, code=store_code)
    data = _store_dict(store)
    cams = []
    for cam in Camera.objects.filter(store=store, enabled=True):
        if cam.centre:
            cams.append({"name": cam.name, "x": cam.centre[0], "y": cam.centre[1]})
    gondolas = shelf_zones(data, reach_m=0.0)
    return JsonResponse({
        "store": store.code,
        "gondolas": [z.polygon.round(3).tolist() for z in gondolas],
        "gondola_labels": [{"number": int(z.name.split("-", 1)[1]), "x": round(float(z.polygon[:, 0].mean()), 3),
                            "y": round(float(z.polygon[:, 1].mean()), 3)} for z in gondolas],
        "zones": data["zones"],
        "cameras": cams,
        "shoppers": shoppers_named(store=store, positions=store_map_positions(store_code=store.code)),
    })


def shoppers_named(*, store: Store, positions: list[dict]) -> list[dict]:
    """``positions`` (``store_map_positions``) with ``visit`` and ``label``: the latest visit of ``store`` still
    inside (admitted, shopping, exited, under review) bound to each track; a track no visit is bound to is "not
    checked in". One query."""
    inside = [Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED, Visit.State.UNDER_REVIEW]
    ids = [str(p["id"]) for p in positions]
    by_track: dict[str, Visit] = {}
    for v in (Visit.objects.filter(store=store, track_id__in=ids, state__in=inside).select_related("shopper")
              .order_by("entered_at", "pk")):
        by_track[v.track_id] = v  # the latest wins
    out = []
    for p in positions:
        v = by_track.get(str(p["id"]))
        who = (v.shopper.get_username().split("@")[0] if v is not None else "")
        out.append({**p, "visit": v.pk if v else None,
                    "label": f"Visit {v.pk} · {who}" if v is not None else "not checked in"})
    return out


@require_safe
@staff_required
def camera_page(request: HttpRequest, camera_id: int) -> HttpResponse:
    """One camera: its recent drawn frame from the camera worker, or why there is none (module docstring)."""
    import time

    camera = get_object_or_404(Camera.objects.select_related("store"), pk=camera_id)
    recent = camera_frame_recent(camera_id=camera.pk)
    age = None if recent is None else max(0.0, time.time() - recent["published"])
    return render(request, "vision/camera.html", {
        "camera": camera, "store": camera.store, "recent": recent, "age_s": age, "ttl_s": FRAME_TTL_S,
        "still": request.GET.get("still") == "1",
    })


@require_safe
@staff_required
def camera_recent(request: HttpRequest, camera_id: int) -> HttpResponse:
    """The recent frame (JPEG) of a camera; 404 when no camera worker kept one lately."""
    camera = get_object_or_404(Camera, pk=camera_id)
    recent = camera_frame_recent(camera_id=camera.pk)
    if recent is None:
        return HttpResponse(f"camera {camera.name}: no recent frame", status=404, content_type="text/plain")
    response = HttpResponse(recent["jpeg"], content_type="image/jpeg")
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@staff_required
def store_map(request: HttpRequest, store_code: str) -> HttpResponse:
    """The live store map page (polls :func:`store_map_json`)."""
    store = get_object_or_404(Store, code=store_code)
    return render(request, "vision/store_map.html", {"store": store,
                                                      "cameras": Camera.objects.filter(store=store)})


def draw_snapshot(image: np.ndarray, camera, det, zones) -> np.ndarray:
    """Draw detections (boxes, confidence, floor position) and zones (projected polygons) on a copy of
    ``image`` (H, W, 3) BGR with OpenCV primitives (no fonts to download)."""
    import cv2

    out = image.copy()
    colours = {"entry": (0, 200, 0), "exit": (0, 0, 220), "shelf": (200, 120, 0), "floor": (160, 160, 160)}
    if camera.has_floor:
        for z in zones:
            edge = np.linspace(z.polygon, np.roll(z.polygon, -1, axis=0), 12, axis=1).reshape(-1, 2)
            px = camera.floor_to_image(edge)
            px = px[np.isfinite(px).all(axis=1)]
            if px.shape[0] >= 3:
                cv2.polylines(out, [px.astype(np.int32)], True, colours.get(z.kind, (255, 255, 255)), 1)
    floor = camera.image_to_floor(det.foot) if camera.has_floor and len(det) else np.full((len(det), 2), np.nan)
    for i in range(len(det)):
        x1, y1, x2, y2 = det.xyxy[i].astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 255), 2)
        label = f"{i + 1} {det.confidence[i]:.2f}"
        if np.isfinite(floor[i]).all():
            label += f" ({floor[i][0]:.1f},{floor[i][1]:.1f})m"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
        for w in det.wrists[i]:
            if np.isfinite(w).all():
                cv2.circle(out, (int(w[0]), int(w[1])), 4, (255, 0, 255), -1)
    return out


@require_safe
@staff_required
def camera_snapshot(request: HttpRequest, camera_id: int) -> HttpResponse:
    """A debug snapshot PNG of one camera (see the module docstring)."""
    import cv2

    camera_row = get_object_or_404(Camera.objects.select_related("store"), pk=camera_id)
    try:
        frame_no = max(0, int(request.GET.get("frame", "0")))
    except ValueError:
        frame_no = 0
    try:
        camera = camera_model_for(camera=camera_row)
        frame = next(iter(FrameSource(camera_row.source, start_frame=frame_no, max_frames=1, reconnects=0,
                                      name=camera_row.name)), None)
        if frame is None:
            raise SourceError(f"{camera_row.name}: no frame {frame_no} could be read")
        cfg = vision_settings()
        det = PersonDetector(cfg["MODEL"], imgsz=cfg["IMGSZ"], conf=float(cfg["CONF"])).detect(frame.image)
    except (SourceError, DetectorError, ValueError) as exc:
        log.warning("snapshot of camera %s: %s", camera_row.name, exc)
        return HttpResponse(f"camera {camera_row.name}: {exc}", status=503, content_type="text/plain")
    img = draw_snapshot(frame.image, camera, det, zones_from_store(_store_dict(camera_row.store)))
    ok, png = cv2.imencode(".png", img)
    return HttpResponse(png.tobytes(), content_type="image/png")
