"""Camera geometry and floor calibration, on the real AutoCheckout camera calibration where it is needed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tests.conftest import shared_file
from vision.geometry import CalibrationError, CameraModel, calibrate_floor, read_calibration_points, spread_m


@pytest.fixture(scope="module")
def cam1() -> CameraModel:
    cal = json.loads(shared_file("datasets/autocheckout/store_meta/calibration.json").read_text())
    return CameraModel.from_autocheckout("1", cal["cameras"]["1"], width=640, height=360)


def test_autocheckout_pose_is_metres_and_looks_at_its_target(cam1):
    cal = json.loads(shared_file("datasets/autocheckout/store_meta/calibration.json").read_text())
    assert 2.2 < cam1.C[2] < 2.7  # a ceiling camera ≈ 96 in up
    look = np.asarray(cal["cameras"]["1"]["look_at"]) * 0.0254
    d = (look - cam1.C) / np.linalg.norm(look - cam1.C)
    assert np.dot(d, cam1.R[:, 2]) > 0.999  # the optical axis (third column) points at look_at


def test_floor_round_trip_through_pose_and_homography(cam1):
    floor = np.array([[1.0, -1.0], [2.0, -0.5], [0.5, -2.0], [3.0, -1.5]])
    px = cam1.floor_to_image(floor)
    assert np.isfinite(px).all()
    back = cam1.image_to_floor(px)
    assert np.abs(back - floor).max() < 1e-3
    # a pixel above the horizon (looking up) never reaches the floor
    up = cam1.project(cam1.C[None] + 5 * (cam1.R[:, 2] * [1, 1, -1])[None])
    if np.isfinite(up).all():
        assert np.isnan(cam1.image_to_floor(up)).all()


def test_body_plane_puts_a_raised_point_back_in_3d(cam1):
    foot = np.array([[1.5, -1.2]])
    wrist = np.array([[1.5, -1.2, 1.0]])  # straight above the foot, 1 m up
    got = cam1.body_plane_points(cam1.project(wrist), foot)
    assert np.abs(got - wrist).max() < 1e-6


def test_calibration_recovers_homography_and_flags_an_outlier(cam1):
    rng = np.random.default_rng(3)
    floor = rng.uniform([0.5, -2.0], [3.5, 0.0], size=(8, 2))
    px = cam1.floor_to_image(floor) + rng.normal(0, 0.3, size=(8, 2))
    px[7] += 60.0  # one mark clicked in the wrong place
    cal = calibrate_floor(px, floor, K=cam1.K, dist=cam1.dist)
    assert not cal.inliers[7] and cal.inliers[:7].all()
    assert cal.rmse_px < 1.5 and cal.rmse_cm < 3.0
    assert "px" in cal.summary() and "cm" in cal.summary()
    assert np.abs(cam1.image_to_floor(px[:7]) - floor[:7]).max() < 0.05


@pytest.mark.parametrize("floor", [np.zeros((3, 2)), np.column_stack([np.arange(5.0), np.arange(5.0)])])
def test_calibration_refuses_too_few_or_collinear_points(floor):
    with pytest.raises(CalibrationError):
        calibrate_floor(np.random.default_rng(0).uniform(0, 600, size=(len(floor), 2)), floor)


def test_calibrate_command_prints_errors_and_writes_a_camera_file(tmp_path, cam1, capsys):
    floor = np.array([[0.5, -2.0], [3.0, -2.0], [3.0, 0.0], [0.5, 0.0], [1.7, -1.0]])
    px = cam1.undistort(cam1.floor_to_image(floor))
    pts = tmp_path / "marks.csv"
    pts.write_text("u,v,x,y\n" + "".join(f"{u},{v},{x},{y}\n" for (u, v), (x, y) in zip(px, floor)))
    out = tmp_path / "cam.json"
    call_command("calibrate", str(pts), "--out", str(out), "--name", "cam-a")
    text = capsys.readouterr().out
    assert text.strip().splitlines()[-1].startswith("inliers 5/5 reprojection rms")
    cam = CameraModel.from_dict(json.loads(out.read_text()))
    assert np.abs(cam.image_to_floor(px) - floor).max() < 1e-3
    img, flr = read_calibration_points(pts)
    assert img.shape == flr.shape == (5, 2)


def test_spread():
    assert spread_m([[0, 0], [0, 0.3], [np.nan, np.nan]]) == pytest.approx(0.15)


def test_calibration_refuses_a_point_marked_twice(cam1):
    floor = np.array([[0.5, -2.0], [3.0, -2.0], [3.0, 0.0], [3.0, 0.0]])
    px = cam1.undistort(cam1.floor_to_image(floor))
    with pytest.raises(CalibrationError, match="4 distinct (image|floor) points, got 3"):
        calibrate_floor(px, floor)


def test_calibrate_command_creates_the_output_folder_or_says_why_not(tmp_path, cam1, capsys):
    floor = np.array([[0.5, -2.0], [3.0, -2.0], [3.0, 0.0], [0.5, 0.0], [1.7, -1.0]])
    px = cam1.undistort(cam1.floor_to_image(floor))
    pts = tmp_path / "marks.csv"
    pts.write_text("u,v,x,y\n" + "".join(f"{u},{v},{x},{y}\n" for (u, v), (x, y) in zip(px, floor)))
    call_command("calibrate", str(pts), "--out", str(tmp_path / "new" / "dir" / "cam.json"))
    assert (tmp_path / "new" / "dir" / "cam.json").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CommandError, match="cannot write"):
        call_command("calibrate", str(pts), "--out", str(tmp_path / "file" / "cam.json"))


def test_calibrate_reads_the_per_still_file_the_readme_points_at(capsys):
    """``vision/calibrations/autocheckout_stills.json`` holds several cameras' points: ``--still KEY`` fits one,
    and without it the command names the keys instead of "string indices must be integers"."""
    from pathlib import Path

    stills = Path(__file__).resolve().parents[1] / "vision" / "calibrations" / "autocheckout_stills.json"
    with pytest.raises(CommandError, match=r"holds the points of several cameras: pick one with --still KEY, KEY "
                                           r"one of 1, 2, 5, 6$"):
        call_command("calibrate", str(stills))
    with pytest.raises(CommandError, match=r"KEY one of 1, 2, 5, 6 \(there is no '9'\)"):
        call_command("calibrate", str(stills), "--still", "9")
    call_command("calibrate", str(stills), "--still", "1")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("inliers 6/6 reprojection rms")
    img, flr = read_calibration_points(stills, still="5")
    assert img.shape == flr.shape and len(img) >= 4
