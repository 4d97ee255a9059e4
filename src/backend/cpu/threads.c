/* The one thread pool. The calling thread takes part in every parallel region. Between regions
 * workers spin briefly (a fraction of a millisecond, with the CPU's pause hint) so back-to-back
 * regions start without a wake-up, then sleep on a condition variable, so an idle pool costs
 * nothing and cannot starve another pool or the caller on a 2-core machine. Compute threads flush denormals to zero (FTZ/DAZ), because
 * arithmetic on subnormal numbers is many times slower on x86. Work is split into contiguous
 * chunks by index, so which thread computes what never changes a result. */
#define _POSIX_C_SOURCE 200809L
#include "backend/cpu/threads.h"
#include "core/internal.h"

#include <stdatomic.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

enum { MAX_THREADS = 64 };

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t workers[MAX_THREADS];
    uint64_t start_generation[MAX_THREADS]; /* the generation a worker has already seen at birth */
    int n_workers;           /* started workers (threads - 1) */
    atomic_int wanted;       /* configured thread count (0: not yet decided) */
    atomic_uint_fast64_t generation; /* bumped for every region */
    atomic_int pending;              /* workers still running the current region */
    atomic_bool stopping;
    /* the current region */
    nd_parallel_fn fn;
    void *ctx;
    int64_t n;
    int chunks;
} pool;

static pool the_pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                        .wake = PTHREAD_COND_INITIALIZER,
                        .done = PTHREAD_COND_INITIALIZER};

enum { SPIN_ROUNDS = 1 << 14 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}
static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER; /* one region at a time */
static ND_THREAD_LOCAL bool inside_region;

void nd_enable_flush_denormals(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
}

unsigned nd_fp_mode_save_and_flush(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);
    return old;
#else
    return 0;
#endif
}

void nd_fp_mode_restore(unsigned saved)
{
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

static void run_chunk(nd_parallel_fn fn, void *ctx, int64_t n, int chunks, int c)
{
    int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end)
        fn(ctx, begin, end, c);
}

static void *worker_main(void *arg)
{
    int index = (int)(intptr_t)arg; /* worker i runs chunk i + 1; the caller runs chunk 0 */
    nd_enable_flush_denormals();
    inside_region = true; /* a worker only ever runs region chunks: nested regions run inline */
    /* Not 0: the counter keeps counting across pool restarts, and an old region is not ours. */
    uint64_t seen = the_pool.start_generation[index];
    for (;;) {
        /* Spin for the next region, then sleep until one starts. */
        uint64_t g = atomic_load_explicit(&the_pool.generation, memory_order_acquire);
        for (int i = 0; i < SPIN_ROUNDS && g == seen && !the_pool.stopping; i++) {
            cpu_relax();
            g = atomic_load_explicit(&the_pool.generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&the_pool.lock);
            while (!the_pool.stopping && atomic_load(&the_pool.generation) == seen)
                pthread_cond_wait(&the_pool.wake, &the_pool.lock);
            bool stop = the_pool.stopping;
            pthread_mutex_unlock(&the_pool.lock);
            if (stop)
                break;
            g = atomic_load_explicit(&the_pool.generation, memory_order_acquire);
        }
        if (the_pool.stopping)
            break;
        seen = g;
        if (index + 1 < the_pool.chunks)
            run_chunk(the_pool.fn, the_pool.ctx, the_pool.n, the_pool.chunks, index + 1);
        if (atomic_fetch_sub_explicit(&the_pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&the_pool.lock); /* the caller may be asleep waiting for this */
            pthread_cond_signal(&the_pool.done);
            pthread_mutex_unlock(&the_pool.lock);
        }
    }
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&the_pool.lock);
    the_pool.stopping = true;
    atomic_fetch_add(&the_pool.generation, 1);
    pthread_cond_broadcast(&the_pool.wake);
    pthread_mutex_unlock(&the_pool.lock);
    for (int i = 0; i < the_pool.n_workers; i++)
        pthread_join(the_pool.workers[i], NULL);
    the_pool.n_workers = 0;
    the_pool.stopping = false;
}

static int default_threads(void)
{
    const char *env = getenv("NDGRAD_NUM_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1 && v <= MAX_THREADS)
            return (int)v;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus >= 1 && cpus <= MAX_THREADS ? (int)cpus : 1;
}

/* Read on every parallel region: an atomic load, no lock. */
int nd_get_num_threads(void)
{
    int n = atomic_load_explicit(&the_pool.wanted, memory_order_relaxed);
    if (n == 0) {
        int expected = 0;
        n = default_threads();
        if (!atomic_compare_exchange_strong(&the_pool.wanted, &expected, n))
            n = expected;
    }
    return n;
}

nd_status nd_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS)
        return nd_fail_status(ND_ERR_VALUE, "nd_set_num_threads: expected 1 to %d threads, got %d", MAX_THREADS, n);
    if (inside_region)
        return nd_fail_status(ND_ERR_STATE, "nd_set_num_threads: cannot be called from inside a parallel region");
    pthread_mutex_lock(&region_lock);
    if (the_pool.n_workers != n - 1 && the_pool.n_workers > 0)
        stop_workers(); /* restarted lazily at the next region with the new size */
    atomic_store(&the_pool.wanted, n);
    pthread_mutex_unlock(&region_lock);
    return ND_OK;
}

static bool start_workers(int count)
{
    for (int i = the_pool.n_workers; i < count; i++) {
        the_pool.start_generation[i] = atomic_load(&the_pool.generation);
        if (pthread_create(&the_pool.workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0)
            return false;
        the_pool.n_workers = i + 1;
    }
    return true;
}

void nd_parallel_for(int64_t n, int64_t min_per_chunk, nd_parallel_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    int threads = nd_get_num_threads();
    int64_t by_size = min_per_chunk > 0 ? n / min_per_chunk : n;
    int chunks = (int)(by_size < threads ? (by_size < 1 ? 1 : by_size) : threads);
    /* Small work, a single thread, or a nested call: run inline on the calling thread, with the
     * same flush-to-zero mode as the workers, so the thread count never changes a result. */
    if (chunks <= 1 || inside_region || pthread_mutex_trylock(&region_lock) != 0) {
        unsigned fp = inside_region ? 0 : nd_fp_mode_save_and_flush();
        fn(ctx, 0, n, 0);
        if (!inside_region)
            nd_fp_mode_restore(fp);
        return;
    }
    if (the_pool.n_workers < threads - 1 && !start_workers(threads - 1)) {
        if (the_pool.n_workers == 0) {
            pthread_mutex_unlock(&region_lock);
            unsigned fp = nd_fp_mode_save_and_flush();
            fn(ctx, 0, n, 0);
            nd_fp_mode_restore(fp);
            return;
        }
    }
    if (chunks > the_pool.n_workers + 1)
        chunks = the_pool.n_workers + 1;
    the_pool.fn = fn;
    the_pool.ctx = ctx;
    the_pool.n = n;
    the_pool.chunks = chunks;
    atomic_store(&the_pool.pending, the_pool.n_workers);
    pthread_mutex_lock(&the_pool.lock); /* publishes the job to spinning and sleeping workers */
    atomic_fetch_add_explicit(&the_pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&the_pool.wake);
    pthread_mutex_unlock(&the_pool.lock);

    inside_region = true;
    unsigned fp = nd_fp_mode_save_and_flush();
    run_chunk(fn, ctx, n, chunks, 0);
    nd_fp_mode_restore(fp);
    inside_region = false;

    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&the_pool.pending, memory_order_acquire) > 0; i++)
        cpu_relax();
    if (atomic_load_explicit(&the_pool.pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&the_pool.lock);
        while (atomic_load(&the_pool.pending) > 0)
            pthread_cond_wait(&the_pool.done, &the_pool.lock);
        pthread_mutex_unlock(&the_pool.lock);
    }
    pthread_mutex_unlock(&region_lock);
}

int nd_parallel_chunks(int64_t n, int64_t min_per_chunk)
{
    int threads = nd_get_num_threads();
    int64_t by_size = min_per_chunk > 0 ? n / min_per_chunk : n;
    return (int)(by_size < threads ? (by_size < 1 ? 1 : by_size) : threads);
}

/* ------------------------------------------------------------------ per-thread scratch */

/* Kernels' temporary buffers (score rows, column matrices, GEMM packing), one set per thread, grown on demand
 * and kept, so steady-state training allocates nothing; freed when the thread exits. */
static ND_THREAD_LOCAL struct {
    void *ptr;
    size_t size;
} scratch[ND_SCRATCH_SLOTS];
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void free_scratch(void *unused)
{
    (void)unused;
    for (int i = 0; i < ND_SCRATCH_SLOTS; i++) {
        free(scratch[i].ptr);
        scratch[i].ptr = NULL;
        scratch[i].size = 0;
    }
}

static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

void *nd_thread_scratch(int slot, size_t bytes)
{
    if (bytes == 0)
        bytes = 1; /* a valid pointer even for empty work */
    if (scratch[slot].size < bytes) {
        pthread_once(&scratch_once, make_scratch_key);
        pthread_setspecific(scratch_key, &scratch_key); /* any non-NULL value arms the destructor */
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0)
            return NULL;
        free(scratch[slot].ptr);
        scratch[slot].ptr = p;
        scratch[slot].size = bytes;
    }
    return scratch[slot].ptr;
}

void nd_thread_scratch_release(void) { free_scratch(NULL); }

static void release_part(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)ctx, (void)begin, (void)end, (void)chunk;
    nd_thread_scratch_release();
}

/* Every pool thread frees its own buffers: one chunk per thread, the caller's included (when the
 * region cannot be split, as inside another one, the caller alone runs it). */
void nd_cpu_release_scratch(void) { nd_parallel_for(nd_get_num_threads(), 1, release_part, NULL); }

bool nd_parallel_inside(void) { return inside_region; }
