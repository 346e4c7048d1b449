/* config.h - defaults shared by the server and the CLI. */
#ifndef DROVER_CONFIG_H
#define DROVER_CONFIG_H

#define DROVER_DEFAULT_LISTEN "127.0.0.1:7070"
#define DROVER_DEFAULT_SERVER "http://127.0.0.1:7070"
#define DROVER_ADMIN_TOKEN_FILE "admin.token"
#define DROVER_WEBHOOK_SECRET_FILE "webhook.secret" /* in the data folder: signs webhooks */

/*
 * The data folder when --data is not given: $DROVER_DATA, else
 * $XDG_DATA_HOME/drover, else $HOME/.local/share/drover, else ./drover-data.
 * Returns a newly allocated string.
 */
char *config_default_data_dir(void);

#endif
