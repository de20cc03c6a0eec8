# dockyard: `make demo` runs the main job, `make test` runs the whole suite.
# Both bootstrap from nothing on a fresh Debian machine (as root).

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEBS    := runc crun tini zookeeper busybox-static docker-registry skopeo iproute2 procps vagrant vagrant-libvirt debootstrap gcc libc6-dev \
           chromium chromium-driver haproxy umoci buildah
PYTEST_ARGS ?=
# Most tests wait on real processes, so two workers finish the suite in about half the time even
# on two cores; each file, and tests sharing a host resource, stay in one worker (tests/conftest.py).
TEST_WORKERS ?= 2

.PHONY: demo test test-slow test-cgroup-v2 vm-debs bench bootstrap debs clean

demo: bootstrap
	$(BIN)/python -m framework.local.cluster.demo

test: bootstrap
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

test-slow: bootstrap vm-debs
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The cgroup v2 code path, in a small guest booted with cgroup_no_v1=all (tests/support/vm.py):
# qemu here, a Debian kernel downloaded (not installed) into /var/cache/dockyard/vm.
test-cgroup-v2: bootstrap vm-debs
	$(BIN)/python -m pytest -m slow tests/containers/test_cgroup_v2_vm.py tests/exec/test_cgroup_v2_vm.py -s $(PYTEST_ARGS)

vm-debs:
	@dpkg-query -W -f='$${Status}' qemu-system-x86 2>/dev/null | grep -q "ok installed" || \
	  (echo "installing Debian packages: qemu-system-x86" && apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86)

bench: bootstrap
	$(BIN)/python -m bench

bootstrap: debs $(STAMP)

# Install only the Debian packages that are missing, so a warm machine pays nothing.
debs:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@dpkg-query -W -f='$${Status}' python3-venv 2>/dev/null | grep -q "ok installed" || \
	  $(PYTHON) -m venv --help >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
