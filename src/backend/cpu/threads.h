/* The CPU backend's thread pool (the one documented piece of process-wide state besides the
 * error slot and grad mode): see threads.c. */
#ifndef ND_THREADS_H
#define ND_THREADS_H

#include <stdint.h>

/* Runs fn(ctx, begin, end, chunk) over contiguous chunks of [0, n), at most one chunk per thread
 * and none smaller than min_per_chunk items; the calling thread runs chunk 0. */
typedef void (*nd_parallel_fn)(void *ctx, int64_t begin, int64_t end, int chunk);
void nd_parallel_for(int64_t n, int64_t min_per_chunk, nd_parallel_fn fn, void *ctx);
/* How many chunks nd_parallel_for would use. */
int nd_parallel_chunks(int64_t n, int64_t min_per_chunk);
/* Flush-to-zero / denormals-are-zero for the calling thread, permanently or around a region. */
void nd_enable_flush_denormals(void);
unsigned nd_fp_mode_save_and_flush(void);
void nd_fp_mode_restore(unsigned saved);

/* The calling thread's scratch buffer number slot (< ND_SCRATCH_SLOTS) of at least `bytes`,
 * 64-byte aligned, kept for the next call; NULL when memory runs out. Buffers of one slot do not
 * survive the next call for the same slot on the same thread. */
enum {
    ND_SCRATCH_SCORES,    /* attention: one slice's score rows */
    ND_SCRATCH_COLUMNS,   /* conv: one image's column matrix (and its gradient) */
    ND_SCRATCH_PARTIALS,  /* conv: the weight-gradient partials of every image chunk */
    ND_SCRATCH_GEMM_A,    /* GEMM: this thread's packed block of A */
    ND_SCRATCH_GEMM_B,    /* GEMM: the packed block of B the region shares */
    ND_SCRATCH_SLOTS
};
#include <stddef.h>
void *nd_thread_scratch(int slot, size_t bytes);
/* Frees the calling thread's scratch buffers (they grow again on demand). */
void nd_thread_scratch_release(void);
/* True on a thread running a chunk of a parallel region (nested regions run inline). */
#include <stdbool.h>
bool nd_parallel_inside(void);

#endif
