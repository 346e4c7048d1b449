/*
 * replay.c - a main() for the fuzz targets outside libFuzzer: feeds every file of the
 * folders (or the files) named on the command line to LLVMFuzzerTestOneInput, in name
 * order, so that the normal build's ctest replays each target's corpus and its crash
 * regressions (tests/fuzz/corpus/<name>, tests/fuzz/crashes/<name>).
 *
 * A crash or a failed FUZZ_CHECK aborts the process (ctest fails, naming the input, which
 * is printed before it runs). A folder that does not exist is skipped (a target may have no
 * crashes folder); running no input at all is a failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *data = malloc(cap);
    size_t got;
    while (data && (got = fread(data + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) data = realloc(data, cap *= 2);
    }
    int bad = !data || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read '%s'\n", path);
        free(data);
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    /* A copy of exactly n bytes, so that ASan sees a read past the input. */
    unsigned char *exact = malloc(n ? n : 1);
    memcpy(exact, data, n);
    free(data);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
    int runs = 0, status = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) {
            fprintf(stderr, "replay: skipping '%s': %s\n", argv[i], strerror(errno));
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]))
                status = 1;
            else
                runs++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list '%s': %s\n", argv[i], strerror(errno));
            status = 1;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
            if (names[k]->d_name[0] != '.' && !stat(path, &st) && S_ISREG(st.st_mode)) {
                if (run_file(path))
                    status = 1;
                else
                    runs++;
            }
            free(names[k]);
        }
        free(names);
    }
    if (!runs) {
        fprintf(stderr, "replay: no input ran\n");
        return 1;
    }
    fprintf(stderr, "replay: %d inputs, %s\n", runs, status ? "some unreadable" : "all passed");
    return status;
}
