/*
 * render.c - the worker of the Julia-set pipeline (examples/julia): renders
 * z -> z^2 + c over a window of the complex plane into a PGM image named by
 * the task's UUID, and prints one JSON line with the image's SHA-256 and the
 * render time. Writes its progress to $DROVER_PROGRESS when drover runs it.
 *
 *   julia-render --task UUID --cx -0.8 --cy 0.156 [--size 400] [--iter 300] [--out DIR]
 */
#include <errno.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double number(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "julia-render: %s must be a number, not '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static void progress(FILE *p, double pct, int row, int rows)
{
    if (!p)
        return;
    fprintf(p, "%.1f row %d of %d\n", pct, row, rows);
    fflush(p);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"task", required_argument, NULL, 't'}, {"cx", required_argument, NULL, 'x'},
        {"cy", required_argument, NULL, 'y'},   {"size", required_argument, NULL, 's'},
        {"iter", required_argument, NULL, 'i'}, {"out", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *task = NULL, *out = ".";
    double cx = -0.8, cy = 0.156;
    int size = 400, iter = 300, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': task = optarg; break;
        case 'x': cx = number(optarg, "--cx"); break;
        case 'y': cy = number(optarg, "--cy"); break;
        case 's': size = (int)number(optarg, "--size"); break;
        case 'i': iter = (int)number(optarg, "--iter"); break;
        case 'o': out = optarg; break;
        default: return 2;
        }
    }
    if (!task || size < 8 || size > 8192 || iter < 1 || iter > 100000) {
        fprintf(stderr, "usage: julia-render --task UUID --cx X --cy Y [--size 8-8192] "
                        "[--iter N] [--out DIR]\n");
        return 2;
    }
    const char *pp = getenv("DROVER_PROGRESS");
    FILE *prog = pp ? fopen(pp, "a") : NULL;
    double t0 = now_ms();
    unsigned char *img = malloc((size_t)size * size);
    if (!img)
        return 1;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double zr = 3.0 * x / size - 1.5, zi = 3.0 * y / size - 1.5;
            int n = 0;
            while (n < iter && zr * zr + zi * zi < 4.0) {
                double t = zr * zr - zi * zi + cx;
                zi = 2 * zr * zi + cy;
                zr = t;
                n++;
            }
            img[(size_t)y * size + x] = (unsigned char)(255 * n / iter);
        }
        if (y % (size / 8 > 0 ? size / 8 : 1) == 0)
            progress(prog, 100.0 * y / size, y, size);
    }
    char path[4096], header[64];
    snprintf(path, sizeof(path), "%s/%s.pgm", out, task);
    int hl = snprintf(header, sizeof(header), "P5\n%d %d\n255\n", size, size);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(header, 1, (size_t)hl, f) != (size_t)hl ||
        fwrite(img, 1, (size_t)size * size, f) != (size_t)size * size || fclose(f)) {
        fprintf(stderr, "julia-render: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, header, (size_t)hl);
    EVP_DigestUpdate(ctx, img, (size_t)size * size);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    free(img);
    progress(prog, 100.0, size, size);
    if (prog)
        fclose(prog);
    printf("{\"task\": \"%s\", \"sha256\": \"", task);
    for (unsigned i = 0; i < mdlen; i++)
        printf("%02x", md[i]);
    printf("\", \"duration_ms\": %.1f, \"image\": \"%s\"}\n", now_ms() - t0, path);
    return 0;
}
