"""Reading masks of every encoding, and clear errors for bad CSVs and files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from data.io import (
    DataError,
    load_labeled_arrays,
    load_labeled_csv,
    load_unlabeled_csv,
    read_image,
    read_mask,
)


def disc(size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (16, 16), 9, 1, -1)
    return m


def write_pair(folder, name, image=None, mask=None, size=32):
    img = image if image is not None else np.full((size, size, 3), 128, np.uint8)
    cv2.imwrite(str(folder / f"{name}.png"), img)
    cv2.imwrite(str(folder / f"{name}_mask.png"), (mask if mask is not None else disc(size)) * 255)
    return f"{name}.png", f"{name}_mask.png"


def write_csv(path, rows, header="image_path,mask_path"):
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


ENCODINGS = [
    "0/255",
    "0/1",
    "rgb",
    "rgba",
    "jpeg",
    "jpeg 0/1",
    "palette",
    "palette white first",
    "16bit",
    "16bit 0/1000",
]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_masks_of_every_encoding_read_as_binary(tmp_path, encoding):
    m = disc()
    path = tmp_path / "mask.png"
    if encoding == "0/255":
        cv2.imwrite(str(path), m * 255)
    elif encoding == "0/1":
        cv2.imwrite(str(path), m)
    elif encoding == "rgb":
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[m == 1] = (200, 30, 10)  # a coloured lesion on black
        Image.fromarray(rgb).save(path)
    elif encoding == "rgba":
        Image.fromarray(np.dstack([m * 255] * 3 + [np.full_like(m, 255)])).save(path)
    elif encoding == "jpeg":
        path = tmp_path / "mask.jpg"
        cv2.imwrite(str(path), m * 255, [cv2.IMWRITE_JPEG_QUALITY, 60])
        assert len(np.unique(cv2.imread(str(path), 0))) > 2  # really noisy
    elif encoding == "jpeg 0/1":  # noise makes stray 2s: still 0/1-coded, not 0/255
        path = tmp_path / "mask.jpg"
        cv2.imwrite(str(path), m, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert cv2.imread(str(path), 0).max() >= 2
    elif encoding == "palette":
        pil = Image.fromarray(m, mode="L").convert("P")
        pil.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
        pil.save(path)
    elif encoding == "palette white first":  # as PIL's quantize() stores a 0/255 mask
        pil = Image.fromarray(1 - m, mode="L").convert("P")
        pil.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
        pil.save(path)
    elif encoding == "16bit":
        cv2.imwrite(str(path), m.astype(np.uint16) * 65535)
    elif encoding == "16bit 0/1000":
        cv2.imwrite(str(path), m.astype(np.uint16) * 1000)
    out = read_mask(path)
    assert out.dtype == np.uint8 and set(np.unique(out).tolist()) <= {0, 1}
    # JPEG ringing can flip a few boundary pixels (more of a 0/1 mask, whose whole range is
    # one grey level); everything else is exact.
    tolerance = {"jpeg": 8, "jpeg 0/1": 16}.get(encoding, 0)
    assert np.count_nonzero(out != m) <= tolerance


def test_csv_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="CSV not found"):
        load_labeled_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_labeled_csv(tmp_path / "empty.csv")
    header_only = write_csv(tmp_path / "header.csv", [])
    with pytest.raises(DataError, match="no rows"):
        load_labeled_csv(header_only)
    wrong = write_csv(tmp_path / "wrong.csv", [("a.png",)], header="img")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['image_path', 'mask_path'\]"):
        load_labeled_csv(wrong)
    good = write_pair(tmp_path, "ok")
    missing = write_csv(tmp_path / "missing.csv", [good, ("gone.png", good[1])])
    with pytest.raises(DataError, match=r"line 3: image_path does not exist: gone.png"):
        load_labeled_csv(missing)


def test_undecodable_and_mismatched_files_are_named(tmp_path):
    good = write_pair(tmp_path, "ok")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    broken = write_csv(tmp_path / "broken.csv", [good, ("broken.png", good[1])])
    with pytest.raises(DataError, match=r"line 3: cannot decode image: .*broken.png"):
        load_labeled_arrays(load_labeled_csv(broken), 32)
    write_pair(tmp_path, "small", mask=disc(16)[:16, :16], size=32)
    cv2.imwrite(str(tmp_path / "small_mask.png"), disc(16) * 255)
    mismatch = write_csv(tmp_path / "mismatch.csv", [("small.png", "small_mask.png")])
    with pytest.raises(DataError, match=r"line 2: mask size 16x16 differs from image size 32x32"):
        load_labeled_arrays(load_labeled_csv(mismatch), 32)


def test_relative_paths_resolve_against_the_csv_folder(tmp_path, monkeypatch):
    sub = tmp_path / "set"
    sub.mkdir()
    pair = write_pair(sub, "a")
    csv = write_csv(sub / "train.csv", [pair])
    monkeypatch.chdir(tmp_path)  # the cwd is elsewhere
    images, masks = load_labeled_arrays(load_labeled_csv(csv), 16)
    assert images.shape == (1, 16, 16, 3) and masks.shape == (1, 16, 16)
    assert set(np.unique(masks).tolist()) == {0, 1}


def test_unlabeled_csv_accepts_release_layouts(tmp_path):
    cv2.imwrite(str(tmp_path / "u.jpg"), np.zeros((8, 8, 3), np.uint8))
    isic = "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,"
    isic += "benign_malignant,target,img_path"
    write_csv(
        tmp_path / "isic.csv",
        [("ISIC_1", "P1", "male", "45", "torso", "nevus", "benign", "0", "u.jpg")],
        header=isic,
    )
    assert len(load_unlabeled_csv(tmp_path / "isic.csv")) == 1
    write_csv(tmp_path / "colon.csv", [("u.jpg",)], header="img_path")
    assert len(load_unlabeled_csv(tmp_path / "colon.csv")) == 1
    write_csv(tmp_path / "bad.csv", [("u.jpg",)], header="path")
    with pytest.raises(DataError, match="lacks an image column"):
        load_unlabeled_csv(tmp_path / "bad.csv")


def test_read_image_errors(tmp_path):
    with pytest.raises(DataError, match="image not found"):
        read_image(tmp_path / "x.png")
    with pytest.raises(DataError, match="mask not found"):
        read_mask(tmp_path / "x.png")


@pytest.mark.realdata
def test_real_jpeg_masks_binarise(shared_data):
    folder = shared_data / "CVC-ClinicDB" / "masks"
    files = sorted(folder.iterdir())[:20]
    for f in files:
        raw = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        m = read_mask(f)
        assert set(np.unique(m).tolist()) <= {0, 1}
        # Thresholding at half range keeps the bright lesion, drops the JPEG noise.
        assert np.array_equal(m, (raw > 127).astype(np.uint8))


def test_large_jpegs_decode_at_reduced_scale_for_unlabeled_caches(tmp_path):
    from data.io import jpeg_reduction, load_image_array

    rng = np.random.default_rng(0)
    big = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (800, 600))
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big)
    assert jpeg_reduction(path, 100) == 4  # 600 / 4 = 150 >= 100, 600 / 8 = 75 < 100
    assert jpeg_reduction(path, 700) == 1
    assert jpeg_reduction(tmp_path / "x.png", 10) == 1
    assert read_image(path, reduction=4).shape == (150, 200, 3)
    fast = load_image_array([path], 100)[0].astype(float)
    full = cv2.resize(
        cv2.cvtColor(big, cv2.COLOR_BGR2RGB), (100, 100), interpolation=cv2.INTER_AREA
    ).astype(float)
    assert np.abs(fast - full).mean() < 4.0  # same picture, a few grey levels apart


def test_exif_orientation_is_ignored_like_for_masks(tmp_path):
    """A JPEG whose EXIF says "rotate 90 deg" decodes in stored order, as its mask does."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a bright left band marks the stored orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 deg clockwise on display
    Image.fromarray(pixels).save(tmp_path / "x.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "x.jpg")
    assert image.shape == (20, 40, 3)
    assert image[:, :10].mean() > 200 and image[:, 20:].mean() < 50
