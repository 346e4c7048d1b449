/*
 * web_assets.h - the dashboard's files (web/), built into the binary by
 * cmake/embed_web.cmake as byte arrays: the server serves them from memory
 * and fetches nothing from elsewhere.
 */
#ifndef DROVER_SERVER_WEB_ASSETS_H
#define DROVER_SERVER_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *name; /* the file's name in web/, e.g. "app.js" */
    const unsigned char *data;
    size_t len;
};

extern const struct web_asset web_assets[];
extern const size_t web_nassets;

#endif
