"""resnext-det: ResNeXt (Xie et al., CVPR 2017) for detectron2, as the paper ran it.

detectron2 is deliberately not in ``install_requires``: it is not on PyPI, official builds are
installed by the user (see README), and ``scripts/install.sh`` builds the pure-Python fallback.
``import resnext_det`` says so clearly when it is missing.
"""

from setuptools import find_packages, setup

DEPLOY = ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18", "openvino>=2024.0"]
SLURM = ["submitit>=1.5"]
# tools/eval_coco.py --corruptions (the benchmark's own implementation) and --calibration (D-ECE,
# temperature / Platt scaling); see docs/analysis.md
ROBUSTNESS = ["imagecorruptions>=1.1.2", "netcal>=1.3"]

setup(
    name="resnext-det",
    version="0.1.0",
    license="Apache-2.0",
    description="ResNeXt backbones and the paper's C4 Faster R-CNN schedule as a detectron2 plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=("resnext_det", "resnext_det.*", "pretrain", "pretrain.*"))
    + ["resnext_det.configs"],
    # The YAML configs live at the repository's top level (where users `_BASE_` from them) and
    # are also installed inside the package, so `resnext_det.get_config_file()` works after a
    # non-editable `pip install`.
    package_dir={"resnext_det.configs": "configs"},
    package_data={
        "resnext_det.configs": [
            "*.yaml",
            "*/*.yaml",
            "*/*/*.yaml",
            "lazy/*.py",
            "lazy/common/*.py",
            "lazy/demo/*.py",
            "lazy/paper/*.py",
        ]
    },
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "fvcore",
        "pycocotools>=2.0.2",
        "Pillow",
        "tqdm",
        "matplotlib",  # tools/plot_metrics.py, the benchmarks' charts
        # detectron2's Visualizer (detections drawn by tools/eval_coco.py) imports cv2; detectron2
        # leaves installing OpenCV to the user, the headless wheel needs no system libraries.
        "opencv-python-headless",
    ],
    extras_require={
        # tools/export_model.py --format onnx [--quantize int8] and running the exported model
        # (ONNX Runtime, or OpenVINO with --backend openvino); onnxscript is what torch.onnx's
        # exporter translates with. The .pt2 format needs only torch.
        "deploy": DEPLOY,
        # benchmarks/speed.py's full deploy group also measures OpenVINO's own int8 (NNCF)
        "bench": ["nncf>=2.10", *DEPLOY],
        # --slurm on the training tools (submitit submits the job; its local executor tests it)
        "slurm": SLURM,
        "robustness": ROBUSTNESS,
        # tools/convert_weights.py --source fb-torch7: the paper's Torch7 models (torchfile parses .t7)
        "torch7": ["torchfile"],
        # pytest-xdist: make test runs two workers (tests/README.md)
        "test": [
            "pytest>=7",
            "pytest-xdist>=3.8",
            "timm",
            "hypothesis>=6",
            "torchfile",
            *DEPLOY,
            *SLURM,
            *ROBUSTNESS,
        ],
        "dev": [
            "pytest>=7",
            "pytest-xdist>=3.8",
            "timm",
            "hypothesis>=6",
            "torchfile",
            "ruff",
            "nncf>=2.10",
            *DEPLOY,
            *SLURM,
            *ROBUSTNESS,
        ],
    },
)
