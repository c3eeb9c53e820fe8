/*
 * Handle and argument misuse through the C ABI: every case must return the
 * documented error code and set a message; nothing may crash or leak
 * (this program runs under valgrind in CI).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sipsimple.h>

static int failures = 0;

#define EXPECT(call, want)                                                                       \
    do {                                                                                         \
        SipsimpleStatus got_ = (call);                                                           \
        if (got_ != (want)) {                                                                    \
            char *m_ = NULL;                                                                     \
            sipsimple_last_error(&m_);                                                           \
            fprintf(stderr, "FAIL %s:%d: %s -> %u, want %u (%s)\n", __FILE__, __LINE__, #call,    \
                    (unsigned)got_, (unsigned)(want), m_ ? m_ : "");                             \
            sipsimple_string_free(m_);                                                           \
            failures++;                                                                          \
        } else if ((want) != SIPSIMPLE_STATUS_OK) {                                              \
            char *m_ = NULL;                                                                     \
            sipsimple_last_error(&m_);                                                           \
            if (!m_ || !*m_) {                                                                   \
                fprintf(stderr, "FAIL %s:%d: %s set no message\n", __FILE__, __LINE__, #call);   \
                failures++;                                                                      \
            }                                                                                    \
            sipsimple_string_free(m_);                                                           \
        }                                                                                        \
    } while (0)

static SipsimpleApplication *g_app;
static int g_stopped_in_callback;
static uint64_t g_self_token;
static int g_self_calls;
static const SipsimpleNotification *g_saved;

static void stop_on_start(const SipsimpleNotification *n, void *ud) {
    (void)ud;
    char *name = NULL;
    sipsimple_notification_name(n, &name);
    if (strcmp(name, "SIPApplicationDidStart") == 0) {
        /* Stopping from inside a callback must not deadlock. */
        if (sipsimple_application_stop(g_app) == SIPSIMPLE_STATUS_OK)
            g_stopped_in_callback = 1;
    }
    sipsimple_string_free(name);
}

static void remove_self(const SipsimpleNotification *n, void *ud) {
    (void)ud;
    g_self_calls++;
    g_saved = n; /* used after the callback returns: must be a stale handle */
    sipsimple_notification_center_remove_observer(g_self_token);
}

static void typed_fields(const SipsimpleNotification *n, void *ud) {
    int *ok = ud;
    char *name = NULL, *reason = NULL;
    int64_t i = 0;
    SipsimpleValueType t;
    sipsimple_notification_name(n, &name);
    if (strcmp(name, "SIPApplicationDidFail") == 0) {
        if (sipsimple_notification_get_string(n, "reason", &reason) == SIPSIMPLE_STATUS_OK &&
            strstr(reason, "config.json") &&
            sipsimple_notification_field_type(n, "reason", &t) == SIPSIMPLE_STATUS_OK &&
            t == SIPSIMPLE_VALUE_TYPE_STRING &&
            sipsimple_notification_get_int(n, "reason", &i) == SIPSIMPLE_STATUS_TYPE_MISMATCH &&
            sipsimple_notification_get_int(n, "nope", &i) == SIPSIMPLE_STATUS_NOT_FOUND &&
            sipsimple_notification_get_string(n, NULL, &reason) == SIPSIMPLE_STATUS_NULL_ARGUMENT)
            *ok = 1;
        sipsimple_string_free(reason);
    }
    sipsimple_string_free(name);
}

static void noop(const SipsimpleNotification *n, void *ud) {
    (void)n;
    (void)ud;
}

int main(void) {
    SipsimpleApplication *app = NULL;
    SipsimpleStorage *st = NULL;
    uint64_t token = 0, id = 0;
    char *s = NULL;

    /* NULL arguments */
    EXPECT(sipsimple_application_new(NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_application_start(NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_application_stop(NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_application_free(NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_storage_new_file(NULL, &st), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_storage_new_file("", &st), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
    EXPECT(sipsimple_notification_center_add_observer(NULL, 0, NULL, NULL, &token),
           SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_notification_center_add_observer(NULL, 0, noop, NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_notification_name(NULL, &s), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_version(NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    EXPECT(sipsimple_audio_devices(NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    if (sipsimple_last_error(NULL) != SIPSIMPLE_STATUS_NULL_ARGUMENT) {
        fprintf(stderr, "FAIL: sipsimple_last_error(NULL)\n");
        failures++;
    }
    EXPECT(sipsimple_string_free(NULL), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_set_log_callback(NULL, NULL, 9), SIPSIMPLE_STATUS_INVALID_ARGUMENT);

    /* Invalid UTF-8 */
    EXPECT(sipsimple_storage_new_file("/tmp/\xff\xfe", &st), SIPSIMPLE_STATUS_INVALID_UTF8);
    EXPECT(sipsimple_notification_center_add_observer("Bad\xc3(", 0, noop, NULL, &token),
           SIPSIMPLE_STATUS_INVALID_UTF8);

    /* Forged, wrong-type and stale handles */
    EXPECT(sipsimple_application_stop((SipsimpleApplication *)(uintptr_t)0x1234), SIPSIMPLE_STATUS_INVALID_HANDLE);
    EXPECT(sipsimple_storage_new_memory(&st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_new(&app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_stop((SipsimpleApplication *)st), SIPSIMPLE_STATUS_WRONG_HANDLE_TYPE);
    EXPECT(sipsimple_storage_free((SipsimpleStorage *)app), SIPSIMPLE_STATUS_WRONG_HANDLE_TYPE);
    EXPECT(sipsimple_application_start(app, (SipsimpleStorage *)app), SIPSIMPLE_STATUS_WRONG_HANDLE_TYPE);
    EXPECT(sipsimple_notification_name((SipsimpleNotification *)app, &s), SIPSIMPLE_STATUS_WRONG_HANDLE_TYPE);

    /* Double stop, stop without start, double start */
    EXPECT(sipsimple_application_stop(app), SIPSIMPLE_STATUS_OK);
    {
        uint32_t port = 0;
        /* The engine's calls before start: InvalidState / NotFound. */
        EXPECT(sipsimple_application_engine_statistics(app, &s), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_application_set_sip_trace(app, 1), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_application_engine_id(app, &id), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_application_sip_local_port(app, "udp", &port), SIPSIMPLE_STATUS_NOT_FOUND);
        EXPECT(sipsimple_application_sip_local_port(app, NULL, &port), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_application_sip_local_port(app, "smoke", &port), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_application_sip_local_port(app, "udp", NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    }
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_INVALID_STATE);
    {
        uint32_t port = 0;
        EXPECT(sipsimple_application_sip_local_port(app, "UDP", &port), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_application_engine_statistics(app, &s), SIPSIMPLE_STATUS_OK);
        if (port == 0 || !s || !strstr(s, "\"parse_errors\":0")) {
            fprintf(stderr, "FAIL: engine port %u / statistics %s\n", port, s ? s : "(null)");
            failures++;
        }
        sipsimple_string_free(s);
        s = NULL;
        EXPECT(sipsimple_application_set_sip_trace(app, 1), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_application_engine_statistics(app, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
    }
    EXPECT(sipsimple_application_stop(app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_stop(app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_state(app, &s), SIPSIMPLE_STATUS_OK);
    if (strcmp(s, "stopped") != 0) {
        fprintf(stderr, "FAIL: state %s\n", s);
        failures++;
    }
    sipsimple_string_free(s);

    /* Stop from inside a callback */
    g_app = app;
    EXPECT(sipsimple_application_id(app, &id), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_notification_center_add_observer(NULL, id, stop_on_start, NULL, &token), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_notification_center_flush(10000), SIPSIMPLE_STATUS_OK);
    if (!g_stopped_in_callback) {
        fprintf(stderr, "FAIL: stop inside callback\n");
        failures++;
    }
    EXPECT(sipsimple_notification_center_remove_observer(token), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_notification_center_remove_observer(token), SIPSIMPLE_STATUS_NOT_FOUND);

    /* An observer removing itself while notifications fire; its notification
       handle is stale once the callback returned. */
    EXPECT(sipsimple_notification_center_add_observer(NULL, id, remove_self, NULL, &g_self_token),
           SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_stop(app), SIPSIMPLE_STATUS_OK);
    if (g_self_calls != 1) {
        fprintf(stderr, "FAIL: self-removing observer called %d times\n", g_self_calls);
        failures++;
    }
    EXPECT(sipsimple_notification_name(g_saved, &s), SIPSIMPLE_STATUS_INVALID_HANDLE);

    /* A corrupt config file: DidFail with a typed reason, start fails. */
    {
        char dir[] = "/tmp/sipsimple-misuse-XXXXXX";
        char path[256];
        int typed_ok = 0;
        SipsimpleStorage *fst = NULL;
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        fputs("{ corrupt", f);
        fclose(f);
        EXPECT(sipsimple_storage_new_file(dir, &fst), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_notification_center_add_observer(NULL, id, typed_fields, &typed_ok, &token),
               SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_application_start(app, fst), SIPSIMPLE_STATUS_STORAGE);
        EXPECT(sipsimple_notification_center_remove_observer(token), SIPSIMPLE_STATUS_OK);
        if (!typed_ok) {
            fprintf(stderr, "FAIL: typed accessors on SIPApplicationDidFail\n");
            failures++;
        }
        EXPECT(sipsimple_storage_free(fst), SIPSIMPLE_STATUS_OK);
        unlink(path);
        rmdir(dir);
    }

    /* Use after free */
    EXPECT(sipsimple_application_free(app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_free(app), SIPSIMPLE_STATUS_INVALID_HANDLE);
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_INVALID_HANDLE);
    EXPECT(sipsimple_storage_free(st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_storage_free(st), SIPSIMPLE_STATUS_INVALID_HANDLE);

    /* Sessions, accounts and stream types. */
    {
        SipsimpleStorage *sst = NULL;
        SipsimpleApplication *sapp = NULL;
        SipsimpleAccount *acc = NULL;
        SipsimpleSession *ses = NULL;
        char *state = NULL;
        EXPECT(sipsimple_account_new("no-at-sign", NULL, &acc), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_account_new(NULL, NULL, &acc), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_account_new("a@b", "bad\"quote", &acc), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_account_new("alice@example.com", "Alice", &acc), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_storage_new_memory(&sst), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_application_new(&sapp), SIPSIMPLE_STATUS_OK);
        /* Not running yet. */
        EXPECT(sipsimple_session_new(sapp, acc, &ses), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_application_start(sapp, sst), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_session_new(sapp, NULL, &ses), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_new(sapp, (SipsimpleAccount *)sapp, &ses), SIPSIMPLE_STATUS_WRONG_HANDLE_TYPE);
        EXPECT(sipsimple_session_new(sapp, acc, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_new(sapp, acc, &ses), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_session_state(ses, &state), SIPSIMPLE_STATUS_OK);
        if (state && strcmp(state, "NULL") != 0) {
            fprintf(stderr, "FAIL: a new session is %s\n", state);
            failures++;
        }
        sipsimple_string_free(state);
        /* Every method in the NULL state but connect is refused. */
        EXPECT(sipsimple_session_accept(ses, NULL), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_reject(ses, 486), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_end(ses), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_hold(ses), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_send_ring_indication(ses), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_accept_proposal(ses, NULL), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_reject_proposal(ses, 488), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_add_stream(ses, "audio"), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_remove_stream(ses, "audio"), SIPSIMPLE_STATUS_NOT_FOUND);
        /* Chat calls on a session without a chat stream, and bad buffers. */
        EXPECT(sipsimple_session_send_message(NULL, (const uint8_t *)"x", 1, NULL, NULL),
               SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_message(ses, NULL, 5, NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_message(ses, (const uint8_t *)"x", 1, "text/plain", NULL),
               SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_send_message(ses, (const uint8_t *)"x", 1, "\xff", NULL),
               SIPSIMPLE_STATUS_INVALID_UTF8);
        EXPECT(sipsimple_session_send_composing_indication(ses, NULL, 0), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_composing_indication(ses, "active", 0), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_send_display_notification(NULL, "m1"), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_display_notification(ses, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_display_notification(ses, "m1"), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_send_dtmf(NULL, "1"), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_dtmf(ses, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_send_dtmf(ses, "1"), SIPSIMPLE_STATUS_INVALID_STATE);
        /* File transfer calls with bad arguments or in the wrong state. */
        EXPECT(sipsimple_session_connect_file(NULL, "sip:x@127.0.0.1:9", NULL, "/etc/hostname"),
               SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_connect_file(ses, "sip:x@127.0.0.1:9", NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_connect_file(ses, "sip:x@127.0.0.1:9", NULL, "/nonexistent/file"),
               SIPSIMPLE_STATUS_IO);
        EXPECT(sipsimple_session_connect_file(ses, "sip:x@127.0.0.1:9", NULL, "/"), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_session_connect_pull(ses, "sip:x@127.0.0.1:9", NULL, "size:x"),
               SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_session_connect_pull(ses, "sip:x@127.0.0.1:9", NULL, "size:5"),
               SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_session_send_file(ses, "/nonexistent/file"), SIPSIMPLE_STATUS_IO);
        EXPECT(sipsimple_session_set_file_source(ses, "/etc/hostname"), SIPSIMPLE_STATUS_INVALID_STATE);
        EXPECT(sipsimple_session_set_file_source(ses, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        /* Bad arguments to connect. */
        EXPECT(sipsimple_session_connect(ses, NULL, NULL, "audio"), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_session_connect(ses, "not a uri", NULL, "audio"), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_session_connect(ses, "sip:x@127.0.0.1:9", NULL, "no-such-type"), SIPSIMPLE_STATUS_NOT_FOUND);
        EXPECT(sipsimple_session_connect(ses, "sip:x@127.0.0.1:9", NULL, ""), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_session_connect(ses, "sip:x@127.0.0.1:9", "<<bad", "audio"), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_application_get_session(sapp, 12345678, &ses), SIPSIMPLE_STATUS_NOT_FOUND);
        /* Stream type registration. */
        SipsimpleStreamCallbacks empty;
        memset(&empty, 0, sizeof empty);
        EXPECT(sipsimple_stream_type_register("x", 0, 0, NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_stream_type_register("x", 0, 0, &empty, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_stream_type_unregister("never-registered"), SIPSIMPLE_STATUS_NOT_FOUND);
        /* MSRP message stream types: bad names, media, types and attributes. */
        EXPECT(sipsimple_msrp_stream_type_register(NULL, NULL, NULL, NULL, NULL), SIPSIMPLE_STATUS_NULL_ARGUMENT);
        EXPECT(sipsimple_msrp_stream_type_register("odf", "m edia", NULL, NULL, NULL),
               SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_msrp_stream_type_register("odf", "odf", "not a type", NULL, NULL),
               SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_msrp_stream_type_register("odf", "odf", "application/odf+xml", NULL, "setup:active"),
               SIPSIMPLE_STATUS_INVALID_ARGUMENT);
        EXPECT(sipsimple_msrp_stream_type_register("odf", "odf", "\xff", NULL, NULL), SIPSIMPLE_STATUS_INVALID_UTF8);
        EXPECT(sipsimple_msrp_stream_type_register("odf", "odf", "application/odf+xml", "*",
                                                   "features:odf-editor\nsendrecv"),
               SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_stream_type_unregister("odf"), SIPSIMPLE_STATUS_OK);
        /* Accounts and settings of the running application. */
        {
            SipsimpleAccount *stored = NULL;
            char *out = NULL;
            EXPECT(sipsimple_application_get_account(sapp, "nobody@example.invalid", &stored),
                   SIPSIMPLE_STATUS_NOT_FOUND);
            EXPECT(sipsimple_application_add_account(sapp, "bad id", NULL, &stored),
                   SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_application_add_account(sapp, "zed@example.invalid", "pw", &stored),
                   SIPSIMPLE_STATUS_OK);
            EXPECT(sipsimple_account_set(stored, "registration.enabled", "false"), SIPSIMPLE_STATUS_OK);
            EXPECT(sipsimple_account_set(stored, "registration.expires", "\"soon\""),
                   SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_account_set(stored, "registration.expires", "not json"),
                   SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_account_set(stored, "no.such", "1"), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_account_set(stored, NULL, "1"), SIPSIMPLE_STATUS_NULL_ARGUMENT);
            EXPECT(sipsimple_account_save(stored, &out), SIPSIMPLE_STATUS_OK);
            if (!out || strcmp(out, "[\"registration.enabled\"]") != 0) {
                fprintf(stderr, "FAIL: saved %s\n", out ? out : "(null)");
                failures++;
            }
            sipsimple_string_free(out);
            out = NULL;
            EXPECT(sipsimple_account_get(stored, "registration.expires", &out), SIPSIMPLE_STATUS_OK);
            sipsimple_string_free(out);
            out = NULL;
            EXPECT(sipsimple_account_set(acc, "enabled", "false"), SIPSIMPLE_STATUS_INVALID_STATE);
            EXPECT(sipsimple_application_setting_set(sapp, "sip.udp_port", "70000", &out),
                   SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_application_setting_get(sapp, "no.such", &out), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_application_delete_account(sapp, "bonjour@local"), SIPSIMPLE_STATUS_INVALID_ARGUMENT);
            EXPECT(sipsimple_application_delete_account(sapp, "zed@example.invalid"), SIPSIMPLE_STATUS_OK);
            EXPECT(sipsimple_application_delete_account(sapp, "zed@example.invalid"), SIPSIMPLE_STATUS_NOT_FOUND);
            EXPECT(sipsimple_account_free(stored), SIPSIMPLE_STATUS_OK);
            EXPECT(sipsimple_application_network_changed(sapp), SIPSIMPLE_STATUS_OK);
        }
        /* Use after free. */
        EXPECT(sipsimple_session_free(ses), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_session_end(ses), SIPSIMPLE_STATUS_INVALID_HANDLE);
        EXPECT(sipsimple_session_free(ses), SIPSIMPLE_STATUS_INVALID_HANDLE);
        EXPECT(sipsimple_account_free(acc), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_account_free(acc), SIPSIMPLE_STATUS_INVALID_HANDLE);
        EXPECT(sipsimple_application_stop(sapp), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_application_free(sapp), SIPSIMPLE_STATUS_OK);
        EXPECT(sipsimple_storage_free(sst), SIPSIMPLE_STATUS_OK);
    }

    /* Freeing a running application does not block or crash. */
    EXPECT(sipsimple_storage_new_memory(&st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_new(&app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_start(app, st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_application_free(app), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_storage_free(st), SIPSIMPLE_STATUS_OK);
    EXPECT(sipsimple_notification_center_flush(10000), SIPSIMPLE_STATUS_OK);
    usleep(300 * 1000); /* let the detached runtime thread finish */

    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
