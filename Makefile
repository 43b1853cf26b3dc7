# Walkout — the two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-core
ARGS ?=
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0

.PHONY: install demo test test-services bench bench-sensors clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[production,test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) manage.py demo $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

bench: bench-sensors

bench-sensors: install
	$(PY) bench/bench_sensors.py

clean:
	rm -rf var .pytest_cache
