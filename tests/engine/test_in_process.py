"""``resnext_det.engine.in_process``: a tool's ``__main__`` run in this process gets a child's view
of the world and leaves nothing behind (the demo's stages and the tests' tool runs rely on it)."""

from __future__ import annotations

import logging
import os
import sys
import textwrap

from resnext_det.engine.in_process import run_in_process

import torch
from detectron2.data import DatasetCatalog

SCRIPT = textwrap.dedent("""
    import logging, os, sys
    import torch
    from detectron2.data import DatasetCatalog
    print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ["RESNEXT_IN_PROCESS_TEST"])
    logging.getLogger("resnext_in_process_test").addHandler(logging.StreamHandler(sys.stdout))
    DatasetCatalog.register("resnext_in_process_test", lambda: [])
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    sys.exit(sys.argv[1] if sys.argv[1:] != ["ok"] else 0)
""")


def test_a_run_sees_its_argv_cwd_and_env_and_leaves_nothing_behind(tmp_path, capfd):
    (tmp_path / "tool.py").write_text(SCRIPT)
    threads, cwd, argv = torch.get_num_threads(), os.getcwd(), list(sys.argv)
    status = run_in_process("tool.py", ["ok"], env={"RESNEXT_IN_PROCESS_TEST": "set"}, cwd=tmp_path)
    assert status == 0
    assert f"argv ['ok'] cwd {tmp_path} env set" in capfd.readouterr().out
    assert "RESNEXT_IN_PROCESS_TEST" not in os.environ
    assert (os.getcwd(), sys.argv, torch.get_num_threads()) == (cwd, argv, threads)
    assert not torch.are_deterministic_algorithms_enabled()
    assert "resnext_in_process_test" not in DatasetCatalog.list()
    assert logging.getLogger("resnext_in_process_test").handlers == []


def test_exit_statuses_are_a_childs(tmp_path, capfd):
    (tmp_path / "tool.py").write_text(SCRIPT)
    env = {"RESNEXT_IN_PROCESS_TEST": "set"}
    assert run_in_process("tool.py", ["error: what went wrong"], env=env, cwd=tmp_path) == 1
    assert capfd.readouterr().err.strip() == "error: what went wrong"  # as the interpreter prints it
    assert run_in_process("tool.py", ["3"], env=env, cwd=tmp_path) == 1  # a string: printed, exit 1
    (tmp_path / "bug.py").write_text("raise ValueError('a bug')\n")
    assert run_in_process("bug.py", [], cwd=tmp_path) == 1
    assert "ValueError: a bug" in capfd.readouterr().err  # the traceback, as a child prints it
    (tmp_path / "code.py").write_text("import sys; sys.exit(4)\n")
    assert run_in_process("code.py", [], cwd=tmp_path) == 4
