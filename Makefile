# The README's two commands. Each first installs whatever is missing (scripts/install.sh: into the
# active virtual environment, else .venv/), so both work on a fresh clone; re-runs reuse it.
.PHONY: demo test test-fast install lint

demo:
	py="$$(bash scripts/install.sh)" && "$$py" tools/demo.py $(ARGS)

# Two test workers (pytest-xdist), each with half the cores and its share of the groups that
# tests/conftest.py makes; WORKERS=0 runs every test in one process (tests/README.md).
WORKERS ?= 2
XDIST = -n $(WORKERS)

test:
	py="$$(bash scripts/install.sh)" && "$$py" -m pytest $(XDIST) $(ARGS)

# The unit tests only (end-to-end runs are marked slow): the loop while changing code.
test-fast:
	py="$$(bash scripts/install.sh)" && "$$py" -m pytest $(XDIST) -m "not slow" $(ARGS)

install:
	bash scripts/install.sh

lint:
	py="$$(bash scripts/install.sh)" && "$$py" -m ruff check resnext_det pretrain tools tests scripts benchmarks
