"""Decoding and preprocessing: identical to the official loader for 8-bit files, better beyond it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import crop, photo
from lpips_runtime.errors import InputError
from lpips_runtime.io.images import ResizePolicy, check_unit_batch, load_rgb, rgb_to_unit_nchw


def _official_tensor(path):
    import lpips

    return lpips.im2tensor(lpips.load_image(str(path))).numpy()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_same_as_official_loader(tmp_path, ext):
    img = crop(photo("coffee"), 99, 131)
    path = tmp_path / f"coffee{ext}"
    cv2.imwrite(str(path), img[..., ::-1])
    ours = rgb_to_unit_nchw(load_rgb(path))
    assert ours.dtype == np.float32 and ours.shape == (1, 3, 99, 131)
    assert np.array_equal(ours, _official_tensor(path))  # bit for bit


def test_grey_and_alpha_as_official(tmp_path):
    grey = cv2.cvtColor(crop(photo("astronaut"), 40, 50), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    rgba = np.dstack([crop(photo("astronaut"), 40, 50)[..., ::-1], np.full((40, 50), 17, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    for name in ("grey.png", "rgba.png"):
        assert np.array_equal(rgb_to_unit_nchw(load_rgb(tmp_path / name)), _official_tensor(tmp_path / name))
    assert np.array_equal(load_rgb(grey), np.dstack([grey] * 3))


def test_exif_orientation_applied_as_official(tmp_path):
    from PIL import Image

    img = crop(photo("rocket"), 40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(img).save(path, exif=exif.tobytes(), quality=95)
    ours = load_rgb(path)
    assert ours.shape == (64, 40, 3)
    assert np.array_equal(rgb_to_unit_nchw(ours), _official_tensor(path))


def test_sixteen_bit_uses_full_range(tmp_path):
    img16 = (crop(photo("chelsea"), 32, 48).astype(np.uint16) * 257)
    img16[0, 0] = [0, 65535, 40000]
    cv2.imwrite(str(tmp_path / "deep.png"), img16[..., ::-1])
    loaded = load_rgb(tmp_path / "deep.png")
    assert loaded.dtype == np.uint16 and np.array_equal(loaded, img16)
    unit = rgb_to_unit_nchw(loaded)
    assert unit[0, :, 0, 0].tolist() == [-1.0, 1.0, np.float32(40000 / 32767.5 - 1)]
    # 8-bit values stored as 16-bit (x * 257) land exactly where the 8-bit image does
    assert np.abs(unit[:, :, 1:, 1:] - rgb_to_unit_nchw((img16 // 257).astype(np.uint8))[:, :, 1:, 1:]).max() < 1e-6


def test_non_ascii_path_and_bytes(tmp_path):
    img = crop(photo("astronaut"), 33, 33)
    ok, data = cv2.imencode(".png", img[..., ::-1])
    path = tmp_path / "фото ü 图像.png"
    path.write_bytes(data.tobytes())
    assert np.array_equal(load_rgb(path), img)
    assert np.array_equal(load_rgb(data.tobytes()), img)


def test_unreadable_inputs(tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))
    (tmp_path / "truncated.png").write_bytes(png.tobytes()[:60])
    (tmp_path / "notes.png").write_bytes(b"just some text, no pixels")
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = {"absent.png": "no such file", "truncated.png": "corrupt or truncated",
             "notes.png": "not an image format OpenCV can read", "empty.jpg": "empty file", ".": "is a directory"}
    for name, message in cases.items():
        with pytest.raises(InputError, match=message):
            load_rgb(tmp_path / name if name != "." else tmp_path)


def test_array_inputs_checked():
    with pytest.raises(InputError, match="dtype float32"):
        load_rgb(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="expected HxWx3"):
        load_rgb(np.zeros((8, 8, 5), np.uint8))
    assert load_rgb(np.zeros((8, 8, 4), np.uint8)).shape == (8, 8, 3)
    with pytest.raises(InputError, match="NaN or infinity"):
        check_unit_batch(np.full((1, 3, 4, 4), np.nan, np.float32))
    with pytest.raises(InputError, match=r"values span \[0, 255\]"):
        check_unit_batch(np.full((1, 3, 4, 4), 255.0, np.float32) * np.eye(4, dtype=np.float32))
    with pytest.raises(InputError, match="must be float"):
        check_unit_batch(np.zeros((1, 3, 4, 4), np.uint8))
    with pytest.raises(InputError, match=r"expected shape \[N,3,H,W\]"):
        check_unit_batch(np.zeros((3, 4, 4), np.float32))
    assert check_unit_batch(np.zeros((2, 3, 4, 4), np.float64)).dtype == np.float32


def test_resize_policies():
    a, b = np.zeros((40, 60, 3), np.uint8), np.full((80, 120, 3), 200, np.uint8)
    with pytest.raises(InputError, match="size mismatch: a is 60x40, b is 120x80"):
        ResizePolicy.parse("none").apply(a, b, ("a", "b"))
    first = ResizePolicy.parse("first").apply(a, b)
    assert first[1].shape == (40, 60, 3) and first[1].max() == 200
    fixed = ResizePolicy.parse("32X48").apply(a, b)
    assert fixed[0].shape == fixed[1].shape == (48, 32, 3)
    with pytest.raises(InputError, match="use none, first, or WxH"):
        ResizePolicy.parse("half")
