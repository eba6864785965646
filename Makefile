# The two commands of the README's quick start: `make demo` and `make test`.
# Both share one install step that runs only when .venv is missing or a
# dependency file changed (the stamp file is newer than both otherwise).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tuningfork demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) tuningfork-demo
