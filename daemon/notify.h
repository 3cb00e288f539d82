/* The systemd notify protocol (sd_notify), without libsystemd: one datagram
 * to $NOTIFY_SOCKET. Does nothing when not started by systemd. */
#ifndef MCEFAD_NOTIFY_H
#define MCEFAD_NOTIFY_H

void notify_send(const char *state);

#endif
