"""`mito-wda suggest`: predict a volume, then write where a click would teach the model most (napari CSV)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ._cli_common import (
    add_pixel_size,
    check_output,
    check_pixel_size_flag,
    model_and_device,
    pixel_size_for,
    read_clicks,
)
from ._cli_progress import Progress


def cmd_suggest(args) -> int:
    from . import read_volume, segment_volume
    from .core.adapt.points import write_points_csv
    from .core.adapt.suggest import mirrored_prob, suggest_points
    from .core.data.io import InputError

    out = Path(args.output)
    check_output(out, (".csv",), "suggested clicks (a napari Points CSV)", args.overwrite)
    if args.n < 1:
        raise InputError(f"-n takes a number of suggestions, 1 or more, got {args.n}.")
    flag_nm = check_pixel_size_flag(args)
    vol = read_volume(args.image)
    shape = vol.data.shape if vol.data.ndim == 3 else (1, *vol.data.shape)
    # Clicks already given are never suggested again (nor places next to them).
    given = [c for c in (read_clicks(args.points, shape), read_clicks(args.negative_points, shape,
                                                                      "--negative-points")) if c is not None]
    existing = np.concatenate([_zyx(c) for c in given]) if given else None
    loaded, dev = model_and_device(args)
    pixel_size, said = pixel_size_for(flag_nm, vol.voxel_size, loaded.pixel_size_nm)
    print(f"{vol.path}: {vol.data.shape}; model {loaded.path}; {dev.describe()}\n{said}", file=sys.stderr)
    seg = segment_volume(vol.data, loaded, dev, progress=Progress("predict"), flips=args.flips, pixel_size=pixel_size)
    flipped = None
    if not args.no_flip_check:  # one more prediction: where flipping the image changes the answer
        print("mito-wda: predicting the mirrored image too (flip disagreement; --no-flip-check skips it)",
              file=sys.stderr)
        flipped = mirrored_prob(vol.data, loaded, dev, pixel_size)
    sug = suggest_points(seg.prob, seg.heat, args.n, existing_points=existing, flipped_prob=flipped,
                         labels=seg.labels)
    pts = sug.points if vol.data.ndim == 3 else sug.points[:, 1:]  # a 2D image's layer has 2 axes
    write_points_csv(out, pts, {"score": [round(float(v), 4) for v in sug.scores], "kind": sug.kinds},
                     overwrite=args.overwrite)
    if sug.message:
        print(f"mito-wda: note: {sug.message}", file=sys.stderr)
    print(f"wrote {out}: {len(sug)} suggested clicks; open it in napari, or after answering them pass the kept "
          "ones to `mito-wda adapt --points` and the false objects to `--negative-points`")
    return 0


def _zyx(points) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    return arr if arr.shape[1] == 3 else np.column_stack([np.zeros(len(arr)), arr])


def add_parser(sub, add_model) -> None:
    p = sub.add_parser("suggest", help="predict, then write where a click would teach the model most "
                                       "(napari Points CSV)")
    p.add_argument("image", help="TIFF stack")
    p.add_argument("-n", type=int, default=20, help="how many suggestions (default 20)")
    p.add_argument("-o", "--output", required=True, help="suggested clicks: napari Points CSV to write")
    add_model(p)
    add_pixel_size(p)
    p.add_argument("--points", default=None, help="clicks already given (napari CSV or .npy): not suggested again")
    p.add_argument("--negative-points", default=None, help="negative clicks already given: not suggested again")
    p.add_argument("--flips", action="store_true", help="average 4 flips in the prediction")
    p.add_argument("--no-flip-check", action="store_true",
                   help="leave flip disagreement out of the score (saves the second prediction)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_suggest)
