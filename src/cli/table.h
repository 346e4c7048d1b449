/*
 * table.h - aligned tables for humans: column widths from the content,
 * headers in capitals, two spaces between columns, no trailing blanks.
 *
 *     struct table *t = table_new(3, "name", "queued", "running");
 *     table_align_right(t, 1);
 *     table_add(t, "default");
 *     table_addf(t, "%d", 4);
 *     table_add(t, "0");           (a row is complete after 3 cells)
 *     table_print(t, stdout);
 *     table_free(t);
 *
 * Cells are copied. Control characters in them (a newline in a job's name, a
 * terminal escape) are shown as '?', so a row stays one line and cannot
 * drive the terminal. Widths count UTF-8 characters, not bytes.
 */
#ifndef DROVER_TABLE_H
#define DROVER_TABLE_H

#include <stdio.h>

#include "common/common.h"

struct table;

/* A table of `ncols` columns; the headers (ncols strings) are shown in capitals. */
struct table *table_new(size_t ncols, ...);
void table_free(struct table *t);

void table_align_right(struct table *t, size_t col);
/* Cells longer than `width` characters in `col` are cut, ending in "…". */
void table_max_width(struct table *t, size_t col, size_t width);

/* Appends a cell to the current row (NULL shows as "-"); rows wrap after ncols cells. */
void table_add(struct table *t, const char *cell);
void table_addf(struct table *t, const char *fmt, ...) PRINTF_LIKE(2, 3);

/*
 * Prints the header and the rows (a last incomplete row is padded with "-"). When f is a
 * terminal, lines wider than it are cut at its width, ending in "…" (`drover jobs | less`
 * or --json shows them whole).
 */
void table_print(const struct table *t, FILE *f);
/* table_print, lines cut at cols display columns (0: not cut). */
void table_print_cut(const struct table *t, FILE *f, size_t cols);
/* The width of the terminal f is (TIOCGWINSZ, else $COLUMNS), or 0 when f is not one. */
size_t table_term_width(FILE *f);

#endif
