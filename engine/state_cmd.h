/* `recstream state inspect|checkpoint|purge` (docs/STATE.md), and the
 * engine's half of the savepoint protocol for running instances.
 *
 * Savepoint protocol (a running engine holds the RocksDB lock, so the
 * command cannot open the database itself):
 *
 *   engine, while running: keeps its pid followed by "\n" in
 *     <state.dir>/RS_STATE_PID_FILE ("RECSTREAM_PID"), written once the
 *     store is open and removed on exit. Writing it promises to handle
 *     SIGUSR1 (whose default action would terminate the engine). The
 *     command signals the pid only while the database lock is held and,
 *     where /proc tells, only if that process has <state.dir>/LOCK open.
 *   command: removes any stale <state.dir>/RS_STATE_SAVEPOINT_RESULT,
 *     writes the ABSOLUTE target directory followed by "\n" into
 *     <state.dir>/RS_STATE_SAVEPOINT_REQUEST_TMP and renames it to
 *     <state.dir>/RS_STATE_SAVEPOINT_REQUEST, then sends
 *     RS_STATE_SAVEPOINT_SIGNAL (SIGUSR1) to the pid.
 *   engine, on the signal: notes it (nothing else in the handler); right
 *     after its next checkpoint it reads and removes the request, calls
 *     rs_store_savepoint(store, target) and answers in
 *     <state.dir>/RS_STATE_SAVEPOINT_RESULT, written as
 *     RS_STATE_SAVEPOINT_RESULT_TMP then renamed, whose first line is
 *     "ok" or "error: <message>". rs_state_savepoint_serve() does all of
 *     this step.
 *   command: polls for the result every RS_STATE_SAVEPOINT_POLL_MS (up to
 *     --timeout, default RS_STATE_SAVEPOINT_TIMEOUT_MS), prints the
 *     outcome and removes the result file. On timeout, or if the pid dies
 *     first, it withdraws the request (removes RS_STATE_SAVEPOINT_REQUEST).
 *
 * The file names are defined in state/store.h (state/ owns what lives in
 * a state directory, and the reset removes these files too).
 */
#ifndef RS_STATE_CMD_H
#define RS_STATE_CMD_H

#include <signal.h>
#include <stddef.h>

#include "state/store.h"
#include "util.h"

#define RS_STATE_SAVEPOINT_SIGNAL SIGUSR1
#define RS_STATE_SAVEPOINT_POLL_MS 50
#define RS_STATE_SAVEPOINT_TIMEOUT_MS 60000

/* `recstream state ...`: argv[0] is "state". Returns the exit status: 0
 * success, 1 runtime failure (missing, locked or corrupt state), 2 bad
 * usage or config. */
int rs_cmd_state(int argc, char **argv);

/* ---- the engine's side ---- */

/* Writes the current pid into <state_dir>/RECSTREAM_PID. */
int rs_state_pid_file_write(const char *state_dir, char *errstr,
                            size_t errstr_size);
/* Removes <state_dir>/RECSTREAM_PID if it names this process. */
void rs_state_pid_file_remove(const char *state_dir);
/* Serves a pending savepoint request: reads and removes
 * <state_dir>/SAVEPOINT_REQUEST, writes the savepoint of s, and answers in
 * SAVEPOINT_RESULT ("ok" or "error: ..."). Call it from the engine thread
 * right after a checkpoint, never from a signal handler. RS_ENOENT if no
 * request was pending, 0 if the savepoint was written, otherwise the
 * savepoint's error (already answered to the requester). */
int rs_state_savepoint_serve(rs_store_t *s, const char *state_dir);

/* ---- value rendering of `state inspect` (exposed for tests) ---- */

/* Appends a stored value: 8 bytes as an int64 counter, text as a quoted
 * string, float32 vectors as [a, b, ...], anything else as 0x-hex. */
void rs_state_render_value(rs_buf_t *out, const void *v, size_t n);
/* Appends an operator key: bare text, quoted text, or 0x-hex. */
void rs_state_render_key(rs_buf_t *out, const void *k, size_t n);

#endif
