# The README's two commands. Each first installs whatever is missing (scripts/install.sh: into the
# active virtual environment, else .venv/), so both work on a fresh clone; re-runs reuse it.
.PHONY: demo test install lint

demo:
	py="$$(bash scripts/install.sh)" && "$$py" tools/demo.py $(ARGS)

test:
	py="$$(bash scripts/install.sh)" && "$$py" -m pytest $(ARGS)

install:
	bash scripts/install.sh

lint:
	py="$$(bash scripts/install.sh)" && "$$py" -m ruff check resnext_det pretrain tools tests scripts benchmarks
