/*
 * 8 threads hammer the C ABI at once for a few seconds: observers added and
 * removed, one shared application started and stopped, handles created and
 * freed, notifications read. Runs under valgrind in CI: no errors, no leaks,
 * no deadlock (the CI step has a time limit).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sipsimple.h>

#define THREADS 8

static SipsimpleApplication *shared_app;
static SipsimpleStorage *shared_storage;
static atomic_long delivered;
static atomic_int stop_flag;
static atomic_int unexpected;

static void count_cb(const SipsimpleNotification *n, void *ud) {
    (void)ud;
    char *name = NULL;
    if (sipsimple_notification_name(n, &name) != SIPSIMPLE_STATUS_OK)
        atomic_fetch_add(&unexpected, 1);
    sipsimple_string_free(name);
    atomic_fetch_add(&delivered, 1);
}

static void ok_or(SipsimpleStatus st, SipsimpleStatus alt) {
    if (st != SIPSIMPLE_STATUS_OK && st != alt) {
        char *msg = NULL;
        sipsimple_last_error(&msg);
        fprintf(stderr, "unexpected status %u: %s\n", (unsigned)st, msg ? msg : "?");
        sipsimple_string_free(msg);
        atomic_fetch_add(&unexpected, 1);
    }
}

static void *worker(void *arg) {
    long me = (long)arg;
    unsigned seed = (unsigned)me * 7919u;
    while (!atomic_load(&stop_flag)) {
        int op = rand_r(&seed) % 5;
        uint64_t token = 0;
        switch (op) {
        case 0:
            ok_or(sipsimple_notification_center_add_observer(NULL, 0, count_cb, NULL, &token), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_notification_center_remove_observer(token), SIPSIMPLE_STATUS_OK);
            break;
        case 1:
            /* Racing starts: exactly one wins, the others see INVALID_STATE. */
            ok_or(sipsimple_application_start(shared_app, shared_storage), SIPSIMPLE_STATUS_INVALID_STATE);
            break;
        case 2:
            ok_or(sipsimple_application_stop(shared_app), SIPSIMPLE_STATUS_OK);
            break;
        case 3: {
            SipsimpleApplication *a = NULL;
            SipsimpleStorage *s = NULL;
            ok_or(sipsimple_storage_new_memory(&s), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_application_new(&a), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_application_start(a, s), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_application_stop(a), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_application_free(a), SIPSIMPLE_STATUS_OK);
            ok_or(sipsimple_storage_free(s), SIPSIMPLE_STATUS_OK);
            break;
        }
        default: {
            char *st = NULL;
            ok_or(sipsimple_application_state(shared_app, &st), SIPSIMPLE_STATUS_OK);
            sipsimple_string_free(st);
        }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    pthread_t th[THREADS];
    uint64_t all = 0;
    if (sipsimple_storage_new_memory(&shared_storage) || sipsimple_application_new(&shared_app) ||
        sipsimple_notification_center_add_observer(NULL, 0, count_cb, NULL, &all))
        return 1;
    for (long i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    struct timespec ts = {seconds, 0};
    nanosleep(&ts, NULL);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    sipsimple_application_stop(shared_app);
    sipsimple_notification_center_flush(10000);
    sipsimple_notification_center_remove_observer(all);
    sipsimple_application_free(shared_app);
    sipsimple_storage_free(shared_storage);
    long d = atomic_load(&delivered);
    int bad = atomic_load(&unexpected);
    printf("concurrency: %ld notifications delivered, %d unexpected statuses\n", d, bad);
    printf("%d passed, %d failed\n", bad == 0 && d > 0 ? 1 : 0, bad == 0 && d > 0 ? 0 : 1);
    return bad == 0 && d > 0 ? 0 : 1;
}
