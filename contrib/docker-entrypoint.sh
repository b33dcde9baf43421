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
set -eu
DERP_BIN=${DERP_BIN:-/usr/bin/derp}
if [ -z "${DERP_DOMAIN:-}" ]; then
	echo "derp: set DERP_DOMAIN to the relay's DNS name or public IP address" >&2
	exit 2
fi
stun=
case ${DERP_STUN:-true} in
false | 0 | no) stun=-stun=false ;;
esac
user=
if [ "$(id -u)" = 0 ]; then
	case ${DERP_USER:-nobody} in
	root) user=-allow-root ;;
	*) user=-user=${DERP_USER:-nobody} ;;
	esac
fi
exec "$DERP_BIN" -hostname "$DERP_DOMAIN" \
    -certmode "${DERP_CERT_MODE:-manual}" -certdir "${DERP_CERT_DIR:-/app/certs}" \
    -a "${DERP_ADDR:-:443}" -http-port "${DERP_HTTP_PORT:-80}" \
    -stun-port "${DERP_STUN_PORT:-3478}" -c "${DERP_KEY_FILE:-/var/lib/derper/derper.key}" \
    ${stun:+"$stun"} ${user:+"$user"} "$@"
