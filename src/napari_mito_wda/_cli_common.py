"""What the `mito-wda` commands share: the model on its device, and outputs checked before any work."""

from __future__ import annotations

from pathlib import Path


def model_and_device(args):
    from . import load_model, pick_device

    dev = pick_device(args.device, getattr(args, "precision", "auto"))
    loaded = load_model(args.model, device=dev.device)
    return loaded, dev


def check_output(out: Path, suffixes: tuple[str, ...], what: str, overwrite: bool) -> None:
    """Refuse a bad output path before any work: taken name, missing folder, wrong suffix."""
    from .core.data.io import InputError, check_new_path

    if out.suffix.lower() not in suffixes:
        raise InputError(f"{out}: name the {what} *{' or *'.join(suffixes)}.")
    check_new_path(out, overwrite)


def read_clicks(path, shape, flag: str = "--points"):
    """Clicks of `flag` read and checked against a (Z, Y, X) shape, before any model is loaded; None without
    a file. The messages are those of --points, naming the flag for the others (which file is wrong)."""
    from .core.adapt.points import read_points, validate_points
    from .core.data.io import InputError

    if not path:
        return None
    try:
        clicks = read_points(path)
        validate_points(clicks, shape)
    except InputError as exc:
        if flag == "--points":
            raise
        raise InputError(f"{flag}: {exc}") from None
    return clicks


def read_corrections(edited, predicted, shape):
    """The corrections of `adapt --corrections EDITED.tif --predicted PREDICTED.tif`, checked against the image's
    (Z, Y, X) shape before any model is loaded; None without them."""
    from .core.adapt.corrections import corrections_from_edit
    from .core.data.io import InputError, read_volume

    if not edited and not predicted:
        return None
    if not edited or not predicted:
        raise InputError("--corrections EDITED.tif and --predicted PREDICTED.tif go together: the instances you "
                         "edited, and the prediction (`mito-wda predict -o PREDICTED.tif`) you edited them from, "
                         "which tells your corrected objects from the model's.")
    maps = {}
    for flag, path in (("--corrections", edited), ("--predicted", predicted)):
        try:
            data = read_volume(path).data
        except InputError as exc:
            raise InputError(f"{flag}: {exc}") from None
        if data.shape != tuple(shape):
            raise InputError(f"{flag}: {path} has shape {data.shape}, not the image's {tuple(shape)}; give the "
                             "instances of this image.")
        if data.dtype.kind not in "iu":
            raise InputError(f"{flag}: {path} holds {data.dtype} values, not instance ids; give an integer labels "
                             "TIFF (as `mito-wda predict` writes).")
        maps[flag] = data
    try:
        return corrections_from_edit(maps["--predicted"], maps["--corrections"])
    except ValueError as exc:
        raise InputError(f"--corrections: {exc}.") from None


def add_pixel_size(parser) -> None:
    parser.add_argument("--pixel-size", default=None, metavar="NM",
                        help="in-plane nm per pixel of the image (default: its file's metadata); slices are rescaled "
                             "to the model's pixel size for the network, results stay on the image's grid")


def check_pixel_size_flag(args) -> float | None:
    """--pixel-size as nm (None when not given); a one-line error before any work for a bad value."""
    from .core.data.pixel_size import check_pixel_size

    return check_pixel_size(args.pixel_size, "--pixel-size")


def pixel_size_for(flag: float | None, voxel_size, model_nm: float | None) -> tuple[float | None, str]:
    """(the image's pixel size for the engine, the line that says it): --pixel-size beats the file's metadata."""
    from .core.data.pixel_size import describe, resolve

    nm, source = resolve(flag, voxel_size)
    return nm, f"mito-wda: {describe(nm, source, model_nm)}"
