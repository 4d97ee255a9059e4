/* Live-object counters for leak checks. Each thread updates its own counters with plain relaxed
 * loads and stores (no locked read-modify-write on the hot path of every op); readers sum the
 * counters of all threads. A thread's counts move to a shared total when it exits. */
#include "core/internal.h"

#include <pthread.h>
#include <stdlib.h>

typedef nd_live_counters counters;

ND_THREAD_LOCAL counters nd_counters_mine;
#define mine nd_counters_mine
static counters *all_threads;                 /* registered threads, under list_lock */
static atomic_llong retired[3];               /* counts of threads that have exited */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg)
{
    counters *c = arg;
    pthread_mutex_lock(&list_lock);
    for (counters **p = &all_threads; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    for (int i = 0; i < 3; i++)
        atomic_fetch_add(&retired[i], atomic_load(&c->value[i]));
    pthread_mutex_unlock(&list_lock);
}

static void make_key(void) { pthread_key_create(&exit_key, on_thread_exit); }

void nd_count_live_register(int which, int delta)
{
    if (!mine.registered) {
        pthread_once(&key_once, make_key);
        pthread_mutex_lock(&list_lock);
        mine.next = all_threads;
        all_threads = &mine;
        mine.registered = true;
        pthread_mutex_unlock(&list_lock);
        pthread_setspecific(exit_key, &mine);
    }
    atomic_store_explicit(&mine.value[which],
                          atomic_load_explicit(&mine.value[which], memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

static int64_t total(int which)
{
    pthread_mutex_lock(&list_lock);
    int64_t sum = atomic_load(&retired[which]);
    for (counters *c = all_threads; c; c = c->next)
        sum += atomic_load_explicit(&c->value[which], memory_order_relaxed);
    pthread_mutex_unlock(&list_lock);
    return sum;
}

int64_t nd_live_tensors(void) { return total(ND_COUNT_TENSORS); }
int64_t nd_live_storages(void) { return total(ND_COUNT_STORAGES); }
int64_t nd_live_nodes(void) { return total(ND_COUNT_NODES); }
