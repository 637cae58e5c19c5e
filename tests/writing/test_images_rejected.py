"""decode_image: every unusable file is rejected with a reason, never a crash."""

import os
import re

import pytest

from image_testing import assert_layout, random_rgb, reject_reason, save
from pipeline.writing import images
from pipeline.writing.images import RejectedImage, decode_image


# ---------------------------------------------------------------------------------------------
# Rejected inputs
# ---------------------------------------------------------------------------------------------


def test_zero_byte_file_is_rejected_as_empty(tmp_path):
    file = tmp_path / "empty.png"
    file.write_bytes(b"")
    assert "empty" in reject_reason(file)


@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "bmp", "tif"])
def test_truncated_file_is_rejected(tmp_path, ext):
    full = save(tmp_path / f"full.{ext}", random_rgb(32, 32))
    data = open(full, "rb").read()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    reason = reject_reason(cut)
    assert re.search("truncated|corrupt", reason, re.IGNORECASE), reason


def test_jpeg_cut_inside_its_header_is_rejected(tmp_path):
    full = save(tmp_path / "full.jpg", random_rgb(8, 8))
    data = open(full, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:200])  # inside the quantisation / Huffman tables
    reason = reject_reason(cut)
    assert re.search("truncated|corrupt", reason, re.IGNORECASE), reason


def test_corrupt_png_data_is_rejected(tmp_path):
    full = save(tmp_path / "full.png", random_rgb(32, 32))
    data = bytearray(open(full, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    reason = reject_reason(bad)
    assert re.search("truncated|corrupt", reason, re.IGNORECASE), reason


@pytest.mark.parametrize("content", [
    b"hello, this is a text file and not a JPEG\n",
    b"\x00" * 64,
    b"\x89PNG\r\n\x1a\n" + b"garbage after a PNG signature" * 4,
])
def test_not_an_image_is_rejected(tmp_path, content):
    file = tmp_path / "photo.jpg"
    file.write_bytes(content)
    assert "not an image" in reject_reason(file)


def test_missing_file_is_rejected(tmp_path):
    assert "missing" in reject_reason(tmp_path / "nowhere.png")


def test_broken_symlink_is_rejected_as_missing(tmp_path):
    link = tmp_path / "link.png"
    os.symlink(tmp_path / "gone.png", link)
    assert "missing" in reject_reason(link)


def test_directory_is_rejected(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    (folder / "inside.png").write_bytes(b"x")  # a non-empty dir: its size is never 0
    assert "directory" in reject_reason(folder)


def test_decompression_bomb_is_rejected_before_decoding(tmp_path, monkeypatch):
    file = save(tmp_path / "big.png", random_rgb(20, 20))
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    reason = reject_reason(file)
    assert "decompression bomb" in reason
    assert "20x20" in reason and "400" in reason
    monkeypatch.setattr(images, "MAX_PIXELS", 400)  # the limit itself is allowed
    assert_layout(decode_image(file, 8), 8)


def _png_header_only(path, width, height, color_type=2, depth=8):
    """A PNG that claims width x height but holds almost no data (what a bomb looks like);
    colour type 2 is RGB, 0 grey."""
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


def test_pixel_limit_is_ours_not_pillows(tmp_path):
    # A 200 MP image (16320x12240, a phone photo's size) is above Pillow's default bomb limit
    # (179 MP) but a real image: in grey (200 MiB decoded) it must reach decoding (this one
    # then fails, having no pixel data).
    reason = reject_reason(_png_header_only(tmp_path / "phone.png", 16320, 12240, 0))
    assert "decompression bomb" not in reason and "truncated or corrupt" in reason
    reason = reject_reason(_png_header_only(tmp_path / "bomb.png", 20000, 20000))
    assert "decompression bomb: 20000x20000" in reason


def test_an_image_too_large_to_decode_is_rejected_before_decoding(tmp_path):
    # Under MAX_PIXELS, but 16-bit: 12000 x 12000 x 2 bytes = 275 MiB decoded (and as much
    # again to convert); RGB of a 200 MP photo would take 762 MiB.
    reason = reject_reason(_png_header_only(tmp_path / "deep.png", 12000, 12000, 0, 16))
    assert reason == ("too large to decode: 12000x12000 I;16 takes 275 MiB > 256 MiB "
                      "(images.MAX_DECODED_BYTES)"), reason
    reason = reject_reason(_png_header_only(tmp_path / "wide.png", 16320, 12240))
    assert reason.startswith("too large to decode: 16320x12240 RGB takes 762 MiB"), reason


def test_a_large_16_bit_png_costs_the_writer_under_1_gb(tmp_path):
    """The writer's whole process tree, on a real (all-zero) 12000 x 12000 16-bit PNG."""
    import subprocess
    import sys

    from PIL import Image

    from conftest import REPO_ROOT, write_csv, write_images

    rows = write_images(str(tmp_path / "src"), 3, size=(8, 8))
    Image.new("I;16", (12000, 12000)).save(tmp_path / "src" / "deep.png")
    write_csv(tmp_path / "src" / "train.csv", ["image", "label"], rows + [("deep.png", "cat")])
    command = [sys.executable, "-m", "pipeline.write",
               f"--input={tmp_path / 'src' / 'train.csv'}", f"--output_dir={tmp_path / 'out'}",
               "--image_size=8", "--shards=1", "--val_fraction=0", "--num_workers=1",
               "--max_reject_fraction=0.5"]
    # A fresh process runs the writer and reports the peak of its children (the writer and
    # its worker), in KB.
    measure = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", measure, *command], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": REPO_ROOT}, capture_output=True,
                            text=True, timeout=300)
    code, peak_kb = (int(word) for word in result.stdout.split())
    assert code == 0, result.stderr[-2000:]
    assert "too large to decode" in (tmp_path / "out" / "rejects.csv").read_text()
    assert peak_kb < 1 << 20, f"{peak_kb / 1024:.0f} MB"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_file_is_rejected(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: root can read a chmod 000 file")
    file = tmp_path / "secret.png"
    save(file, random_rgb(4, 4))
    os.chmod(file, 0)
    try:
        assert "unreadable" in reject_reason(file)
    finally:
        os.chmod(file, 0o644)


def test_rejected_image_carries_its_reason():
    err = RejectedImage("missing file")
    assert err.reason == "missing file"
    assert str(err) == "missing file"
