#!/bin/sh
# test/cross.sh TARGET -- derp built against BearSSL from source, for another CPU
# or C library.
#
#   mips, mipsel, armhf, aarch64   derp and every test program, built with
#       Debian's cross compiler (gcc-TRIPLET, libc6-dev-*-cross) and linked
#       -static, then the suite run under qemu-user: test/run.sh with
#       TEST_EMULATOR=qemu-ARCH-static (no binfmt_misc needed: run.sh hands
#       test_integration a wrapper that starts derp through the emulator).
#       32-bit targets get a 64-bit time_t (_TIME_BITS=64), as OpenWrt's musl has.
#   musl     the same for x86-64 with musl-gcc, run natively.
#   static   only the release binary: build/static/derp for this machine's CPU
#       (x86-64 here), musl, static, size-tuned and stripped (make static; the
#       Dockerfile's build stage).
#
# BearSSL comes from Debian's bearssl source package (apt-get source, unpacked
# once into build/cross/src/) and is built with its own Makefile, one build
# directory per target.  As root on Debian, missing packages are installed with
# apt-get (and deb-src entries added when there are none); anyone else is told
# what to install.  Test runs end with run.sh's "N passed, N failed, N skipped"
# line and its exit status.
set -eu

target=${1:-}
emu='' debarch='' tbits=''
case $target in
mips)    triplet=mips-linux-gnu      debarch=mips   emu=qemu-mips-static ;;
mipsel)  triplet=mipsel-linux-gnu    debarch=mipsel emu=qemu-mipsel-static ;;
armhf)   triplet=arm-linux-gnueabihf debarch=armhf  emu=qemu-arm-static ;;
aarch64) triplet=aarch64-linux-gnu   debarch=arm64  emu=qemu-aarch64-static ;;
musl | static) triplet='' ;;
*)
	echo "usage: test/cross.sh mips|mipsel|armhf|aarch64|musl|static" >&2
	exit 2
	;;
esac
case $target in
mips | mipsel | armhf) tbits='-D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64' ;;
esac

cd "$(dirname "$0")/.."
top=$(pwd)
srcdir=build/cross/src

is_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# Debian packages: install the missing ones (root) or name them (anyone else).
need_pkgs() {
	missing=''
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		    grep -q 'install ok installed'; then
			missing="$missing $p"
		fi
	done
	[ -z "$missing" ] && return 0
	if ! is_root; then
		echo "cross.sh: missing packages:$missing (apt-get install them as root)" >&2
		exit 1
	fi
	echo "cross.sh: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# deb-src entries for Debian's own archives, derived from the deb ones, in a
# file of our own (the system's files stay as they are).
add_deb_src() {
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
		    >/etc/apt/sources.list.d/derp-deb-src.sources
	elif [ -f /etc/apt/sources.list ]; then
		sed -n 's/^deb \(.*debian.*\)$/deb-src \1/p' /etc/apt/sources.list \
		    >/etc/apt/sources.list.d/derp-deb-src.list
	fi
	apt-get update -qq
}

# BearSSL's source, once for every target: build/cross/src/bearssl-VERSION/.
find_bearssl() {
	for d in "$srcdir"/bearssl-*/; do
		if [ -f "$d/inc/bearssl.h" ]; then
			bsrc=${d%/}
			return 0
		fi
	done
	return 1
}
bearssl_source() {
	find_bearssl && return 0
	need_pkgs dpkg-dev
	if [ -z "$(apt-cache showsrc bearssl 2>/dev/null)" ]; then
		if ! is_root; then
			echo "cross.sh: no deb-src entries: add them (or unpack BearSSL 0.6 into $srcdir/bearssl-0.6/)" >&2
			exit 1
		fi
		echo "cross.sh: adding deb-src entries for apt-get source"
		add_deb_src
	fi
	mkdir -p "$srcdir"
	(cd "$srcdir" && apt-get source -qq -o APT::Sandbox::User=root bearssl)
	find_bearssl && return 0
	echo "cross.sh: apt-get source bearssl left no bearssl-*/inc/bearssl.h in $srcdir" >&2
	exit 1
}

if [ -n "$triplet" ]; then
	need_pkgs make "gcc-$triplet" "libc6-dev-$debarch-cross" qemu-user-static
	cc=$triplet-gcc ar=$triplet-ar strip=$triplet-strip
else
	need_pkgs make gcc musl-tools
	cc=musl-gcc ar=ar strip=strip
fi
bearssl_source

# The Makefile's rules do not see flags change: start afresh when they do.
fresh() {
	if [ "$(cat "$1/.flags" 2>/dev/null)" != "$2" ]; then
		rm -rf "$1"
		mkdir -p "$1"
		printf '%s\n' "$2" >"$1/.flags"
	fi
}

# BearSSL's own Makefile, one build directory per target inside its tree.
# static: -Os with a section per function, so --gc-sections drops what derp
# never calls, and no unwind tables (C never unwinds; .eh_frame was 23 KB of
# the firmware binary); otherwise BearSSL's default flags (-W -Wall -Os -fPIC).
bbuild=build-$target
bcflags='-W -Wall -Os -fPIC'
nounwind='-fno-asynchronous-unwind-tables -fno-unwind-tables'
[ "$target" = static ] &&
    bcflags="-W -Wall -Os -ffunction-sections -fdata-sections $nounwind"
fresh "$bsrc/$bbuild" "$cc $bcflags $tbits"
if [ ! -f "$bsrc/$bbuild/libbearssl.a" ]; then
	echo "cross.sh: building BearSSL for $target"
	make -C "$bsrc" -s -j2 CONF=Unix BUILD="$bbuild" CC="$cc" AR="$ar" \
	    CFLAGS="$bcflags $tbits" lib >/dev/null
fi
binc=$top/$bsrc/inc
blib=$top/$bsrc/$bbuild/libbearssl.a

if [ "$target" = static ]; then
	# ACME=0 (make static's default): the firmware build, under 250 KB;
	# ACME=1 adds the ACME client (the Docker image).  Bootstrap DNS and
	# the webhook's TLS client, the mesh and WebSocket follow ACME unless
	# BOOTDNS, HOOKTLS, MESH and WS say (Makefile).
	acme=${ACME:-0}
	bootdns=${BOOTDNS:-$acme}
	hooktls=${HOOKTLS:-$acme}
	mesh=${MESH:-$acme}
	ws=${WS:-$acme}
	# derp probe (probe.c) follows ACME too: with BearSSL's TLS client
	# and X.509 checker it adds 49 KB to the firmware build (246,824 ->
	# 295,976 bytes), over its budget; 29 KB to ACME=1's.  PROBE=1 puts
	# it in anyway (check the router's relay from another machine).
	probe=${PROBE:-$acme}
	# Our 64-bit X25519 and P-256 signer (x25519.c, p256.c) follow ACME
	# too: they add 8 KB (250,920 -> 259,112 bytes, over the budget)
	# and a 32 KB table; FASTEC=1 puts them in (a 64-bit router with
	# many clients; 32-bit targets build BearSSL's code either way).
	fastec=${FASTEC:-$acme}
	out=build/static
	cflags="-Os -ffunction-sections -fdata-sections $nounwind"
	ldflags='-static -s -Wl,--gc-sections'
	conf="ACME=$acme BOOTDNS=$bootdns HOOKTLS=$hooktls MESH=$mesh WS=$ws PROBE=$probe FASTEC=$fastec"
	fresh "$out" "$cc $cflags $ldflags $blib $conf"
	make --no-print-directory CC="$cc" CFLAGS="$cflags" LDFLAGS="$ldflags" \
	    BEARSSL_CFLAGS="-I$binc" BEARSSL_LIBS="$blib" TESTOUT="$out/" \
	    ACME="$acme" BOOTDNS="$bootdns" HOOKTLS="$hooktls" MESH="$mesh" \
	    WS="$ws" PROBE="$probe" FASTEC="$fastec" "$out/derp"
	size=$(wc -c <"$out/derp")
	echo "cross.sh: $out/derp: $size bytes (static, stripped, $conf)"
	# The firmware build's budget: 250 KB.
	if [ "$acme" = 0 ] && [ "$bootdns" = 0 ] && [ "$hooktls" = 0 ] &&
	    [ "$size" -gt 256000 ]; then
		echo "cross.sh: $out/derp is over 250 KB (256000 bytes)" >&2
		exit 1
	fi
	exit 0
fi

# derp and every test program of make test, through the Makefile's own rules
# (TESTOUT, target testout).
out=build/cross/$target
fresh "$out" "$cc -O2 -g $tbits -static $blib"
make --no-print-directory CC="$cc" CFLAGS="-O2 -g $tbits" LDFLAGS=-static \
    BEARSSL_CFLAGS="-I$binc" BEARSSL_LIBS="$blib" TESTOUT="$out/" testout
"$strip" -o "$out/derp.stripped" "$out/derp"
echo "cross.sh: $out/derp: $(wc -c <"$out/derp.stripped") bytes stripped (static)"

export TEST_EMULATOR="$emu"
exec sh test/run.sh "$out"
