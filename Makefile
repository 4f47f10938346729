# trainmem: the whole set-up on a fresh Debian 12 machine is `make demo` or `make check`.
#   make deps   installs the Debian packages that are missing (idempotent; a no-op when all are there)
#   make build  configures and builds (binaries in build/bin/)
#   make demo   deps + build + analyze the bundled sample and print its report
#   make check  deps + build + every test (fixture tests skip when ../shared/fixtures is absent)

BUILD_DIR ?= build
PRESET    ?= default
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 package names; BUILD-NOTES.md lists why each is here (libisal-dev: ISA-L inflates
# gzipped traces, optional at configure time, see cmake/Dependencies.cmake).
PACKAGES := cmake ninja-build g++ make pkg-config \
  llvm-16-dev libzstd-dev libonnx-dev libprotobuf-dev \
  qt6-base-dev qt6-charts-dev qt6-svg-dev libqt6opengl6-dev \
  libsqlite3-dev zlib1g-dev libisal-dev libgtest-dev libgmock-dev libbenchmark-dev xvfb xauth

# `make fuzz` only: clang and its libFuzzer runtime.
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev
FUZZ_SECONDS  ?= 60

.PHONY: deps build demo check clean fuzz check-asan

deps:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "deps: all $(words $(PACKAGES)) Debian packages are installed"; \
	else \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/build.ninja:
	cmake --preset $(PRESET)

build: $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: deps build
	@echo
	@echo '$$ build/bin/trainmem analyze --hf-config=samples/hf/gpt2/config.json --dim batch=8 --dim seq=1024 --gpu=rtx-4090'
	@$(BUILD_DIR)/bin/trainmem analyze --hf-config=samples/hf/gpt2/config.json --dim batch=8 --dim seq=1024 --gpu=rtx-4090

check: deps build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (tests/fuzz/README.md): FUZZ_SECONDS per target, corpora in build-fuzz/fuzz/.
fuzz: deps
	@$(MAKE) --no-print-directory deps PACKAGES="$(FUZZ_PACKAGES)"
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DTRAINMEM_FUZZ=ON \
	  -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS)
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/).
check-asan: deps
	cmake --preset asan
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR) build-fuzz build-asan
