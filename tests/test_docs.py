"""README.md and docs/*.md cannot drift from the code (``scripts/docs_drift.py``,
``scripts/update_docs.py``): every relative link and image resolves, every flag, config key and
``resnext_det.*`` name a page names exists, the generated key reference and result tables are
current, the blocks marked runnable on the demo data run. Each check is also shown failing when
one side alone changes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


drift = _script("docs_drift")
update_docs = _script("update_docs")
PAGES = update_docs.doc_pages()
PAGE_IDS = [str(p.relative_to(ROOT)) for p in PAGES]


@pytest.fixture(scope="module")
def options():
    """{script: its --options} for every script the pages run, and every tool."""
    scripts = {script for page in PAGES for script, _ in drift.commands(page.read_text())}
    scripts |= {f"tools/{p.name}" for p in (ROOT / "tools").glob("*.py") if p.name != "__init__.py"}
    return {s: drift.script_options(s) for s in sorted(scripts) if (ROOT / s).is_file()}


@pytest.fixture(scope="module")
def keys():
    return drift.config_keys()


@pytest.fixture(scope="module")
def lazy_twins():
    from resnext_det.engine.lazy_config import load_lazy_config

    return [
        load_lazy_config(str(ROOT / "configs" / "lazy" / "demo" / f"{s}_tiny_C4.py"))
        for s in ("rpn", "fast_rcnn")
    ]


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120  # two minutes of reading
    assert "make demo" in readme and "make test" in readme and "docs/demo_detections.jpg" in readme
    linked = {target.split("#")[0] for target in drift._LINK.findall(readme)}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_relative_link_and_image_resolves(page):
    assert drift.link_problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_page_starts_with_commands(page):
    if page.name in ("README.md", "config_keys.md"):
        pytest.skip("the front door and the generated key reference")
    lines = [line for line in page.read_text().splitlines() if line.strip()]
    first_fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert first_fence <= 2, f"{page.name}: the commands come after {lines[:first_fence]}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_flag_a_page_names_exists(page, options):
    assert drift.flag_problems(page.read_text(), options, page.name) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_config_key_a_page_names_exists(page, keys, lazy_twins):
    assert drift.config_key_problems(page.read_text(), keys, page.name, lazy=lazy_twins) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_python_name_a_page_names_exists(page):
    assert drift.name_problems(page.read_text(), page.name) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_number_quoted_from_a_result_file_is_in_it(page):
    assert drift.quote_problems(page.read_text(), page.name) == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_no_generated_row_is_copied_outside_its_region(page):
    """docs/speed.md once showed its memory table twice: the generated one, and a typed copy under
    it that the next regeneration would not have changed."""
    text = page.read_text()
    for region in update_docs.REGION.finditer(text):
        outside = text[: region.start()] + text[region.end() :]
        rows = [line for line in region["body"].splitlines() if line.startswith("| ") and len(line) > 20]
        assert [row for row in rows if row in outside] == [], region["name"]


def test_some_prose_quotes_its_result_files():
    assert "<!-- quotes: benchmarks/results/speed.md" in (ROOT / "docs" / "speed.md").read_text()


def test_generated_pages_and_numbers_are_current():
    stale = [
        str(p.relative_to(ROOT)) for p, text in update_docs.expected_files().items() if p.read_text() != text
    ]
    assert not stale, f"stale (run python scripts/update_docs.py): {stale}"


def test_the_documented_demo_learns_well_on_every_seed():
    """docs/demo.md's five seeds (docs/demo_seeds.json, from scripts/demo_seeds.py): the demo
    reaches AP50 88 on each, its AP varies by at most 3 points between them, the spread the file
    records is its rows', and seed 0 is the README's run."""
    report = json.loads((ROOT / "docs" / "demo_seeds.json").read_text())
    rows = report["seeds"]
    assert [r["seed"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["AP50"] >= 88 for r in rows), [(r["seed"], r["AP50"]) for r in rows]
    for key in ("AP", "AP50"):
        values = [r[key] for r in rows]
        low, high = min(values), max(values)
        assert report["spread"][key] == {"min": low, "max": high, "spread": high - low}
    assert report["spread"]["AP"]["spread"] <= 3, [(r["seed"], r["AP"]) for r in rows]
    readme_run = json.loads((ROOT / "docs" / "demo_results.json").read_text())
    assert readme_run["seed"] == 0 and readme_run["bbox"]["AP50"] == rows[0]["AP50"]


def test_the_drift_checks_fail_when_one_side_changes(options, keys, lazy_twins, tmp_path, monkeypatch):
    page = (ROOT / "docs" / "analysis.md").read_text()
    assert "--analysis" in page and drift.flag_problems(page, options) == []
    # a flag renamed in the page, or removed from the tool
    renamed = page.replace("--analysis", "--analyse", 1)
    assert any("has no option --analyse" in p for p in drift.flag_problems(renamed, options))
    fewer = {**options, "tools/eval_coco.py": options["tools/eval_coco.py"] - {"--analysis"}}
    assert any("has no option --analysis" in p for p in drift.flag_problems(page, fewer))
    # a config key misspelt in a page, or gone from the config
    configs = (ROOT / "docs" / "configs.md").read_text()
    assert "MODEL.RESNEXT.FREEZE_AT" in configs
    typo = configs.replace("MODEL.RESNEXT.FREEZE_AT", "MODEL.RESNEXT.FREEZE_AFTER", 1)
    assert any("FREEZE_AFTER does not exist" in p for p in drift.config_key_problems(typo, keys))
    gone = keys - {"MODEL.RESNEXT.FREEZE_AT"}
    assert any("FREEZE_AT does not exist" in p for p in drift.config_key_problems(configs, gone))
    assert any(
        "train.max_iters" in p for p in drift.config_key_problems("`train.max_iters`", keys, lazy=lazy_twins)
    )
    # a class a page names, renamed in the page (docs/detection.md once named ProposalStoreMapper)
    detection = (ROOT / "docs" / "detection.md").read_text()
    assert "resnext_det.proposals.mapper.ProposalLookupMapper" in detection
    renamed_class = detection.replace("ProposalLookupMapper", "ProposalStoreMapper", 1)
    assert drift.name_problems(detection) == []
    assert any("mapper has no ProposalStoreMapper" in p for p in drift.name_problems(renamed_class))
    # a link or image whose file moved, or an anchor whose heading changed
    copy = tmp_path / "docs" / "page.md"
    copy.parent.mkdir()
    copy.write_text("![x](demo_curves.png) and [the schedule](detection.md#no-such-heading)\n")
    problems = drift.link_problems(copy)
    assert any("demo_curves.png" in p and "does not exist" in p for p in problems)
    (tmp_path / "docs" / "detection.md").write_text("# The schedule\n")
    assert any("has no heading #no-such-heading" in p for p in drift.link_problems(copy))
    # a number changed in the result file (the page now shows another one than the file)
    results = json.loads(update_docs.DEMO_RESULTS.read_text())
    results["bbox"]["AP50"] -= 10
    changed = tmp_path / "demo_results.json"
    changed.write_text(json.dumps(results))
    monkeypatch.setattr(update_docs, "DEMO_RESULTS", changed)
    readme = (ROOT / "README.md").read_text()
    assert update_docs.regenerate_regions(readme) != readme
    # ... or typed over in the page, in a generated table or in prose that quotes a result file
    speed = (ROOT / "docs" / "speed.md").read_text()
    head, quoted = speed.split("<!-- quotes:", 1)
    number = drift._DECIMAL.findall(quoted.split("\n", 1)[1])[0]  # the first one the prose quotes
    retyped = head + "<!-- quotes:" + quoted.replace(number, "9.87", 1)
    assert any("9.87 is in none of" in p for p in drift.quote_problems(retyped))
    monkeypatch.undo()
    edited = readme.replace(f"**{results['bbox']['AP50'] + 10:.1f} / ", "**99.9 / ")
    assert edited != readme and update_docs.regenerate_regions(edited) == readme
    # a reproduction's row (tools/reproduce_table8.py) reaches the README's Table 8
    table = tmp_path / "table8.json"
    table.write_text(
        json.dumps({"rows": {"X50_32x4d/paper": {"model": "X50_32x4d", "AP50": 49.12, "AP": 27.34}}})
    )
    monkeypatch.setattr(update_docs, "TABLE8", table)
    (x50,) = [line for line in update_docs.results_table().splitlines() if "`X50_32x4d_C4`" in line]
    assert x50.endswith("| 49.7 / 27.5 | 49.1 / 27.3 | not run |")
    monkeypatch.undo()
    # a source note or a value changed in the paper family's configs: docs/paper_fidelity.md is stale
    fidelity = (ROOT / "docs" / "paper_fidelity.md").read_text()
    assert update_docs.regenerate_regions(fidelity) == fidelity and "`ROIPool`" in fidelity
    from resnext_det.engine import families

    paper_base = ROOT / "configs" / "COCO-Detection" / "paper" / "Base-FastRCNN-C4.yaml"
    copy = tmp_path / "paper" / "Base-FastRCNN-C4.yaml"
    copy.parent.mkdir()
    copy.write_text(
        paper_base.read_text()
        .replace("NMS_THRESH_TEST: 0.3", "NMS_THRESH_TEST: 0.4")
        .replace('"../../Base-FastRCNN-C4.yaml"', f'"{ROOT / "configs" / "Base-FastRCNN-C4.yaml"}"')
    )
    (copy.parent / "fast_rcnn_X50_32x4d_C4.yaml").write_text(
        (paper_base.parent / "fast_rcnn_X50_32x4d_C4.yaml").read_text()
    )
    shipped = families.stage_config
    monkeypatch.setattr(
        families,
        "stage_config",
        lambda f, s, m: (
            str(copy.parent / f"{s}_{m}_C4.yaml") if (f, s) == ("paper", "fast_rcnn") else shipped(f, s, m)
        ),
    )
    assert "`0.4`" in update_docs.regenerate_regions(fidelity) != fidelity
    monkeypatch.undo()
    # a key's comment changed in the code: the reference is stale
    config = tmp_path / "config.py"
    config.write_text(
        update_docs.KEY_SOURCES["detection"].read_text().replace("1 gives ResNet", "1 is ResNet")
    )
    monkeypatch.setitem(update_docs.KEY_SOURCES, "detection", config)
    assert update_docs.config_keys_page() != update_docs.KEYS_PAGE.read_text()


@pytest.mark.slow  # a few short training runs on the demo data
@pytest.mark.parametrize(
    "block",
    [(p, i) for p in PAGES for i, _ in enumerate(drift.runnable_blocks(p.read_text()))],
    ids=lambda b: f"{b[0].name}-{b[1]}" if isinstance(b, tuple) else str(b),
)
def test_runnable_demo_blocks_run(block, tmp_path, request):
    """Each ```bash demo block runs as a user would, in a fresh folder where configs/, tools/ and
    scripts/ are the checkout's (so its outputs and the demo data land in that folder). The blocks
    that are the shared tiny pipeline (tests/pipelines.py) ran there, command by command; any
    other block runs here in bash."""
    from pipelines import LAZY_BLOCK, YAML_BLOCK, block_commands, link_checkout

    page, index = block
    code = drift.runnable_blocks(page.read_text())[index]
    shared = {YAML_BLOCK: "yaml", LAZY_BLOCK: "lazy"}.get((str(page.relative_to(ROOT)), index))
    if shared is not None:
        pipeline = request.getfixturevalue("tiny_pipeline")
        assert pipeline.commands[shared] == block_commands(str(page.relative_to(ROOT)), index)
        ran = pipeline.results[shared]
        assert len(ran) == len(pipeline.commands[shared]) and all(r.returncode == 0 for r in ran)
        return
    link_checkout(tmp_path)
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets"), "PYTHONWARNINGS": "ignore"}
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # `python` is ours
    result = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env={**env, "PATH": path},
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, f"{page.name} block {index}:\n{code}\n{result.stderr[-3000:]}"


def test_the_tiny_pipeline_is_what_the_blocks_say():
    """The pipeline's commands are the pages' blocks, parsed as bash would (continuations, quotes)."""
    from pipelines import LAZY_BLOCK, YAML_BLOCK, block_commands, relocated, with_output

    yaml = block_commands(*YAML_BLOCK)
    assert [c[0] for c in yaml] == ["tools/train_rpn.py", "tools/train_fast_rcnn.py", "tools/eval_coco.py",
                                    "tools/plot_metrics.py"]  # fmt: skip
    assert yaml[0][yaml[0].index("DATASETS.TRAIN") + 1] == "('resnext_demo_val',)"  # quotes removed
    assert with_output(yaml[0], "/x")[-2:] == ["OUTPUT_DIR", "/x"]
    assert relocated(yaml[1:2], "output/try/", "o/")[0][4] == "o/rpn"
    lazy = block_commands(*LAZY_BLOCK)
    assert lazy[0][3] == "dataloader.train.dataset.names=[resnext_demo_val]"
    assert with_output(lazy[0], "/x")[-1] == "train.output_dir=/x"
    with pytest.raises(ValueError, match="names no output folder"):
        with_output(["tools/plot_metrics.py"], "/x")


def test_some_blocks_are_marked_runnable():
    assert sum(len(drift.runnable_blocks(p.read_text())) for p in PAGES) >= 2
