#!/bin/sh
# test/openwrt_init_test.sh -- the UCI-to-flags logic of openwrt/derp/files/derp.init,
# run here with stand-ins for the OpenWrt shell functions it calls (config_load,
# config_get, config_get_bool, config_list_foreach, procd_*).  Each case sets UCI options, runs
# start_service and compares the command line, the watched files and the
# triggers procd would get, and has a real derp parse the command line.
# Prints "ok"/"FAIL" lines and "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.." || exit 1
init=openwrt/derp/files/derp.init
tmp=$(mktemp -d "${TMPDIR:-/tmp}/derp-owrt.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
pass=0 fail=0 skip=0

# ---- stand-ins: UCI values live in CONFIG_<section>_<option>, as in OpenWrt ----
uci_reset() {
	for v in $(set | sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1/p'); do
		unset "$v"
	done
	cmd='' files='' limits='' params='' triggers='' instances=0
}
uci_set() { eval "CONFIG_$1_$2=\$3"; }
# uci_list SECTION OPTION VALUE: a 'list' line, stored as OpenWrt's list()
# does: _ITEMn and _LENGTH, and the values joined with spaces in the option.
uci_list() {
	eval "_n=\$((\${CONFIG_$1_$2_LENGTH:-0} + 1))"
	# shellcheck disable=SC2154 # _n is set by the eval above
	eval "CONFIG_$1_$2_ITEM$_n=\$3 CONFIG_$1_$2_LENGTH=$_n"
	eval "CONFIG_$1_$2=\${CONFIG_$1_$2:+\$CONFIG_$1_$2 }\$3"
}
config_load() { [ "$1" = derp ] || echo "config_load $1" >>"$tmp/unexpected"; }
config_get() { eval "$1=\${CONFIG_$2_$3:-\${4:-}}"; }
config_get_bool() {
	eval "_b=\${CONFIG_$2_$3:-}"
	# shellcheck disable=SC2154 # _b is set by the eval above
	case $_b in
	1 | on | true | yes | enabled) _b=1 ;;
	0 | off | false | no | disabled) _b=0 ;;
	*) _b=${4:-0} ;;
	esac
	eval "$1=\$_b"
}
# As OpenWrt's: FUNCTION VALUE [ARGS] for each item of a list; nothing for an
# option (no _LENGTH).
config_list_foreach() {
	_s=$1 _o=$2 _f=$3
	shift 3
	eval "_len=\${CONFIG_${_s}_${_o}_LENGTH:-0}"
	_c=1
	# shellcheck disable=SC2154 # _len is set by the eval above
	while [ "$_c" -le "$_len" ]; do
		eval "_val=\${CONFIG_${_s}_${_o}_ITEM$_c:-}"
		# shellcheck disable=SC2154 # _val is set by the eval above
		"$_f" "$_val" "$@"
		_c=$((_c + 1))
	done
}
# Arguments are recorded one per word, each in [brackets], so spaces show.
words() { for w in "$@"; do printf '[%s]' "$w"; done; }
procd_open_instance() { instances=$((instances + 1)); }
procd_close_instance() { :; }
procd_set_param() {
	k=$1
	shift
	case $k in
	command) cmd=$(words "$@") ;;
	file) files=$(words "$@") ;;
	limits) limits=$(words "$@") ;;
	*) params="$params $k" ;;
	esac
}
procd_append_param() {
	k=$1
	shift
	[ "$k" = command ] && cmd="$cmd$(words "$@")"
}
procd_add_reload_trigger() { triggers="$triggers reload:$1"; }
procd_add_raw_trigger() { triggers="$triggers raw:$1:$(words "$@")"; }

export DERP_RUNDIR="$tmp/run"
# shellcheck source=openwrt/derp/files/derp.init disable=SC1091
. "./$init"

check() {
	name=$1 got=$2 want=$3
	if [ "$got" = "$want" ]; then
		pass=$((pass + 1))
		echo "ok $name"
	else
		fail=$((fail + 1))
		echo "FAIL $name"
		echo "  got:  $got"
		echo "  want: $want"
	fi
}

# Each start is recorded afresh, as procd would get it; the UCI values stay.
start() {
	rc=0 cmd='' files='' limits='' params='' instances=0
	start_service 2>"$tmp/err" || rc=$?
}

# The recorded command line, plus -version, through a real derp's flag parser.
accepted() {
	what=$1 bin=''
	for b in build/derp ./derp; do
		if [ -x "$b" ]; then
			bin=$b
			break
		fi
	done
	if [ -z "$bin" ]; then
		# make test builds it first: its absence is a broken run.
		fail=$((fail + 1))
		echo "FAIL $what: no derp binary built (build/derp or ./derp)"
		return
	fi
	printf '%s\n' "$cmd" | sed 's/^\[//; s/\]$//; s/\]\[/\n/g' | tail -n +2 >"$tmp/args"
	set --
	while IFS= read -r a; do
		set -- "$@" "$a"
	done <"$tmp/args"
	check "$what" "$("$bin" "$@" -version 2>&1)" "$("$bin" -version)"
}

# ---- the shipped /etc/config/derp, enabled ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main certmode manual
uci_set main certdir "$tmp/certs"
uci_set main addr :443
uci_set main http_port 80
uci_set main stun 1
uci_set main stun_port 3478
uci_set main key_file "$tmp/keys/derp.key"
uci_set main max_clients 256
uci_set main user nobody
uci_set main syslog 1
uci_set main verbose 0
start
check "default config: started" "$rc $instances" "0 1"
check "default config: command" "$cmd" \
	"[/usr/bin/derp][-hostname][derp.example.com][-certmode][manual][-certdir][$tmp/certs][-c][$tmp/keys/derp.key][-user][nobody][-syslog][-a][:443][-http-port][80][-stun-port][3478][-max-clients][256]"
check "default config: watched files" "$files" \
	"[/etc/config/derp][$tmp/certs/derp.example.com.crt][$tmp/certs/derp.example.com.key]"
accepted "default config: derp accepts the flags"
check "default config: open-file limit" "$limits" "[nofile=288 288]"
check "default config: respawn and logs" "$params" " respawn stdout stderr"
check "default config: key and cert directories made" \
	"$([ -d "$tmp/keys" ] && [ -d "$tmp/certs" ] && echo yes)" yes

# ---- disabled (the shipped default): no instance, no error ----
uci_reset
uci_set main hostname derp.example.com
start
check "disabled: no instance" "$rc $instances" "0 0"
uci_set main enabled no
start
check "enabled 'no': no instance" "$rc $instances" "0 0"

# ---- the minimum: hostname only; derp's defaults for everything else ----
uci_reset
uci_set main enabled on
uci_set main hostname 203.0.113.7
start
check "minimal: command" "$cmd" \
	"[/usr/bin/derp][-hostname][203.0.113.7][-certmode][manual][-certdir][/etc/derp/certs][-c][/etc/derp/derp.key][-user][nobody][-syslog]"
check "minimal: no limits without max_clients" "$limits" ""

# ---- plain HTTP behind a proxy, STUN off, options with spaces ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main certmode letsencrypt
uci_set main certdir "$tmp/le certs"
uci_set main key_file "$tmp/derp.key"
uci_set main addr 127.0.0.1:8080
uci_set main http_port -1
uci_set main stun 0
uci_set main home blank
uci_set main accept_connection_limit 50
uci_set main accept_connection_burst 100
uci_set main rate_config /etc/derp/rate.json
start
check "plain HTTP: command" "$cmd" \
	"[/usr/bin/derp][-hostname][derp.example.com][-certmode][letsencrypt][-certdir][$tmp/le certs][-c][$tmp/derp.key][-user][nobody][-syslog][-a][127.0.0.1:8080][-http-port][-1][-stun=false][-home][blank][-accept-connection-limit][50][-accept-connection-burst][100][-rate-config][/etc/derp/rate.json]"
accepted "plain HTTP: derp accepts the flags"
check "letsencrypt: watches the autocert cache file" "$files" \
	"[/etc/config/derp][$tmp/le certs/derp.example.com]"

# ---- no hostname: refused with a message ----
uci_reset
uci_set main enabled 1
uci_set main hostname ''
start
check "no hostname: refused" "$rc $instances" "1 0"
check "no hostname: says which option" "$(grep -c 'option hostname' "$tmp/err")" 1

# ---- certmode acme: OpenWrt's acme files linked as derp's manual ones ----
uci_reset
mkdir -p "$tmp/acme"
uci_set main enabled 1
uci_set main hostname router.example.net
uci_set main certmode acme
uci_set main acme_dir "$tmp/acme"
uci_set main key_file "$tmp/derp.key"
start
check "acme, not issued yet: waits" "$rc $instances" "1 0"
check "acme, not issued yet: says so" "$(grep -c 'no certificate from acme' "$tmp/err")" 1
echo chain >"$tmp/acme/router.example.net.fullchain.crt"
echo key >"$tmp/acme/router.example.net.key"
start
check "acme: started" "$rc $instances" "0 1"
check "acme: command" "$cmd" \
	"[/usr/bin/derp][-hostname][router.example.net][-certmode][manual][-certdir][$tmp/run/certs][-c][$tmp/derp.key][-user][nobody][-syslog]"
check "acme: certificate linked" "$(cat "$tmp/run/certs/router.example.net.crt" "$tmp/run/certs/router.example.net.key")" \
	"chain
key"
check "acme: watches the acme files" "$files" \
	"[/etc/config/derp][$tmp/acme/router.example.net.fullchain.crt][$tmp/acme/router.example.net.key]"

# ---- user root: derp is told to keep root ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main user root
start
check "user root: -allow-root" "$cmd" \
	"[/usr/bin/derp][-hostname][derp.example.com][-certmode][manual][-certdir][/etc/derp/certs][-c][/etc/derp/derp.key][-allow-root][-syslog]"
accepted "user root: derp accepts the flags"

# ---- logging: syslog on unless 0, verbose off unless 1 ----
base="[/usr/bin/derp][-hostname][derp.example.com][-certmode][manual][-certdir][/etc/derp/certs][-c][/etc/derp/derp.key][-user][nobody]"
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main syslog 0
start
check "syslog 0: no -syslog" "$cmd" "$base"
accepted "syslog 0: derp accepts the flags"
check "syslog 0: stderr still logged" "$params" " respawn stdout stderr"
uci_set main syslog off
uci_set main verbose 1
start
check "syslog off, verbose 1: -verbose only" "$cmd" "${base}[-verbose]"
accepted "verbose 1: derp accepts the flags"
uci_set main syslog yes
uci_set main verbose 0
start
check "syslog yes, verbose 0: -syslog only" "$cmd" "${base}[-syslog]"
uci_set main syslog 1
uci_set main verbose on
start
check "syslog 1, verbose on: both" "$cmd" "${base}[-syslog][-verbose]"
accepted "syslog and verbose: derp accepts the flags"
check "syslog and verbose: stderr still logged" "$params" " respawn stdout stderr"

# ---- /debug/ access ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main syslog 0
uci_set main debug_allow 'loopback,192.168.1.0/24,fd00::/8'
start
check "debug_allow: -debug-allow" "$cmd" \
	"${base}[-debug-allow][loopback,192.168.1.0/24,fd00::/8]"
accepted "debug_allow: derp accepts the flags"
uci_set main debug_allow ''
start
check "debug_allow empty: derp's default" "$cmd" "$base"

# ---- meshing: key (watched), list joined with commas, CA file ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp1.example.com
uci_set main certdir "$tmp/certs"
uci_set main syslog 0
uci_set main mesh_psk_file "$tmp/mesh key"
uci_list main mesh_with derp1.example.com
uci_list main mesh_with 'derp2.example.com:8443/10.0.0.2'
uci_list main mesh_with "203.0.113.9=sha256-raw:$(printf '%064d' 0 | tr 0 a)"
uci_set main mesh_ca_file /etc/derp/mesh-ca.pem
start
check "mesh: started" "$rc $instances" "0 1"
check "mesh: command" "$cmd" \
	"[/usr/bin/derp][-hostname][derp1.example.com][-certmode][manual][-certdir][$tmp/certs][-c][/etc/derp/derp.key][-user][nobody][-mesh-psk-file][$tmp/mesh key][-mesh-with][derp1.example.com,derp2.example.com:8443/10.0.0.2,203.0.113.9=sha256-raw:$(printf '%064d' 0 | tr 0 a)][-mesh-ca-file][/etc/derp/mesh-ca.pem]"
check "mesh: key file watched" "$files" \
	"[/etc/config/derp][$tmp/certs/derp1.example.com.crt][$tmp/certs/derp1.example.com.key][$tmp/mesh key]"
accepted "mesh: derp accepts the flags"
# One list entry: no comma.  An option instead of a list: as written.
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main syslog 0
uci_list main mesh_with derp2.example.com
start
check "mesh_with, one entry" "$cmd" "${base}[-mesh-with][derp2.example.com]"
check "mesh_with without mesh_psk_file: watches no key" "$files" \
	"[/etc/config/derp][/etc/derp/certs/derp.example.com.crt][/etc/derp/certs/derp.example.com.key]"
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main syslog 0
uci_set main mesh_with 'derp2.example.com,derp3.example.com'
start
check "mesh_with as an option: passed as written" "$cmd" \
	"${base}[-mesh-with][derp2.example.com,derp3.example.com]"
accepted "mesh_with as an option: derp accepts the flags"

# ---- client verification: booleans both ways, socket, webhook ----
uci_reset
uci_set main enabled 1
uci_set main hostname derp.example.com
uci_set main syslog 0
uci_set main verify_clients 1
uci_set main socket /var/run/tailscale/tailscaled.sock
uci_set main verify_client_url https://auth.example.com/admit
uci_set main verify_client_url_fail_open 0
uci_set main verify_client_ca_file /etc/derp/hook-ca.pem
start
check "verify: command" "$cmd" \
	"${base}[-verify-clients][-socket][/var/run/tailscale/tailscaled.sock][-verify-client-url][https://auth.example.com/admit][-verify-client-url-fail-open=false][-verify-client-ca-file][/etc/derp/hook-ca.pem]"
accepted "verify: derp accepts the flags"
uci_set main verify_clients 0
uci_set main socket ''
uci_set main verify_client_url_fail_open 1
uci_set main verify_client_ca_file ''
start
check "verify_clients 0, fail_open 1: neither passed" "$cmd" \
	"${base}[-verify-client-url][https://auth.example.com/admit]"
accepted "verify_client_url alone: derp accepts the flags"
uci_set main verify_clients yes
uci_set main verify_client_url ''
uci_set main verify_client_url_fail_open no
start
check "verify_clients yes, fail_open no" "$cmd" \
	"${base}[-verify-clients][-verify-client-url-fail-open=false]"
accepted "verify_clients, fail closed: derp accepts the flags"

# ---- triggers: config changes and acme renewals reload ----
triggers=
service_triggers
check "triggers" "$triggers" \
	" reload:derp raw:acme.renew:[acme.renew][5000][/etc/init.d/derp][reload] raw:acme.issue:[acme.issue][5000][/etc/init.d/derp][reload]"
check "only config_load derp" "$(cat "$tmp/unexpected" 2>/dev/null)" ""

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
