/*
 * completion.c - `drover completion bash|zsh`: shell completion scripts.
 *
 * The commands (and their one-line help, for zsh) come from main.c's command
 * table when the script is printed. The options of a command come from its
 * own `--help` when the user completes them (every command's usage lists its
 * options as `--name`), so they cannot drift from the code. Values of a few
 * options with a fixed set of values are in `choices` below. The word after a command
 * with subcommands (`workflow`, `service`, ...) completes them, read from the synopsis of
 * its `--help`; anything else completes file names.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

/* Options whose values are one of a few words. */
static const struct {
    const char *opt;
    const char *words;
} choices[] = {
    {"--state", "blocked queued leased running succeeded failed cancelled"},
    {"--sync", "full normal"},
    {"--role", "admin client agent"},
    {"--log-level", "error warn info debug"},
    {"--log-format", "text json"},
    {"--runtime", "native bwrap podman docker"}, /* agent.c's usage */
    {"--limits", "auto cgroup rlimit none"},
    {"--stream", "stdout stderr"},
    {"--overlap", "allow skip"},
    {"--type", "job agent object trigger array queue tenant"}, /* drover events */
};
#define NCHOICES (sizeof(choices) / sizeof(choices[0]))

/*
 * The shell pipeline that lists a command's options from its --help ($1: drover, $2: cmd):
 * the lines that describe one ("  -q, --queue Q", "      --slots N"), not every --word of
 * the text (an example's program options, another command's); `dev` takes the server's too.
 */
#define OPTIONS_OF                                                                       \
    "{ \"$1\" \"$2\" --help; [ \"$2\" = dev ] && \"$1\" server --help; } 2>/dev/null | " \
    "grep -oE -- '^ {2,}(-[A-Za-z0-9], )?--[a-z][a-z0-9-]*' | "                             \
    "grep -oE -- '--[a-z][a-z0-9-]*' | sort -u"
/*
 * The one that lists its subcommands (`workflow list`, `service ls`): the words after
 * "drover CMD" in the lines of its usage's synopsis (up to the first blank line). sed reads
 * to the end rather than quit there: a --help cut off by a closed pipe dies of SIGPIPE, and a
 * sanitizer build's exit-time leak check can hang on that signal.
 */
#define SUBCOMMANDS_OF                                                                            \
    "\"$1\" \"$2\" --help 2>/dev/null | sed -n -e '/^$/,$d' -e "                                  \
    "\"s/^\\(usage:\\)\\{0,1\\} *drover $2 \\([a-z][a-z-]*\\)\\( .*\\)\\{0,1\\}\\$/\\2/p\" | "         \
    "sort -u"

static void print_bash(const struct command *table, size_t n)
{
    fputs("# bash completion for drover (made by `drover completion bash`).\n"
          "# Load it with: source <(drover completion bash)\n"
          "_drover_options() {\n"
          "    " OPTIONS_OF "\n"
          "}\n"
          "_drover_subcommands() {\n"
          "    " SUBCOMMANDS_OF "\n"
          "}\n"
          "_drover() {\n"
          "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} subs\n"
          "    COMPREPLY=()\n"
          "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
          "        COMPREPLY=($(compgen -W \"",
          stdout);
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", table[i].name);
    fputs(" help\" -- \"$cur\"))\n"
          "        return 0\n"
          "    fi\n"
          "    case $prev in\n",
          stdout);
    for (size_t i = 0; i < NCHOICES; i++)
        printf("    %s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return 0 ;;\n",
               choices[i].opt, choices[i].words);
    fputs("    esac\n"
          "    if [[ $cur == -* ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$(_drover_options \"${COMP_WORDS[0]}\" "
          "\"${COMP_WORDS[1]}\")\" -- \"$cur\"))\n"
          "        return 0\n"
          "    fi\n"
          "    if [ \"$COMP_CWORD\" -eq 2 ]; then\n"
          "        subs=$(_drover_subcommands \"${COMP_WORDS[0]}\" \"${COMP_WORDS[1]}\")\n"
          "        if [ -n \"$subs\" ]; then\n"
          "            COMPREPLY=($(compgen -W \"$subs\" -- \"$cur\"))\n"
          "            return 0\n"
          "        fi\n"
          "    fi\n"
          "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
          "}\n"
          "complete -o filenames -F _drover drover\n",
          stdout);
}

/* s inside single quotes for zsh. */
static void zsh_quoted(const char *s)
{
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

static void print_zsh(const struct command *table, size_t n)
{
    fputs("#compdef drover\n"
          "# zsh completion for drover (made by `drover completion zsh`).\n"
          "# Load it with: source <(drover completion zsh), or save it as _drover in $fpath.\n"
          "_drover_options() {\n"
          "    " OPTIONS_OF "\n"
          "}\n"
          "_drover_subcommands() {\n"
          "    " SUBCOMMANDS_OF "\n"
          "}\n"
          "_drover() {\n"
          "    local -a cmds opts subs\n"
          "    cmds=(\n",
          stdout);
    for (size_t i = 0; i < n; i++) {
        char line[512];
        snprintf(line, sizeof(line), "%s:%s", table[i].name, table[i].help);
        fputs("        ", stdout);
        zsh_quoted(line);
        putchar('\n');
    }
    fputs("    )\n"
          "    if (( CURRENT == 2 )); then\n"
          "        _describe 'drover command' cmds\n"
          "        return\n"
          "    fi\n"
          "    case ${words[CURRENT-1]} in\n",
          stdout);
    for (size_t i = 0; i < NCHOICES; i++)
        printf("    %s) compadd -- %s; return ;;\n", choices[i].opt, choices[i].words);
    fputs("    esac\n"
          "    if [[ ${words[CURRENT]} == -* ]]; then\n"
          "        opts=(${(f)\"$(_drover_options ${words[1]} ${words[2]})\"})\n"
          "        compadd -a opts\n"
          "        return\n"
          "    fi\n"
          "    if (( CURRENT == 3 )); then\n"
          "        subs=(${(f)\"$(_drover_subcommands ${words[1]} ${words[2]})\"})\n"
          "        if (( ${#subs} )); then\n"
          "            compadd -a subs\n"
          "            return\n"
          "        fi\n"
          "    fi\n"
          "    _files\n"
          "}\n"
          "if [[ ${funcstack[1]} == _drover ]]; then\n"
          "    _drover \"$@\"\n"
          "else\n"
          "    compdef _drover drover\n"
          "fi\n",
          stdout);
}

static const char usage_text[] =
    "usage: drover completion bash|zsh\n"
    "\n"
    "Prints a script that completes drover's commands, their options and the values\n"
    "of some options (--state, --role, ...) as you type; file names elsewhere.\n"
    "\n"
    "examples:\n"
    "  source <(drover completion bash)              # in ~/.bashrc\n"
    "  source <(drover completion zsh)               # in ~/.zshrc, after compinit\n"
    "  drover completion zsh > ~/.zfunc/_drover      # or as a file in $fpath\n";

int cmd_completion(int argc, char **argv, const struct command *table, size_t n)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 2 || (strcmp(argv[1], "bash") && strcmp(argv[1], "zsh"))) {
        fprintf(stderr, "drover: %s\n\n%s",
                argc < 2 ? "completion needs a shell: bash or zsh"
                : argc > 2 ? "completion takes one shell: bash or zsh"
                           : "completion knows bash and zsh only",
                usage_text);
        return 2;
    }
    if (!strcmp(argv[1], "bash"))
        print_bash(table, n);
    else
        print_zsh(table, n);
    return 0;
}
