#!/bin/sh
# test/fuzz/run.sh SECONDS TARGET... -- what `make fuzz` runs once the targets
# are built: each build/fuzz/fuzz_TARGET in turn, for SECONDS, on a scratch
# copy of its corpus (build/fuzz/corpus/TARGET: test/fuzz/corpus/TARGET plus
# the seeds the harness writes itself, plus certificates made now for the cert
# target), with its dictionary if test/fuzz/TARGET.dict exists.  Prints, per
# target, executions, exec/s, libFuzzer's cov: and ft: from its final line,
# and whether it ran clean; a crashing input is kept in build/fuzz/crashes/
# and the run fails.  Logs: build/fuzz/TARGET.log.
#
# Generated certificates and keys live in a temporary directory (tmpfs when
# /dev/shm exists) and in the scratch corpus only, never in test/fuzz/.
set -u
secs=${1:?usage: test/fuzz/run.sh SECONDS TARGET...}
shift
out=build/fuzz
tmp=$(mktemp -d /dev/shm/derp-fuzz.XXXXXX 2>/dev/null ||
    mktemp -d "${TMPDIR:-/tmp}/derp-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
# The cert target's own key and certificate: one directory for the seed
# writer and the fuzzer, so seeds built around that key load in the fuzzer.
export FUZZ_CERT_DIR="$tmp/cert" FUZZ_DATA=test/data
# The relay harness's key file and listener socket (left behind by a crash).
export FUZZ_TMPDIR="$tmp"
mkdir -p "$FUZZ_CERT_DIR"
ok=0 bad=0

# cert_seed FILE MODE HOST A [B]: a fuzz_cert input (mode byte, host length,
# host, then A and B; mode 1 puts A's length in front, as the harness reads it).
cert_seed() {
	f=$1 mode=$2 host=$3 a=$4 b=${5:-}
	# shellcheck disable=SC2059 # the formats are octal escapes made here
	{
		printf "\\$(printf %03o "$mode")\\$(printf %03o ${#host})%s" "$host"
		if [ "$mode" = 1 ]; then
			n=$(wc -c <"$a")
			printf "\\$(printf %03o $((n / 256)))\\$(printf %03o $((n % 256)))"
		fi
		cat "$a" ${b:+"$b"}
	} >"$f"
}

# RSA and EC keys in every PEM form, and a chain, made by openssl (if any).
openssl_seeds() {
	command -v openssl >/dev/null 2>&1 || return 0
	d=$tmp/openssl
	mkdir -p "$d"
	san='subjectAltName=DNS:derp.example.com,DNS:*.example.net,IP:192.0.2.7,IP:2001:db8::7'
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/rsa8.key" \
	    -out "$d/rsa.crt" -days 2 -subj /CN=derp.example.com -addext "$san" \
	    >/dev/null 2>&1 || return 0
	openssl rsa -in "$d/rsa8.key" -traditional -out "$d/rsa1.key" >/dev/null 2>&1
	openssl ecparam -name prime256v1 -genkey -out "$d/ec.key" >/dev/null 2>&1
	openssl req -x509 -key "$d/ec.key" -out "$d/ec.crt" -days 2 \
	    -subj /CN=derp.example.com -addext "$san" >/dev/null 2>&1
	openssl pkcs8 -topk8 -nocrypt -in "$d/ec.key" -out "$d/ec8.key" >/dev/null 2>&1
	cat "$d/ec.crt" "$d/rsa.crt" >"$d/chain.crt"
	c=$1
	cert_seed "$c/gen-openssl-rsa-combined" 0 derp.example.com "$d/rsa8.key" "$d/rsa.crt"
	cert_seed "$c/gen-openssl-rsa-pkcs1" 1 x.example.net "$d/rsa.crt" "$d/rsa1.key"
	cert_seed "$c/gen-openssl-ec" 1 192.0.2.7 "$d/ec.crt" "$d/ec.key"
	cert_seed "$c/gen-openssl-ec-pkcs8" 1 "[2001:db8::7]" "$d/ec.crt" "$d/ec8.key"
	cert_seed "$c/gen-openssl-chain" 0 derp.example.com "$d/ec.key" "$d/chain.crt"
}

for t in "$@"; do
	bin=$out/fuzz_$t corpus=$out/corpus/$t log=$out/fuzz_$t.log
	crashes=$out/crashes/$t
	rm -rf "$corpus"
	mkdir -p "$corpus" "$crashes"
	if [ -d "test/fuzz/corpus/$t" ]; then
		cp "test/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null
	fi
	FUZZ_ALL_SEEDS=1 FUZZ_WRITE_SEEDS="$corpus" "$bin" >/dev/null 2>&1
	[ "$t" = cert ] && openssl_seeds "$corpus"
	seeds=$(find "$corpus" -type f | wc -l)
	case $t in
	derp) maxlen=140000 ;;	# a 64 KiB packet or two, with the ops around them
	http) maxlen=12000 ;;	# past the 8 KiB head limit
	cert) maxlen=20000 ;;
	*) maxlen=4096 ;;
	esac
	dict=''
	[ -f "test/fuzz/$t.dict" ] && dict="-dict=test/fuzz/$t.dict"
	# -close_fd_mask=2: the relay's log lines go nowhere; libFuzzer and the
	# sanitizers still report (on a duplicate of stderr).
	"$bin" -max_total_time="$secs" -max_len="$maxlen" -timeout=20 \
	    -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=2 \
	    -artifact_prefix="$crashes/" ${dict:+"$dict"} "$corpus" >"$log" 2>&1
	rc=$?
	final=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1)
	cov=$(echo "$final" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$final" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	[ -z "$runs" ] && runs=$(echo "$final" | sed -n 's/^#\([0-9]*\).*/\1/p')
	[ -z "$eps" ] && eps=$(echo "$final" | sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p')
	files=$(find "$corpus" -type f | wc -l)
	if [ "$rc" -eq 0 ] && ! grep -qE '^(==[0-9]+==ERROR|SUMMARY: |fuzz: )' "$log"; then
		verdict=clean
		ok=$((ok + 1))
	else
		verdict="CRASHED (exit $rc)"
		bad=$((bad + 1))
	fi
	printf 'fuzz_%s: %s runs, %s exec/s, cov %s, ft %s, corpus %s -> %s: %s\n' \
	    "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$seeds" "$files" "$verdict"
	if [ "$verdict" != clean ]; then
		grep -E '^(fuzz: |==[0-9]+==ERROR|SUMMARY: |    #[0-9]+ )|Test unit written to' \
		    "$log" | head -n 40 | sed 's/^/  /'
		echo "  (full log: $log; replay: $out/fuzz_$t CRASH_FILE)"
	fi
done
echo "fuzz: $ok clean, $bad crashed (${secs}s each)"
[ "$bad" -eq 0 ]
