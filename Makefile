# towervision — build. `make` builds the library and the `tower` CLI into build/,
# `make test` builds and runs every test, `make asan` builds the same under AddressSanitizer + UBSan
# in build-asan/ and `make asan-test` runs the tests there; `make check` does both builds and runs
# every test of both (the README's test command), `make check-long` adds the exhaustive sweeps.
# The build probes the machine and says what it enabled.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -g $(OPT) -fPIC
# Each folder of src/ is one layer (docs/architecture.md); headers are found by name in any of them.
SRC_DIRS := core format cpu text media hub model run bench eval
CFLAGS  += -Iinclude $(addprefix -Isrc/,$(SRC_DIRS)) -pthread
LDLIBS  += -lm -pthread

# ---- probes: required libraries, optional ones ----------------------------------------------------
have = $(shell pkg-config --exists $(1) && echo yes)
ifneq ($(call have,jansson),yes)
$(error jansson not found: apt-get install libjansson-dev pkg-config (or run ./setup.sh))
endif
CFLAGS += $(shell pkg-config --cflags jansson)
LDLIBS += $(shell pkg-config --libs jansson)
FEATURES := json:jansson-$(shell pkg-config --modversion jansson)

ifeq ($(call have,libcurl),yes)
CFLAGS += -DTW_HAVE_CURL $(shell pkg-config --cflags libcurl)
LDLIBS += $(shell pkg-config --libs libcurl)
FEATURES += download:libcurl-$(shell pkg-config --modversion libcurl)
else
FEATURES += download:OFF(apt-get-install-libcurl4-openssl-dev)
endif

ifeq ($(call have,libmicrohttpd),yes)
HTTPD_CFLAGS := $(shell pkg-config --cflags libmicrohttpd)
HTTPD_LIBS   := $(shell pkg-config --libs libmicrohttpd)
TOOLS_CFLAGS := -DTW_HAVE_HTTPD $(HTTPD_CFLAGS)
FEATURES += httpd:libmicrohttpd-$(shell pkg-config --modversion libmicrohttpd)
endif

# ---- image decoders (src/media/image_io.c). Insert after the libcurl block of the Makefile. --------------
# Debian: apt-get install libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev
ifeq ($(call have,libjpeg),yes)
CFLAGS += -DTW_HAVE_JPEG $(shell pkg-config --cflags libjpeg)
LDLIBS += $(shell pkg-config --libs libjpeg)
FEATURES += jpeg:libjpeg-turbo-$(shell pkg-config --modversion libjpeg)
else
FEATURES += jpeg:OFF(apt-get-install-libjpeg62-turbo-dev)
endif
ifeq ($(call have,libpng),yes)
CFLAGS += -DTW_HAVE_PNG $(shell pkg-config --cflags libpng)
LDLIBS += $(shell pkg-config --libs libpng)
FEATURES += png:libpng-$(shell pkg-config --modversion libpng)
else
FEATURES += png:OFF(apt-get-install-libpng-dev)
endif
ifeq ($(shell pkg-config --exists libwebp libwebpdemux && echo yes),yes)
CFLAGS += -DTW_HAVE_WEBP $(shell pkg-config --cflags libwebp libwebpdemux)
LDLIBS += $(shell pkg-config --libs libwebpdemux libwebp)
FEATURES += webp:libwebp-$(shell pkg-config --modversion libwebp)
else
FEATURES += webp:OFF(apt-get-install-libwebp-dev)
endif
# giflib ships no .pc file: probe for the header.
ifneq ($(wildcard /usr/include/gif_lib.h),)
CFLAGS += -DTW_HAVE_GIF
LDLIBS += -lgif
FEATURES += gif:giflib
else
FEATURES += gif:OFF(apt-get-install-libgif-dev)
endif
# ---- optional: video decoding (FFmpeg: apt-get install libavformat-dev libavcodec-dev libavutil-dev libswscale-dev) ----
ifeq ($(call have,libavformat libavcodec libavutil libswscale),yes)
CFLAGS += -DTW_HAVE_FFMPEG $(shell pkg-config --cflags libavformat libavcodec libavutil libswscale)
LDLIBS += $(shell pkg-config --libs libavformat libavcodec libavutil libswscale)
FEATURES += video:ffmpeg-libavformat-$(shell pkg-config --modversion libavformat)
else
FEATURES += video:OFF(apt-get-install-libavformat-dev-libavcodec-dev-libavutil-dev-libswscale-dev)
endif
# .ci/run apt packages: libavformat-dev libavcodec-dev libavutil-dev libswscale-dev

CFLAGS += -DTW_BUILD_FEATURES='"$(FEATURES)"' -DTW_BUILD_CC='"$(shell $(CC) --version | head -1)"'

# SIMD files are compiled for their instruction set only; which one runs is decided at run time.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c -mavx2
AMX_FLAGS    := $(AVX512_FLAGS) -mamx-tile -mamx-bf16

SRCS    := $(foreach d,$(SRC_DIRS),$(wildcard src/$(d)/*.c))
HDRS    := $(wildcard src/*/*.h) include/tower.h
OBJS    := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
TOOLS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/tool_*.c))
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/tool_*.c))

.PHONY: all test asan asan-test check check-long clean features ldlibs
all: features $(BUILD)/libtower.a $(BUILD)/tower $(TESTS) $(TOOLS) $(BENCHES)

# what a program linking build/libtower.a needs: cc -Iinclude prog.c build/libtower.a $(make -s ldlibs)
ldlibs:
	@echo $(LDLIBS)

features:
	@echo "towervision build ($(BUILD)): $(FEATURES)"
	@echo "  kernels: plain C always; AVX2/FMA, AVX-512(BF16) and AMX-BF16 compiled in, chosen at run time"

$(BUILD)/obj/%_avx2.o: src/%_avx2.c $(HDRS) | $(BUILD)/obj/dirs
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@
$(BUILD)/obj/%_avx512.o: src/%_avx512.c $(HDRS) | $(BUILD)/obj/dirs
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@
$(BUILD)/obj/%_amx.o: src/%_amx.c $(HDRS) | $(BUILD)/obj/dirs
	$(CC) $(CFLAGS) $(AMX_FLAGS) -c $< -o $@
$(BUILD)/obj/%.o: src/%.c $(HDRS) | $(BUILD)/obj/dirs
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtower.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

# the CLI: tools/main.c (dispatch), tools/cli.c (the one option parser), one tools/cmd_*.c per command
# (include/ only: the CLI uses the public API, tests/tools_api_test.sh checks it)
$(BUILD)/tower: tools/*.c tools/*.h $(BUILD)/libtower.a
	$(CC) $(filter-out -Isrc/%,$(CFLAGS)) $(TOOLS_CFLAGS) $(LDFLAGS) tools/*.c $(BUILD)/libtower.a $(LDLIBS) $(HTTPD_LIBS) -o $@

$(BUILD)/tests/tool_%: tests/tool_%.c $(BUILD)/libtower.a tests/*.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $(HTTPD_CFLAGS) $< $(BUILD)/libtower.a $(LDLIBS) $(HTTPD_LIBS) -o $@
$(BUILD)/bench/tool_%: bench/tool_%.c $(BUILD)/libtower.a tests/*.h | $(BUILD)/bench
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) $< $(BUILD)/libtower.a $(LDLIBS) -o $@
$(BUILD)/tests/test_%: tests/test_%.c $(BUILD)/libtower.a tests/*.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libtower.a $(LDLIBS) -o $@
# test_amx also links gemm_amx.c built against the tile emulator of src/cpu/amx_ops.h, without the AMX
# flags so that no tile instruction can end up in it. Its packing is still AVX-512 code: the test
# runs the emulated kernel only on CPUs with avx512bf16 and says so otherwise.
$(BUILD)/tests/gemm_amx_emu.o: src/cpu/gemm_amx.c $(HDRS) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -DTW_AMX_EMULATE -c $< -o $@
$(BUILD)/tests/test_amx: tests/test_amx.c $(BUILD)/tests/gemm_amx_emu.o $(BUILD)/libtower.a tests/*.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/tests/gemm_amx_emu.o $(BUILD)/libtower.a $(LDLIBS) -o $@

# test_serve_media also links the server's media module (tools/serve_media.c); both are compiled with
# include/ only, as the CLI is.
$(BUILD)/tests/test_serve_media: tests/test_serve_media.c tools/serve_media.c tools/serve_media.h $(BUILD)/libtower.a tests/*.h | $(BUILD)/tests
	$(CC) $(filter-out -Isrc/%,$(CFLAGS)) -Itools $(LDFLAGS) $< tools/serve_media.c $(BUILD)/libtower.a $(LDLIBS) -o $@

$(BUILD)/obj/dirs: Makefile
	mkdir -p $(addprefix $(BUILD)/obj/,$(SRC_DIRS)) && touch $@
$(BUILD)/tests $(BUILD)/bench:
	mkdir -p $@

# Tests run TOWER_JOBS at a time (default: one per core), a line each as they finish (tests/run.sh).
test: all
	@sh tests/run.sh $(BUILD)

SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 $(SAN) -DTW_DEBUG" LDFLAGS="$(SAN)" all
asan-test: asan
	@sh tests/run.sh build-asan:asan

# The README's test command: both builds side by side (one job per core unless -j was given), then
# every test of both in one queue, the slowest first; the last line is the overall "N passed, N failed".
# check-long is the same with TOWER_LONG=1: the exhaustive sweeps of the kernel tests as well (each
# test says next to its sweeps which cases the default run keeps).
NPROC := $(shell nproc 2>/dev/null || echo 2)
check:
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC)) all asan
	@sh tests/run.sh $(BUILD) build-asan:asan
check-long:
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC)) all asan
	@TOWER_LONG=1 sh tests/run.sh $(BUILD) build-asan:asan

clean:
	rm -rf build build-asan
