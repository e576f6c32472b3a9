# Each target sets up what it needs: a fresh clone runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned here only because these releases install offline on our CI and
# dev machines; pyproject.toml accepts any torch >= 2.5.
TORCH := torch==2.14.1 torchvision==0.29.1
RUN := checkpoints/shapes_tiny

.PHONY: install demo test app bench clean-demo

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e ".[test]"
	touch $(VENV)/.installed $@

# Set up .venv with the package and nothing else (no dataset, no training): then `.venv/bin/cyclegan ...`.
install: $(VENV)/.installed

# make-dataset writes beside the target and renames it in when complete, so an interrupted build
# leaves no datasets/shapes for make to take as done.
datasets/shapes: | $(VENV)/.installed
	$(BIN)/cyclegan make-dataset --out datasets/shapes

demo: $(VENV)/.installed datasets/shapes
	@if [ -e $(RUN)/train_state.pt ]; then \
		echo "== $(RUN) exists: continuing it (delete it to start over)"; \
		$(BIN)/cyclegan train --resume $(RUN) --device cpu; \
	else \
		rm -rf $(RUN); \
		$(BIN)/cyclegan train --data datasets/shapes --run $(RUN) --preset tiny --device cpu; \
	fi
	$(BIN)/cyclegan translate --run $(RUN) --best --direction AtoB --input datasets/shapes/testA --output outputs/shapes_AtoB --overwrite
	$(BIN)/cyclegan translate --run $(RUN) --best --direction BtoA --input datasets/shapes/testB --output outputs/shapes_BtoA --overwrite
	@echo
	@echo "== Held-out test split: the trained model against ground truth, beside the identity baseline"
	@$(BIN)/cyclegan evaluate --run $(RUN) --best --data datasets/shapes
	@echo
	@echo "Translated images: outputs/shapes_AtoB/, outputs/shapes_BtoA/; sample grids: $(RUN)/samples/"
	@echo "Translate your own folder:  $(BIN)/cyclegan translate --run $(RUN) --best --direction AtoB --input YOUR_DIR --output OUT_DIR"
	@echo "Train on your own domains:  $(BIN)/cyclegan train --domain-a DIR_A --domain-b DIR_B --run checkpoints/NAME"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The web app on http://127.0.0.1:7860 (this machine only); e.g. `make app APP_ARGS="--port 8000"`.
app: $(VENV)/.installed
	$(BIN)/python app.py --checkpoints checkpoints --datasets datasets $(APP_ARGS)

# The speed and cost benchmarks; quality.py, selection.py, flicker.py, discriminator_alone.py and
# cli_latency.py are run by hand (each docstring gives its command; BENCHMARKS.md its results).
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/translate_speed.py
	$(BIN)/python benchmarks/eval_cost.py
	$(BIN)/python benchmarks/app_latency.py --preset tiny

clean-demo:
	rm -rf $(RUN) outputs/shapes_AtoB outputs/shapes_BtoA
