"""The labels TIFF must open in a real ImageJ as a calibrated Z stack (not as channels)."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from napari_mito_wda.core.data.io import write_labels_tiff

MACRO = """
open(getArgument());
getVoxelSize(w, h, d, unit);
Stack.getDimensions(width, height, channels, slices, frames);
print("RESULT c=" + channels + " z=" + slices + " t=" + frames + " w=" + w + " h=" + h + " d=" + d \
+ " unit=" + unit + " bits=" + bitDepth() + " max=" + getValue("Max"));
"""


@pytest.mark.skipif(shutil.which("imagej") is None,
                    reason="ImageJ is not installed (Debian package 'imagej'; .ci/run installs it)")
def test_imagej_opens_labels_as_calibrated_z_stack(tmp_path):
    lab = np.zeros((7, 40, 50), np.uint16)
    lab[3, 10:20, 10:20] = 4242
    path = write_labels_tiff(tmp_path / "labels.tif", lab, voxel_size=(30.0, 5.0, 4.0))
    macro = tmp_path / "check.ijm"
    macro.write_text(MACRO)
    cmd = ["imagej", "-b", str(macro), str(path)]
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):  # ImageJ's batch mode still wants a display
        cmd = ["xvfb-run", "-a", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    line = re.search(r"RESULT .*", out.stdout + out.stderr)
    assert line, f"ImageJ printed no result:\n{out.stdout}\n{out.stderr}"
    fields = dict(kv.split("=") for kv in line.group(0).split()[1:])
    assert (fields["c"], fields["z"], fields["t"]) == ("1", "7", "1")
    assert float(fields["w"]) == pytest.approx(4.0) and float(fields["h"]) == pytest.approx(5.0)
    assert float(fields["d"]) == pytest.approx(30.0) and fields["unit"] == "nm"
    assert fields["bits"] == "16"
