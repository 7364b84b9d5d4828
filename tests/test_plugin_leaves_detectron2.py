"""On an official detectron2 build, importing the plugin changes nothing of detectron2's.

A user's other detectron2 code in the same process must behave as without ``import resnext_det``.
The check: load every detectron2 module that the plugin and all its submodules load, take the
identity of every attribute of those modules and of the classes they define, import the plugin,
and compare. Registering backbones, heads and datasets in detectron2's registries adds entries
(what a plugin is for) and is not an attribute change. On the 0.6 fallback detectron2's layers
cannot even be imported before compat's stand-in; each of compat's patches there has its own test
(tests/test_compat.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from resnext_det import compat

import pytest

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds

# Run in a fresh interpreter: `list` prints the detectron2 modules that the plugin loads; `compare
# MODULES_JSON` loads those first, then the plugin, and prints what changed in them.
_SCRIPT = """
import importlib, json, pkgutil, sys, types

def import_the_plugin():
    # every submodule of the plugin and of pretrain/ (the tools import both), except the ones
    # whose optional packages are absent
    import resnext_det, pretrain
    for package in (resnext_det, pretrain):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                importlib.import_module(module.name)
            except ImportError as e:
                if not e.name or e.name.startswith(("resnext_det", "pretrain", "detectron2")):
                    raise

def detectron2_modules():
    return sorted(n for n, m in sys.modules.items() if m and n.split(".")[0] == "detectron2")

def snapshot():
    # the identity of every attribute of the modules and of the classes they define; a submodule
    # imported later is set on its package, which is not a change
    state = {}
    for name in detectron2_modules():
        for attr, value in list(vars(sys.modules[name]).items()):
            if isinstance(value, types.ModuleType):
                continue
            state[f"{name}:{attr}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for member, inner in list(vars(value).items()):
                    state[f"{name}:{attr}.{member}"] = id(inner)
    return state

if sys.argv[1] == "list":
    import_the_plugin()
    print(json.dumps(detectron2_modules()))
else:
    for name in json.loads(sys.argv[2]):
        importlib.import_module(name)
    before = snapshot()
    import_the_plugin()
    after = snapshot()
    modules = {key.split(":")[0] for key in before}
    print(json.dumps({
        "replaced": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
        "removed": sorted(before.keys() - after.keys()),
        "added": sorted(k for k in after.keys() - before.keys() if k.split(":")[0] in modules),
    }))
"""


def run_script(*args: str):
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_plugin_changes_no_attribute_of_detectron2():
    if not compat.has_compiled_ops():
        pytest.skip("the 0.6 fallback needs compat's stand-in to import detectron2's layers at all")
    loaded = run_script("list")
    assert {"detectron2.engine.defaults", "detectron2.modeling.roi_heads.roi_heads"} <= set(loaded)
    changes = run_script("compare", json.dumps(loaded))
    assert changes == {"replaced": [], "removed": [], "added": []}
