/*
 * hello: start a libsipsimple application, print every notification, stop.
 *
 *   gcc -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs sipsimple) -o hello
 *   ./hello [CONFIG_DIR]      (no CONFIG_DIR: configuration kept in memory)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <sipsimple.h>

static int check(SipsimpleStatus st, const char *what) {
    if (st == SIPSIMPLE_STATUS_OK)
        return 1;
    char *msg = NULL;
    sipsimple_last_error(&msg);
    fprintf(stderr, "%s failed (status %u): %s\n", what, (unsigned)st, msg ? msg : "?");
    sipsimple_string_free(msg);
    return 0;
}

/* Runs on the library's notification thread. */
static void on_notification(const SipsimpleNotification *n, void *user_data) {
    unsigned *count = user_data;
    char *name = NULL, *kind = NULL, *data = NULL;
    uint64_t sender = 0;
    int64_t ts = 0;
    if (check(sipsimple_notification_name(n, &name), "name") &&
        check(sipsimple_notification_sender_kind(n, &kind), "sender kind") &&
        check(sipsimple_notification_sender_id(n, &sender), "sender id") &&
        check(sipsimple_notification_timestamp(n, &ts), "timestamp") &&
        check(sipsimple_notification_data_json(n, &data), "data")) {
        printf("%" PRId64 ".%06" PRId64 " %s from %s#%" PRIu64 " %s\n", ts / 1000000, ts % 1000000, name,
               kind, sender, data);
        fflush(stdout);
        (*count)++;
    }
    sipsimple_string_free(name);
    sipsimple_string_free(kind);
    sipsimple_string_free(data);
}

static void on_log(uint32_t level, const char *target, const char *message, void *user_data) {
    (void)user_data;
    fprintf(stderr, "log[%u] %s: %s\n", (unsigned)level, target, message);
}

int main(int argc, char **argv) {
    SipsimpleApplication *app = NULL;
    SipsimpleStorage *storage = NULL;
    uint64_t token = 0;
    unsigned count = 0;
    int ok = 1;
    char *version = NULL;

    if (!check(sipsimple_version(&version), "version"))
        return 1;
    printf("libsipsimple %s\n", version);
    sipsimple_string_free(version);

    ok = check(sipsimple_set_log_callback(on_log, NULL, 3), "set log callback") &&
         check(argc > 1 ? sipsimple_storage_new_file(argv[1], &storage) : sipsimple_storage_new_memory(&storage),
               "storage") &&
         check(sipsimple_application_new(&app), "application") &&
         check(sipsimple_notification_center_add_observer(NULL, 0, on_notification, &count, &token),
               "add observer") &&
         check(sipsimple_application_start(app, storage), "start");
    if (ok) {
        char *state = NULL;
        if (check(sipsimple_application_state(app, &state), "state"))
            printf("state: %s\n", state);
        sipsimple_string_free(state);
    }
    /* stop returns after SIPApplicationDidEnd has been delivered. */
    ok = check(sipsimple_application_stop(app), "stop") && ok;
    if (token)
        check(sipsimple_notification_center_remove_observer(token), "remove observer");
    sipsimple_set_log_callback(NULL, NULL, 0);
    if (app)
        check(sipsimple_application_free(app), "free application");
    if (storage)
        check(sipsimple_storage_free(storage), "free storage");
    printf("%u notifications\n", count);
    return ok && count >= 4 ? 0 : 1;
}
