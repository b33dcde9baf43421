# derp -- a DERP relay in portable C.  See README.md.
#
#   make            the relay, ./derp
#   make run        a dev relay on loopback (plain HTTP on 127.0.0.1:3340, STUN 3478)
#   make test       unit and integration tests: epoll build, and ASan+UBSan build with poll(2)
#   make fuzz       every libFuzzer target of test/fuzz/ for FUZZ_SECONDS (60) each (clang)
#   make mutants    mutation testing: each mutation of test/mutants.txt must fail the suite
#   make clean
#
# Cross builds override CC, CFLAGS, LDFLAGS and the BearSSL paths, e.g.
#   make CC=mips-linux-gnu-gcc BEARSSL_CFLAGS=-I/x/inc BEARSSL_LIBS=/x/build/libbearssl.a

CC ?= cc
CFLAGS ?= -O2 -g
LDFLAGS ?=
BEARSSL_CFLAGS ?=
BEARSSL_LIBS ?= -lbearssl
WARN = -std=c99 -Wall -Wextra -pedantic
# The readiness back-end: epoll on Linux, poll(2) elsewhere; POLLER=poll forces
# the portable one.  `make test` runs the sanitizer build with poll(2).
ifeq ($(POLLER),poll)
WARN += -DDERP_POLLER_POLL
endif
SAN = -DDERP_POLLER_POLL -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LIBS = $(BEARSSL_LIBS) -lm

# ACME=0 leaves the ACME client (acme.c, about 60 KB with the BearSSL client
# code it pulls in) out of the relay: -certmode letsencrypt and gcp then serve
# an existing certificate file only, and the -acme-* flags are refused.
# make static does so by default (firmware: under 250 KB); make static ACME=1
# puts it in (the Docker image).  Every other build has it.
ACME ?= 1
ifeq ($(ACME),0)
ACME_SRC =
ACME_HDR =
WARN += -DDERP_NO_ACME
else
ACME_SRC = acme.c
ACME_HDR = acme.h
endif
# BOOTDNS=0 leaves bootstrap DNS (bootdns.c; getaddrinfo alone is about 28 KB
# of a static musl binary) out: -bootstrap-dns-names is then refused.  make
# static follows ACME unless told (firmware: neither; ACME=1: both); every
# other build has it (a dynamic libc costs it nothing).
BOOTDNS ?= 1
ifeq ($(BOOTDNS),0)
BOOTDNS_SRC =
BOOTDNS_HDR =
WARN += -DDERP_NO_BOOTDNS
else
BOOTDNS_SRC = bootdns.c
BOOTDNS_HDR = bootdns.h
endif
# HOOKTLS=0 (-DDERP_NO_HOOKTLS) leaves the HTTPS client of the admission
# webhook out of derp.c, and tlsclient.c with it unless acme.c needs it.
# make static follows ACME unless told (firmware: neither; ACME=1: both);
# every other build has it.
HOOKTLS ?= 1
ifeq ($(HOOKTLS),0)
WARN += -DDERP_NO_HOOKTLS
endif
# MESH=0 (-DDERP_NO_MESH) leaves the mesh out of derp.c: -mesh-with is
# refused and mesh frames close even a client with the mesh key (the key
# still exempts it from admission); tlsclient.c goes too unless something
# else needs it.  make static follows ACME unless told (firmware: a relay
# on its own).
MESH ?= 1
# WS=0 (-DDERP_NO_WS) leaves DERP over WebSocket (browser clients) out: such
# an upgrade is then answered 501.  make static follows ACME unless told.
WS ?= 1
ifeq ($(WS),0)
WARN += -DDERP_NO_WS
endif
ifeq ($(MESH),0)
WARN += -DDERP_NO_MESH
endif
# PROBE=0 (-DDERP_NO_PROBE) leaves `derp probe` (probe.c, the end-to-end
# checker of a relay) out; it needs tlsclient.c.  make static follows ACME
# unless told (firmware: out, it would add 49 KB; ACME=1: in, 29 KB);
# every other build has it.
PROBE ?= 1
ifeq ($(PROBE),0)
PROBE_SRC =
PROBE_HDR =
WARN += -DDERP_NO_PROBE
else
PROBE_SRC = probe.c
PROBE_HDR = probe.h
endif
ifeq ($(ACME)$(HOOKTLS)$(MESH)$(PROBE),0000)
TLSC_SRC =
TLSC_HDR =
else
TLSC_SRC = tlsclient.c
TLSC_HDR = tlsclient.h
endif
# FASTEC=0 (-DDERP_NO_FASTEC) builds x25519.c and p256.c as thin wrappers of
# BearSSL's m31 code instead of our 64-bit X25519 and P-256 ECDSA signing
# (handshakes: issue 15).  Where the compiler has no 128-bit product (32-bit
# MIPS, ARM) they are wrappers anyway.  make static follows ACME unless told.
FASTEC ?= 1
ifeq ($(FASTEC),0)
WARN += -DDERP_NO_FASTEC
endif
ECC_SRC = x25519.c p256.c
ECC_HDR = x25519.h p256.h
# What a program that includes derp.c links beside it.
LIB_SRC = stun.c nacl.c $(ECC_SRC) cert.c verify.c $(BOOTDNS_SRC) $(TLSC_SRC) $(ACME_SRC) $(PROBE_SRC)
RELAY_SRC = derp.c $(LIB_SRC)
RELAY_HDR = derp.h stun.h nacl.h $(ECC_HDR) cert.h verify.h $(BOOTDNS_HDR) $(TLSC_HDR) $(ACME_HDR) $(PROBE_HDR)
CLIENT_SRC = test/client.c nacl.c $(ECC_SRC) stun.c

TESTS = test_stun test_nacl test_x25519 test_p256 test_cert test_units test_integration test_mesh test_embed test_ops
ifneq ($(ACME),0)
TESTS += test_acme test_pebble
endif
ifneq ($(PROBE),0)
TESTS += test_probe
endif
# The fuzz targets (test/fuzz/fuzz_*.c); make test replays their corpus and
# regression inputs with fuzz_replay_* (no libFuzzer needed).
FUZZ_TARGETS = http derp stun json cert tls
ifneq ($(ACME),0)
FUZZ_TARGETS += acme
endif
ifneq ($(WS),0)
FUZZ_TARGETS += ws
endif
TESTS += $(addprefix fuzz_replay_,$(FUZZ_TARGETS))

.PHONY: all run test deps clean cross-test static install

all: derp

derp: $(RELAY_SRC) $(RELAY_HDR)
	$(CC) $(WARN) $(CFLAGS) $(BEARSSL_CFLAGS) -o $@ $(RELAY_SRC) $(LDFLAGS) $(LIBS)

# BearSSL headers present?  As root on Debian, install them; otherwise say how.
deps:
	@if ! printf '#include <bearssl.h>\n' | $(CC) $(BEARSSL_CFLAGS) -E -x c - >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && apt-get install -y libbearssl-dev; \
		else \
			echo "BearSSL not found: apt-get install libbearssl-dev (Debian), or set BEARSSL_CFLAGS and BEARSSL_LIBS" >&2; \
			exit 1; \
		fi; \
	fi

# As root, the relay switches to nobody once its ports are bound (it refuses
# to keep root unless told -allow-root).
RUN_AS = $(if $(filter 0,$(shell id -u)),-user nobody)
run: deps
	@$(MAKE) --no-print-directory derp
	./derp -a 127.0.0.1:3340 -c derp-dev.key -stun-port 3478 $(RUN_AS)

# The test programs, built twice: build/ as shipped, build/san/ with sanitizers.
build/.dir:
	@mkdir -p build && touch $@
build/san/.dir:
	@mkdir -p build/san && touch $@

define test_rules
$(1)derp: $(RELAY_SRC) $(RELAY_HDR) $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ $$(RELAY_SRC) $$(LDFLAGS) $$(LIBS)
$(1)test_stun: stun.c stun.h test/test_stun.c $(1).dir
	$$(CC) $$(WARN) $(2) -o $$@ stun.c test/test_stun.c $$(LDFLAGS)
$(1)test_nacl: nacl.c nacl.h $(ECC_SRC) $(ECC_HDR) test/test_nacl.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ nacl.c $(ECC_SRC) test/test_nacl.c $$(LDFLAGS) $$(LIBS)

$(1)test_x25519: x25519.c x25519.h test/test_x25519.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ x25519.c test/test_x25519.c $$(LDFLAGS) $$(LIBS)

$(1)test_p256: p256.c p256.h test/test_p256.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ p256.c test/test_p256.c $$(LDFLAGS) $$(LIBS)
$(1)test_cert: cert.c cert.h test/test_cert.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ cert.c test/test_cert.c $$(LDFLAGS) $$(LIBS)
$(1)test_units: $(RELAY_SRC) $(RELAY_HDR) test/test_units.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ test/test_units.c $$(LIB_SRC) $$(LDFLAGS) $$(LIBS)
$(1)test_integration: $(CLIENT_SRC) test/client.h test/test_integration.c nacl.h stun.h cert.c cert.h $(1).dir
	$$(CC) $$(WARN) $(2) -D_POSIX_C_SOURCE=200809L $$(BEARSSL_CFLAGS) -o $$@ test/test_integration.c $$(CLIENT_SRC) cert.c $$(LDFLAGS) $$(LIBS)
$(1)test_mesh: $(CLIENT_SRC) test/client.h test/test_mesh.c cert.c cert.h $(1).dir
	$$(CC) $$(WARN) $(2) -D_POSIX_C_SOURCE=200809L $$(BEARSSL_CFLAGS) -o $$@ test/test_mesh.c $$(CLIENT_SRC) cert.c $$(LDFLAGS) $$(LIBS)
$(1)test_ops: $(CLIENT_SRC) test/client.h test/test_ops.c stun.h cert.c cert.h $(1).dir
	$$(CC) $$(WARN) $(2) -D_POSIX_C_SOURCE=200809L $$(BEARSSL_CFLAGS) -o $$@ test/test_ops.c $$(CLIENT_SRC) cert.c $$(LDFLAGS) $$(LIBS)
$(1)test_probe: $(CLIENT_SRC) test/client.h test/test_probe.c cert.c cert.h $(1).dir
	$$(CC) $$(WARN) $(2) -D_POSIX_C_SOURCE=200809L $$(BEARSSL_CFLAGS) -o $$@ test/test_probe.c $$(CLIENT_SRC) cert.c $$(LDFLAGS) $$(LIBS)
# test_embed runs embed_poll (contrib/: the relay in a daemon's own poll()
# loop), so whatever builds test_embed (make test, testout, mutants) builds it.
$(1)test_embed: $(RELAY_SRC) $(RELAY_HDR) $(CLIENT_SRC) test/client.h test/test_embed.c $(1).dir $(1)embed_poll
	$$(CC) $$(WARN) $(2) -pthread -D_POSIX_C_SOURCE=200809L -DDERP_NO_MAIN $$(BEARSSL_CFLAGS) -o $$@ test/test_embed.c $$(RELAY_SRC) test/client.c $$(LDFLAGS) $$(LIBS) -pthread
$(1)embed_poll: $(RELAY_SRC) $(RELAY_HDR) contrib/embed_poll.c $(1).dir
	$$(CC) $$(WARN) $(2) -DDERP_NO_MAIN $$(BEARSSL_CFLAGS) -o $$@ contrib/embed_poll.c $$(RELAY_SRC) $$(LDFLAGS) $$(LIBS)
$(1)test_acme: acme.c acme.h tlsclient.c tlsclient.h cert.c cert.h verify.c verify.h test/test_acme.c $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ test/test_acme.c tlsclient.c cert.c verify.c $$(LDFLAGS) $$(LIBS)
$(1)test_pebble: $(CLIENT_SRC) test/client.h test/test_pebble.c cert.c cert.h $(1).dir
	$$(CC) $$(WARN) $(2) -D_POSIX_C_SOURCE=200809L $$(BEARSSL_CFLAGS) -o $$@ test/test_pebble.c $$(CLIENT_SRC) cert.c $$(LDFLAGS) $$(LIBS)
# fuzz_acme includes acme.c itself; the others include derp.c or nothing.
$(1)fuzz_replay_acme: test/fuzz/fuzz_acme.c test/fuzz/replay.c test/fuzz/fuzz.h acme.c acme.h tlsclient.c tlsclient.h cert.c cert.h verify.c verify.h $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ $$< test/fuzz/replay.c tlsclient.c cert.c verify.c $$(LDFLAGS) $$(LIBS)
$(1)fuzz_replay_%: test/fuzz/fuzz_%.c test/fuzz/replay.c test/fuzz/fuzz.h test/fuzz/fuzz_server.h $(RELAY_SRC) $(RELAY_HDR) $(1).dir
	$$(CC) $$(WARN) $(2) $$(BEARSSL_CFLAGS) -o $$@ $$< test/fuzz/replay.c $$(LIB_SRC) $$(LDFLAGS) $$(LIBS)
endef

$(eval $(call test_rules,build/,$(CFLAGS)))
$(eval $(call test_rules,build/san/,$(SAN)))

# The same rules for a directory of test/cross.sh's choosing,
# e.g. make TESTOUT=build/cross/mips/ CC=mips-linux-gnu-gcc ... build/cross/mips/derp
ifneq ($(TESTOUT),)
$(TESTOUT).dir:
	@mkdir -p $(TESTOUT) && touch $@
$(eval $(call test_rules,$(TESTOUT),$(CFLAGS)))
.PHONY: testout
testout: $(addprefix $(TESTOUT),derp $(TESTS))
endif

test: deps
	@$(MAKE) --no-print-directory $(addprefix build/,derp $(TESTS)) $(addprefix build/san/,derp $(TESTS)) build/soak
	@sh test/run.sh build build/san

# make bench: the load generator (test/bench.c) starts ./derp on loopback and
# measures throughput, overload, latency, memory and the crypto ceiling in under
# 5 minutes.  ./build/bench --quick (seconds) or --smoke (pass/fail) for less.
.PHONY: bench
LOADGEN = test/loadgen.c test/loadgen.h test/client.c test/client.h nacl.c nacl.h $(ECC_SRC) $(ECC_HDR) stun.c
build/bench: test/bench.c $(LOADGEN) build/.dir
	$(CC) $(WARN) -O2 -g -D_POSIX_C_SOURCE=200809L $(BEARSSL_CFLAGS) -o $@ test/bench.c test/loadgen.c test/client.c nacl.c $(ECC_SRC) stun.c $(LDFLAGS) $(LIBS)

bench: deps
	@$(MAKE) --no-print-directory derp build/bench
	./build/bench ./derp

# make soak: correctness under load (test/soak.c), loopback only, 7 to 8
# minutes here: 10,000 idle TLS clients answering pings, 100,000 handshake cycles
# with the relay's descriptors and RSS back where they were, a non-reader cut
# off while a flooder is not allowed to slow other pairs below 80%, a
# handshake flood during traffic, bad input at every stage, and hostile clients
# (pinned pool, stalled ClientInfo, slow receivers, idle floods from one
# source) while legitimate ones must get through.  make test runs
# ./build/soak --short against build/derp and --tiny against build/san/derp
# (seconds each).
.PHONY: soak
build/soak: test/soak.c $(LOADGEN) build/.dir
	$(CC) $(WARN) -O2 -g -D_POSIX_C_SOURCE=200809L $(BEARSSL_CFLAGS) -o $@ test/soak.c test/loadgen.c test/client.c nacl.c $(ECC_SRC) stun.c $(LDFLAGS) $(LIBS)

soak: deps
	@$(MAKE) --no-print-directory derp build/soak
	./build/soak ./derp

# make fuzz [FUZZ_SECONDS=60]: the libFuzzer targets of test/fuzz/ one after
# another, built with clang, ASan and UBSan, each from a scratch copy of its
# corpus under build/fuzz/ (test/fuzz/run.sh); prints executions, exec/s and
# coverage per target and fails if any crashes (inputs kept in build/fuzz/crashes/).
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fno-omit-frame-pointer -DDERP_POLLER_POLL \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
build/fuzz/fuzz_acme: test/fuzz/fuzz_acme.c test/fuzz/fuzz.h acme.c acme.h tlsclient.c tlsclient.h cert.c cert.h verify.c verify.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(WARN) $(FUZZ_FLAGS) $(BEARSSL_CFLAGS) -o $@ $< tlsclient.c cert.c verify.c $(LDFLAGS) $(LIBS)
build/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h test/fuzz/fuzz_server.h $(RELAY_SRC) $(RELAY_HDR)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(WARN) $(FUZZ_FLAGS) $(BEARSSL_CFLAGS) -o $@ $< $(LIB_SRC) $(LDFLAGS) $(LIBS)

fuzz: deps
	@printf 'int LLVMFuzzerTestOneInput(const char *d, long n) { return (int)n & !d; }\n' | \
	    $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null || \
	    { echo "make fuzz needs clang with libFuzzer (apt-get install clang), or FUZZ_CC=" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(addprefix build/fuzz/fuzz_,$(FUZZ_TARGETS))
	@sh test/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# make mutants [MUTANTS=pattern]: mutation testing (test/mutants.sh).  Each
# one-line mutation of test/mutants.txt (derp.c, stun.c, nacl.c) is applied
# alone to a scratch copy of the working tree, the plain build/ programs are
# rebuilt and the fast suite run (no sanitizers, no soak); prints a table of
# which test caught each mutant, and fails if one SURVIVED, did not compile,
# or its list entry no longer matches the code.  Measured on 2 busy cores: 57
# min for 58 mutations (20 s for one that test_units catches, 75 s for one
# that needs the whole fast suite).  MUTANTS=regex runs the matching ones.
.PHONY: mutants
mutants: deps
	@sh test/mutants.sh $(if $(MUTANTS),'$(MUTANTS)')

# Another CPU under qemu-user (ARCH=mips, mipsel, armhf or aarch64), and a static
# musl binary (build/static/derp): the scripts install and build what they need.
cross-test:
	@sh test/cross.sh $(ARCH)

static:
	@ACME=$(if $(filter command line,$(origin ACME)),$(ACME),0) \
	    BOOTDNS=$(if $(filter command line,$(origin BOOTDNS)),$(BOOTDNS),) \
	    HOOKTLS=$(if $(filter command line,$(origin HOOKTLS)),$(HOOKTLS),) \
	    MESH=$(if $(filter command line,$(origin MESH)),$(MESH),) \
	    WS=$(if $(filter command line,$(origin WS)),$(WS),) \
	    PROBE=$(if $(filter command line,$(origin PROBE)),$(PROBE),) \
	    FASTEC=$(if $(filter command line,$(origin FASTEC)),$(FASTEC),) \
	    sh test/cross.sh static

# make install [PREFIX=/usr/local] [DESTDIR=]: the relay and its systemd unit
# (contrib/derp.service, ExecStart pointed at the installed binary).
PREFIX ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
install: derp
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR)
	install -m 0755 derp $(DESTDIR)$(PREFIX)/bin/derp
	sed 's|/usr/local/bin/derp|$(PREFIX)/bin/derp|' contrib/derp.service >$(DESTDIR)$(UNITDIR)/derp.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/derp.service

clean:
	rm -rf derp build
