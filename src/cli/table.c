/*
 * table.c - see table.h. Cells are kept, already sanitised and cut, in one
 * array in row-major order; widths are measured when printing.
 */
#include "cli/table.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/xalloc.h"

struct table {
    size_t ncols;
    char **cells; /* the headers first, then the rows */
    size_t ncells, cap;
    bool *right;
    size_t *max; /* 0 = no limit */
};

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width_of(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80) w++;
    return w;
}

static void push(struct table *t, char *cell)
{
    if (t->ncells == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = xrealloc(t->cells, t->cap * sizeof(*t->cells));
    }
    t->cells[t->ncells++] = cell;
}

struct table *table_new(size_t ncols, ...)
{
    struct table *t = xcalloc(1, sizeof(*t));
    t->ncols = ncols;
    t->right = xcalloc(ncols, sizeof(*t->right));
    t->max = xcalloc(ncols, sizeof(*t->max));
    va_list ap;
    va_start(ap, ncols);
    for (size_t i = 0; i < ncols; i++) {
        char *h = xstrdup(va_arg(ap, const char *));
        for (char *p = h; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        push(t, h);
    }
    va_end(ap);
    return t;
}

void table_free(struct table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t->max);
    free(t);
}

void table_align_right(struct table *t, size_t col)
{
    if (col < t->ncols) t->right[col] = true;
}

void table_max_width(struct table *t, size_t col, size_t width)
{
    if (col < t->ncols) t->max[col] = width;
}

void table_add(struct table *t, const char *cell)
{
    size_t col = t->ncells % t->ncols;
    size_t max = t->max[col];
    struct buf b = BUF_INIT;
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)(cell ? cell : "-");

    for (; *p; p++) {
        bool starts_char = (*p & 0xc0) != 0x80;
        if (starts_char && max && w == max - 1 && width_of((const char *)p) > 1) {
            buf_adds(&b, "\xe2\x80\xa6"); /* "…" */
            break;
        }
        if (starts_char) w++;
        buf_addc(&b, *p < 0x20 || *p == 0x7f ? '?' : (char)*p);
    }
    if (b.len == 0) buf_addc(&b, '-');
    push(t, buf_detach(&b));
}

void table_addf(struct table *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    table_add(t, s ? s : "?");
    free(s);
}

size_t table_term_width(FILE *f)
{
    if (!isatty(fileno(f))) return 0;
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *env = getenv("COLUMNS");
    long v = env ? strtol(env, NULL, 10) : 0;
    return v > 0 && v < 100000 ? (size_t)v : 0;
}

/* Writes line to f, cut to cols display columns (0: whole) with "…" at the cut. */
static void put_line(FILE *f, const char *line, size_t cols)
{
    if (!cols || width_of(line) <= cols) {
        fputs(line, f);
        fputc('\n', f);
        return;
    }
    size_t w = 0;
    const char *p = line;
    for (; *p; p++) {
        if (((unsigned char)*p & 0xc0) != 0x80 && w++ == cols - 1) break;
    }
    fwrite(line, 1, (size_t)(p - line), f);
    fputs("\u2026\n", f);
}

void table_print_cut(const struct table *t, FILE *f, size_t cols)
{
    size_t *width = xcalloc(t->ncols, sizeof(*width));
    size_t rows = (t->ncells + t->ncols - 1) / t->ncols;
    for (size_t i = 0; i < t->ncells; i++) {
        size_t w = width_of(t->cells[i]);
        if (w > width[i % t->ncols]) width[i % t->ncols] = w;
    }
    struct buf line = BUF_INIT;
    for (size_t r = 0; r < rows; r++) {
        buf_reset(&line);
        for (size_t c = 0; c < t->ncols; c++) {
            size_t i = r * t->ncols + c;
            const char *s = i < t->ncells ? t->cells[i] : "-";
            size_t pad = width[c] - width_of(s);
            bool last = c + 1 == t->ncols;
            if (c > 0) buf_adds(&line, "  ");
            if (t->right[c]) buf_addf(&line, "%*s", (int)pad, "");
            buf_adds(&line, s);
            if (!t->right[c] && !last) buf_addf(&line, "%*s", (int)pad, "");
        }
        put_line(f, buf_str(&line), cols);
    }
    buf_release(&line);
    free(width);
}

void table_print(const struct table *t, FILE *f)
{
    table_print_cut(t, f, table_term_width(f));
}
