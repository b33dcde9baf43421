#!/bin/sh
# test/mutants.sh [PATTERN] -- mutation testing (make mutants).
#
# Copies the project's files (git ls-files, tracked and untracked-not-ignored,
# from the working tree, so uncommitted edits count) into a scratch directory
# under ${TMPDIR:-/tmp}, builds the plain test programs there (build/, never
# build/san) and runs the fast suite unmutated: if that baseline fails, every
# mutant would look caught, so the script stops.  Then, for each mutation of
# test/mutants.txt (only those whose id, file or description matches the grep -iE
# PATTERN, if given), one at a time: apply it to the pristine file (a fixed
# string that must occur exactly once), rebuild, run
#     RUN_FAST=1 RUN_FAILFAST=1 sh test/run.sh build
# (no soak, no shell packaging tests, stop at the first failing program), and
# record which test caught it, or SURVIVED.  Prints a table and totals; exits 1
# if any mutant survived, did not compile, or its list entry is stale.
#
# Environment: MUTANTS_TIMEOUT (seconds per suite run, default 600: a run cut
# off counts as caught, flagged "timeout!"), MUTANTS_KEEP=1 keeps the scratch
# directory (tree, logs) for a look afterwards.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
list=$top/test/mutants.txt
pattern=${1:-}
limit=${MUTANTS_TIMEOUT:-600}
start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/derp-mutants.XXXXXX") || exit 2
cleanup() {
	if [ -n "${MUTANTS_KEEP:-}" ]; then
		echo "scratch directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tree=$work/tree pristine=$work/pristine logs=$work/logs ml=$work/list
mkdir -p "$tree" "$pristine" "$logs" "$ml"

die() {
	echo "mutants: $*" >&2
	exit 2
}

# ---- the list: blocks of id/file/from/to/breaks, one file per field
count=$(awk -v dir="$ml" '
	function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
	function bad(msg) { printf "test/mutants.txt:%d: %s\n", NR, msg > "/dev/stderr"; err = 1; exit 1 }
	BEGIN { split("id file from to breaks", order, " "); pos = 1; n = 0 }
	/^[ \t]*#/ || /^[ \t]*$/ { next }
	{
		i = index($0, ":")
		if (i == 0)
			bad("expected \"" order[pos] ": ...\"")
		key = substr($0, 1, i - 1)
		val = trim(substr($0, i + 1))
		if (key != order[pos])
			bad("expected \"" order[pos] ":\", got \"" key ":\"")
		if (key == "id") {
			n++
			if (val == "" || val in seen)
				bad("empty or duplicate id \"" val "\"")
			seen[val] = 1
		}
		if (val == "" && key != "to")
			bad("empty " key)
		f = dir "/" n "." key
		printf "%s", val > f
		close(f)
		pos = pos % 5 + 1
	}
	END {
		if (err)
			exit 1
		if (pos != 1)
			bad("entry " n " is incomplete")
		print n
	}' "$list") || die "bad list $list"
[ "$count" -gt 0 ] || die "no mutations in $list"

field() {	# field N KEY
	cat "$ml/$1.$2"
}

selected=''
nsel=0
i=1
while [ "$i" -le "$count" ]; do
	if [ -z "$pattern" ] || printf '%s %s %s\n' "$(field "$i" id)" \
	    "$(field "$i" file)" "$(field "$i" breaks)" | grep -qiE -e "$pattern"; then
		selected="$selected $i"
		nsel=$((nsel + 1))
	fi
	i=$((i + 1))
done
[ "$nsel" -gt 0 ] || die "no mutation matches \"$pattern\""

# ---- the scratch tree
(cd "$top" && git ls-files --cached --others --exclude-standard) >"$work/files" ||
    die "git ls-files failed (run from a git checkout)"
while IFS= read -r f; do
	[ -f "$top/$f" ] || continue	# deleted in the working tree
	case $f in */*) mkdir -p "$tree/${f%/*}" ;; esac
	cp -p "$top/$f" "$tree/$f" || die "cannot copy $f"
done <"$work/files"
# Pristine copies of the files the selected mutations change.
for i in $selected; do
	f=$(field "$i" file)
	case $f in */* | '') continue ;; esac	# top-level sources only
	[ -f "$pristine/$f" ] || [ ! -f "$tree/$f" ] ||
	    cp -p "$tree/$f" "$pristine/$f" || die "cannot copy $f"
done

# Occurrences of the fixed string $M_FROM in file $1.
occurrences() {
	awk 'BEGIN { f = ENVIRON["M_FROM"]; n = 0 }
	{ s = $0; while ((i = index(s, f)) > 0) { n++; s = substr(s, i + length(f)) } }
	END { print n }' "$1"
}

# Pristine $1 with $M_FROM replaced by $M_TO, to stdout.
mutate() {
	awk 'BEGIN { f = ENVIRON["M_FROM"]; t = ENVIRON["M_TO"] }
	{ i = index($0, f); if (i > 0) $0 = substr($0, 1, i - 1) t substr($0, i + length(f)); print }' "$1"
}

# Stale entries said at once (they are reported again in the table).
for i in $selected; do
	M_FROM=$(field "$i" from)
	export M_FROM
	file=$(field "$i" file)
	n=0
	[ -f "$pristine/$file" ] && n=$(occurrences "$pristine/$file")
	[ "$n" -eq 1 ] || echo "mutants: LIST ERROR: $(field "$i" id): \"from\" text found $n times in $file (must be once)" >&2
done

# The programs of `make test`'s plain build, from the Makefile's TESTS.
printf 'mutants-print-tests:\n\t@echo $(TESTS)\n' >"$work/print.mk"
tests=$(cd "$tree" && make -s --no-print-directory -f Makefile -f "$work/print.mk" \
    mutants-print-tests 2>/dev/null)
[ -n "$tests" ] || tests='test_stun test_nacl test_cert test_units test_integration test_embed'
targets=build/derp
for t in $tests; do
	targets="$targets build/$t"
done

build() {	# build LOG
	(cd "$tree" && make -j2 --no-print-directory $targets) >"$1" 2>&1
}

to=''
command -v timeout >/dev/null 2>&1 && to="timeout -k 10 $limit"

suite() {	# suite LOG; sets rc
	(cd "$tree" && RUN_FAST=1 RUN_FAILFAST=1 $to sh test/run.sh build) >"$1" 2>&1
	rc=$?
}

# The first failure, shortened: "program: first FAIL line".
first_failure() {
	{
		sed -n 's/^first failure: //p' "$1"
		grep -E '^  [^ ]+: FAIL|^FAIL ' "$1" | sed 's/^  //'
	} | head -n 1 | sed -e 's/^FAIL //' -e 's|^[^ :]*/||' -e 's/: FAIL /: /' \
	    -e 's/[[:space:]][[:space:]]*/ /g' | cut -c 1-100
}

secs() {
	echo $(($(date +%s) - $1))
}

echo "mutants: $nsel of $count mutations from test/mutants.txt; scratch tree $tree"
echo "mutants: baseline (build and fast suite, unmutated)..."
t0=$(date +%s)
build "$logs/baseline.build" || {
	tail -n 30 "$logs/baseline.build" >&2
	die "the unmutated tree does not build"
}
suite "$logs/baseline.run"
if [ "$rc" -ne 0 ]; then
	grep -E '^(  [^ ]+: )?FAIL|^first failure|passed, .* failed' "$logs/baseline.run" | tail -n 20 >&2
	die "the fast suite fails on the unmutated tree (exit $rc): fix that first, or every mutant looks caught"
fi
echo "mutants: baseline passes ($(secs "$t0") s: $(tail -n 1 "$logs/baseline.run"))"
grep -q RUN_FAILFAST "$tree/test/run.sh" ||
	echo "mutants: note: test/run.sh has no RUN_FAST/RUN_FAILFAST yet; every run is the full suite"

# ---- one mutant at a time
caught=0 survived=0 nocompile=0 listerr=0 timeouts=0 k=0
: >"$work/table"
for i in $selected; do
	k=$((k + 1))
	id=$(field "$i" id) file=$(field "$i" file)
	M_FROM=$(field "$i" from) M_TO=$(field "$i" to)
	export M_FROM M_TO
	t0=$(date +%s)
	verdict='' by=''
	if [ ! -f "$pristine/$file" ]; then
		verdict='LIST ERROR' by="file $file is not a file of the tree"
	else
		n=$(occurrences "$pristine/$file")
		if [ "$n" -ne 1 ]; then
			verdict='LIST ERROR' by="\"from\" text found $n times in $file (must be once)"
		fi
	fi
	if [ -z "$verdict" ]; then
		mutate "$pristine/$file" >"$tree/$file"
		if ! build "$logs/$id.build"; then
			verdict='DID NOT COMPILE'
			by=$(grep -m 1 'error' "$logs/$id.build" | cut -c 1-100)
		else
			suite "$logs/$id.run"
			if [ "$rc" -eq 0 ]; then
				verdict=SURVIVED by='-'
			elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
				verdict='timeout!'
				by="whole run cut off after $limit s; $(first_failure "$logs/$id.run")"
			else
				verdict=caught
				by=$(first_failure "$logs/$id.run")
				[ -n "$by" ] || by="test/run.sh exited $rc"
			fi
		fi
		cp "$pristine/$file" "$tree/$file"	# new mtime: rebuilt next time
	fi
	case $verdict in
	caught) caught=$((caught + 1)) ;;
	timeout!) caught=$((caught + 1)) timeouts=$((timeouts + 1)) ;;
	SURVIVED) survived=$((survived + 1)) ;;
	'DID NOT COMPILE') nocompile=$((nocompile + 1)) ;;
	*) listerr=$((listerr + 1)) ;;
	esac
	printf '[%2d/%d] %-28s %-7s %-15s %4s s  %s\n' "$k" "$nsel" "$id" "$file" \
	    "$verdict" "$(secs "$t0")" "$by"
	# Tab-separated, so no field may be empty (read collapses tabs).
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$id" "$file" "$verdict" "${by:--}" \
	    "$(field "$i" breaks)" >>"$work/table"
done

# ---- the table
elapsed=$(secs "$start")
echo
echo "Mutation testing: what each mutation breaks, and the first test that caught it"
printf '%3s  %-28s %-7s %-15s %s\n' '#' mutation file verdict 'caught by (program: first FAIL line)'
while IFS="$(printf '\t')" read -r k id file verdict by breaks; do
	printf '%3s  %-28s %-7s %-15s %s\n' "$k" "$id" "$file" "$verdict" "$by"
	printf '%3s  %s\n' '' "breaks: $breaks"
done <"$work/table"
echo
echo "$nsel mutations: $caught caught ($timeouts by a timeout of the whole run), $survived SURVIVED, $nocompile did not compile, $listerr list errors"
echo "elapsed $((elapsed / 60)) min $((elapsed % 60)) s, $((elapsed / nsel)) s per mutation (baseline included)"
if [ $((survived + nocompile + listerr)) -gt 0 ]; then
	[ "$listerr" -eq 0 ] || echo "mutants: stale entries in test/mutants.txt: update their from: text" >&2
	exit 1
fi
exit 0
