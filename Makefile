# mcefa: one build for the library, the daemon, the tools and the tests.
#   make                 build everything into build/
#   make check           build and run the test suites
#   make check SAN=1     the same with ASan+UBSan, into build-san/
#   make check-gpu       the GPU suite on a real GPU, then GPU benchmarks
#   make install         honours PREFIX and DESTDIR
#   make CUDA=0          build without CUDA even where it is installed
#   make FABRIC_HOME=DIR libfabric from DIR (default /opt/amazon/efa where it
#                        is installed; FABRIC_HOME= for the system's)
#   make fuzz            build the libFuzzer targets (clang) and run each
#                        for FUZZ_SECONDS

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
PKGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
VERSION := 0.1.0

CC ?= cc
PKG_CONFIG ?= pkg-config

ifeq ($(SAN),1)
B ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
B ?= build
SANFLAGS :=
OPT := -O2
endif

# CUDA is optional. With its headers (CUDA=1, found by default) the GPU
# code is compiled and libcuda is loaded at run time (dlopen): nothing links
# it, so the same binaries run on hosts without a GPU. CUDA=0 builds without
# the headers; GPU registration then says the build has no CUDA.
CUDA_HOME ?= /usr/local/cuda
ifeq ($(origin CUDA),undefined)
CUDA := $(shell test -f $(CUDA_HOME)/include/cuda.h && echo 1 || echo 0)
endif

CFLAGS ?= $(OPT) -g
# Error texts are cut to their buffers on purpose (snprintf), so truncation
# warnings are noise.
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation -fPIC $(SANFLAGS)
CPPFLAGS += -I. -I$(B)/proto -Iproto -Iclient/include -DMCEFA_VERSION='"$(VERSION)"'
LDFLAGS += $(SANFLAGS)

UV_LIBS := $(shell $(PKG_CONFIG) --libs libuv 2>/dev/null || echo -luv)
PB_LIBS := $(shell $(PKG_CONFIG) --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)

# libfabric: on AWS the EFA installer's own (newer efa provider, API
# headers that know the EFA options) under /opt/amazon/efa, found the way
# CUDA is; elsewhere the system's. FABRIC_HOME=DIR names another install,
# FABRIC_HOME= (empty) forces the system's. An install outside the
# linker's path is found at run time through an rpath (docs/deployment.md,
# "EFA setup").
ifeq ($(origin FABRIC_HOME),undefined)
FABRIC_HOME := $(shell test -f /opt/amazon/efa/include/rdma/fabric.h && echo /opt/amazon/efa)
endif
ifneq ($(FABRIC_HOME),)
FABRIC_PCDIR := $(firstword $(wildcard $(FABRIC_HOME)/lib64/pkgconfig/libfabric.pc $(FABRIC_HOME)/lib/pkgconfig/libfabric.pc))
ifneq ($(FABRIC_PCDIR),)
FABRIC_PCDIR := $(patsubst %/,%,$(dir $(FABRIC_PCDIR)))
FABRIC_PC = PKG_CONFIG_PATH=$(FABRIC_PCDIR) $(PKG_CONFIG)
FABRIC_CFLAGS := $(shell $(FABRIC_PC) --cflags libfabric)
FABRIC_LIBDIR := $(shell $(FABRIC_PC) --variable=libdir libfabric)
FABRIC_LIBS := $(shell $(FABRIC_PC) --libs libfabric)
else
FABRIC_CFLAGS := -I$(FABRIC_HOME)/include
FABRIC_LIBDIR := $(firstword $(wildcard $(FABRIC_HOME)/lib64 $(FABRIC_HOME)/lib))
FABRIC_LIBS := -L$(FABRIC_LIBDIR) -lfabric
endif
FABRIC_LIBS += -Wl,-rpath,$(FABRIC_LIBDIR)
else
FABRIC_CFLAGS := $(shell $(PKG_CONFIG) --cflags libfabric 2>/dev/null)
FABRIC_LIBS := $(shell $(PKG_CONFIG) --libs libfabric 2>/dev/null || echo -lfabric)
endif
SODIUM_LIBS := $(shell $(PKG_CONFIG) --libs libsodium 2>/dev/null || echo -lsodium)
# libhwloc (Debian's libhwloc-dev): the PCI topology, topo.c.
HWLOC_LIBS := $(shell $(PKG_CONFIG) --libs hwloc 2>/dev/null || echo -lhwloc)
CPPFLAGS += $(shell $(PKG_CONFIG) --cflags libsodium 2>/dev/null) $(shell $(PKG_CONFIG) --cflags hwloc 2>/dev/null) $(FABRIC_CFLAGS)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt)

# Python binding: Debian's python3 (python3-dev, python3-pytest).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
PY_INC := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])" 2>/dev/null)
PY_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)
PY_EXT := $(B)/python/mcefa/_mcefa$(PY_SUFFIX)
PY_FILES := $(patsubst client/python/%,$(B)/python/%,$(wildcard client/python/mcefa/*.py)) \
            $(patsubst client/python/%,$(B)/python/%,$(wildcard client/python/mcefa/mooncake_shim/mooncake/*.py))

PROTO_GEN := $(B)/proto/mcefa.pb-c.c $(B)/proto/mcefa.pb-c.h
COMMON_SRC := $(B)/proto/mcefa.pb-c.c proto/wire.c shm/memfd.c shm/completion.c shm/ring.c
ifeq ($(CUDA),1)
CPPFLAGS += -DMCEFA_CUDA -I$(CUDA_HOME)/include
COMMON_SRC += shm/cuda_drv.c
# The CUDA driver stand-in the GPU suite loads instead of libcuda (tests
# only, never installed).
CUDA_STANDIN := $(B)/tests/libcuda-standin.so
endif
# Records what mcefad asks of libfabric (check_efa_setup; never installed).
FI_INTERPOSE := $(B)/tests/libfi-interpose.so
DAEMON_SRC := $(wildcard daemon/*.c)
CLIENT_SRC := $(wildcard client/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(patsubst $(B)/%,%,$(1)))
COMMON_OBJ := $(call obj,$(COMMON_SRC))
DAEMON_OBJ := $(call obj,$(DAEMON_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))

LIBMCEFA_A := $(B)/libmcefa.a
LIBMCEFA_SO := $(B)/libmcefa.so.0
TOOLS := $(B)/mcefa-bench $(B)/fi-rma-bench $(B)/mcefactl $(B)/mcefa-reg-stall
TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/check_*.c))


.PHONY: all check check-gpu install clean bench docs-config python fuzz fuzz-build fuzz-seeds
# Keep objects make considers intermediate (test objects built by patterns).
.SECONDARY:
all: $(B)/mcefad $(LIBMCEFA_A) $(LIBMCEFA_SO) $(TOOLS) $(TESTS) $(CUDA_STANDIN) $(FI_INTERPOSE) python

$(B)/proto/mcefa.pb-c.c $(B)/proto/mcefa.pb-c.h: proto/mcefa.proto
	@mkdir -p $(B)/proto
	protoc-c --proto_path=proto --c_out=$(B)/proto $<

$(B)/obj/proto/mcefa.pb-c.o: $(B)/proto/mcefa.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-unused-parameter -MMD -c -o $@ $<

$(B)/obj/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -c -o $@ $<

$(B)/mcefad: $(DAEMON_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(UV_LIBS) $(PB_LIBS) $(FABRIC_LIBS) $(SODIUM_LIBS) $(HWLOC_LIBS) -lpthread -ldl

$(LIBMCEFA_A): $(CLIENT_OBJ) $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBMCEFA_SO): $(CLIENT_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libmcefa.so.0 -o $@ $^ $(PB_LIBS) -lnuma -lpthread -ldl
	ln -sf libmcefa.so.0 $(B)/libmcefa.so

CLIENT_LINK := $(LIBMCEFA_A) $(PB_LIBS) -lnuma -lpthread -ldl

$(B)/mcefa-bench: $(call obj,tools/mcefa-bench.c tools/bench_gpu.c) $(LIBMCEFA_A)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LINK) -lm

$(B)/obj/tests/%.o: tests/%.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Idaemon $(CHECK_CFLAGS) $(CFLAGS) -MMD -c -o $@ $<

# Unit suites link the daemon modules they test directly.
python: $(PY_EXT) $(PY_FILES)

$(PY_EXT): client/python/mcefa/_mcefa.c $(LIBMCEFA_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(PY_INC) $(CFLAGS) -shared -o $@ $< $(LDFLAGS) $(CLIENT_LINK)

$(B)/python/%.py: client/python/%.py
	@mkdir -p $(dir $@)
	cp $< $@

$(B)/mcefa-reg-stall: $(call obj,tools/reg-stall.c) $(LIBMCEFA_A)
	$(CC) $(LDFLAGS) -o $@ $< $(CLIENT_LINK)

$(B)/mcefactl: $(call obj,tools/mcefactl.c) $(LIBMCEFA_A)
	$(CC) $(LDFLAGS) -o $@ $< $(CLIENT_LINK)

$(B)/fi-rma-bench: $(call obj,tools/fi-rma-bench.c)
	$(CC) $(LDFLAGS) -o $@ $< $(FABRIC_LIBS)

$(B)/tests/libcuda-standin.so: tests/cuda_standin/standin.c tests/cuda_standin/standin_test.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -shared -o $@ $< $(LDFLAGS) -lpthread

# Built without the sanitizers (it is preloaded ahead of their runtime,
# which the tests allow with verify_asan_link_order=0).
$(FI_INTERPOSE): tests/fi_interpose.c tests/cuda_standin/standin_test.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out $(SANFLAGS),$(CFLAGS)) -shared -o $@ $< -ldl -lpthread

$(B)/tests/check_efa: $(call obj,tests/check_efa.c daemon/efa.c daemon/efa_dev.c daemon/err.c \
                        daemon/peer_hello_check.c daemon/peer_auth.c daemon/log.c $(B)/proto/mcefa.pb-c.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FABRIC_LIBS) $(PB_LIBS) $(SODIUM_LIBS) $(CHECK_LIBS) -ldl

$(B)/tests/check_nic_hmem: $(call obj,tests/check_nic_hmem.c daemon/nic_hmem.c daemon/efa.c daemon/err.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FABRIC_LIBS) $(CHECK_LIBS)

# Starts daemons; its expectations come from efa.c's option plan and
# nic_hmem.c's GPU plan.
$(B)/tests/check_efa_setup: $(call obj,tests/check_efa_setup.c daemon/efa.c daemon/nic_hmem.c daemon/err.c) $(LIBMCEFA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LINK) $(FABRIC_LIBS) $(CHECK_LIBS)

# The GPUDirect emulation of the stand-in and the recorder, without a
# daemon: it runs itself again with the recorder preloaded.
$(B)/tests/check_fi_hmem_fake: $(call obj,tests/check_fi_hmem_fake.c daemon/efa.c daemon/err.c \
                                 $(if $(filter 1,$(CUDA)),shm/cuda_drv.c)) | $(FI_INTERPOSE) $(CUDA_STANDIN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(FABRIC_LIBS) $(CHECK_LIBS) -ldl

$(B)/tests/check_region: $(call obj,tests/check_region.c daemon/region.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

# With libmcefa: the Mooncake matrix it builds from what topo.c places.
$(B)/tests/check_topo: $(call obj,tests/check_topo.c daemon/topo.c) $(LIBMCEFA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LINK) $(HWLOC_LIBS) $(CHECK_LIBS)

$(B)/tests/check_route: $(call obj,tests/check_route.c daemon/route.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_nic_dest: $(call obj,tests/check_nic_dest.c daemon/nic_dest.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_nic_errors: $(call obj,tests/check_nic_errors.c daemon/nic_errors.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_batch: $(call obj,tests/check_batch.c daemon/batch.c daemon/err.c daemon/clock.c daemon/stats.c shm/completion.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_peer_table: $(call obj,tests/check_peer_table.c daemon/peer_table.c daemon/ident.c daemon/err.c daemon/clock.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_peer_auth: $(call obj,tests/check_peer_auth.c daemon/peer_auth.c daemon/err.c daemon/log.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(SODIUM_LIBS) $(CHECK_LIBS)

$(B)/tests/check_inbox: $(call obj,tests/check_inbox.c daemon/inbox.c daemon/err.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_config: $(call obj,tests/check_config.c daemon/config.c daemon/config_values.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_prov_env: $(call obj,tests/check_prov_env.c daemon/prov_env.c daemon/log.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_shm: $(call obj,tests/check_shm.c shm/memfd.c shm/completion.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS)

$(B)/tests/check_%: $(B)/obj/tests/check_%.o $(LIBMCEFA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(CLIENT_LINK) $(CHECK_LIBS)

# ---- Fuzzing (libFuzzer: Debian's clang and libclang-rt-14-dev) --------
# The code under test is compiled again with clang into $(B)/fuzz/obj (the
# gcc objects have no coverage instrumentation). make check runs each
# target briefly when clang can link -fsanitize=fuzzer.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 3
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter $(FUZZ_SAN) \
               -fsanitize=fuzzer-no-link
FUZZ_TARGETS := wire peer auth
FUZZ_BINS := $(patsubst %,$(B)/fuzz/fuzz_%,$(FUZZ_TARGETS))
fobj = $(patsubst %.c,$(B)/fuzz/obj/%.o,$(patsubst $(B)/%,%,$(1)))
# Deferred: only the recipes that need it pay for the probe.
FUZZ_OK = $(shell printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' | \
            $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1 && echo 1)

$(B)/fuzz/obj/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -Idaemon $(FUZZ_CFLAGS) -MMD -c -o $@ $<

$(B)/fuzz/obj/proto/mcefa.pb-c.o: $(B)/proto/mcefa.pb-c.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -c -o $@ $<

FUZZ_PB := $(call fobj,$(B)/proto/mcefa.pb-c.c)
$(B)/fuzz/fuzz_wire: $(call fobj,tests/fuzz/fuzz_wire.c proto/wire.c) $(FUZZ_PB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PB_LIBS)

$(B)/fuzz/fuzz_peer: $(call fobj,tests/fuzz/fuzz_peer.c daemon/peer_hello_check.c daemon/peer_auth.c \
                        daemon/remote.c daemon/err.c daemon/log.c) $(FUZZ_PB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PB_LIBS) $(SODIUM_LIBS)

$(B)/fuzz/fuzz_auth: $(call fobj,tests/fuzz/fuzz_auth.c daemon/peer_auth.c daemon/err.c daemon/log.c) $(FUZZ_PB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PB_LIBS) $(SODIUM_LIBS)

fuzz-build: $(FUZZ_BINS)

# New inputs go to $(B)/fuzz/corpus; the committed seeds are only read.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(B)/fuzz/corpus/$$t && \
	    echo "=== fuzz $$t ($(FUZZ_SECONDS) s)" && \
	    $(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=$(B)/fuzz/crash-$$t- $(B)/fuzz/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

$(B)/fuzz/gen_seeds: $(call obj,tests/fuzz/gen_seeds.c) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PB_LIBS)

fuzz-seeds: $(B)/fuzz/gen_seeds
	mkdir -p $(patsubst %,tests/fuzz/corpus/%,$(FUZZ_TARGETS))
	$< tests/fuzz/corpus

check: all
	@if [ "$(FUZZ_OK)" = 1 ]; then $(MAKE) --no-print-directory fuzz-build; fi
	@MCEFA_BUILD=$(B) PYTHON=$(PYTHON) SAN=$(SAN) FUZZ_TARGETS="$(if $(FUZZ_OK),$(FUZZ_TARGETS))" \
	    FUZZ_CHECK_SECONDS=$(FUZZ_CHECK_SECONDS) ./tests/run-all.sh $(TESTS)

# On a machine with a GPU (docs/gpu.md): the GPU suite against the real
# driver, then the GPU benchmarks.
check-gpu: all
	./tools/check-gpu.sh $(B)

# Every figure of docs/benchmarks.md's tables, ratios from one run:
# same-host 1 MiB, same-host 4 KiB at 1, 2 and 4 submitting threads
# (medians of 3), the network path (medians of 3 interleaved rounds),
# plain memory, and 16 NICs a host (warmup, memory; needs root).
bench: all
	./tools/bench-local.sh $(B)
	BLOCK=4096 BATCH=128 THREADS="1 2 4" COPY_THREADS_LIST=2 REPS=3 DURATION=3 ./tools/bench-local.sh $(B)
	./tools/bench-net.sh $(B)
	./tools/bench-plain.sh $(B)
	@if [ "$$(id -u)" = 0 ]; then ROUNDS=3 ./tools/bench-scale.sh 16 $(B); \
	else echo "bench-scale: skipped: it needs root (network namespaces)"; fi

docs-config: $(B)/mcefad
	$(B)/mcefad --print-config-reference > docs/configuration.md

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PKGDIR)
	install -m 0755 $(B)/mcefad $(DESTDIR)$(BINDIR)/mcefad
	install -m 0755 $(B)/mcefa-bench $(DESTDIR)$(BINDIR)/mcefa-bench
	install -m 0755 $(B)/fi-rma-bench $(DESTDIR)$(BINDIR)/fi-rma-bench
	install -m 0755 $(B)/mcefactl $(DESTDIR)$(BINDIR)/mcefactl
	install -m 0755 $(B)/mcefa-reg-stall $(DESTDIR)$(BINDIR)/mcefa-reg-stall
	install -m 0644 $(LIBMCEFA_A) $(DESTDIR)$(LIBDIR)/libmcefa.a
	install -m 0755 $(LIBMCEFA_SO) $(DESTDIR)$(LIBDIR)/libmcefa.so.0
	ln -sf libmcefa.so.0 $(DESTDIR)$(LIBDIR)/libmcefa.so
	install -m 0644 client/include/mcefa.h $(DESTDIR)$(INCDIR)/mcefa.h
	install -m 0644 proto/mcefa_defaults.h $(DESTDIR)$(INCDIR)/mcefa_defaults.h
	install -d $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/mcefad
	sed -e 's|/usr/local/bin/mcefad|$(BINDIR)/mcefad|' -e 's|/etc/mcefad|$(SYSCONFDIR)/mcefad|' \
	    -e 's|/usr/local/share/doc|$(PREFIX)/share/doc|' \
	    systemd/mcefad.service > $(DESTDIR)$(SYSTEMDDIR)/mcefad.service
	install -m 0644 systemd/mcefa.sysusers $(DESTDIR)$(SYSUSERSDIR)/mcefa.conf
	install -m 0644 systemd/mcefad.tmpfiles $(DESTDIR)$(TMPFILESDIR)/mcefad.conf
	install -d $(DESTDIR)$(PREFIX)/share/doc/mcefa
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/mcefa/
	test -e $(DESTDIR)$(SYSCONFDIR)/mcefad/mcefad.conf || \
	    install -m 0644 systemd/mcefad.conf $(DESTDIR)$(SYSCONFDIR)/mcefad/mcefad.conf
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' client/libmcefa.pc.in > $(DESTDIR)$(PKGDIR)/libmcefa.pc

clean:
	rm -rf build build-san

-include $(shell find $(B)/obj $(B)/fuzz/obj -name '*.d' 2>/dev/null)
