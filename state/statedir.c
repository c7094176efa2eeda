/* State directories as a whole (see store.h, "tools"): savepoints, the
 * reset behind `run --reset-state` and the restore behind `run
 * --restore-from`. The rule throughout: never delete or overwrite what is
 * not known to be a recstream state directory, and never leave a
 * half-restored one behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/store.h"

/* ---- names ---- */

static int has_prefix(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

static int has_suffix(const char *s, const char *x) {
  size_t n = strlen(s), m = strlen(x);
  return n >= m && strcmp(s + n - m, x) == 0;
}

/* Files whose presence means a database is, or was, in the directory. */
static int is_db_marker(const char *name) {
  return !strcmp(name, "CURRENT") || !strcmp(name, "IDENTITY") ||
         has_prefix(name, "MANIFEST-");
}

/* Other files RocksDB writes into a database directory. */
static int is_rocks_file(const char *name) {
  return !strcmp(name, "LOCK") || !strcmp(name, "LOG") ||
         has_prefix(name, "LOG.old") || has_prefix(name, "OPTIONS-") ||
         has_suffix(name, ".sst") || has_suffix(name, ".log") ||
         has_suffix(name, ".blob") || has_suffix(name, ".dbtmp");
}

static const char *const k_ours[] = {RS_STATE_PID_FILE,
                                     RS_STATE_SAVEPOINT_REQUEST,
                                     RS_STATE_SAVEPOINT_REQUEST_TMP,
                                     RS_STATE_SAVEPOINT_RESULT,
                                     RS_STATE_SAVEPOINT_RESULT_TMP,
                                     RS_STATE_REPLAY_PLAN,
                                     RS_STATE_REPLAY_PLAN_TMP};

static int is_ours(const char *name) {
  for (size_t i = 0; i < RS_ARRAY_SIZE(k_ours); i++)
    if (!strcmp(name, k_ours[i]))
      return 1;
  return 0;
}

/* "dir/name", or NULL when out of memory. */
static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = rs_malloc(a + b + 2);
  if (!p)
    return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

/* A copy of path without trailing slashes ("/" stays "/"). */
static char *trimmed(const char *path) {
  char *p = rs_strdup(path);
  if (!p)
    return NULL;
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/')
    p[--n] = '\0';
  return p;
}

/* The parent of a trimmed path: a new string ("." for a bare name). */
static char *parent_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return rs_strdup(".");
  if (slash == path)
    return rs_strdup("/");
  return rs_strndup(path, (size_t)(slash - path));
}

/* ---- what a directory holds ---- */

typedef struct dir_scan {
  size_t n_entries;
  size_t n_db;    /* CURRENT, IDENTITY, MANIFEST-* */
  size_t n_rocks; /* RocksDB's other files */
  size_t n_ours;  /* RS_STATE_* files */
  size_t n_other;
  char other[256]; /* the first of the others, for messages */
} dir_scan_t;

static int scan_dir(const char *dir, dir_scan_t *d, char *errstr,
                    size_t errstr_size) {
  memset(d, 0, sizeof *d);
  DIR *dp = opendir(dir);
  if (!dp)
    return rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot read %s: %s", dir,
                     strerror(errno));
  struct dirent *e;
  while ((e = readdir(dp))) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, ".."))
      continue;
    d->n_entries++;
    if (is_db_marker(n))
      d->n_db++;
    else if (is_rocks_file(n))
      d->n_rocks++;
    else if (is_ours(n))
      d->n_ours++;
    else if (d->n_other++ == 0)
      snprintf(d->other, sizeof d->other, "%s", n);
  }
  closedir(dp);
  return 0;
}

/* ---- savepoint ---- */

int rs_store_savepoint(rs_store_t *s, const char *target_dir, char *errstr,
                       size_t errstr_size) {
  if (!target_dir || !*target_dir)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "no savepoint directory given");
  char *target = trimmed(target_dir);
  char *parent = target ? parent_of(target) : NULL;
  if (!parent) {
    rs_free(target);
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  }
  struct stat st;
  int rc = 0;
  if (lstat(target, &st) == 0)
    rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                   "savepoint directory %s already exists; name a new "
                   "directory (a savepoint never replaces anything)",
                   target);
  else if (errno != ENOENT)
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "savepoint directory %s: %s",
                   target, strerror(errno));
  else if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
    rc = rs_seterr(errstr, errstr_size, RS_ENOENT,
                   "cannot write savepoint %s: its parent directory %s does "
                   "not exist",
                   target, parent);
  else
    rc = rs__rocks_checkpoint(rs__store_rocks(s), target, errstr, errstr_size);
  rs_free(parent);
  rs_free(target);
  return rc;
}

/* ---- reset ---- */

static void remove_ours(const char *dir) {
  for (size_t i = 0; i < RS_ARRAY_SIZE(k_ours); i++) {
    char *p = join(dir, k_ours[i]);
    if (p)
      unlink(p);
    rs_free(p);
  }
}

int rs_store_destroy_dir(const char *dir, char *errstr, size_t errstr_size) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT)
      return 0; /* nothing to delete */
    return rs_seterr(errstr, errstr_size, RS_ESTATE, "state directory %s: %s",
                     dir, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "state directory %s is not a directory; refusing to "
                     "delete it (check state.dir)",
                     dir);
  dir_scan_t d;
  int rc = scan_dir(dir, &d, errstr, errstr_size);
  if (rc)
    return rc;
  if (d.n_entries == 0)
    return 0;
  if (d.n_db == 0 && d.n_rocks == 0 && d.n_other > 0)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "%s does not look like a recstream state directory (no "
                     "CURRENT, IDENTITY or other RocksDB file; it holds "
                     "'%s'); refusing to delete anything in it: check "
                     "state.dir",
                     dir, d.other);
  if (d.n_db || d.n_rocks) {
    /* RocksDB deletes only its own files, and fails while the database
     * is open anywhere. */
    rc = rs__rocks_destroy_db(dir, errstr, errstr_size);
    if (rc)
      return rc;
  }
  remove_ours(dir);
  rmdir(dir); /* fails, harmlessly, when something else is left */
  return 0;
}

/* ---- restore ---- */

static int copy_file(const char *src, const char *dst) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return -1;
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    int e = errno;
    close(in);
    errno = e;
    return -1;
  }
  char buf[1 << 16];
  int rc = 0;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? -1 : 0;
      break;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0) {
        rc = -1;
        break;
      }
      off += w;
    }
    if (rc)
      break;
  }
  if (!rc && fsync(out) != 0)
    rc = -1;
  int saved = rc ? errno : 0;
  close(in);
  if (close(out) != 0 && !rc) {
    rc = -1;
    saved = errno;
  }
  errno = saved;
  return rc;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* mkdir -p */
static int make_dirs(const char *path, char *errstr, size_t errstr_size) {
  char *p = rs_strdup(path);
  if (!p)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc = 0;
  for (char *c = p + 1;; c++) {
    if (*c != '/' && *c != '\0')
      continue;
    char keep = *c;
    *c = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot create %s: %s", p,
                     strerror(errno));
      break;
    }
    *c = keep;
    if (!keep)
      break;
  }
  rs_free(p);
  return rc;
}

/* The savepoint's files to copy: regular files but LOCK, info logs and
 * recstream's protocol files (a new LOCK and LOG are made on open). */
typedef struct name_list {
  char **v;
  size_t n;
} name_list_t;

static void names_free(name_list_t *l) {
  for (size_t i = 0; i < l->n; i++)
    rs_free(l->v[i]);
  rs_free(l->v);
}

static int list_savepoint(const char *dir, name_list_t *out, char *errstr,
                          size_t errstr_size) {
  memset(out, 0, sizeof *out);
  DIR *dp = opendir(dir);
  if (!dp)
    return rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot read %s: %s", dir,
                     strerror(errno));
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(dp))) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "LOCK") ||
        !strcmp(n, "LOG") || has_prefix(n, "LOG.old") || is_ours(n))
      continue;
    char *full = join(dir, n);
    struct stat st;
    if (!full) {
      rc = RS_ENOMEM;
    } else if (lstat(full, &st) != 0) {
      rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "savepoint %s: %s", full,
                     strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "savepoint %s holds '%s', which is not a regular file; "
                     "a savepoint written by `recstream state checkpoint` "
                     "holds only files",
                     dir, n);
    } else {
      char **v = rs_realloc(out->v, (out->n + 1) * sizeof *v);
      if (!v || !(v[out->n] = rs_strdup(n))) {
        if (v)
          out->v = v;
        rc = RS_ENOMEM;
      } else {
        out->v = v;
        out->n++;
      }
    }
    rs_free(full);
  }
  closedir(dp);
  if (rc == RS_ENOMEM)
    rs_seterr(errstr, errstr_size, rc, "out of memory");
  if (rc)
    names_free(out);
  return rc;
}

/* Removes a partly filled temporary directory (only the names we put). */
static void remove_tmp(const char *tmp, const name_list_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    char *p = join(tmp, l->v[i]);
    if (p)
      unlink(p);
    rs_free(p);
  }
  rmdir(tmp);
}

/* Fills tmp with the savepoint's files: table and blob files (immutable)
 * hard-linked when the file system allows, everything else copied. */
static int fill(const char *from, const char *tmp, const name_list_t *l,
                char *errstr, size_t errstr_size) {
  for (size_t i = 0; i < l->n; i++) {
    const char *n = l->v[i];
    char *src = join(from, n), *dst = join(tmp, n);
    int rc = 0;
    if (!src || !dst) {
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    } else {
      int linked = (has_suffix(n, ".sst") || has_suffix(n, ".blob")) &&
                   link(src, dst) == 0;
      if (!linked && copy_file(src, dst) != 0)
        rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                       "cannot copy %s to %s: %s", src, dst, strerror(errno));
    }
    rs_free(src);
    rs_free(dst);
    if (rc)
      return rc;
  }
  return 0;
}

int rs_store_restore_dir(const char *savepoint_dir, const char *state_dir,
                         char *errstr, size_t errstr_size) {
  char *dest = trimmed(state_dir);
  char *parent = dest ? parent_of(dest) : NULL;
  char *tmp = NULL;
  name_list_t files = {0};
  int rc = 0;
  if (!parent) {
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    goto out;
  }

  /* The savepoint must be a database we can read. */
  rs_store_t *sp = NULL;
  char e[1024];
  rc = rs_store_open_readonly(savepoint_dir, &sp, e, sizeof e);
  if (rc == RS_ENOENT) {
    rs_seterr(errstr, errstr_size, rc,
              "cannot restore from savepoint %s: no such directory",
              savepoint_dir);
    goto out;
  }
  if (rc) {
    rs_seterr(errstr, errstr_size, rc,
              "cannot restore from savepoint %s: it is not a readable "
              "state database (%s)",
              savepoint_dir, e);
    goto out;
  }
  rs_store_destroy(sp);
  /* Then the destination: missing or empty. */
  struct stat st;
  if (stat(dest, &st) == 0) {
    dir_scan_t d;
    if (!S_ISDIR(st.st_mode))
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "state directory %s is not a directory", dest);
    else if (!(rc = scan_dir(dest, &d, errstr, errstr_size))) {
      if (d.n_db)
        rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "state directory %s already holds a state database; "
                       "pass --reset-state as well to replace it with the "
                       "savepoint",
                       dest);
      else if (d.n_entries)
        rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "state directory %s is not empty (it holds '%s'); "
                       "pass --reset-state if it is what is left of a state "
                       "directory, or empty it",
                       dest,
                       d.n_other   ? d.other
                       : d.n_rocks ? "RocksDB files"
                                   : "recstream files");
    }
  } else if (errno != ENOENT) {
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "state directory %s: %s",
                   dest, strerror(errno));
  }
  if (rc)
    goto out;

  if ((rc = list_savepoint(savepoint_dir, &files, errstr, errstr_size)))
    goto out;

  /* Build it beside the destination, then rename it into place: all or
   * nothing. rename() replaces an empty directory. */
  if ((rc = make_dirs(parent, errstr, errstr_size)))
    goto out;
  size_t n = strlen(dest);
  tmp = rs_malloc(n + sizeof ".restore-XXXXXX");
  if (!tmp) {
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    goto out;
  }
  memcpy(tmp, dest, n);
  memcpy(tmp + n, ".restore-XXXXXX", sizeof ".restore-XXXXXX");
  if (!mkdtemp(tmp)) {
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot create %s: %s", tmp,
                   strerror(errno));
    goto out;
  }
  rc = fill(savepoint_dir, tmp, &files, errstr, errstr_size);
  if (!rc && fsync_dir(tmp) != 0)
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot sync %s: %s", tmp,
                   strerror(errno));
  if (!rc && rename(tmp, dest) != 0)
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "cannot move the restored state into %s: %s", dest,
                   strerror(errno));
  if (rc) {
    remove_tmp(tmp, &files);
    goto out;
  }
  fsync_dir(parent);

out:
  names_free(&files);
  rs_free(tmp);
  rs_free(parent);
  rs_free(dest);
  return rc;
}
