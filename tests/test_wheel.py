"""`pip install .` as a real wheel: it carries templates/, firmware/ and boards/ and builds firmware."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_builds_firmware_from_the_installed_copy(int8_model, tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(REPO)], check=True, capture_output=True)
    wheel = next(dist.glob("aqedge-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("aqedge/_data/boards/qemu-stm32f405.toml", "aqedge/_data/templates/model/model.c.j2",
                   "aqedge/_data/firmware/include/aq_kernels.h", "aqedge/_data/firmware/aq_main.c"):
        assert needed in names

    scratch = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch)], check=True)
    python = scratch / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    # Dependencies come from the test venv, appended after the scratch venv's own site-packages
    # (a path line in a .pth does not run that directory's .pth files, so the editable
    # checkout of aqedge stays invisible).
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = subprocess.check_output(
        [str(python), "-c", "import aqedge, aqedge.resources as r; print(aqedge.__file__); print(r.data_dir('firmware'))"],
        text=True, cwd=tmp_path).split()
    assert where[0].startswith(str(scratch)) and where[1].startswith(str(scratch)), where

    result = subprocess.run([str(python), "-m", "aqedge.cli", "build", "--board", "stm32", "--model",
                             str(int8_model), "-o", str(tmp_path / "fw")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fw" / "firmware.elf").stat().st_size > 10_000
    assert (tmp_path / "fw" / "runtime" / "firmware" / "kernels" / "aq_conv_s8.c").is_file()
