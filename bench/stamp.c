/*
 * stamp.c - drover-stamp: prints CLOCK_REALTIME in nanoseconds, as its first action, and
 * exits 0. bench/agents.sh runs it as a job to learn when the job's process was running;
 * the client compares it with its own CLOCK_REALTIME stamps (same machine, same clock).
 *
 * It is linked statically (CMakeLists.txt), so that the figure holds as little of the
 * dynamic loader's work as possible: what is measured is drover's way to the process.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 1;
    char line[32];
    int n = snprintf(line, sizeof(line), "%" PRId64 "\n",
                     (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec);
    if (n <= 0 || (size_t)n >= sizeof(line)) return 1;
    return write(STDOUT_FILENO, line, (size_t)n) == (ssize_t)n ? 0 : 1;
}
