"""The live store map shows each track's activity, derived from the observations published on it (floor and
wrist keypoints in store metres, as camera workers and trackers send them)."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.urls import include, path

import store.urls
from store.layout.models import Store
from store.recording import TrackObservations
from vision.services import store_map_publish_observations

urlpatterns = store.urls.urlpatterns + [path("manage/vision/", include("vision.urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def block(t0: float, n: int, rows) -> TrackObservations:
    """``n`` samples 0.1 s apart from ``t0``; ``rows(t)`` gives [(track, keypoint, (x, y, z))] at time t."""
    tid, ts, kp, xyz = [], [], [], []
    for i in range(n):
        t = t0 + 0.1 * i
        for track, name, p in rows(t):
            tid.append(track), ts.append(t), kp.append(name), xyz.append(p)
    return TrackObservations(np.array(tid, dtype=object), np.array(ts), np.array(kp, dtype=object),
                             np.array(xyz, float), np.ones(len(ts)))


def test_map_shows_reaching_walking_and_standing(client):
    user = get_user_model().objects.create_user("boss@walkout.test", password="x", is_staff=True)
    client.force_login(user)
    shop = Store.objects.create(code="act-shop", name="activity")

    def rows(t):
        out = [("reacher", "floor", (1.0, 1.0, 0.0)), ("reacher", "l_wrist", (1.1, 1.0, 0.8)),
               ("walker", "floor", (3.0 + 1.2 * (t - 100), 2.0, 0.0)),
               ("walker", "r_wrist", (3.6 + 1.2 * (t - 100), 2.0, 1.2)),  # a hand out while walking past a shelf
               ("stander", "neck", (5.0, 1.0, 1.5)), ("stander", "r_wrist", (5.2, 1.0, 0.8))]
        if t >= 101.0:
            out.append(("reacher", "r_wrist", (1.6, 1.0, 1.3)))  # out to the shelf for the last second
        return out

    for k in range(4):  # published 0.5 s at a time, as replay steps and trackers do
        assert store_map_publish_observations(store_code=shop.code, obs=block(100.0 + 0.5 * k, 5, rows)) == 3
    shoppers = {s["id"]: s for s in client.get(f"/manage/vision/map/{shop.code}.json").json()["shoppers"]}
    assert {k: s["state"] for k, s in shoppers.items()} == {"reacher": "reaching", "walker": "walking",
                                                           "stander": "standing"}
    page = client.get(f"/manage/vision/map/{shop.code}/")
    assert b"p.state" in page.content  # the page draws the state beside each shopper
