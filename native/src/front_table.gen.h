/* Generated from src/cli/commandTable.ts by native/tools/gen-front.mjs (npm run gen): do not edit. */
#ifndef ENCLAVE_FRONT_TABLE_H
#define ENCLAVE_FRONT_TABLE_H
#include <stddef.h>

struct ft_flag {
  const char *name;
  char short_name;
  unsigned char takes_value;
  unsigned char multiple;
  const char *const *aliases; /* NULL-terminated, or NULL */
};

/* The commands the front end answers (0: always the Node CLI). */
enum ft_hot {
  FT_COLD = 0,
  FT_SESSION_LIST,
  FT_SESSION_SHOW,
  FT_SESSION_EXEC,
  FT_SESSION_ATTACH,
  FT_SESSION_STOP,
  FT_SESSION_START,
  FT_SESSION_DESTROY,
};

struct ft_command {
  const char *key;
  const char *words[3];
  size_t nwords;
  const char *const *aliases; /* of the last word; NULL-terminated, or NULL */
  const struct ft_flag *flags;
  size_t nflags;
  size_t nargs;
  size_t nrequired;
  unsigned char variadic; /* the last argument takes the rest */
  unsigned char trailing; /* a command to run follows the arguments */
  enum ft_hot hot;
};

static const struct ft_flag ft_global_flags[] = {
  {"socket", 0, 1, 0, NULL},
  {"help", 'h', 0, 0, NULL},
};
#define FT_NGLOBAL_FLAGS 2

static const struct ft_flag ft_cmd_flags_0[] = {
  {"config", 0, 1, 0, NULL},
  {"state-dir", 0, 1, 0, NULL},
  {"listen", 0, 1, 0, NULL},
  {"cleanup", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_1[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_2[] = {
  {"name", 0, 1, 0, NULL},
  {"memory", 0, 1, 0, NULL},
  {"pids", 0, 1, 0, NULL},
  {"cpu", 0, 1, 0, NULL},
  {"tmp-size", 0, 1, 0, NULL},
  {"home-size", 0, 1, 0, NULL},
  {"root-size", 0, 1, 0, NULL},
  {"profile", 0, 1, 0, NULL},
  {"init", 0, 1, 0, NULL},
  {"network", 0, 1, 0, NULL},
  {"publish", 'p', 1, 1, NULL},
  {"volume", 'v', 1, 1, NULL},
  {"env", 'e', 1, 1, NULL},
  {"env-file", 0, 1, 1, NULL},
  {"auth", 0, 1, 1, NULL},
  {"env-token", 0, 1, 1, NULL},
  {"console", 0, 0, 0, NULL},
  {"from", 0, 1, 0, NULL},
  {"no-settings", 0, 0, 0, NULL},
  {"idle-timeout", 0, 1, 0, NULL},
  {"ssh-key", 0, 1, 0, NULL},
  {"no-wait", 0, 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_3[] = {"ls", NULL};
static const struct ft_flag ft_cmd_flags_3[] = {
  {"all", 'a', 0, 0, NULL},
  {"quiet", 'q', 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_4[] = {"inspect", NULL};
static const struct ft_flag ft_cmd_flags_4[] = {
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_flags_5_alias_3[] = {"cwd", NULL};
static const struct ft_flag ft_cmd_flags_5[] = {
  {"interactive", 'i', 0, 0, NULL},
  {"tty", 't', 0, 0, NULL},
  {"user", 'u', 1, 0, NULL},
  {"workdir", 'w', 1, 0, ft_cmd_flags_5_alias_3},
  {"env", 'e', 1, 1, NULL},
  {"env-file", 0, 1, 1, NULL},
  {"detach-keys", 0, 1, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_6[] = {
  {"archive", 'a', 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_7[] = {
  {"ro", 0, 0, 0, NULL},
  {"detach-keys", 0, 1, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_8[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_9[] = {
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_10[] = {"rm", NULL};
static const struct ft_flag ft_cmd_flags_10[] = {
  {"force", 'f', 0, 0, NULL},
  {"timeout", 0, 1, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_11[] = {
  {"watch", 0, 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_12[] = {
  {"follow", 'f', 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_13[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_14[] = {
  {"output", 'o', 1, 0, NULL},
  {"compression", 0, 1, 0, NULL},
  {"with-volumes", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_15[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_16[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_17[] = {
  {"size", 0, 1, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_18[] = {"ls", NULL};
static const struct ft_flag ft_cmd_flags_18[] = {
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_19[] = {"inspect", NULL};
static const struct ft_flag ft_cmd_flags_19[] = {
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_20[] = {"rm", NULL};
static const struct ft_flag ft_cmd_flags_20[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_21[] = {
  {"size", 0, 1, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_22[] = {
  {"output", 'o', 1, 0, NULL},
  {"compression", 0, 1, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_23[] = {
  {"input", 'i', 1, 0, NULL},
  {"size", 0, 1, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_24[] = {
  {"shared", 0, 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_25[] = {"ls", NULL};
static const struct ft_flag ft_cmd_flags_25[] = {
  {"all", 'a', 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_26[] = {"rm", NULL};
static const struct ft_flag ft_cmd_flags_26[] = {
  {"json", 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_27[] = {"ls", NULL};
static const struct ft_flag ft_cmd_flags_27[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_28[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_29[] = {
  {NULL, 0, 0, 0, NULL},
};
static const char *const ft_cmd_alias_30[] = {"rm", NULL};
static const struct ft_flag ft_cmd_flags_30[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_31[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_32[] = {
  {"session", 0, 1, 0, NULL},
  {"since", 0, 1, 0, NULL},
  {"limit", 0, 1, 0, NULL},
  {"action", 0, 1, 0, NULL},
  {"user", 0, 1, 0, NULL},
  {"reads", 0, 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_33[] = {
  {"config", 0, 1, 0, NULL},
  {"state-dir", 0, 1, 0, NULL},
  {"repair", 0, 0, 0, NULL},
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_34[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_35[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_36[] = {
  {"json", 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_37[] = {
  {NULL, 0, 0, 0, NULL},
};
static const struct ft_flag ft_cmd_flags_38[] = {
  {NULL, 0, 0, 0, NULL},
};

static const struct ft_command ft_commands[] = {
  {"daemon", {"daemon", NULL}, 1, NULL, ft_cmd_flags_0, 4, 0, 0, 0, 0, FT_COLD},
  {"daemon reload", {"daemon", "reload", NULL}, 2, NULL, ft_cmd_flags_1, 0, 0, 0, 0, 0, FT_COLD},
  {"session create", {"session", "create", NULL}, 2, NULL, ft_cmd_flags_2, 23, 0, 0, 0, 0, FT_COLD},
  {"session list", {"session", "list", NULL}, 2, ft_cmd_alias_3, ft_cmd_flags_3, 3, 0, 0, 0, 0, FT_SESSION_LIST},
  {"session show", {"session", "show", NULL}, 2, ft_cmd_alias_4, ft_cmd_flags_4, 1, 1, 1, 0, 0, FT_SESSION_SHOW},
  {"session exec", {"session", "exec", NULL}, 2, NULL, ft_cmd_flags_5, 7, 1, 1, 0, 1, FT_SESSION_EXEC},
  {"session cp", {"session", "cp", NULL}, 2, NULL, ft_cmd_flags_6, 1, 2, 2, 0, 0, FT_COLD},
  {"session attach", {"session", "attach", NULL}, 2, NULL, ft_cmd_flags_7, 2, 1, 1, 0, 0, FT_SESSION_ATTACH},
  {"session stop", {"session", "stop", NULL}, 2, NULL, ft_cmd_flags_8, 1, 1, 1, 0, 0, FT_SESSION_STOP},
  {"session start", {"session", "start", NULL}, 2, NULL, ft_cmd_flags_9, 1, 1, 1, 0, 0, FT_SESSION_START},
  {"session destroy", {"session", "destroy", NULL}, 2, ft_cmd_alias_10, ft_cmd_flags_10, 2, 1, 1, 0, 0, FT_SESSION_DESTROY},
  {"session stats", {"session", "stats", NULL}, 2, NULL, ft_cmd_flags_11, 2, 1, 0, 0, 0, FT_COLD},
  {"session logs", {"session", "logs", NULL}, 2, NULL, ft_cmd_flags_12, 1, 1, 1, 0, 0, FT_COLD},
  {"session refresh-auth", {"session", "refresh-auth", NULL}, 2, NULL, ft_cmd_flags_13, 1, 1, 1, 0, 0, FT_COLD},
  {"session snapshot", {"session", "snapshot", NULL}, 2, NULL, ft_cmd_flags_14, 3, 1, 1, 0, 0, FT_COLD},
  {"session publish", {"session", "publish", NULL}, 2, NULL, ft_cmd_flags_15, 1, 2, 2, 0, 0, FT_COLD},
  {"session unpublish", {"session", "unpublish", NULL}, 2, NULL, ft_cmd_flags_16, 0, 2, 2, 0, 0, FT_COLD},
  {"volume create", {"volume", "create", NULL}, 2, NULL, ft_cmd_flags_17, 2, 1, 1, 0, 0, FT_COLD},
  {"volume list", {"volume", "list", NULL}, 2, ft_cmd_alias_18, ft_cmd_flags_18, 1, 0, 0, 0, 0, FT_COLD},
  {"volume show", {"volume", "show", NULL}, 2, ft_cmd_alias_19, ft_cmd_flags_19, 1, 1, 1, 0, 0, FT_COLD},
  {"volume remove", {"volume", "remove", NULL}, 2, ft_cmd_alias_20, ft_cmd_flags_20, 0, 1, 1, 0, 0, FT_COLD},
  {"volume resize", {"volume", "resize", NULL}, 2, NULL, ft_cmd_flags_21, 2, 1, 1, 0, 0, FT_COLD},
  {"volume export", {"volume", "export", NULL}, 2, NULL, ft_cmd_flags_22, 2, 1, 1, 0, 0, FT_COLD},
  {"volume import", {"volume", "import", NULL}, 2, NULL, ft_cmd_flags_23, 3, 2, 1, 0, 0, FT_COLD},
  {"auth set", {"auth", "set", NULL}, 2, NULL, ft_cmd_flags_24, 2, 1, 1, 0, 0, FT_COLD},
  {"auth list", {"auth", "list", NULL}, 2, ft_cmd_alias_25, ft_cmd_flags_25, 2, 0, 0, 0, 0, FT_COLD},
  {"auth remove", {"auth", "remove", NULL}, 2, ft_cmd_alias_26, ft_cmd_flags_26, 1, 1, 1, 0, 0, FT_COLD},
  {"node list", {"node", "list", NULL}, 2, ft_cmd_alias_27, ft_cmd_flags_27, 1, 0, 0, 0, 0, FT_COLD},
  {"node cordon", {"node", "cordon", NULL}, 2, NULL, ft_cmd_flags_28, 0, 1, 1, 0, 0, FT_COLD},
  {"node uncordon", {"node", "uncordon", NULL}, 2, NULL, ft_cmd_flags_29, 0, 1, 1, 0, 0, FT_COLD},
  {"node remove", {"node", "remove", NULL}, 2, ft_cmd_alias_30, ft_cmd_flags_30, 1, 1, 1, 0, 0, FT_COLD},
  {"node drain", {"node", "drain", NULL}, 2, NULL, ft_cmd_flags_31, 1, 1, 1, 0, 0, FT_COLD},
  {"events", {"events", NULL}, 1, NULL, ft_cmd_flags_32, 7, 0, 0, 0, 0, FT_COLD},
  {"doctor", {"doctor", NULL}, 1, NULL, ft_cmd_flags_33, 4, 0, 0, 0, 0, FT_COLD},
  {"help", {"help", NULL}, 1, NULL, ft_cmd_flags_34, 0, 1, 0, 1, 0, FT_COLD},
  {"completion", {"completion", NULL}, 1, NULL, ft_cmd_flags_35, 0, 1, 1, 0, 0, FT_COLD},
  {"whoami", {"whoami", NULL}, 1, NULL, ft_cmd_flags_36, 1, 0, 0, 0, 0, FT_COLD},
  {"version", {"version", NULL}, 1, NULL, ft_cmd_flags_37, 0, 0, 0, 0, 0, FT_COLD},
  {"__complete", {"__complete", NULL}, 1, NULL, ft_cmd_flags_38, 0, 1, 1, 0, 0, FT_COLD},
};
#define FT_NCOMMANDS 39

/* The socket without --socket or ENCLAVE_SOCKET (src/client/transport.ts). */
#define FT_DEFAULT_SOCKET "/run/enclave/enclave.sock"

/* A session reference the front end passes on as it is (POSIX extended regexes, from src/vocab/names.ts); any other goes to the Node CLI. */
#define FT_SESSION_ID_RE "^s-[0-9a-f]{10}$"
#define FT_SESSION_NAME_RE "^[a-z0-9][a-z0-9_-]{0,62}$"

/* -e NAME[=VALUE]: a name it passes on (src/cli/envFlags.ts), and names that look like secrets (src/vocab/names.ts, case-insensitive): those go to the Node CLI, which refuses them. */
#define FT_ENV_NAME_RE "^[A-Za-z_][A-Za-z0-9_]*$"
static const char *const ft_secret_looking[] = {"_TOKEN$", "_KEY$", "SECRET", "PASSWORD", "_PAT$", NULL};

/* attach and exec -t (native/src/front_tty.c): the terminal modes a program may leave switched on, each with its default (1 = set),
 * followed through the output and switched back on every way out, as src/cli/terminalModes.ts does for the Node CLI. */
struct ft_dec_mode {
  int mode;
  int on_by_default;
};
static const struct ft_dec_mode ft_dec_modes[] = {{1, 0}, {7, 1}, {25, 1}, {47, 0}, {1047, 0}, {1049, 0}, {9, 0}, {1000, 0}, {1002, 0}, {1003, 0}, {1004, 0}, {1005, 0}, {1006, 0}, {1015, 0}, {2004, 0}};
#define FT_NDEC_MODES 15
/* Switched off first, in this order: the main screen's modes are what the rest restores. */
static const int ft_alt_screens[] = {1049, 1047, 47};
#define FT_NALT_SCREENS 3
#define FT_CSI_Q "\033[?"
#define FT_MODES_MAX_CARRY 64
#define FT_KEYPAD_NORMAL "\033>"
#define FT_SGR_RESET "\033[0m"
/* The attach protocol and its channels (src/api/protocol.ts); the detach keys without --detach-keys, and what a detach prints once the terminal is restored (src/cli/attachClient.ts). */
#define FT_ATTACH_PROTOCOL "v1.attach.enclave.dev"
#define FT_CH_STDIN 0
#define FT_CH_STDOUT 1
#define FT_CH_STDERR 2
#define FT_CH_STATUS 3
#define FT_CH_RESIZE 4
#define FT_CH_EVENTS 5
#define FT_CH_ACK 6
#define FT_CH_SNAPSHOT 7
#define FT_CH_CLOSE 255
#define FT_DEFAULT_DETACH_KEYS "ctrl-p,ctrl-q"
#define FT_DETACHED_MESSAGE "\r\n[detached: the shell keeps running; attach again to return]\r\n"

#endif
