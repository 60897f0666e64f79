import os
import stat

import numpy as np
import pytest

from radiology.io import atomic_write, encode_image, read_image, to_uint, write_image


def test_16bit_png_round_trip_keeps_every_level(tmp_path):
    levels = np.arange(65536, dtype=np.float32).reshape(256, 256) / 65535
    out = read_image(write_image(tmp_path / "a.png", levels, bit_depth=16))
    assert np.array_equal(to_uint(out, 16), to_uint(levels, 16))


def test_8bit_png_quantizes_to_nearest(tmp_path):
    image = np.array([[0.0, 0.2, 0.5, 1.0]], np.float32)
    out = read_image(write_image(tmp_path / "a.png", image))
    assert np.abs(out - image).max() <= 0.5 / 255 + 1e-7


def test_rgb_and_jpeg_and_npy(tmp_path):
    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[..., 0] = 1.0
    assert np.allclose(read_image(write_image(tmp_path / "r.png", rgb))[..., 0], 1.0)
    assert read_image(write_image(tmp_path / "r.jpg", rgb))[..., 0].mean() > 0.9
    exact = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    assert np.array_equal(read_image(write_image(tmp_path / "x.npy", exact)), exact)


def test_bad_requests():
    with pytest.raises(ValueError, match="8-bit only"):
        encode_image(np.zeros((2, 2), np.float32), "jpeg", 16)
    with pytest.raises(ValueError, match="unknown image format"):
        encode_image(np.zeros((2, 2), np.float32), "gif")
    with pytest.raises(TypeError):
        to_uint(np.zeros((2, 2), np.uint8))


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write(tmp_path / "f.bin", b"1")
    atomic_write(tmp_path / "f.bin", b"22")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert (tmp_path / "f.bin").read_bytes() == b"22"


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def explode(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = atomic_write(tmp_path / "new.bin", b"1")
        (tmp_path / "old.bin").write_bytes(b"0")
        (tmp_path / "old.bin").chmod(0o600)
        replaced = atomic_write(tmp_path / "old.bin", b"2")  # a replaced file follows the same rule
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == mode
    assert stat.S_IMODE(replaced.stat().st_mode) == mode
    assert replaced.read_bytes() == b"2"


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_fast_png_is_lossless_and_readable_by_other_decoders(tmp_path, shape, bit_depth):
    from PIL import Image

    image = np.random.default_rng(1).random(shape).astype(np.float32)
    fast = encode_image(image, "png", bit_depth, png_compression=1)
    zlib9 = encode_image(image, "png", bit_depth, png_compression=9)  # OpenCV's encoder
    (tmp_path / "f.png").write_bytes(fast)
    expected = to_uint(image, bit_depth)
    assert np.array_equal(to_uint(read_image(tmp_path / "f.png"), bit_depth), expected)
    (tmp_path / "z.png").write_bytes(zlib9)
    assert np.array_equal(to_uint(read_image(tmp_path / "z.png"), bit_depth), expected)
    with Image.open(tmp_path / "f.png") as pil:
        pil.load()
        assert pil.size == (shape[1], shape[0])
    if bit_depth == 8:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "f.png")), expected)
