# The two commands of the README. Both do their own set-up on a fresh machine.
.PHONY: sample test

# Restore the bundled samples (local folder in, restored folder out; no services needed).
sample:
	scripts/setup.sh
	.venv/bin/arcnn run samples --dest restored-samples
	@echo "The restored samples are in $(CURDIR)/restored-samples/ (the lines above say what was done to each)."

# The whole test suite, installing test dependencies and the servers the tests start.
test:
	scripts/test.sh -q
