#!/bin/sh
# test/run.sh BUILD_DIR... -- run every test program of each build directory
# (build/ as shipped, build/san/ with AddressSanitizer and UBSan) and add up
# their "N passed, N failed[, N skipped]" lines.  A program that crashes or exits
# non-zero without reporting a failure counts as one failure.
#
# TEST_EMULATOR (optional, one word): runs every test program through it, e.g.
# qemu-mips-static for a cross build (test/cross.sh); test_integration is then
# handed a wrapper script that starts derp through it too.
set -u
emu=${TEST_EMULATOR:-}
data=test/data
scratch=$(mktemp -d "${TMPDIR:-/tmp}/derp-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
pass=0 fail=0 skip=0 n=0

run() {
	# POSIX sh has no locals: rdir, not the caller's loop variable dir.
	rdir=$1 prog=$2
	shift 2
	n=$((n + 1))
	log="$scratch/$n.log"
	${emu:+"$emu"} "$rdir/$prog" "$@" >"$log" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
	p=${p:-0} f=${f:-0} s=${s:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "FAIL $rdir/$prog exited with status $rc"
	fi
	grep -E '^(FAIL|skip)' "$log" | sed "s|^|  $rdir/$prog: |"
	if [ "$f" -gt 0 ]; then
		echo "---- last lines of $rdir/$prog output:"
		tail -n 30 "$log"
		echo "----"
	fi
	echo "$rdir/$prog: $p passed, $f failed, $s skipped"
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
}

for dir in "$@"; do
	run "$dir" test_stun "$data"
	run "$dir" test_nacl "$data/derp/nacl_box_vectors.txt"
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
	run "$dir" test_embed "$scratch/embed$n"
	# The short soak (test/soak.c, make soak): idle clients, handshake
	# cycles, a non-reader, a handshake flood, bad input, in seconds.  One
	# load generator, build/soak (make test builds it), drives each build's
	# relay; the sanitizer relay, several times slower, with --tiny counts.
	# Native runs only.
	if [ -z "$emu" ] && [ -x build/soak ]; then
		size=--short
		case $dir in *san*) size=--tiny ;; esac
		run build soak "$size" "$derp"
	fi
	# The fuzz harnesses (test/fuzz/) over their seed corpus and regression
	# inputs, where built; the cert target also over seeds made now around a
	# key it generates (never committed).
	for t in http derp stun json cert tls; do
		[ -x "$dir/fuzz_replay_$t" ] || continue
		export FUZZ_CERT_DIR="$scratch/fuzzcert$n" FUZZ_DATA="$data" \
		    FUZZ_TMPDIR="$scratch"
		gen=''
		if [ "$t" = cert ]; then
			gen=$scratch/fuzzseeds$n
			FUZZ_ALL_SEEDS=1 FUZZ_WRITE_SEEDS="$gen" ${emu:+"$emu"} \
			    "$dir/fuzz_replay_$t" >/dev/null 2>&1
		fi
		run "$dir" "fuzz_replay_$t" "test/fuzz/corpus/$t" \
		    "test/fuzz/regress/$t" ${gen:+"$gen"}
	done
done
# Shell tests, once, natively: the OpenWrt init script's UCI-to-flags logic;
# make install, the systemd unit and the Docker files.
if [ -z "$emu" ]; then
	run test openwrt_init_test.sh
	run test packaging_test.sh
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
