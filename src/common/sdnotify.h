/*
 * sdnotify.h - readiness and status for systemd's Type=notify services.
 *
 * Each call sends one message to the socket named by $NOTIFY_SOCKET through
 * libsystemd's sd_notify(3). Without $NOTIFY_SOCKET (not started by systemd
 * as Type=notify) every call does nothing. In a build without libsystemd
 * (WITH_SYSTEMD=OFF) every call does nothing either, and the first one logs a
 * warning when $NOTIFY_SOCKET is set: systemd would wait for a READY=1 that
 * never comes (use Type=exec with such a build).
 *
 * The functions may be called from any thread; failures to send are ignored
 * (systemd's own rule: a notification is advice, never a reason to stop).
 */
#ifndef DROVER_SDNOTIFY_H
#define DROVER_SDNOTIFY_H

#include "common.h"

/* true when this build can notify systemd (it was linked with libsystemd). */
bool sdnotify_supported(void);

/* READY=1, with STATUS= the formatted text: the service is up and serving. */
void sdnotify_ready(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* STATUS= the formatted text: what the service does now (systemctl status shows it). */
void sdnotify_status(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* STOPPING=1, with STATUS= the formatted text: the service is shutting down. */
void sdnotify_stopping(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
