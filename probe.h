/*
 * probe.h -- `derp probe`: the project's own end-to-end check of a DERP
 * relay (ours or Tailscale's derper), run from the relay's own binary as
 * its first argument's subcommand.  A client of the relay as a Tailscale
 * client sees it: DNS, TCP, TLS and the certificate (name, chain or pin,
 * expiry), the home page, /generate_204 and its challenge (on the main
 * port and on port 80), the /derp upgrade and handshake, two clients
 * exchanging packets both ways, a ping, STUN over IPv4 and IPv6 and, with
 * the mesh key, the watcher stream.  One line per step and a summary (or
 * one JSON object with -json); exit status 0 when no step failed, 1 when
 * one did, 2 for a usage error.  README "Checking a relay: derp probe".
 *
 * Blocking sockets with a deadline on every wait (the probe is a process
 * of its own, never on the relay's loop).  Built unless PROBE=0 (Makefile:
 * -DDERP_NO_PROBE leaves probe.c out; derp.c then has no subcommand).
 */
#ifndef PROBE_H
#define PROBE_H

/* argv[0] is "probe" (derp.c's main hands over argv + 1); the return
 * value is the process's exit status. */
int probe_main(int argc, char **argv);

#endif
