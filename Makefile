# The README's two commands. Each first installs whatever is missing (scripts/install.sh: into the
# active virtual environment, else .venv/), so both work on a fresh clone; re-runs reuse it.
.PHONY: demo test test-fast install lint

demo:
	py="$$(bash scripts/install.sh)" && "$$py" tools/demo.py $(ARGS)

test:
	py="$$(bash scripts/install.sh)" && "$$py" -m pytest $(ARGS)

# The unit tests only (end-to-end runs are marked slow): the loop while changing code.
test-fast:
	py="$$(bash scripts/install.sh)" && "$$py" -m pytest -m "not slow" $(ARGS)

install:
	bash scripts/install.sh

lint:
	py="$$(bash scripts/install.sh)" && "$$py" -m ruff check resnext_det pretrain tools tests scripts benchmarks
