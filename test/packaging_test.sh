#!/bin/sh
# test/packaging_test.sh -- what ships around the binary: `make install` with
# DESTDIR and PREFIX, the systemd unit, the Docker entry point (flags from the
# environment, under today's DERP_ names and the seed image's TAILSCALE_DERP_
# ones), docker-compose.yml, and that the Dockerfile's build stage stays the
# commands .ci/run runs (Docker itself does not run here; compose only parses
# its file, where it is installed).  Prints "ok"/"FAIL" lines and
# "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/derp-pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
pass=0 fail=0 skip=0

check() {
	if [ "$2" = "$3" ]; then
		pass=$((pass + 1))
		echo "ok $1"
	else
		fail=$((fail + 1))
		echo "FAIL $1"
		echo "  got:  $2"
		echo "  want: $3"
	fi
}

# ---- make install ----
make --no-print-directory -s install DESTDIR="$tmp/a" >"$tmp/install.log" 2>&1
check "install: exit status" "$?" 0
check "install: files" "$(cd "$tmp/a" && find . -type f | sort | tr '\n' ' ')" \
	"./usr/local/bin/derp ./usr/local/lib/systemd/system/derp.service "
check "install: binary runs" "$("$tmp/a/usr/local/bin/derp" -version >/dev/null 2>&1 && echo yes)" yes
check "install: modes" "$(stat -c %a "$tmp/a/usr/local/bin/derp" "$tmp/a/usr/local/lib/systemd/system/derp.service" | tr '\n' ' ')" \
	"755 644 "
make --no-print-directory -s install DESTDIR="$tmp/b" PREFIX=/usr >>"$tmp/install.log" 2>&1
unit=$tmp/b/usr/lib/systemd/system/derp.service
check "install PREFIX=/usr: ExecStart" "$(grep -c '^ExecStart=/usr/bin/derp ' "$unit" 2>/dev/null)" 1

# ---- the unit: sandboxing present; systemd's own check where it exists ----
for k in DynamicUser=yes StateDirectory=derp AmbientCapabilities=CAP_NET_BIND_SERVICE \
    ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes; do
	check "unit: $k" "$(grep -c "^$k\$" contrib/derp.service)" 1
done
if command -v systemd-analyze >/dev/null 2>&1; then
	sed "s|/usr/local/bin/derp|$tmp/a/usr/local/bin/derp|" contrib/derp.service >"$tmp/derp.service"
	check "unit: systemd-analyze verify" "$(systemd-analyze verify "$tmp/derp.service" 2>&1)" ""
else
	skip=$((skip + 1))
	echo "skip unit: systemd-analyze verify (no systemd-analyze)"
fi

# ---- Dockerfile: the build stage is .ci/run's commands ----
runs=$(sed -n 's/^RUN //p' Dockerfile | tr '\n' '|')
check "Dockerfile: build steps" "$runs" \
	"apt-get update && apt-get install -y --no-install-recommends make|make static ACME=1|"
check "Dockerfile: .ci/run runs make static ACME=1" "$(grep -c '^make static ACME=1$' .ci/run)" 1
check "Dockerfile: copies make static's output" \
	"$(grep -c '^COPY --from=build /src/build/static/derp ' Dockerfile)" 1
check "make static writes build/static/derp" "$(grep -c '^	out=build/static$' test/cross.sh)" 1
check "compose: ports" "$(grep -cE '"(443:443/tcp|80:80/tcp|3478:3478/udp)"' docker-compose.yml)" 3

# ---- the entry point: environment to flags (derp stood in for by a stub) ----
# As root it adds -user=nobody (derp refuses to keep root otherwise).
asroot=
[ "$(id -u)" = 0 ] && asroot='[-user=nobody]'
# shellcheck disable=SC2016 # the stub's own "$@"
printf '#!/bin/sh\nfor a in "$@"; do printf "[%%s]" "$a"; done\n' >"$tmp/stub"
chmod +x "$tmp/stub"
got=$(env -i PATH="$PATH" DERP_BIN="$tmp/stub" DERP_DOMAIN=derp.example.com \
	sh contrib/docker-entrypoint.sh)
check "entrypoint: defaults" "$got" \
	"[-hostname][derp.example.com][-certmode][manual][-certdir][/app/certs][-a][:443][-http-port][80][-stun-port][3478][-c][/var/lib/derper/derper.key]$asroot"
got=$(env -i PATH="$PATH" DERP_BIN="$tmp/stub" DERP_DOMAIN=203.0.113.7 \
	DERP_CERT_MODE=letsencrypt DERP_CERT_DIR="/my certs" DERP_ADDR=:8443 \
	DERP_HTTP_PORT=-1 DERP_STUN=false DERP_STUN_PORT=3479 DERP_KEY_FILE=/k \
	sh contrib/docker-entrypoint.sh -max-clients 100)
check "entrypoint: every variable, and arguments" "$got" \
	"[-hostname][203.0.113.7][-certmode][letsencrypt][-certdir][/my certs][-a][:8443][-http-port][-1][-stun-port][3479][-c][/k][-stun=false]${asroot}[-max-clients][100]"
if [ "$(id -u)" = 0 ]; then
	got=$(env -i PATH="$PATH" DERP_BIN="$tmp/stub" DERP_DOMAIN=d DERP_USER=root \
		sh contrib/docker-entrypoint.sh)
	check "entrypoint: DERP_USER=root keeps root" "$(echo "$got" | grep -c '\[-allow-root\]')" 1
fi
env -i PATH="$PATH" DERP_BIN="$tmp/stub" sh contrib/docker-entrypoint.sh >/dev/null 2>&1
check "entrypoint: DERP_DOMAIN required" "$?" 2
got=$(env -i PATH="$PATH" DERP_BIN="$tmp/stub" sh contrib/docker-entrypoint.sh 2>&1 >/dev/null)
check "entrypoint: the message names both hostname variables" \
	"$(echo "$got" | grep -c 'DERP_DOMAIN (or TAILSCALE_DERP_HOSTNAME)')" 1

# The seed image's .env names (derper beside tailscaled), and the new DERP_ ones.
# entry VAR=VALUE...: the stub's line for the entry point in that environment.
entry() {
	env -i PATH="$PATH" DERP_BIN="$tmp/stub" "$@" sh contrib/docker-entrypoint.sh
}
rest="[-certdir][/app/certs][-a][:443][-http-port][80][-stun-port][3478][-c][/var/lib/derper/derper.key]"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org TAILSCALE_DERP_CERTMODE=letsencrypt \
	TAILSCALE_DERP_VERIFY_CLIENTS=true)
check "entrypoint: the seed's names" "$got" \
	"[-hostname][derp.example.org][-certmode][letsencrypt]${rest}[-bootstrap-dns-names][derp.example.org][-verify-clients=true]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org)
check "entrypoint: seed's hostname alone (manual, no -verify-clients)" "$got" \
	"[-hostname][derp.example.org][-certmode][manual]${rest}[-bootstrap-dns-names][derp.example.org]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org TAILSCALE_DERP_VERIFY_CLIENTS=)
check "entrypoint: TAILSCALE_DERP_VERIFY_CLIENTS empty passed as given" "$got" \
	"[-hostname][derp.example.org][-certmode][manual]${rest}[-bootstrap-dns-names][derp.example.org][-verify-clients=]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org TAILSCALE_DERP_CERTMODE=letsencrypt \
	TAILSCALE_DERP_VERIFY_CLIENTS=true DERP_DOMAIN=203.0.113.7 DERP_CERT_MODE=manual \
	DERP_VERIFY_CLIENTS=false)
check "entrypoint: DERP_ names win over the seed's" "$got" \
	"[-hostname][203.0.113.7][-certmode][manual]${rest}[-verify-clients=false]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org TAILSCALE_DERP_VERIFY_CLIENTS=true \
	DERP_VERIFY_CLIENTS=)
check "entrypoint: DERP_VERIFY_CLIENTS set empty wins too" "$got" \
	"[-hostname][derp.example.org][-certmode][manual]${rest}[-bootstrap-dns-names][derp.example.org][-verify-clients=]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org DERP_BOOTSTRAP_DNS_NAMES=a.example,b.example)
check "entrypoint: DERP_BOOTSTRAP_DNS_NAMES over the seed hostname's" "$got" \
	"[-hostname][derp.example.org][-certmode][manual]${rest}[-bootstrap-dns-names][a.example,b.example]$asroot"
got=$(entry TAILSCALE_DERP_HOSTNAME=derp.example.org DERP_BOOTSTRAP_DNS_NAMES=)
check "entrypoint: DERP_BOOTSTRAP_DNS_NAMES set empty: none" "$got" \
	"[-hostname][derp.example.org][-certmode][manual]$rest$asroot"
got=$(env -i PATH="$PATH" DERP_BIN="$tmp/stub" DERP_DOMAIN=derp.example.com \
	DERP_BOOTSTRAP_DNS_NAMES=derp.example.com DERP_VERIFY_CLIENTS=true \
	DERP_VERIFY_CLIENT_URL="https://admit.example/check?a=1 b" \
	DERP_VERIFY_CLIENT_URL_FAIL_OPEN=false DERP_SOCKET=/run/ts/tailscaled.sock \
	TAILSCALE_DERP_VERIFY_CLIENTS= sh contrib/docker-entrypoint.sh -max-clients 100)
check "entrypoint: the new DERP_ variables, and arguments" "$got" \
	"[-hostname][derp.example.com][-certmode][manual]${rest}[-bootstrap-dns-names][derp.example.com][-verify-clients=true][-verify-client-url][https://admit.example/check?a=1 b][-verify-client-url-fail-open=false][-socket][/run/ts/tailscaled.sock]${asroot}[-max-clients][100]"
got=$(entry DERP_DOMAIN=d DERP_VERIFY_CLIENT_URL_FAIL_OPEN=)
check "entrypoint: DERP_VERIFY_CLIENT_URL_FAIL_OPEN empty passed as given" "$got" \
	"[-hostname][d][-certmode][manual]${rest}[-verify-client-url-fail-open=]$asroot"
got=$(entry DERP_DOMAIN=d DERP_VERIFY_CLIENT_URL= DERP_SOCKET= DERP_CERT_MODE= \
	TAILSCALE_DERP_CERTMODE=letsencrypt)
check "entrypoint: other empty DERP_ variables count as unset" "$got" \
	"[-hostname][d][-certmode][letsencrypt]$rest$asroot"

got=$(env -i PATH="$PATH" DERP_DOMAIN=127.0.0.1 DERP_STUN=false DERP_BIN="$tmp/a/usr/local/bin/derp" \
	sh contrib/docker-entrypoint.sh -version 2>&1)
check "entrypoint: flags accepted by derp" "$got" "$("$tmp/a/usr/local/bin/derp" -version)"
got=$(env -i PATH="$PATH" TAILSCALE_DERP_HOSTNAME=127.0.0.1 TAILSCALE_DERP_CERTMODE=manual \
	DERP_STUN=false DERP_VERIFY_CLIENTS=false DERP_VERIFY_CLIENT_URL_FAIL_OPEN=false \
	DERP_SOCKET=/run/ts/tailscaled.sock DERP_BIN="$tmp/a/usr/local/bin/derp" \
	sh contrib/docker-entrypoint.sh -version 2>&1)
check "entrypoint: the new flags accepted by derp" "$got" "$("$tmp/a/usr/local/bin/derp" -version)"
env -i PATH="$PATH" TAILSCALE_DERP_HOSTNAME=127.0.0.1 TAILSCALE_DERP_VERIFY_CLIENTS= \
	DERP_STUN=false DERP_BIN="$tmp/a/usr/local/bin/derp" \
	sh contrib/docker-entrypoint.sh -version >/dev/null 2>&1
check "entrypoint: TAILSCALE_DERP_VERIFY_CLIENTS empty: derp exits 2, as derper" "$?" 2

# ---- docker-compose.yml: every variable the entry point reads is passed by
# name (unset stays unset), and the optional tailscaled shares its socket ----
missing=$(grep -o '\b\(TAILSCALE_\)\{0,1\}DERP_[A-Z][A-Z_]*' contrib/docker-entrypoint.sh |
	sort -u | while read -r v; do
		case $v in DERP_BIN | DERP_CERT_DIR) continue ;; esac
		grep -qx "      - $v" docker-compose.yml || printf ' %s' "$v"
	done)
check "compose: passes the entry point's variables by name" "$missing" ""
check "compose: derp and tailscaled share /var/run/tailscale" \
	"$(grep -c '^      - tailscale-socket:/var/run/tailscale$' docker-compose.yml)" 2
check "compose: tailscaled's socket where derp looks" \
	"$(grep -c '^      - TS_SOCKET=/var/run/tailscale/tailscaled.sock$' docker-compose.yml)" 1
check "compose: tailscaled only with --profile verify" \
	"$(sed -n '/^  tailscaled:$/,/^  [a-z]/p' docker-compose.yml | grep -c '^      - verify$')" 1
# Compose's own parse, where it is installed (v2 plugin or v1), with no .env.
mkdir "$tmp/compose"
if docker compose version >/dev/null 2>&1; then
	compose="docker compose"
elif docker-compose version >/dev/null 2>&1; then
	compose=docker-compose
else
	compose=
fi
if [ -n "$compose" ]; then
	# shellcheck disable=SC2086 # "docker compose" is two words
	got=$(env -i PATH="$PATH" HOME="$tmp" $compose --project-directory "$tmp/compose" \
		-f docker-compose.yml config -q 2>&1)
	check "compose: $compose config" "$got" ""
else
	skip=$((skip + 1))
	echo "skip compose: config (no docker compose, no docker-compose)"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
