"""Reading EM stacks and writing instance labels safely.

Reads 2D/3D TIFF stacks (uint8, uint16, float) and reports anything else with one clear message.
Writes are atomic (temporary file in the same folder, then rename) and never replace an existing
file unless asked to, so a full disk or a crash never leaves a half-written or lost result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64, np.int8, np.int16)


class InputError(ValueError):
    """A user-facing problem with an input file or array; the message says what to do."""


@dataclass
class Volume:
    """A raw image stack (Z, Y, X) and its voxel size in nanometres (z, y, x), or None if unknown."""

    data: np.ndarray
    voxel_size: tuple[float, float, float] | None = None
    path: str | None = None


def check_stack_shape(shape, dtype, name: str = "image") -> tuple[tuple[int, int, int], bool]:
    """(Z, Y, X) shape of an image of `shape` and `dtype`, and whether it was 2D; InputError otherwise.

    Only the shape and pixel type, so that a volume read lazily (core/volumes/lazy_io.py) is checked by
    the same rules, with the same messages, as one in memory.
    """
    dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
    if dtype.kind not in "uif":  # bool (kind "b") is refused too
        raise InputError(f"{name}: unsupported pixel type {dtype}; expected 8/16-bit integers or floats, "
                         "convert it (e.g. to 8-bit) first.")
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise InputError(f"{name}: shape {shape} looks like an RGB(A) image; convert it to grayscale first "
                         "(EM data is single-channel).")
    if 0 in shape:
        raise InputError(f"{name}: holds no pixels (shape {shape}); check that the file holds the stack "
                         "and export it again.")
    squeeze = len(shape) == 2
    if squeeze:
        shape = (1, *shape)
    if len(shape) != 3:
        raise InputError(
            f"{name}: expected a 2D image (Y, X) or a 3D stack (Z, Y, X), got {len(shape)} dimensions "
            f"{shape}; split channels/time points first."
        )
    if min(shape[1:]) < 16:
        raise InputError(f"{name}: slices of {shape[1]}x{shape[2]} pixels are too small (need at least "
                         "16x16); give the full-size stack.")
    return shape, squeeze


def validate_image(data: np.ndarray, name: str = "image") -> np.ndarray:
    """Return the image as (Z, Y, X); raise InputError for shapes/dtypes/values we cannot segment."""
    arr = np.asarray(data)
    _, squeeze = check_stack_shape(arr.shape, arr.dtype, name)
    if squeeze:
        arr = arr[None]
    if arr.dtype.kind == "f":
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        if n_bad:
            raise InputError(
                f"{name}: {n_bad} pixels are NaN or infinite; replace them (e.g. with the median) and retry."
            )
    return arr


def normalize_slices(stack: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Per-slice robust min-max normalisation to float32 in [0, 1] (percentiles low/high)."""
    stack = validate_image(stack)
    out = np.empty(stack.shape, dtype=np.float32)
    for z in range(stack.shape[0]):
        out[z] = normalize_slice(stack[z], low, high)
    return out


def normalize_slice(img: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """One 2D slice to float32 in [0, 1]; a constant slice becomes all zeros."""
    img = np.asarray(img, dtype=np.float32)
    sy, sx = sample_strides(img.shape)
    lo, hi = intensity_range(img[::sy, ::sx], low, high)
    return apply_range(img, lo, hi)


def sample_strides(slice_shape: tuple[int, int]) -> tuple[int, int]:
    """Strides of the subsample whose percentiles normalise a slice (about 256 x 256 values).

    Percentiles of a strided subsample are as good and much cheaper on large slices; chunked
    prediction takes the same subsample of the whole slice, so both paths normalise identically.
    """
    return max(1, int(slice_shape[0]) // 256), max(1, int(slice_shape[1]) // 256)


def intensity_range(sample: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The (low, high) percentiles of a slice's strided subsample."""
    lo, hi = np.percentile(np.asarray(sample, dtype=np.float32), [low, high])
    return float(lo), float(hi)


def apply_range(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] (float32, clipped); a constant slice (hi ~ lo) becomes all zeros."""
    img = np.asarray(img, dtype=np.float32)
    if hi - lo < 1e-8:
        return np.zeros_like(img)
    return np.clip((img - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


# In-plane pixel sizes outside this range are no EM image's: a value read from a file outside it is a
# wrong unit (a 72 dpi screen resolution, um taken for nm) and is ignored; one typed by the user is refused.
MIN_PIXEL_NM, MAX_PIXEL_NM = 0.1, 1000.0
_UNIT_NM = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "micron": 1e3, "micrometer": 1e3, "mm": 1e6,
            "millimeter": 1e6, "cm": 1e7, "centimeter": 1e7, "a": 0.1, "angstrom": 0.1}


def unit_to_nm(unit) -> float | None:
    """nm per unit for the length units EM files use (ImageJ, OME, OME-Zarr spellings); None if unknown."""
    u = str(unit).strip().lower().replace("\\u00b5", "u").replace("\u00b5", "u").replace("\u03bc", "u")
    return _UNIT_NM.get(u)


def tiff_spacing(tif) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in nm from OME-XML, or ImageJ metadata and the TIFF resolution tags, if recorded."""
    voxel = _ome_spacing(tif) or _resolution_spacing(tif)
    if voxel is None or not all(MIN_PIXEL_NM <= v <= MAX_PIXEL_NM for v in voxel[1:]):
        return None
    return voxel


def _ome_spacing(tif) -> tuple[float, float, float] | None:
    """PhysicalSizeX/Y/Z of the first OME Pixels element (unit: their *Unit attribute, by default um)."""
    if not tif.is_ome:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None

    def size(axis: str, default: float | None = None) -> float | None:
        if f"PhysicalSize{axis}" not in pixels.attrib:
            return default
        to_nm = unit_to_nm(pixels.attrib.get(f"PhysicalSize{axis}Unit", "um"))
        return float(pixels.attrib[f"PhysicalSize{axis}"]) * to_nm if to_nm else None

    x = size("X")
    y, z = size("Y", x), size("Z", x)
    return (z, y, x) if x and y and z else None


def _resolution_spacing(tif) -> tuple[float, float, float] | None:
    """From the resolution tags, in ImageJ's unit when it names one.

    Without a unit (or in inches, tifffile's default when a writer gives none, as this plugin's uint32
    labels do) the values are taken as nm, the convention of this plugin's files; a value that is no
    pixel size in nm but one in inches (a real inch calibration) is converted.
    """
    page = tif.pages[0]
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        px_x = xres[1] / xres[0] if xres[0] else None
        px_y = yres[1] / yres[0] if yres[0] else None
    except KeyError:
        return None
    if not px_x or not px_y or (px_x == 1.0 and px_y == 1.0):
        return None
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).strip().lower()
    if unit in ("pixel", "pixels"):
        return None
    to_nm = unit_to_nm(unit) if unit else None
    if to_nm is None:
        tag = page.tags.get("ResolutionUnit")
        res_unit = int(tag.value) if tag is not None else 2
        if res_unit == 3:  # centimetre
            to_nm = 1e7
        elif res_unit == 2 and not MIN_PIXEL_NM <= px_x <= MAX_PIXEL_NM:
            to_nm = 2.54e7
        else:
            to_nm = 1.0
    pz = float(meta.get("spacing", px_x))
    return (pz * to_nm, px_y * to_nm, px_x * to_nm)


NO_PAGES = "{path}: holds no readable image (a TIFF without pages, or damaged); export the stack again."


def check_tiff_path(path: Path) -> None:
    """One-line errors for a TIFF path that is missing or is a folder."""
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a TIFF file.")


def not_a_tiff(path, exc: BaseException) -> str:
    """One line for a file tifffile cannot parse (junk bytes, an empty file, another format)."""
    why = " ".join(str(exc).split()) or type(exc).__name__
    return f"{path}: cannot be read as a TIFF ({why}); check that it is a TIFF stack and export it again."


@contextlib.contextmanager
def quiet_tifffile():
    """Silence tifffile's logged warnings while a file is read: our one-line error says it all."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 2D/3D TIFF as (Z, Y, X) with its voxel size (nm) when the file records one."""
    import tifffile

    path = Path(path)
    check_tiff_path(path)
    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            voxel = tiff_spacing(tif)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise InputError(not_a_tiff(path, exc)) from exc
    except (IndexError, KeyError) as exc:  # tifffile on a file without a single image page
        raise InputError(NO_PAGES.format(path=path)) from exc
    data = validate_image(np.squeeze(data) if data.ndim > 3 else data, name=str(path))
    return Volume(data=data, voxel_size=voxel, path=str(path))


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 (ImageJ-friendly) when the ids fit, else uint32."""
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise InputError("labels contain negative ids.")
    return np.dtype(np.uint16) if top < 65536 else np.dtype(np.uint32)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_new_path(path, overwrite: bool) -> Path:
    """Refuse, before any work, an output whose name is taken (unless overwrite) or whose folder is missing.

    The one place of these two messages: files, model checkpoints and zarr stores, CLI and API alike.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or pass --overwrite.")
    if not path.parent.exists():
        raise InputError(f"{path.parent}: output folder does not exist; create it or choose another output path.")
    return path


def atomic_write(path: Path, writer, overwrite: bool) -> Path:
    """Run writer(tmp_path) then rename onto path; clean up on any failure."""
    path = check_new_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(f"could not write {path}: {exc.strerror or exc} (nothing was overwritten)"
                      f"{_write_hint(exc)}") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _write_hint(exc: OSError) -> str:
    """What to do about a failed write, for the errors users meet."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "; free disk space or choose another folder."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "; choose a folder you can write to."
    return "."


def write_labels_tiff(
    path: str | os.PathLike,
    labels: np.ndarray,
    voxel_size: tuple[float, float, float] | None = None,
    overwrite: bool = False,
    metadata: dict | None = None,
) -> Path:
    """Write instance labels (Z, Y, X) as a TIFF that ImageJ/Fiji opens as a calibrated Z stack.

    uint16 files use the ImageJ hyperstack layout (axes ZYX, spacing and unit nm). uint32 (more than
    65535 ids) cannot be an ImageJ hyperstack; it is written as a plain multi-page TIFF with resolution.
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise InputError(f"labels must be 2D or 3D, got shape {labels.shape}.")
    dtype = labels_dtype(labels)
    data = labels.astype(dtype, copy=False)
    vz, vy, vx = voxel_size if voxel_size else (1.0, 1.0, 1.0)
    unit = "nm" if voxel_size else "pixel"
    description = json.dumps(metadata) if metadata else None

    def write(tmp: str) -> None:
        if dtype == np.uint16:
            tifffile.imwrite(
                tmp,
                data,
                imagej=True,
                resolution=(1.0 / vx, 1.0 / vy),
                metadata={"axes": "ZYX", "spacing": vz, "unit": unit, "Info": description or ""},
                compression="zlib",
            )
        else:
            tifffile.imwrite(
                tmp,
                data,
                resolution=(1.0 / vx, 1.0 / vy),
                description=description,
                compression="zlib",
                photometric="minisblack",  # a 3-slice stack must not be mistaken for RGB
                metadata={"axes": "ZYX"},
            )

    return atomic_write(Path(path), write, overwrite)


def write_json(path: str | os.PathLike, payload: dict, overwrite: bool = False) -> Path:
    """Atomic JSON write (sidecars, metrics, model cards)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")

    return atomic_write(Path(path), write, overwrite)
