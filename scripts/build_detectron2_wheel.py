"""Build a pure-Python ``detectron2`` wheel from PyPI's ``pb1-detectron2==0.6`` sdist.

Why: detectron2 is not on PyPI. ``pb1-detectron2`` is a re-upload of the v0.6 source tree, but its
sdist lacks ``detectron2/layers/csrc``, so its own ``setup.py`` cannot build ``detectron2._C`` and
``pip install`` fails. The Python package itself is complete, so this script repackages it as a
wheel named ``detectron2`` (version ``0.6+purepython``) with no extension modules. pip then records
detectron2 as installed, uninstalls it cleanly, and ``resnext_det.compat`` supplies what the missing
compiled module would have provided.

The sdist is pinned by sha256; the wheel is cached, so a re-run does nothing.

Usage: python scripts/build_detectron2_wheel.py CACHE_DIR   (prints the wheel's path)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
WHEEL_VERSION = "0.6+purepython"

# detectron2 v0.6's own requirements, less three that only its caffe2 export / lazy-config
# pretty-printing use and that no longer install or import cleanly on current Pythons:
# black==21.4b2 (breaks with click >= 8.1), future and pydot (caffe2 export only).
REQUIREMENTS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]

# Upstream installs these research projects as detectron2.projects.* (see its setup.py).
PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
}

SETUP_PY = """\
from setuptools import find_packages, setup
from pathlib import Path

projects = {{k: v for k, v in {projects!r}.items() if Path(v).is_dir()}}
configs = [str(p.relative_to("detectron2/model_zoo"))
           for p in Path("detectron2/model_zoo/configs").rglob("*") if p.suffix in (".yaml", ".py")]
setup(
    name="detectron2",
    version={version!r},
    description="detectron2 v0.6 Python package (no compiled ops), repackaged from pb1-detectron2",
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    packages=find_packages(include=("detectron2", "detectron2.*")) + list(projects),
    package_dir=projects,
    package_data={{"detectron2.model_zoo": configs}},
    python_requires=">=3.7",
    install_requires={requirements!r},
)
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    sdist = cache / SDIST_NAME
    if not sdist.exists():
        # --no-build-isolation: the sdist's setup.py imports torch to read its metadata.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-binary",
                ":all:",
                "pb1-detectron2==0.6",
                "-d",
                str(cache),
            ],
            check=True,
        )
    actual = sha256_of(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink()
        raise SystemExit(
            f"{sdist}: sha256 {actual} does not match the pinned {SDIST_SHA256}; "
            "the file was removed, re-run to download it again."
        )
    return sdist


def build_wheel(cache: Path) -> Path:
    wheels = cache / "wheels"
    existing = sorted(wheels.glob(f"detectron2-{WHEEL_VERSION}-*.whl"))
    if existing:
        return existing[-1]
    sdist = fetch_sdist(cache)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        source = Path(tmp) / "pb1-detectron2-0.6"
        (source / "setup.py").write_text(
            SETUP_PY.format(projects=PROJECTS, version=WHEEL_VERSION, requirements=REQUIREMENTS)
        )
        for stale in ("pyproject.toml", "setup.cfg", "pb1_detectron2.egg-info"):
            target = source / stale
            if target.is_file():
                target.unlink()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheels),
                str(source),
            ],
            check=True,
        )
    return sorted(wheels.glob(f"detectron2-{WHEEL_VERSION}-*.whl"))[-1]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    cache_dir = Path(sys.argv[1]).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(build_wheel(cache_dir))
