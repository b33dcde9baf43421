#!/bin/sh
# The container's entry point: derp's flags from the environment, under the
# names the common derper images use.  Arguments given to the container are
# appended (e.g. -max-clients 10000).
#
#   DERP_DOMAIN      -hostname  (a DNS name, or the server's public IP address)
#   DERP_CERT_MODE   -certmode  manual (default) or letsencrypt
#   DERP_CERT_DIR    -certdir   /app/certs: <hostname>.crt and .key
#   DERP_ADDR        -a         :443
#   DERP_HTTP_PORT   -http-port 80 (-1 disables)
#   DERP_STUN        -stun      true (false disables)
#   DERP_STUN_PORT   -stun-port 3478
#   DERP_KEY_FILE    -c         /var/lib/derper/derper.key (a volume)
#   DERP_USER        -user      nobody, when the container runs as root: derp
#                               binds its ports, reads key and certificate, then
#                               switches to it; DERP_USER=root keeps root
#                               (-allow-root)
#   DERP_BOOTSTRAP_DNS_NAMES    -bootstrap-dns-names (none; set but empty: none
#                               either, even with TAILSCALE_DERP_HOSTNAME)
#   DERP_VERIFY_CLIENTS         -verify-clients=<value>, whenever set, as given
#                               (empty too: derp then exits 2, as derper does)
#   DERP_VERIFY_CLIENT_URL      -verify-client-url
#   DERP_VERIFY_CLIENT_URL_FAIL_OPEN
#                               -verify-client-url-fail-open=<value>, whenever
#                               set, as given
#   DERP_SOCKET      -socket    tailscaled's socket for -verify-clients (derp's
#                               default: /var/run/tailscale/tailscaled.sock)
#
# The seed image's names (a derper beside tailscaled, with its .env) too; the
# DERP_ name wins when both are set:
#   TAILSCALE_DERP_HOSTNAME       as DERP_DOMAIN, and then -bootstrap-dns-names
#                                 that hostname too unless DERP_BOOTSTRAP_DNS_NAMES
#                                 is set (the seed's command line does so)
#   TAILSCALE_DERP_CERTMODE       as DERP_CERT_MODE
#   TAILSCALE_DERP_VERIFY_CLIENTS as DERP_VERIFY_CLIENTS
# Empty counts as unset, except where "whenever set" says otherwise.
set -eu
DERP_BIN=${DERP_BIN:-/usr/bin/derp}
host=${DERP_DOMAIN:-}
bootdns=${DERP_BOOTSTRAP_DNS_NAMES:-}
if [ -z "$host" ]; then
	host=${TAILSCALE_DERP_HOSTNAME:-}
	if [ -z "${DERP_BOOTSTRAP_DNS_NAMES+set}" ]; then
		bootdns=$host
	fi
fi
if [ -z "$host" ]; then
	echo "derp: set DERP_DOMAIN (or TAILSCALE_DERP_HOSTNAME) to the relay's DNS name or public IP address" >&2
	exit 2
fi
stun=
case ${DERP_STUN:-true} in
false | 0 | no) stun=-stun=false ;;
esac
verify=
if [ -n "${DERP_VERIFY_CLIENTS+set}" ]; then
	verify=-verify-clients=$DERP_VERIFY_CLIENTS
elif [ -n "${TAILSCALE_DERP_VERIFY_CLIENTS+set}" ]; then
	verify=-verify-clients=$TAILSCALE_DERP_VERIFY_CLIENTS
fi
failopen=
if [ -n "${DERP_VERIFY_CLIENT_URL_FAIL_OPEN+set}" ]; then
	failopen=-verify-client-url-fail-open=$DERP_VERIFY_CLIENT_URL_FAIL_OPEN
fi
url=${DERP_VERIFY_CLIENT_URL:-}
socket=${DERP_SOCKET:-}
user=
if [ "$(id -u)" = 0 ]; then
	case ${DERP_USER:-nobody} in
	root) user=-allow-root ;;
	*) user=-user=${DERP_USER:-nobody} ;;
	esac
fi
exec "$DERP_BIN" -hostname "$host" \
    -certmode "${DERP_CERT_MODE:-${TAILSCALE_DERP_CERTMODE:-manual}}" \
    -certdir "${DERP_CERT_DIR:-/app/certs}" \
    -a "${DERP_ADDR:-:443}" -http-port "${DERP_HTTP_PORT:-80}" \
    -stun-port "${DERP_STUN_PORT:-3478}" -c "${DERP_KEY_FILE:-/var/lib/derper/derper.key}" \
    ${stun:+"$stun"} \
    ${bootdns:+-bootstrap-dns-names} ${bootdns:+"$bootdns"} \
    ${verify:+"$verify"} \
    ${url:+-verify-client-url} ${url:+"$url"} \
    ${failopen:+"$failopen"} \
    ${socket:+-socket} ${socket:+"$socket"} \
    ${user:+"$user"} "$@"
