# Aliases for machines that have make; the scripts are the real commands (a fresh Debian has no make).
.PHONY: demo test services
demo:
	scripts/demo
test:
	scripts/test
services:
	scripts/ensure-services
