"""Heatmap pictures: a fixed scale shared by every picture, a colour bar of that scale, the reference
readable where the images agree, and clean errors for formats OpenCV cannot write."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import crop, photo
from lpips_runtime.errors import InputError
from lpips_runtime.io.heatmap import COLORMAPS, DEFAULT_SCALE, colour_bar, heatmap_scale, render_heatmap, write_image


def test_fixed_scale_gives_the_same_colour_for_the_same_value():
    weak, strong = np.full((64, 64), 0.1, np.float32), np.full((64, 64), 0.1, np.float32)
    strong[:8, :8] = 0.9  # a larger maximum elsewhere must not change the colour of 0.1
    pic_weak = render_heatmap(weak, None, vmax=heatmap_scale("alex", weak), with_bar=False)
    pic_strong = render_heatmap(strong, None, vmax=heatmap_scale("alex", strong), with_bar=False)
    assert np.array_equal(pic_weak[32:, 32:], pic_strong[32:, 32:])
    # "auto" scales each map to its own maximum: the colours of 0.1 then differ
    auto_weak = render_heatmap(weak, None, vmax=heatmap_scale("alex", weak, "auto"), with_bar=False)
    assert not np.array_equal(auto_weak[32:, 32:], pic_weak[32:, 32:])
    assert heatmap_scale("vgg", weak) == DEFAULT_SCALE["vgg"] and heatmap_scale("alex", weak, 0.3) == 0.3


def test_colour_bar_shows_the_scale():
    bar = colour_bar(256, 0.7, "inferno", clipped=False)
    ramp = cv2.applyColorMap(np.array([[255], [0]], np.uint8), COLORMAPS["inferno"])
    strip = bar[:, 8]  # the colour strip (pad 8 at this height)
    top, bottom = strip[10].astype(int), strip[-10].astype(int)
    assert np.abs(top - ramp[0, 0]).max() <= 12 and np.abs(bottom - ramp[1, 0]).max() <= 12
    labels = bar[:, 8 + 12 + 8:]  # the numbers beside it: light text on a dark panel
    assert (labels > 200).sum() > 100
    assert colour_bar(256, 0.7, "inferno", clipped=True).sum() > bar.sum()  # ">=" drawn at the top


def test_reference_stays_readable_where_images_agree():
    ref = crop(photo("astronaut"), 128, 128)
    dmap = np.zeros((128, 128), np.float32)
    dmap[:, 96:] = 0.7  # differences on the right quarter only
    picture = render_heatmap(dmap, ref, vmax=0.7, with_bar=False)
    grey = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(float)
    shown = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(float)
    agree = np.corrcoef(grey[:, :96].ravel(), shown[:, :96].ravel())[0, 1]
    differ = np.corrcoef(grey[:, 96:].ravel(), shown[:, 96:].ravel())[0, 1]
    assert agree > 0.99 and shown[:, :96].std() > 0.8 * grey[:, :96].std()  # the photograph, barely tinted
    assert differ < agree and picture[:, 96:, 1:].mean() > picture[:, :96, 1:].mean()  # bright colours there


def test_picture_layout_and_caption():
    dmap = np.random.default_rng(0).uniform(0, 1, (96, 128)).astype(np.float32)
    picture = render_heatmap(dmap, crop(photo("coffee"), 96, 128), vmax=0.7, label="LPIPS-alex v0.1: 0.5")
    assert picture.shape[0] > 96 and picture.shape[1] > 128 and picture.dtype == np.uint8


def test_unwritable_formats_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="OpenCV cannot write this image format"):
        write_image(tmp_path / "map.txt", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="cannot write"):
        write_image(tmp_path / "missing-folder" / "map.png", np.zeros((8, 8, 3), np.uint8))


def test_alpha_one_is_colours_only():
    dmap = np.linspace(0, 0.7, 64 * 64, dtype=np.float32).reshape(64, 64)
    alone = render_heatmap(dmap, None, vmax=0.7, with_bar=False)
    over = render_heatmap(dmap, crop(photo("rocket"), 64, 64), alpha=1.0, vmax=0.7, with_bar=False)
    assert np.array_equal(alone, over)
