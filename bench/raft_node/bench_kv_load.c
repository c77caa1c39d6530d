/*
 * bench_kv_load - a small HTTP load generator for the KV API (libcurl multi):
 * N concurrent proposers, each a keep-alive connection doing PUT
 * /v1/kv/KEY one after the other for a number of seconds. Used by
 * bench_raft_node.py next to its Python client, to show whether the client
 * is the bottleneck. Run alone (no arguments) it prints its usage and exits 0.
 *
 *   bench_kv_load HOST:PORT TOKEN CONCURRENCY SECONDS
 *   -> "RESULT ok=N errors=N rate=X p50_us=Y p99_us=Z"
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define MAX_CONC 1024
#define MAX_SAMPLES (1u << 22)

struct prop {
    CURL *easy;
    int id;
    uint64_t seq;
    uint64_t t0_us;
    char url[256];
    char body[64];
};

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static void prepare(struct prop *p, const char *api)
{
    snprintf(p->url, sizeof p->url, "http://%s/v1/kv/c%d-%llu", api, p->id,
             (unsigned long long)p->seq);
    snprintf(p->body, sizeof p->body, "value-%d-%llu", p->id, (unsigned long long)p->seq);
    curl_easy_setopt(p->easy, CURLOPT_URL, p->url);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
    p->seq++;
    p->t0_us = nx_clock_mono_us();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        printf("usage: bench_kv_load HOST:PORT TOKEN CONCURRENCY SECONDS "
               "(driven by bench_raft_node.py)\n");
        return 0;
    }
    const char *api = argv[1];
    int conc = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (conc < 1 || conc > MAX_CONC || seconds <= 0) {
        fprintf(stderr, "bench_kv_load: bad arguments\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Expect:");
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc * 2);
    struct prop *props = calloc((size_t)conc, sizeof *props);
    uint64_t *lat = malloc(MAX_SAMPLES * sizeof *lat);
    if (props == NULL || lat == NULL)
        return 1;
    size_t n_lat = 0, errors = 0;
    for (int i = 0; i < conc; i++) {
        struct prop *p = &props[i];
        p->id = i;
        p->easy = curl_easy_init();
        curl_easy_setopt(p->easy, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
        curl_easy_setopt(p->easy, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 30000L);
        prepare(p, api);
        curl_multi_add_handle(multi, p->easy);
    }
    uint64_t start = nx_clock_mono_us(), end = start + (uint64_t)(seconds * 1e6);
    int running = conc;
    while (running > 0) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct prop *p;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            uint64_t now = nx_clock_mono_us();
            if (m->data.result == CURLE_OK && code == 200 && n_lat < MAX_SAMPLES)
                lat[n_lat++] = now - p->t0_us;
            else
                errors++;
            curl_multi_remove_handle(multi, p->easy);
            if (now < end) {
                prepare(p, api);
                curl_multi_add_handle(multi, p->easy);
                running++;
            }
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double took_s = (nx_clock_mono_us() - start) / 1e6;
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
    printf("RESULT ok=%zu errors=%zu rate=%.0f p50_us=%llu p99_us=%llu\n", n_lat, errors,
           n_lat / took_s, n_lat ? (unsigned long long)lat[(n_lat - 1) / 2] : 0ull,
           n_lat ? (unsigned long long)lat[(n_lat * 99 - 1) / 100] : 0ull);
    for (int i = 0; i < conc; i++)
        curl_easy_cleanup(props[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(props);
    free(lat);
    curl_global_cleanup();
    return 0;
}
