#!/bin/sh
# test/run.sh BUILD_DIR... -- run every test program of each build directory
# (build/ as shipped, build/san/ with AddressSanitizer and UBSan) and add up
# their "N passed, N failed[, N skipped]" lines.  The last line is always
# "N passed, N failed, N skipped" (CI reads it), after every FAIL line of the
# run repeated (CI shows only the tail); the exit status is 0 iff nothing
# failed.
#
# Strict, so that a suite that quietly ran less cannot pass: a program counts
# one failure more, with a FAIL line saying why, when its binary is missing,
# it exits non-zero without reporting a failure (a crash, a sanitizer
# report), it prints no summary line, it reports fewer checks than its floor
# (the table below) or it has no floor there.  A fuzz input directory that is
# missing fails in the replay (test/fuzz/replay.c); a failed seed-generation
# step fails here.  Of what it was asked to run, run.sh skips nothing: only the
# programs print "skip" lines (a check this host cannot make), all listed.
#
# TEST_EMULATOR (optional, one word): runs every test program through it, e.g.
# qemu-mips-static for a cross build (test/cross.sh); test_integration is then
# handed a wrapper script that starts derp through it too.  The soak and the
# shell tests, native only, are then left out.
#
# RUN_FAST=1: the fast suite (test/mutants.sh): only the programs of the
# directories given; no soak and no shell packaging tests
# (openwrt_init_test.sh, packaging_test.sh).  Floors still apply.
#
# RUN_FAILFAST=1: stop after the first program that fails, printing
# "first failure: PROGRAM: LINE", LINE being the first "FAIL" line of that
# program's output, or run.sh's reason when it printed none (missing, no
# summary line, below its floor, exit status or signal).  The final
# "N passed, N failed, N skipped" line and a non-zero exit status follow.
set -u

# Floors: the fewest checks each program must report, in every configuration
# run.sh runs in: build/ and build/san/ (make test; the same counts), and a
# cross build under qemu (cross.sh).  A check is a pass, or a pass or a
# failure when some failed (a failing check is then reported once, by the
# program, not again as a shortfall).  A program that lost checks (a test
# removed by mistake, a mode that returns early, a harness that stops reading
# its corpus) fails instead of passing with fewer.  Raise a floor with the
# checks it counts; where a count varies with the host, the floor is the
# lowest honest count and the line above it says why; written N+s, skip lines
# count too (a program whose checks all need an optional package, each
# printed as a named skip without it).  A key is a program,
# or a program and its first argument (soak's two sizes).  Measured on
# Linux (every 127/8 address local: elsewhere test_integration's fair_*
# modes skip and fall below its floor), as root, with IPv6 and openssl.
floors='
test_stun		285
test_nacl		155
test_x25519		23
test_p256		97
test_units		673
# 176 with the openssl command; without it 93 of its checks skip (README).
# (A 32-bit time_t skips more: cross.sh builds with a 64-bit one.)
test_cert		83
# 967 here (208 of them in the verify_* modes, 126 in ws_plain and ws_tls,
# 14 in seed_cmdline).  Without
# IPv6 loopback the ipv6 and dual modes skip (-13); not as
# root, the privileges mode keeps 3 of its 12 checks (-9), bootdns_hang
# keeps only its skip (-4, as where mount namespaces are refused) and
# seed_cmdline keeps 1 of its 14 beside its skip (-13, as where network or
# mount namespaces are refused); in a static glibc build
# without NSS modules (cross.sh, under qemu) privileges keeps 1 (-11); without
# the openssl command verify_hook_tls keeps only its skip (-40).
test_integration	877
# 52 checks, in every configuration: a region of three relays meshed on
# loopback (127.0.0.1-3, or one address and three ports where only
# 127.0.0.1 is local); a check that cannot run fails, never skips.
test_mesh		52
# 103 checks, skips counted (+s): without promtool its 2 lint checks are skip lines.
test_ops		103+s
# 24 checks, skips counted (+s): derp probe against five relays, a dead
# port and a hostile fake relay; without the openssl command 3 are skip lines (no test CA), without
# IPv6 loopback 1 is, where localhost does not resolve 1 is.
test_probe		24+s
# Without IPv6 loopback, B_on_ipv6 is a skip beside the passes, not instead.
# 23 of them are own_loop (contrib/embed_poll.c run as a child).
test_embed		205
# 375 with the openssl command; 365 without (5 checks skip, 5 fewer made).
test_acme		365
# 21 checks, skips counted (+s): without pebble every one is a skip line
# with its name (README: pebble is optional, CI installs it), without the
# openssl command 3 are, not as root (or without a user nobody) 1 is.
test_pebble		24+s
# 115 checks each: every one is judged (the fairness ratio and the RSS of the
# sanitizer relay with relaxed bounds under load or sanitizers, never skipped).
# No apostrophes in this table: it is one single-quoted string.
soak --short		115
soak --tiny		115
# The fuzz replays: the committed inputs (corpus plus regress), and for cert
# the 16 seeds written now around its own key.  run.sh raises each to the
# number of input files it hands the replay: every input given must pass, so
# a harness that stops reading files still fails, while this figure keeps the
# committed corpus from shrinking (a directory deleted or renamed, regress
# ones included, which are handed over only where they exist: git keeps no
# empty directory and most targets never crashed).
fuzz_replay_http	39
fuzz_replay_derp	106
fuzz_replay_stun	52
fuzz_replay_json	37
fuzz_replay_cert	23
fuzz_replay_tls		14
fuzz_replay_acme	19
fuzz_replay_ws		80
# 52 and 40 here.  Not as root, packaging_test.sh has no DERP_USER=root
# check (-1); without systemd-analyze its unit check skips (-1); without
# docker compose its compose check skips (-1).
openwrt_init_test.sh	52
packaging_test.sh	37
'

emu=${TEST_EMULATOR:-}
case ${RUN_FAST:-0} in 0 | '') fast='' ;; *) fast=1 ;; esac
case ${RUN_FAILFAST:-0} in 0 | '') failfast='' ;; *) failfast=1 ;; esac
if [ "$#" -eq 0 ]; then
	echo "usage: [RUN_FAST=1] [RUN_FAILFAST=1] sh test/run.sh BUILD_DIR..." >&2
	exit 2
fi
data=test/data
scratch=$(mktemp -d "${TMPDIR:-/tmp}/derp-test.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
pass=0 fail=0 skip=0 n=0 inputs=''

# floor_of KEY: KEY's floor in the table, or nothing.
floor_of() {
	printf '%s\n' "$floors" | awk -v k="$1" '
	    /^#/ || NF < 2 { next }
	    { key = $1; for (i = 2; i < NF; i++) key = key " " $i }
	    key == k { print $NF; exit }'
}

# count_inputs PATH...: how many inputs replay.c replays for these paths
# (the regular files of a directory whose names do not start with a dot).
count_inputs() {
	c=0
	for a in "$@"; do
		if [ -d "$a" ]; then
			for e in "$a"/*; do
				if [ -f "$e" ]; then
					c=$((c + 1))
				fi
			done
		elif [ -f "$a" ]; then
			c=$((c + 1))
		fi
	done
	echo "$c"
}

# stop NAME LINE: RUN_FAILFAST's end, with the totals so far.
stop() {
	echo "first failure: $1: $2"
	echo "$pass passed, $fail failed, $skip skipped"
	exit 1
}

# run DIR PROGRAM ARG...: one program, judged; $inputs (reset here), when
# set, raises its floor to that many fuzz inputs.
run() {
	# POSIX sh has no locals: rdir, not the caller's loop variable dir.
	rdir=$1 prog=$2
	shift 2
	n=$((n + 1))
	log=$scratch/$n.log
	name=$rdir/$prog
	why=''
	floor=$(floor_of "$prog ${1:-}")
	if [ -z "$floor" ]; then
		floor=$(floor_of "$prog")
	fi
	if [ -n "$floor" ] && [ -n "$inputs" ] && [ "$inputs" -gt "$floor" ]; then
		floor=$inputs
	fi
	# A floor written N+s counts skip lines too.
	skips_count=''
	case $floor in *+s) floor=${floor%+s} skips_count=1 ;; esac
	inputs=''
	rc=0 ran=''
	if [ -f "$name" ] && [ -x "$name" ]; then
		${emu:+"$emu"} "$name" "$@" >"$log" 2>&1
		rc=$? ran=1
	else
		: >"$log"
		why="missing or not executable (not built?)"
	fi
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
	p=${p:-0} f=${f:-0} s=${s:-0}
	fs=0
	if [ -n "$skips_count" ]; then
		fs=$s
	fi
	# A shell reports death by a signal as 128 + its number.
	if [ "$rc" -gt 128 ] && [ "$f" -eq 0 ]; then
		why="${why:+$why; }killed by signal $((rc - 128))"
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		why="${why:+$why; }exit status $rc without a reported failure"
	fi
	if [ -n "$ran" ] && [ -z "$line" ]; then
		why="${why:+$why; }no \"N passed, N failed\" summary line"
	fi
	if [ -z "$floor" ]; then
		why="${why:+$why; }no floor for $prog in run.sh's table"
	elif [ -n "$line" ] && [ $((p + f + fs)) -lt "$floor" ]; then
		got="$p passed"
		if [ "$f" -gt 0 ]; then
			got="$got, $f failed"
		fi
		why="${why:+$why; }$got, below its floor of $floor"
	fi
	if [ -n "$why" ]; then
		f=$((f + 1))
		echo "FAIL $name: $why"
		echo "FAIL $name: $why" >>"$scratch/failures"
	fi
	grep -E '^(FAIL|skip)' "$log" | sed "s|^|  $name: |"
	grep -E '^FAIL' "$log" | sed "s|^|  $name: |" >>"$scratch/failures"
	if [ "$f" -gt 0 ]; then
		echo "---- last lines of $name output:"
		tail -n 30 "$log"
		echo "----"
	fi
	echo "$name: $p passed, $f failed, $s skipped"
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	if [ "$f" -gt 0 ] && [ -n "$failfast" ]; then
		first=$(grep '^FAIL' "$log" | head -n 1)
		stop "$name" "${first:-${why:-$f failed, no FAIL line}}"
	fi
}

for dir in "$@"; do
	run "$dir" test_stun "$data"
	run "$dir" test_nacl "$data/derp/nacl_box_vectors.txt"
	run "$dir" test_x25519
	run "$dir" test_p256
	run "$dir" test_units "$data/derp"
	mkdir -p "$scratch/cert$n"
	run "$dir" test_cert "$scratch/cert$n"
	mkdir -p "$scratch/int$n"
	derp=$dir/derp
	if [ -n "$emu" ]; then
		derp=$scratch/derp$n.sh
		printf '#!/bin/sh\nexec %s %s "$@"\n' "$emu" "$(cd "$dir" && pwd)/derp" >"$derp"
		chmod +x "$derp"
	fi
	run "$dir" test_integration "$derp" "$scratch/int$n"
	mkdir -p "$scratch/mesh$n"
	run "$dir" test_mesh "$derp" "$scratch/mesh$n"
	# Metrics, clean restarts and logs; then derp probe against relays of
	# every kind (the probe is the derp binary too).
	mkdir -p "$scratch/ops$n" "$scratch/probe$n"
	run "$dir" test_ops "$derp" "$scratch/ops$n"
	run "$dir" test_probe "$derp" "$scratch/probe$n"
	# test_embed runs contrib/embed_poll as a child: through the emulator
	# too, as derp above.
	embed=$dir/embed_poll
	if [ -n "$emu" ]; then
		embed=$scratch/embed_poll$n.sh
		printf '#!/bin/sh\nexec %s %s "$@"\n' "$emu" \
		    "$(cd "$dir" && pwd)/embed_poll" >"$embed"
		chmod +x "$embed"
	fi
	run "$dir" test_embed "$scratch/embed$n" "$embed"
	# The ACME client (absent from an ACME=0 build, which run.sh is not
	# given): unit tests with a stand-in CA, then orders from pebble
	# through the relay.
	mkdir -p "$scratch/acme$n"
	run "$dir" test_acme "$scratch/acme$n"
	mkdir -p "$scratch/pebble$n"
	run "$dir" test_pebble "$derp" "$scratch/pebble$n"
	# The short soak (test/soak.c, make soak): idle clients, handshake
	# cycles, a non-reader, a handshake flood, bad input, in seconds.  One
	# load generator, build/soak (make test builds it), drives each build's
	# relay; the sanitizer relay, several times slower, with --tiny counts.
	# Native runs only, and not in the fast suite.
	if [ -z "$emu" ] && [ -z "$fast" ]; then
		size=--short
		case $dir in *san*) size=--tiny ;; esac
		run build soak "$size" "$derp"
	fi
	# The fuzz harnesses (test/fuzz/) over their seed corpus and regression
	# inputs; the cert target also over seeds made now around a key it
	# generates (never committed).
	for t in http derp stun json cert tls acme ws; do
		export FUZZ_CERT_DIR="$scratch/fuzzcert$n" FUZZ_DATA="$data" \
		    FUZZ_TMPDIR="$scratch"
		corpus=test/fuzz/corpus/$t
		gen=''
		if [ -d "test/fuzz/regress/$t" ]; then
			regress=test/fuzz/regress/$t
		else
			regress=''
		fi
		# No seeds without the binary: run reports it missing, once.
		if [ "$t" = cert ] && [ -x "$dir/fuzz_replay_$t" ]; then
			gen=$scratch/fuzzseeds$n
			FUZZ_ALL_SEEDS=1 FUZZ_WRITE_SEEDS="$gen" ${emu:+"$emu"} \
			    "$dir/fuzz_replay_$t" >"$scratch/gen$n.log" 2>&1
			rc=$?
			if [ "$rc" -ne 0 ]; then
				why="seed generation (FUZZ_WRITE_SEEDS) exited with status $rc"
				fail=$((fail + 1))
				echo "FAIL $dir/fuzz_replay_$t: $why" |
				    tee -a "$scratch/failures"
				tail -n 30 "$scratch/gen$n.log"
				if [ -n "$failfast" ]; then
					stop "$dir/fuzz_replay_$t" "$why"
				fi
			fi
		fi
		inputs=$(count_inputs "$corpus" ${regress:+"$regress"} ${gen:+"$gen"})
		run "$dir" "fuzz_replay_$t" "$corpus" ${regress:+"$regress"} \
		    ${gen:+"$gen"}
	done
done
# Shell tests, once, natively: the OpenWrt init script's UCI-to-flags logic;
# make install, the systemd unit and the Docker files.
if [ -z "$emu" ] && [ -z "$fast" ]; then
	run test openwrt_init_test.sh
	run test packaging_test.sh
fi
# CI shows only the end of the output: every failure again, just above the
# totals, so that the tail names what failed.
if [ -s "$scratch/failures" ]; then
	echo "---- failures:"
	cat "$scratch/failures"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
