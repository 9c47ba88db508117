# Thin wrapper around CMake. The two commands a new user needs:
#   make demo    build and run a local RPC system on 127.0.0.1 (Ctrl-C to stop)
#   make check   build and run the whole test suite (plain, ASan+UBSan, aarch64 under qemu, fuzz smoke)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake

.PHONY: all build demo check test test-asan test-cross test-board test-deb test-fuzz fuzz soak format clean

all: build

build:
	@scripts/deps.sh build
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build -j $(JOBS)

demo: build
	scripts/demo.sh build/tvmrpc

test: build
	scripts/check-deps.sh build/tvmrpc
	cd build && ctest --output-on-failure --no-tests=error -j $(JOBS)

test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTVMRPC_SANITIZE=ON -DTVMRPC_BENCH=OFF >/dev/null
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure --no-tests=error -j $(JOBS)

test-cross:
	scripts/cross-check.sh

# The seed's whole flow on an emulated aarch64 board (tracker, proxy, netns).
test-board: build
	scripts/e2e-board.sh --host-build build -j $(JOBS)

# Build the .deb, install it, use it, purge it.
test-deb:
	scripts/deb-check.sh -j $(JOBS)

test-fuzz:
	$(CMAKE) -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTVMRPC_FUZZ=ON -DTVMRPC_TESTS=OFF -DTVMRPC_BENCH=OFF >/dev/null
	$(CMAKE) --build build-fuzz -j $(JOBS)
	cd build-fuzz && ctest --output-on-failure --no-tests=error -L fuzz

check:
	@scripts/deps.sh check cross
	$(MAKE) test
	$(MAKE) test-asan
	$(MAKE) test-cross
	$(MAKE) test-board
	$(MAKE) test-deb
	$(MAKE) test-fuzz
	@echo "make check: all suites passed"

fuzz:
	$(CMAKE) -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTVMRPC_FUZZ=ON -DTVMRPC_TESTS=OFF -DTVMRPC_BENCH=OFF >/dev/null
	$(CMAKE) --build build-fuzz -j $(JOBS)
	scripts/fuzz.sh build-fuzz $${FUZZ_SECONDS:-300}

# Long soak (default 10 minutes): SOAK_SECONDS=3600 make soak
soak:
	scripts/soak.sh $${SOAK_SECONDS:-600}

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz build-aarch64 build-armhf build-riscv64 \
		build-e2e build-aarch64-dyn build-aarch64-static build-deb build-bench
