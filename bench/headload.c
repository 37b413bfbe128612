/* A keep-alive HEAD load generator, because wrk cannot do HEAD.
 *
 * wrk's parser waits for the Content-Length bytes a HEAD answer announces but never
 * sends, and ab speaks HTTP/1.0, which uvicorn does not keep alive. This runs one
 * blocking thread per connection, each sending the same HEAD request and reading the
 * answer up to its blank line, for a fixed time, then prints wrk-style "99%" and
 * "Requests/sec" lines so bench/compare.py reads it like wrk. compare.py builds it with
 * `cc -O2 -pthread`.
 *
 *   headload HOST PORT PATH CONNECTIONS SECONDS [HEADER...]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 2000000

static char request[8192];
static size_t request_len;
static struct sockaddr_in address;
static double deadline;

typedef struct {
    double *latencies;
    long count;
    long bad;
    int failed;
} worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
    worker *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        w->failed = 1;
        return NULL;
    }
    char buffer[16384];
    while (w->count < MAX_SAMPLES) {
        double sent = now();
        if (send(fd, request, request_len, 0) != (ssize_t)request_len) { w->failed = 1; break; }
        size_t have = 0;
        char *end = NULL;
        while (end == NULL) {  /* a HEAD answer ends at its blank line */
            ssize_t got = recv(fd, buffer + have, sizeof buffer - 1 - have, 0);
            if (got <= 0) { w->failed = 1; close(fd); return NULL; }
            have += (size_t)got;
            buffer[have] = 0;
            end = strstr(buffer, "\r\n\r\n");
        }
        double done = now();
        w->latencies[w->count++] = done - sent;
        if (have < 12 || (buffer[9] != '2' && buffer[9] != '3')) w->bad++;
        if (done >= deadline) break;
    }
    close(fd);
    return NULL;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: headload HOST PORT PATH CONNECTIONS SECONDS [HEADER...]\n");
        return 2;
    }
    int connections = atoi(argv[4]);
    double seconds = atof(argv[5]);
    int n = snprintf(request, sizeof request, "HEAD %s HTTP/1.1\r\nHost: %s:%s\r\n", argv[3], argv[1], argv[2]);
    for (int i = 6; i < argc; i++) n += snprintf(request + n, sizeof request - n, "%s\r\n", argv[i]);
    n += snprintf(request + n, sizeof request - n, "\r\n");
    request_len = (size_t)n;
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &address.sin_addr);

    pthread_t threads[connections];
    worker workers[connections];
    double started = now();
    deadline = started + seconds;
    for (int i = 0; i < connections; i++) {
        workers[i] = (worker){.latencies = malloc(sizeof(double) * MAX_SAMPLES)};
        pthread_create(&threads[i], NULL, run, &workers[i]);
    }
    long total = 0, bad = 0, failed = 0;
    for (int i = 0; i < connections; i++) {
        pthread_join(threads[i], NULL);
        total += workers[i].count;
        bad += workers[i].bad;
        failed += workers[i].failed;
    }
    double elapsed = now() - started;
    double *all = malloc(sizeof(double) * (total ? total : 1));
    long k = 0;
    for (int i = 0; i < connections; i++) {
        memcpy(all + k, workers[i].latencies, sizeof(double) * workers[i].count);
        k += workers[i].count;
    }
    qsort(all, total, sizeof(double), compare);
    printf("  %ld requests in %.2fs\n", total, elapsed);
    printf("     99%%  %.2fms\n", total ? all[(long)(total * 0.99)] * 1000 : 0.0);
    if (bad) printf("  Non-2xx or 3xx responses: %ld\n", bad);
    if (failed) printf("  Socket errors: connect 0, read %ld, write 0, timeout 0\n", failed);
    printf("Requests/sec: %.2f\n", total / elapsed);
    return 0;
}
