"""The renderer's pixels: every pydicom sample with pixel data, and exact values by hand.

Expected values are computed here from the DICOM formulas (PS3.3 C.11.1 rescale,
C.11.2.1.2 LINEAR window) on raw stored values, not by calling the same pydicom
functions the renderer uses. PNG output keeps them exact.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from portal.viewer import decode
from portal.viewer.cache import RenderCache
from portal.viewer.display import AUTO, Window
from portal.viewer.render import Rendered, RenderOptions, render_frame

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Samples that hold pixel data but cannot be shown: the reason the placeholder gives.
PLACEHOLDERS = {
    "JPEG-lossy.dcm": "libjpeg",  # 12-bit JPEG Extended that only GDCM decodes
    "JPEG2000-embedded-sequence-delimiter.dcm": "J2K",  # deliberately broken codestream
    "MR_truncated.dcm": "less than expected",  # pixel data cut short
    "badVR.dcm": "invalid literal",  # Number of Frames "1A"
    "meta_missing_tsyntax.dcm": "no image",  # no Image Pixel module
    "nested_priv_SQ.dcm": "no image",  # pixel data inside a private sequence only
}


def _quiet_read(path: str, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's complaints about odd sample files
        return dcmread(path, force=True, **kwargs)


def stored_pixels(path: str | Path) -> np.ndarray:
    """All frames' stored values, decoded by pydicom (the reference for hand computations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path, force=True).pixel_array


def _samples_with_pixels() -> list[str]:
    found = []
    for path in sorted(get_testdata_files()):
        if Path(path).is_dir():
            continue
        try:
            dataset = _quiet_read(path, defer_size=256)
        except Exception:  # noqa: S112 - not DICOM at all (README, JSON, ICC profile)
            continue
        if any(keyword in dataset for keyword in PIXEL_KEYWORDS):
            found.append(path)
    return found


SAMPLES = _samples_with_pixels()


def render(path: str | Path, **options) -> tuple[np.ndarray, Rendered]:
    """Render ``path`` losslessly (PNG) and return the pixels and the result."""
    with open(path, "rb") as stream:
        rendered = render_frame(stream, RenderOptions(format="png", **options))
    return np.asarray(Image.open(io.BytesIO(rendered.body))), rendered


def raw(name: str) -> np.ndarray:
    return stored_pixels(get_testdata_file(name))


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, onto 0..255, by hand."""
    scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.rint(np.clip(scaled, 0, 1) * 255)


# --- every sample ----------------------------------------------------------------------
def test_the_samples_were_found():
    assert len(SAMPLES) > 80


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: Path(p).name)
def test_every_sample_renders_or_says_why(path):
    name = Path(path).name
    pixels, rendered = render(path)
    if name in PLACEHOLDERS:
        assert rendered.error and PLACEHOLDERS[name] in rendered.error
        assert pixels.ndim == 2 and pixels.shape[0] >= 16  # a grey placeholder, still an image
        return
    assert rendered.error is None, rendered.error
    header = _quiet_read(path, stop_before_pixels=True)
    assert pixels.shape[:2] == (min(header.Rows, 1024), min(header.Columns, 1024))
    colour = int(header.get("SamplesPerPixel", 1)) == 3 or (
        header.get("PhotometricInterpretation") == "PALETTE COLOR"
    )
    assert pixels.ndim == (3 if colour else 2) and pixels.dtype == np.uint8
    if not colour:
        stored = stored_pixels(path)
        first = stored[0] if stored.ndim == 3 else stored
        fitted, _ = render(path, window=AUTO)
        assert fitted.std() > 0 or np.unique(first).size == 1


# --- grey scale: modality LUT, VOI LUT ---------------------------------------------------
def test_ct_small_known_pixel_after_rescale_and_caller_window():
    stored = raw("CT_small.dcm")
    assert stored[30, 60] == 1289  # HU = 1289 * 1 + (-1024) = 265
    pixels, _ = render(get_testdata_file("CT_small.dcm"), window=Window(300, 500))
    # ((265 - 299.5) / 499 + 0.5) * 255 = 109.87
    assert pixels[30, 60] == 110
    expected = linear_window(stored * 1.0 - 1024, 300, 500)
    assert np.abs(pixels.astype(int) - expected).max() <= 1


def test_mr_small_uses_its_own_window():
    stored = raw("MR_small.dcm")  # no rescale; Window Center 600, Width 1600
    pixels, _ = render(get_testdata_file("MR_small.dcm"))
    assert stored[32, 32] == 182 and pixels[32, 32] == round(((182 - 599.5) / 1599 + 0.5) * 255)
    assert np.abs(pixels.astype(int) - linear_window(stored * 1.0, 600, 1600)).max() <= 1


def test_caller_window_functions_differ_and_auto_fits_the_frame():
    path = get_testdata_file("CT_small.dcm")
    linear, _ = render(path, window=Window(40, 400))
    sigmoid, _ = render(path, window=Window(40, 400, "SIGMOID"))
    fitted, _ = render(path, window=AUTO)
    assert not np.array_equal(linear, sigmoid)
    assert fitted.min() <= 5 and fitted.max() >= 250


def test_monochrome1_is_inverted(tmp_path):
    path = _dicomdir_sample("6154")  # CR, MONOCHROME1
    stored = stored_pixels(path)
    pixels, _ = render(path)
    darkest = np.unravel_index(stored.argmin(), stored.shape)
    brightest = np.unravel_index(stored.argmax(), stored.shape)
    assert pixels[darkest] > pixels[brightest]  # the lowest stored value shows brightest
    as_monochrome2 = tmp_path / "mono2.dcm"
    dataset = _quiet_read(path)
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.save_as(as_monochrome2)
    flipped, _ = render(as_monochrome2)
    assert np.array_equal(pixels, 255 - flipped)


def test_invert_option_gives_the_negative():
    path = get_testdata_file("MR_small.dcm")
    plain, _ = render(path)
    negative, _ = render(path, invert=True)
    assert np.array_equal(negative, 255 - plain)


def test_8_bit_unsigned_without_a_window_shows_as_stored(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = _write(tmp_path / "u8.dcm", values, bits=8, signed=False)
    pixels, _ = render(path)
    assert np.array_equal(pixels, values)


def test_16_bit_signed_values_go_through_rescale_and_window(tmp_path):
    values = np.array([[-2000, -1000, -160], [0, 40, 240], [1000, 3000, 32767]], np.int16)
    path = _write(tmp_path / "s16.dcm", values, bits=16, signed=True, slope=1, intercept=-24)
    pixels, _ = render(path, window=Window(40, 400))
    assert np.array_equal(pixels, linear_window(values - 24.0, 40, 400))
    assert pixels[0, 0] == 0 and pixels[2, 2] == 255


# --- colour ----------------------------------------------------------------------------
def test_rgb_channels_in_order():
    pixels, _ = render(get_testdata_file("SC_rgb_rle.dcm"))
    assert tuple(pixels[0, 0]) == (255, 0, 0)  # the top band is red
    assert tuple(pixels[20, 0]) == (0, 255, 0) and tuple(pixels[40, 0]) == (0, 0, 255)


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm"])
def test_ybr_full_422_is_converted_to_rgb(name):
    pixels, _ = render(get_testdata_file(name))
    red, green, blue = (int(v) for v in pixels[2, 2])
    assert red > 240 and green < 15 and blue < 15
    reference, _ = render(get_testdata_file("SC_rgb_rle.dcm"))
    assert np.abs(pixels.astype(int) - reference).mean() < 3


def test_palette_colour_is_applied():
    path = get_testdata_file("examples_palette.dcm")
    dataset = _quiet_read(path)
    lut = [
        np.frombuffer(dataset[f"{c}PaletteColorLookupTableData"].value, "<u2")
        for c in ("Red", "Green", "Blue")
    ]
    stored = stored_pixels(path)
    pixels, _ = render(path)
    for row, column in ((0, 0), (63, 300), (81, 353), (175, 400)):  # stored 244, 255, 128, 1
        entry = stored[row, column]  # descriptor [256, 0, 16]: 16-bit entries from 0
        expected = [round(int(table[entry]) * 255 / 65535) for table in lut]
        assert np.abs(pixels[row, column].astype(int) - expected).max() <= 1


def test_planar_configuration_1(tmp_path):
    interleaved = raw("SC_rgb_rle.dcm")
    path = _write(tmp_path / "planar.dcm", interleaved, bits=8, signed=False, planar=True)
    pixels, _ = render(path)
    assert np.array_equal(pixels, interleaved)


@pytest.mark.parametrize("name", ["SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"])
def test_wide_rgb_is_scaled_to_8_bits(name):
    pixels, _ = render(get_testdata_file(name))
    reference, _ = render(get_testdata_file("SC_rgb_rle.dcm"))
    assert np.abs(pixels.astype(int) - reference).max() <= 1


# --- frames ---------------------------------------------------------------------------
def test_multiframe_frame_n_is_not_frame_1():
    first, _ = render(get_testdata_file("SC_rgb_rle_2frame.dcm"), frame=1)
    second, _ = render(get_testdata_file("SC_rgb_rle_2frame.dcm"), frame=2)
    assert tuple(first[0, 0]) == (255, 0, 0) and tuple(second[0, 0]) == (0, 255, 255)
    dose_1, _ = render(get_testdata_file("rtdose.dcm"), frame=1, window=Window(1e6, 2e6))
    dose_5, _ = render(get_testdata_file("rtdose.dcm"), frame=5, window=Window(1e6, 2e6))
    assert not np.array_equal(dose_1, dose_5)


def test_only_the_wanted_frame_is_decoded(monkeypatch):
    asked = []
    real = decode.pixel_array

    def spy(src, **kwargs):
        asked.append(kwargs.get("index"))
        return real(src, **kwargs)

    monkeypatch.setattr(decode, "pixel_array", spy)
    _, rendered = render(get_testdata_file("examples_ybr_color.dcm"), frame=12)
    assert rendered.error is None and asked == [11]


def test_a_frame_past_the_end_is_a_placeholder():
    _, rendered = render(get_testdata_file("CT_small.dcm"), frame=2)
    assert rendered.error == "there is no frame 2; the file has 1"


# --- compressed transfer syntaxes decode to their uncompressed twins ------------------
@pytest.mark.parametrize(
    ("compressed", "reference", "tolerance"),
    [
        ("MR_small_RLE.dcm", "MR_small.dcm", 0),
        ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0),
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0),
        ("MR_small_bigendian.dcm", "MR_small.dcm", 0),
        ("MR_small_implicit.dcm", "MR_small.dcm", 0),
        ("rtdose_rle.dcm", "rtdose.dcm", 0),
        ("liver_expb_1frame.dcm", "liver_1frame.dcm", 0),
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", 0),  # JPEG lossless
        ("SC_rgb_gdcm_KY.dcm", "SC_rgb_rle.dcm", 1),  # JPEG 2000
        ("SC_rgb_jls_lossy_line.dcm", "SC_rgb_rle.dcm", 3),  # JPEG-LS near-lossless
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_rle.dcm", 3),  # JPEG baseline, YBR_FULL
        ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_rle.dcm", 3),  # JPEG baseline, RGB
        ("SC_rgb_small_odd_jpeg.dcm", "SC_rgb_small_odd.dcm", 8),
    ],
)
def test_compressed_syntaxes_match_their_twins(compressed, reference, tolerance):
    pixels, rendered = render(get_testdata_file(compressed))
    expected, _ = render(get_testdata_file(reference))
    assert rendered.error is None
    difference = np.abs(pixels.astype(int) - expected)
    assert difference.mean() <= tolerance


def test_uncompressed_twin_written_here_matches_rle(tmp_path):
    twin = _write(tmp_path / "rgb.dcm", raw("SC_rgb_rle.dcm"), bits=8, signed=False)
    pixels, _ = render(twin)
    expected, _ = render(get_testdata_file("SC_rgb_rle.dcm"))
    assert np.array_equal(pixels, expected)


def test_deflated_file_renders():
    pixels, rendered = render(get_testdata_file("image_dfl.dcm"))
    assert rendered.error is None and pixels.shape == (512, 512) and pixels.std() > 0


# --- output ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "magic"), [("webp", b"RIFF"), ("jpeg", b"\xff\xd8"), ("png", b"\x89PNG")]
)
def test_formats_and_fit(kind, magic):
    with open(get_testdata_file("examples_palette.dcm"), "rb") as stream:  # 800 x 350
        rendered = render_frame(stream, RenderOptions(format=kind, max_width=200, max_height=200))
    assert rendered.body.startswith(magic) and rendered.error is None
    assert Image.open(io.BytesIO(rendered.body)).size == (200, 88)


def test_small_images_are_not_enlarged_unless_asked():
    with open(get_testdata_file("MR_small.dcm"), "rb") as stream:
        plain = render_frame(stream, RenderOptions(format="png", max_width=256, max_height=256))
        enlarged = render_frame(
            stream, RenderOptions(format="png", max_width=256, max_height=128, upscale=True)
        )
    assert Image.open(io.BytesIO(plain.body)).size == (64, 64)
    assert Image.open(io.BytesIO(enlarged.body)).size == (128, 128)


def test_cache_keys_differ_by_every_option():
    base = RenderOptions()
    variants = [
        RenderOptions(frame=2),
        RenderOptions(window=Window(40, 400)),
        RenderOptions(window=AUTO),
        RenderOptions(max_width=512, max_height=512),
        RenderOptions(format="png"),
        RenderOptions(invert=True),
        RenderOptions(quality=50),
    ]
    keys = {options.cache_key("a" * 64) for options in [base, *variants]}
    assert len(keys) == len(variants) + 1
    assert base.cache_key("a" * 64) != base.cache_key("b" * 64)


def test_the_disk_cache_evicts_least_recently_used(tmp_path):
    cache = RenderCache(tmp_path / "cache", max_bytes=10_000)
    for index in range(12):
        cache.put(f"{index:02d}" + "0" * 62, "webp", b"x" * 1000)
        path = next((tmp_path / "cache").glob(f"*/{index:02d}*.webp"), None)
        if path is not None:
            os.utime(path, (1000 + index, 1000 + index))
    cache.evict()
    assert cache.size() <= 9_000
    assert cache.get("11" + "0" * 62, "webp") == b"x" * 1000  # the newest survive
    assert cache.get("00" + "0" * 62, "webp") is None


# --- helpers --------------------------------------------------------------------------
def _dicomdir_sample(name: str) -> str:
    matches = [p for p in get_testdata_files() if Path(p).name == name]
    assert matches, name
    return matches[0]


def _write(
    path: Path,
    values: np.ndarray,
    *,
    bits: int,
    signed: bool,
    slope: float | None = None,
    intercept: float | None = None,
    planar: bool = False,
) -> Path:
    """Write an uncompressed Secondary Capture file holding ``values``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = values.shape[:2]
    colour = values.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 1 if planar else 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, int(signed)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    data = values.transpose(2, 0, 1) if colour and planar else values
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
