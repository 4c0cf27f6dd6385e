# Thin wrapper over scripts/ (which work without make too).
PREFIX ?= /usr/local
export PREFIX

.PHONY: build install uninstall purge start stop test demo
build:
	swift build -c release
install:
	bash scripts/install
uninstall:
	bash scripts/uninstall
purge:
	bash scripts/uninstall --purge
start:
	bash scripts/daemon-service start
stop:
	bash scripts/daemon-service stop
test:
	bash scripts/test-all
demo:
	bash scripts/demo
