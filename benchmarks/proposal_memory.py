#!/usr/bin/env python
"""Peak memory of stage 2's data loading: detectron2's proposal pickle vs resnext_det's store.

  python benchmarks/proposal_memory.py                       # 20k images x 2000 proposals
  python benchmarks/proposal_memory.py --images 118287       # COCO trainval35k size (~4.7 GB)

Generates a COCO-sized proposal set (random boxes; the numbers do not matter, their bytes do) in
both formats, then, each in a fresh process, runs ``--iterations`` batches of detectron2's
training loader with ``--workers`` workers over a dataset of ``--images`` records (images cycle
over the demo's files): once with detectron2's default path (``DATASETS.PROPOSAL_FILES_TRAIN``:
the pickle loaded into the dataset dicts) and once with ``PROPOSALS.STORE_DIR`` (the
memory-mapped store read in the mapper). A sampler thread reads /proc every 50 ms and keeps the
peak, over the process and its workers together, of RSS (resident pages, shared ones counted
in every process) and PSS (shared pages divided among the processes sharing them: what the
machine really spends). Writes a Markdown table and JSON under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20000, help="images in the proposal set")
    parser.add_argument("--proposals", type=int, default=2000, help="proposals per image")
    parser.add_argument("--iterations", type=int, default=300, help="batches loaded per variant")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--workdir", default="benchmarks/work/proposal_memory", help="generated files")
    parser.add_argument("--output", default="benchmarks/results", help="where the table and JSON go")
    parser.add_argument("--run-variant", choices=["pickle", "store"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- generation (parent process)
def generate(workdir: Path, images: int, proposals: int) -> None:
    """Write proposals_bench.pkl and proposals_bench/ (skipped when already there at this size)."""
    from resnext_det.proposals.files import proposal_file_path, write_proposal_file
    from resnext_det.proposals.store import proposal_store_path, write_proposal_store

    import numpy as np

    stamp = workdir / "size.json"
    wanted = {"images": images, "proposals": proposals}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (proposals, 2)).astype(np.float32)
    template = np.concatenate([xy, xy + rng.uniform(8, 200, (proposals, 2)).astype(np.float32)], 1)
    logits = np.sort(rng.normal(size=proposals).astype(np.float32))[::-1].copy()
    ids = list(range(1, images + 1))
    # distinct arrays per image, as a real file has (a shared one would pickle once)
    content = {
        "ids": ids,
        "boxes": [template + np.float32(i % 97) for i in ids],
        "objectness_logits": [logits.copy() for _ in ids],
    }
    print(f"writing {images} x {proposals} proposals in both formats under {workdir} ...", flush=True)
    write_proposal_file(proposal_file_path(workdir, "bench"), content)
    write_proposal_store(proposal_store_path(workdir, "bench"), content, dataset_name="bench")
    stamp.write_text(json.dumps(wanted))


# ---------------------------------------------------------------- measurement (child process)
def _register_bench_dataset(images: int) -> None:
    from resnext_det.data import generate_demo_dataset

    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file, image_root = generate_demo_dataset()["resnext_demo_train"]
    files = sorted(Path(image_root).glob("*.png"))

    def records():
        return [
            {
                "file_name": str(files[i % len(files)]),
                "image_id": i + 1,
                "height": 128,
                "width": 160,
                "annotations": [{"bbox": [10.0, 10.0, 40.0, 40.0], "bbox_mode": 1, "category_id": 0}],
            }
            for i in range(images)
        ]

    DatasetCatalog.register("bench", records)
    MetadataCatalog.get("bench").set(thing_classes=["thing"])


def run_variant(args) -> None:
    import resnext_det  # noqa: F401
    from resnext_det.engine import DetectionRecipe, setup_cfg

    _register_bench_dataset(args.images)
    opts = [
        "DATASETS.TRAIN", "('bench',)", "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", str(args.workers), "SOLVER.IMS_PER_BATCH", "2",
        "MODEL.ROI_HEADS.NUM_CLASSES", "1",
    ]  # fmt: skip
    workdir = Path(args.workdir)
    if args.run_variant == "pickle":
        opts += ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{workdir / 'proposals_bench.pkl'}',)"]
    else:
        opts += ["PROPOSALS.STORE_DIR", str(workdir)]
    cfg = setup_cfg(str(ROOT / "configs/demo/fast_rcnn_tiny_C4.yaml"), opts)
    start = time.perf_counter()
    loader = iter(DetectionRecipe.build_train_loader(cfg))
    first = None
    for i in range(args.iterations):
        batch = next(loader)
        assert all(len(r["proposals"]) > 0 for r in batch)
        if i == 0:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    print(json.dumps({"first_batch_s": round(first, 2), "total_s": round(total, 2)}), flush=True)


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        pids += map(int, children)
        frontier += map(int, children)
    return pids


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, from /proc/<pid>/smaps_rollup (0, 0 if it is gone)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def measure(args, variant: str) -> dict:
    """Run one variant in a fresh process; return its peaks (MiB) and timings."""
    command = [sys.executable, "-W", "ignore", __file__, "--run-variant", variant]
    command += ["--images", str(args.images), "--iterations", str(args.iterations)]
    command += ["--workers", str(args.workers), "--workdir", args.workdir]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = {"rss": 0, "pss": 0, "processes": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            pids = _tree(process.pid)
            sizes = [_memory_kib(p) for p in pids]
            peak["rss"] = max(peak["rss"], sum(s[0] for s in sizes))
            peak["pss"] = max(peak["pss"], sum(s[1] for s in sizes))
            peak["processes"] = max(peak["processes"], len(pids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"variant {variant!r} failed (exit {process.returncode}); see its output above")
    timing = json.loads(output.strip().splitlines()[-1])
    return {
        "variant": variant,
        "peak_rss_mib": round(peak["rss"] / 1024),
        "peak_pss_mib": round(peak["pss"] / 1024),
        "processes": peak["processes"],
        **timing,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.run_variant:
        return run_variant(args)
    sys.path.insert(0, str(ROOT))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    generate(workdir, args.images, args.proposals)
    size_gib = (workdir / "proposals_bench.pkl").stat().st_size / 2**30
    rows = [measure(args, "pickle"), measure(args, "store")]
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "images": args.images,
        "proposals_per_image": args.proposals,
        "pickle_gib": round(size_gib, 2),
        "iterations": args.iterations,
        "workers": args.workers,
        "batch": 2,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    names = {
        "pickle": "detectron2 default (pickle in the dataset dicts)",
        "store": "resnext_det store (mmap, read in the mapper)",
    }
    table = [
        f"Stage 2 data loading, {args.images} images x {args.proposals} proposals "
        f"({size_gib:.2f} GiB pickle), {args.iterations} batches of 2, {args.workers} workers; "
        f"{meta['date']}, torch {meta['torch']}, {meta['cpus']} CPUs.",
        "",
        "| path | peak RSS (MiB, all processes) | peak PSS (MiB) | first batch (s) | total (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {names[r['variant']]} | {r['peak_rss_mib']} | {r['peak_pss_mib']} | "
            f"{r['first_batch_s']} | {r['total_s']} |"
        )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "proposal_memory.md").write_text("\n".join(table) + "\n")
    (output / "proposal_memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("\n".join(table))


if __name__ == "__main__":
    main()
