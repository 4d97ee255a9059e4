/* Memory recycling. Tensor data, tensor structs and graph nodes are allocated in size classes
 * (four per power of two, so at most 25% is wasted) and, when freed, kept on the freeing
 * thread's free lists for the next allocation of the same class. A training step allocates the
 * same sizes every time, so after the first step it takes everything from these lists and
 * calls malloc zero times. A thread's lists are bounded and are returned to the system when the
 * thread exits. */
#define _POSIX_C_SOURCE 200809L
#include "core/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
    N_CLASSES = 200,
    MAX_PER_CLASS = 4096,
};
#define MAX_CACHED_BYTES ((size_t)1 << 30) /* per thread */

typedef struct free_block {
    struct free_block *next;
} free_block;

typedef struct cache {
    free_block *head[N_CLASSES];
    uint32_t count[N_CLASSES];
    size_t bytes;
    bool registered;
} cache;

static ND_THREAD_LOCAL cache local;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

/* Class of a request and the size actually allocated for it. Small sizes go by 16 bytes; from
 * 256 bytes on, four classes per power of two. */
static int size_class(size_t n, size_t *rounded)
{
    if (n <= 256) {
        size_t c = (n + 15) / 16;
        *rounded = c > 0 ? c * 16 : 16;
        return (int)c;
    }
    int log2 = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^log2 < n <= 2^(log2+1) */
    size_t base = (size_t)1 << log2, step = base / 4;
    size_t sub = (n - base + step - 1) / step; /* 1..4 */
    *rounded = base + sub * step;
    return 17 + (log2 - 8) * 4 + (int)sub - 1;
}

static void release_cache(void *arg)
{
    (void)arg;
    for (int c = 0; c < N_CLASSES; c++) {
        free_block *b = local.head[c];
        while (b) {
            free_block *next = b->next;
            free(b);
            b = next;
        }
        local.head[c] = NULL;
        local.count[c] = 0;
    }
    local.bytes = 0;
    nd_scratch_release();
}

static void make_exit_key(void) { pthread_key_create(&exit_key, release_cache); }

/* The first cached block makes the thread return its cache when it exits. */
static void register_exit(void)
{
    if (local.registered)
        return;
    pthread_once(&exit_key_once, make_exit_key);
    pthread_setspecific(exit_key, &local);
    local.registered = true;
}

void *nd_mem_alloc(size_t n, bool zero)
{
    size_t rounded;
    int c = size_class(n, &rounded);
    void *p = NULL;
    if (c < N_CLASSES && local.head[c]) {
        free_block *b = local.head[c];
        local.head[c] = b->next;
        local.count[c]--;
        local.bytes -= rounded;
        p = b;
        if (zero)
            memset(p, 0, n);
        return p;
    }
    if (rounded >= 1024) {
        if (posix_memalign(&p, 64, rounded) != 0)
            return NULL; /* vector loads prefer 64-byte alignment */
        if (zero)
            memset(p, 0, n);
        return p;
    }
    return zero ? calloc(1, rounded) : malloc(rounded);
}

void nd_mem_free(void *p, size_t n)
{
    if (!p)
        return;
    size_t rounded;
    int c = size_class(n, &rounded);
    if (c >= N_CLASSES || local.count[c] >= MAX_PER_CLASS || local.bytes + rounded > MAX_CACHED_BYTES) {
        free(p);
        return;
    }
    register_exit();
    free_block *b = p;
    b->next = local.head[c];
    local.head[c] = b;
    local.count[c]++;
    local.bytes += rounded;
}

void nd_mem_trim(void)
{
    release_cache(NULL);
}
