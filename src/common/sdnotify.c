/* sdnotify.c - see sdnotify.h. A thin layer over sd_notify(3) that formats the STATUS= line. */
#include "sdnotify.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

bool sdnotify_supported(void)
{
#ifdef HAVE_LIBSYSTEMD
    return true;
#else
    return false;
#endif
}

/* Sends "HEAD\nSTATUS=text" (HEAD may be NULL: the status alone). */
static void send_notification(const char *head, const char *fmt, va_list ap)
{
    if (!getenv("NOTIFY_SOCKET"))
        return;
#ifdef HAVE_LIBSYSTEMD
    char status[512];
    vsnprintf(status, sizeof(status), fmt, ap);
    /* A STATUS= line ends at its newline: a newline in the text would end it early. */
    for (char *p = status; *p; p++)
        if (*p == '\n')
            *p = ' ';
    if (head)
        sd_notifyf(0, "%s\nSTATUS=%s", head, status);
    else
        sd_notifyf(0, "STATUS=%s", status);
#else
    static atomic_bool warned;
    if (!atomic_exchange(&warned, true))
        log_warn("NOTIFY_SOCKET is set but this drover was built without libsystemd: systemd "
                 "is not told when it is ready (run it as Type=exec, or build with "
                 "libsystemd-dev installed)");
    (void)head;
    (void)fmt;
    (void)ap;
#endif
}

void sdnotify_ready(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_notification("READY=1", fmt, ap);
    va_end(ap);
}

void sdnotify_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_notification(NULL, fmt, ap);
    va_end(ap);
}

void sdnotify_stopping(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_notification("STOPPING=1", fmt, ap);
    va_end(ap);
}
