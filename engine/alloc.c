/* The allocator front door and the two memory helpers built on it (growable
 * buffer, bump arena). One replaceable allocator lets tests inject failure;
 * the arena gives per-batch scratch memory without a malloc per record. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static rs_allocator_t g_alloc = {malloc, calloc, realloc, free};

void rs_set_allocator(const rs_allocator_t *a) {
  if (a)
    g_alloc = *a;
  else
    g_alloc = (rs_allocator_t){malloc, calloc, realloc, free};
}

void *rs_malloc(size_t size) {
  return g_alloc.malloc(size ? size : 1);
}
void *rs_calloc(size_t n, size_t size) {
  return g_alloc.calloc(n ? n : 1, size ? size : 1);
}
void *rs_realloc(void *p, size_t size) {
  return g_alloc.realloc(p, size ? size : 1);
}
int rs_grow(void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : 16;
  while (n < need)
    n *= 2;
  void *p = rs_realloc(*arr, n * elem);
  if (!p)
    return RS_ENOMEM;
  *arr = p;
  *cap = n;
  return 0;
}

void rs_free(void *p) {
  if (p)
    g_alloc.free(p);
}

char *rs_strndup(const char *s, size_t n) {
  char *d = rs_malloc(n + 1);
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *rs_strdup(const char *s) {
  return s ? rs_strndup(s, strlen(s)) : NULL;
}

int rs_buf_reserve(rs_buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  char *d = rs_realloc(b->data, cap);
  if (!d)
    return RS_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int rs_buf_append(rs_buf_t *b, const void *p, size_t n) {
  if (rs_buf_reserve(b, n + 1))
    return RS_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int rs_buf_printf(rs_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return RS_EINVAL;
  if (rs_buf_reserve(b, (size_t)n + 1))
    return RS_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void rs_buf_reset(rs_buf_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void rs_buf_free(rs_buf_t *b) {
  rs_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

struct rs_arena_chunk {
  rs_arena_chunk_t *next;
  size_t size;
  size_t used;
  _Alignas(16) unsigned char data[];
};

void rs_arena_init(rs_arena_t *a, size_t chunk_size) {
  a->head = NULL;
  a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
  a->used_bytes = 0;
}

void *rs_arena_alloc(rs_arena_t *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  rs_arena_chunk_t *c = a->head;
  if (!c || c->size - c->used < size) {
    size_t cs = size > a->chunk_size ? size : a->chunk_size;
    rs_arena_chunk_t *n = rs_malloc(sizeof(*n) + cs);
    if (!n)
      return NULL;
    n->size = cs;
    n->used = 0;
    n->next = c;
    a->head = c = n;
  }
  void *p = c->data + c->used;
  c->used += size;
  a->used_bytes += size;
  return p;
}

char *rs_arena_strndup(rs_arena_t *a, const char *s, size_t n) {
  char *d = rs_arena_alloc(a, n + 1);
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

void rs_arena_reset(rs_arena_t *a) {
  /* Keep the newest chunk (the biggest recent need); free the rest. */
  rs_arena_chunk_t *c = a->head;
  if (!c)
    return;
  rs_arena_chunk_t *rest = c->next;
  c->next = NULL;
  c->used = 0;
  while (rest) {
    rs_arena_chunk_t *n = rest->next;
    rs_free(rest);
    rest = n;
  }
  a->used_bytes = 0;
}

void rs_arena_free(rs_arena_t *a) {
  rs_arena_chunk_t *c = a->head;
  while (c) {
    rs_arena_chunk_t *n = c->next;
    rs_free(c);
    c = n;
  }
  a->head = NULL;
  a->used_bytes = 0;
}
