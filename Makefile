# The two commands of the README: `make launch` and `make test`.
.PHONY: launch test setup setup-test

launch: setup
	.venv/bin/vlhub launch

test: setup-test
	.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test
