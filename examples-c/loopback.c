/*
 * loopback: two endpoints, alice and bob, in one process. Alice calls bob
 * over 127.0.0.1 with no server in between; both print their notifications.
 * The session carries "ping", a media stream type this program defines
 * itself through the stream registry: each side binds a UDP socket, puts it
 * in its SDP, and sends a greeting to the address the other side's SDP gave.
 * Alice then puts the call on hold, takes it off hold, adds and removes a
 * second ping stream, adds a chat stream (MSRP over TLS with CPIM) and
 * greets bob, who answers; both see their message delivered. Alice then
 * sends bob a file on the same session (MSRP file transfer, RFC 5547):
 * bob's side saves it once its SHA-1 matches the offer, and the program
 * checks the saved bytes. Last, alice adds an audio stream (RTP with the
 * first codec both run, SRTP keyed by SDES) sending a 440 Hz tone; bob's
 * output device is a WAV file. Alice hangs up, and the program prints what
 * bob heard (its strongest frequency and level) and the RTP statistics.
 *
 *   gcc -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE loopback.c \
 *       $(pkg-config --cflags --libs sipsimple) -lpthread -lm -o loopback
 *   ./loopback
 *
 * Exit status 0 when the whole exchange happened.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------------------ the ping stream */

#define MAX_STREAMS 8

struct ping_stream {
    uint64_t id; /* 0: free slot */
    int fd;
    char media[256];
    pthread_t reader;
    int reading;
};

static struct ping_stream streams[MAX_STREAMS];
static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int pings_received;
static atomic_int streams_ended;

static struct ping_stream *stream_get(uint64_t id, int create) {
    struct ping_stream *found = NULL;
    pthread_mutex_lock(&streams_lock);
    for (int i = 0; i < MAX_STREAMS && !found; i++)
        if (streams[i].id == id)
            found = &streams[i];
    for (int i = 0; i < MAX_STREAMS && !found && create; i++)
        if (streams[i].id == 0) {
            memset(&streams[i], 0, sizeof streams[i]);
            streams[i].id = id;
            streams[i].fd = -1;
            found = &streams[i];
        }
    pthread_mutex_unlock(&streams_lock);
    return found;
}

static int32_t ping_new_from_sdp(uint64_t id, const char *sdp, uint32_t index, void *ud) {
    (void)ud;
    /* Take the index-th m= line if it is ours. */
    const char *m = sdp;
    for (uint32_t i = 0; m && i <= index; i++) {
        m = strstr(m, "\nm=");
        if (m && i < index)
            m++;
    }
    if (!m || strncmp(m + 1, "m=application ", 14) != 0 || !strstr(m, "UDP x-ping"))
        return 0;
    return stream_get(id, 1) != NULL;
}

static int32_t ping_new_outgoing(uint64_t id, void *ud) {
    (void)ud;
    return stream_get(id, 1) ? 0 : 1;
}

static int32_t ping_initialize(uint64_t id, const char *local_ip, const char *direction, void *ud) {
    (void)direction;
    (void)ud;
    struct ping_stream *s = stream_get(id, 0);
    if (!s)
        return 1;
    s->fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, local_ip, &a.sin_addr);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0)
        return 2;
    socklen_t len = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &len);
    snprintf(s->media, sizeof s->media, "m=application %u UDP x-ping\r\na=ping-greeting:hello\r\n",
             (unsigned)ntohs(a.sin_port));
    return 0;
}

static const char *ping_get_local_media(uint64_t id, const char *remote_media, void *ud) {
    (void)remote_media;
    (void)ud;
    struct ping_stream *s = stream_get(id, 0);
    return s && s->fd >= 0 ? s->media : NULL;
}

static void *ping_reader(void *arg) {
    struct ping_stream *s = arg;
    char buf[128];
    ssize_t n = recv(s->fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
        buf[n] = 0;
        printf("           ping stream %" PRIu64 " received \"%s\"\n", s->id, buf);
        fflush(stdout);
        atomic_fetch_add(&pings_received, 1);
    }
    return NULL;
}

/* Find "c=IN IP4 <ip>" and the port of the index-th m= line in an SDP. */
static int remote_address(const char *sdp, uint32_t index, struct sockaddr_in *out) {
    const char *c = strstr(sdp, "c=IN IP4 ");
    const char *m = sdp;
    for (uint32_t i = 0; m && i <= index; i++) {
        m = strstr(m, "m=");
        if (m && i < index)
            m += 2;
    }
    unsigned port = 0;
    char ip[64] = {0};
    if (!c || !m || sscanf(c, "c=IN IP4 %63s", ip) != 1 || sscanf(m, "m=application %u", &port) != 1)
        return 0;
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, ip, &out->sin_addr) == 1;
}

static int32_t ping_start(uint64_t id, const char *local_sdp, const char *remote_sdp, uint32_t index,
                          void *ud) {
    (void)local_sdp;
    (void)ud;
    struct ping_stream *s = stream_get(id, 0);
    struct sockaddr_in peer;
    if (!s || !remote_address(remote_sdp, index, &peer))
        return 1;
    s->reading = pthread_create(&s->reader, NULL, ping_reader, s) == 0;
    char msg[64];
    snprintf(msg, sizeof msg, "hello from stream %" PRIu64, id);
    sendto(s->fd, msg, strlen(msg), 0, (struct sockaddr *)&peer, sizeof peer);
    return 0;
}

static void ping_hold(uint64_t id, void *ud) {
    (void)ud;
    printf("           ping stream %" PRIu64 " on hold\n", id);
}

static void ping_unhold(uint64_t id, void *ud) {
    (void)ud;
    printf("           ping stream %" PRIu64 " off hold\n", id);
}

static void ping_end(uint64_t id, void *ud) {
    (void)ud;
    struct ping_stream *s = stream_get(id, 0);
    if (!s)
        return;
    if (s->reading)
        pthread_join(s->reader, NULL);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_lock(&streams_lock);
    s->id = 0;
    pthread_mutex_unlock(&streams_lock);
    atomic_fetch_add(&streams_ended, 1);
}

/* ------------------------------------------------------------ the endpoints */

static SipsimpleApplication *alice, *bob;
static atomic_uint_fast64_t alice_session_id;
static atomic_int started, ended, held;
static atomic_uint_fast64_t bob_session_id;
static atomic_int chats_received, chats_delivered;
static atomic_int files_sent, files_received;
static char received_path[4096];
static int heard_ok;

static void on_notification(const SipsimpleNotification *n, void *ud) {
    (void)ud;
    char *name = NULL, *kind = NULL, *data = NULL;
    uint64_t sender = 0;
    if (!check(sipsimple_notification_name(n, &name), "name") ||
        !check(sipsimple_notification_sender_kind(n, &kind), "kind") ||
        !check(sipsimple_notification_sender_id(n, &sender), "sender") ||
        !check(sipsimple_notification_data_json(n, &data), "data"))
        goto out;
    if (strncmp(name, "SIPSession", 10) != 0 && strncmp(name, "MediaStream", 11) != 0 &&
        strncmp(name, "ChatStream", 10) != 0 && strncmp(name, "FileTransferStream", 18) != 0)
        goto out;
    const char *who = strcmp(kind, "Session") != 0 ? "      " : sender == alice_session_id ? "alice " : "bob   ";
    printf("[%s] %-34s %s\n", who, name, data);
    fflush(stdout);
    if (strcmp(name, "SIPSessionNewIncoming") == 0) {
        atomic_store(&bob_session_id, sender);
        /* Bob answers: ring, then accept every proposed stream. */
        SipsimpleSession *s = NULL;
        if (check(sipsimple_application_get_session(bob, sender, &s), "get session")) {
            check(sipsimple_session_send_ring_indication(s), "ring");
            check(sipsimple_session_accept(s, NULL), "accept");
            sipsimple_session_free(s);
        }
    } else if (strcmp(name, "SIPSessionGotProposal") == 0) {
        /* Bob takes every stream alice proposes. */
        SipsimpleSession *s = NULL;
        if (check(sipsimple_application_get_session(bob, sender, &s), "get session")) {
            check(sipsimple_session_accept_proposal(s, NULL), "accept proposal");
            sipsimple_session_free(s);
        }
    } else if (strcmp(name, "ChatStreamGotMessage") == 0) {
        atomic_fetch_add(&chats_received, 1);
        /* Bob answers alice's greeting on his side of the session. */
        SipsimpleSession *s = NULL;
        if (strstr(data, "Hello Bob") &&
            check(sipsimple_application_get_session(bob, atomic_load(&bob_session_id), &s), "bob's session")) {
            const char *reply = "Hello Alice, loud and clear";
            check(sipsimple_session_send_message(s, (const uint8_t *)reply, strlen(reply), NULL, NULL), "reply");
            sipsimple_session_free(s);
        }
    } else if (strcmp(name, "ChatStreamDidDeliverMessage") == 0) {
        atomic_fetch_add(&chats_delivered, 1);
    } else if (strcmp(name, "FileTransferStreamDidFinish") == 0) {
        int32_t error = 1, verified = 0;
        char *direction = NULL, *path = NULL;
        if (check(sipsimple_notification_get_bool(n, "error", &error), "error") && !error &&
            check(sipsimple_notification_get_string(n, "direction", &direction), "direction")) {
            if (strcmp(direction, "send") == 0) {
                atomic_fetch_add(&files_sent, 1);
            } else if (check(sipsimple_notification_get_bool(n, "hash_verified", &verified), "hash") && verified &&
                       check(sipsimple_notification_get_string(n, "file_path", &path), "file path")) {
                snprintf(received_path, sizeof received_path, "%s", path);
                atomic_fetch_add(&files_received, 1);
            }
        }
        sipsimple_string_free(direction);
        sipsimple_string_free(path);
    } else if (strcmp(name, "SIPSessionDidStart") == 0) {
        atomic_fetch_add(&started, 1);
    } else if (strcmp(name, "SIPSessionDidChangeHoldState") == 0) {
        atomic_fetch_add(&held, 1);
    } else if (strcmp(name, "SIPSessionDidEnd") == 0) {
        atomic_fetch_add(&ended, 1);
    }
out:
    sipsimple_string_free(name);
    sipsimple_string_free(kind);
    sipsimple_string_free(data);
}

static int wait_for(atomic_int *v, int at_least, const char *what) {
    for (int i = 0; i < 1000; i++) {
        if (atomic_load(v) >= at_least)
            return 1;
        usleep(10000);
    }
    fprintf(stderr, "timed out waiting for %s\n", what);
    return 0;
}

static int wait_established(SipsimpleSession *s) {
    for (int i = 0; i < 1000; i++) {
        char *state = NULL;
        int ok = check(sipsimple_session_state(s, &state), "state") && strcmp(state, "established") == 0;
        sipsimple_string_free(state);
        if (ok)
            return 1;
        usleep(10000);
    }
    return 0;
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* What a mono 16-bit WAV file holds: its length, and over one second from
 * its middle the strongest frequency from 100 Hz to 4 kHz (Goertzel on
 * 100 ms blocks, in 10 Hz steps) and the level in dBFS. */
static int analyse_wav(const char *path, int *complete, double *seconds, double *freq, double *dbfs) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static unsigned char buf[8 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (len < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WAVE", 4) != 0)
        return 0;
    uint32_t rate = 0, channels = 0, bits = 0;
    const int16_t *pcm = NULL;
    size_t n = 0;
    for (size_t at = 12; at + 8 <= len;) {
        uint32_t size = le32(buf + at + 4);
        size_t body = at + 8, avail = len - body;
        if (memcmp(buf + at, "fmt ", 4) == 0 && avail >= 16) {
            channels = buf[body + 2] | buf[body + 3] << 8;
            rate = le32(buf + body + 4);
            bits = buf[body + 14] | buf[body + 15] << 8;
        } else if (memcmp(buf + at, "data", 4) == 0) {
            /* A file still being written says 0: take what is there. */
            pcm = (const int16_t *)(buf + body);
            *complete = size != 0 && size <= avail;
            n = (*complete ? size : avail) / 2;
            break;
        }
        if (size > avail)
            break;
        at = body + size + (size & 1);
    }
    if (!pcm || channels != 1 || bits != 16 || rate < 8000 || n < rate / 2)
        return 0;
    *seconds = (double)n / rate;
    size_t w = n < rate ? n : rate, from = (n - w) / 2;
    double total = 0, best = 0;
    for (size_t i = 0; i < w; i++)
        total += (double)pcm[from + i] * pcm[from + i];
    *freq = 0;
    /* Power summed over 100 ms blocks: a frame the receiver concealed or
     * stretched keeps the tone but not its phase, which a single 1 s
     * measure would count against it. */
    size_t block = rate / 10;
    for (double hz = 100; hz <= 4000 && hz < rate / 2.0; hz += 10) {
        double c = 2 * cos(2 * M_PI * hz / rate), power = 0;
        for (size_t b = 0; b + block <= w; b += block) {
            double s1 = 0, s2 = 0;
            for (size_t i = b; i < b + block; i++) {
                double s0 = pcm[from + i] + c * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            power += s1 * s1 + s2 * s2 - c * s1 * s2;
        }
        if (power > best) {
            best = power;
            *freq = hz;
        }
    }
    *dbfs = total > 0 ? 20 * log10(sqrt(total / w) / 32768.0) : -INFINITY;
    return 1;
}

/* The bytes of the demo's file. */
static unsigned char file_byte(size_t i) { return (unsigned char)((i * 2654435761u) >> 24); }

/* Whether the file at `path` holds exactly `size` demo bytes. */
static int same_file(const char *path, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t i = 0;
    int c, ok = 1;
    while ((c = fgetc(f)) != EOF)
        ok &= i < size && (unsigned char)c == file_byte(i++);
    fclose(f);
    return ok && i == size;
}

static SipsimpleApplication *start_endpoint(SipsimpleStorage *storage) {
    SipsimpleApplication *app = NULL;
    if (!check(sipsimple_application_new(&app), "application") ||
        !check(sipsimple_application_start(app, storage), "start"))
        return NULL;
    return app;
}

int main(void) {
    SipsimpleStorage *storage = NULL;
    SipsimpleAccount *account = NULL;
    SipsimpleSession *call = NULL;
    uint64_t token = 0;
    int ok = 0;

    SipsimpleStreamCallbacks ping = {
        .new_from_sdp = ping_new_from_sdp,
        .new_outgoing = ping_new_outgoing,
        .initialize = ping_initialize,
        .get_local_media = ping_get_local_media,
        .start = ping_start,
        .hold = ping_hold,
        .unhold = ping_unhold,
        .end = ping_end,
    };
    /* Both endpoints share the process's stream registry. */
    if (!check(sipsimple_stream_type_register("ping", 0, 1, &ping, NULL), "register ping") ||
        !check(sipsimple_storage_new_memory(&storage), "storage") ||
        !check(sipsimple_notification_center_add_observer(NULL, 0, on_notification, NULL, &token), "observer"))
        return 1;
    alice = start_endpoint(storage);
    bob = start_endpoint(storage);
    uint32_t bob_port = 0;
    if (!alice || !bob || !check(sipsimple_application_sip_local_port(bob, "udp", &bob_port), "bob's port"))
        goto done;
    char uri[64];
    snprintf(uri, sizeof uri, "sip:bob@127.0.0.1:%u", (unsigned)bob_port);
    printf("alice calls %s\n", uri);

    uint64_t id = 0;
    if (!check(sipsimple_account_new("alice@example.com", "Alice", &account), "account") ||
        !check(sipsimple_session_new(alice, account, &call), "session") ||
        !check(sipsimple_session_id(call, &id), "session id"))
        goto done;
    atomic_store(&alice_session_id, id);
    if (!check(sipsimple_session_connect(call, uri, NULL, "ping"), "connect") ||
        !wait_for(&started, 2, "both sides to start") || !wait_for(&pings_received, 2, "both greetings"))
        goto done;
    /* Hold and unhold: a re-INVITE each (sendonly, then sendrecv). */
    if (!check(sipsimple_session_hold(call), "hold") || !wait_for(&held, 2, "hold on both sides") ||
        !wait_established(call) || !check(sipsimple_session_unhold(call), "unhold") ||
        !wait_for(&held, 4, "unhold on both sides") || !wait_established(call))
        goto done;
    /* Add a second ping stream, then remove it. */
    if (!check(sipsimple_session_add_stream(call, "ping"), "add stream") || !wait_for(&pings_received, 4, "the new stream's greetings") ||
        !wait_established(call) || !check(sipsimple_session_remove_stream(call, "ping"), "remove stream") ||
        !wait_established(call))
        goto done;
    /* Chat: add an MSRP chat stream and greet bob; his answer comes back
     * and each side hears its message was delivered (a success REPORT). */
    const char *hello = "Hello Bob, this is chat over MSRP";
    char *message_id = NULL;
    if (!check(sipsimple_session_add_stream(call, "chat"), "add chat") || !wait_established(call) ||
        !check(sipsimple_session_send_message(call, (const uint8_t *)hello, strlen(hello), "text/plain", &message_id),
               "send message") ||
        !wait_for(&chats_received, 2, "both chat messages") || !wait_for(&chats_delivered, 2, "both delivery reports"))
        goto done;
    printf("alice's message %s was delivered\n", message_id);
    sipsimple_string_free(message_id);
    /* File transfer: alice offers a file on the same session; bob's side
     * writes it to the download directory and keeps it once its SHA-1
     * matches the offer's file-selector. */
    char work[] = "/tmp/sipsimple-demo-XXXXXX", outbox[64], inbox[64], file[96], setting[96], *changed = NULL;
    const size_t file_size = 200 * 1024 + 7;
    if (!mkdtemp(work))
        goto done;
    snprintf(outbox, sizeof outbox, "%s/outbox", work);
    snprintf(inbox, sizeof inbox, "%s/inbox", work);
    snprintf(file, sizeof file, "%s/report.bin", outbox);
    snprintf(setting, sizeof setting, "\"%s\"", inbox);
    FILE *f = mkdir(outbox, 0700) == 0 ? fopen(file, "wb") : NULL;
    if (!f)
        goto done;
    for (size_t i = 0; i < file_size; i++)
        fputc(file_byte(i), f);
    fclose(f);
    int sent_ok = check(sipsimple_application_setting_set(bob, "file_transfer.directory", setting, &changed),
                        "download directory") &&
                  check(sipsimple_session_send_file(call, file), "send file") &&
                  wait_for(&files_received, 1, "bob to keep the file") && wait_for(&files_sent, 1, "alice to finish");
    sipsimple_string_free(changed);
    int same = sent_ok && same_file(received_path, file_size);
    if (sent_ok)
        printf("bob saved %s: %zu bytes, hash checked, %s\n", received_path, file_size,
               same ? "the same bytes alice sent" : "NOT THE SAME BYTES");
    remove(received_path);
    remove(file);
    rmdir(outbox);
    rmdir(inbox);
    if (!same || !wait_established(call)) {
        rmdir(work);
        goto done;
    }
    /* Audio: alice's microphone is a 440 Hz tone, bob's speaker a WAV
     * file; two seconds of call. */
    char wav[96], tone_setting[] = "\"tone:440\"", wav_setting[128];
    snprintf(wav, sizeof wav, "%s/bob-hears.wav", work);
    snprintf(wav_setting, sizeof wav_setting, "\"wav:%s\"", wav);
    int audio_ok = check(sipsimple_application_setting_set(alice, "audio.input_device", tone_setting, &changed),
                         "alice's microphone");
    sipsimple_string_free(changed);
    changed = NULL;
    audio_ok = audio_ok && check(sipsimple_application_setting_set(bob, "audio.output_device", wav_setting, &changed),
                                 "bob's speaker");
    sipsimple_string_free(changed);
    audio_ok = audio_ok && check(sipsimple_session_add_stream(call, "audio"), "add audio") && wait_established(call);
    if (audio_ok) {
        sleep(2);
        char *info = NULL;
        if (check(sipsimple_session_info(call, &info), "info"))
            printf("alice's session: %s\n", info);
        sipsimple_string_free(info);
    }
    if (!audio_ok || !check(sipsimple_session_end(call), "end") || !wait_for(&ended, 2, "both sides to end")) {
        remove(wav);
        rmdir(work);
        goto done;
    }
    /* The stream's file is complete (its header says how long it is) once
     * its media task is gone: wait for that, up to 10 s. */
    double seconds = 0, freq = 0, dbfs = 0;
    int complete = 0, read_ok = 0;
    for (int i = 0; i < 100 && !complete; i++) {
        usleep(100000);
        read_ok = analyse_wav(wav, &complete, &seconds, &freq, &dbfs);
    }
    heard_ok = read_ok && complete && fabs(freq - 440) <= 10 && dbfs > -40;
    printf("bob heard %.1f s of audio: strongest at %.0f Hz, %.1f dBFS (alice sent a 440 Hz tone, -13 dBFS RMS): %s\n",
           seconds, freq, dbfs, heard_ok ? "ok" : "NOT WHAT ALICE SENT");
    remove(wav);
    rmdir(work);
    ok = heard_ok;
done:
    if (call)
        sipsimple_session_free(call);
    if (account)
        sipsimple_account_free(account);
    if (alice) {
        check(sipsimple_application_stop(alice), "stop alice");
        sipsimple_application_free(alice);
    }
    if (bob) {
        check(sipsimple_application_stop(bob), "stop bob");
        sipsimple_application_free(bob);
    }
    if (token)
        sipsimple_notification_center_remove_observer(token);
    check(sipsimple_stream_type_unregister("ping"), "unregister ping");
    sipsimple_storage_free(storage);
    printf("%s: %d sessions started, %d greetings, %d chat messages delivered, %d file transferred, audio %s, %d "
           "streams ended\n",
           ok ? "done" : "FAILED", atomic_load(&started), atomic_load(&pings_received),
           atomic_load(&chats_delivered), atomic_load(&files_received), heard_ok ? "heard" : "not heard",
           atomic_load(&streams_ended));
    return ok && atomic_load(&streams_ended) >= 4 ? 0 : 1;
}
