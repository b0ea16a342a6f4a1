.PHONY: run test lint format

run:  ## install, migrate, seed demo data, run web + dispatcher on 127.0.0.1:5000
	bash scripts/run.sh

test:  ## install test dependencies and run the whole suite
	bash scripts/test.sh

lint:
	bash scripts/bootstrap.sh test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
