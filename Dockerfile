# derp in a container, set up as the common derper images are: ports 443/tcp,
# 80/tcp and 3478/udp; hostname, certificate mode and directory from the
# environment (contrib/docker-entrypoint.sh lists the variables: the DERP_
# names, and the seed image's TAILSCALE_DERP_HOSTNAME, _CERTMODE and
# _VERIFY_CLIENTS).
# The build stage is exactly `make static ACME=1` (the static musl binary with
# the ACME client, build/static/derp), a command .ci/run also runs;
# test/packaging_test.sh checks that these RUN lines stay those commands.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends make
WORKDIR /src
COPY . .
RUN make static ACME=1

# A shell for the entry point, and the 300 KB relay.
FROM busybox:1.36-musl
COPY --from=build /src/build/static/derp /usr/bin/derp
COPY contrib/docker-entrypoint.sh /usr/bin/docker-entrypoint.sh
VOLUME ["/var/lib/derper", "/app/certs"]
EXPOSE 443/tcp 80/tcp 3478/udp
ENTRYPOINT ["/usr/bin/docker-entrypoint.sh"]
