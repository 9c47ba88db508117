/* Scheduling rules of PROTOCOL.md §1.6-§1.7, without sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "tracker/sched.h"

#define MAX_GRANTS 64

typedef struct grant_log {
    int n;
    sched_owner_t *who[MAX_GRANTS];
    char matchkey[MAX_GRANTS][64];
    sched_owner_t *refuse; /* grants to this owner fail */
} grant_log_t;

static int record_grant(void *ctx, sched_owner_t *requester, const sched_slot_t *slot)
{
    grant_log_t *g = ctx;
    if (requester == g->refuse)
        return -1;
    assert_true(g->n < MAX_GRANTS);
    g->who[g->n] = requester;
    snprintf(g->matchkey[g->n], sizeof(g->matchkey[0]), "%s", slot->matchkey);
    g->n++;
    return 0;
}

static sched_t *make(grant_log_t *g)
{
    memset(g, 0, sizeof(*g));
    sched_limits_t lim = {.max_keys = 16, .max_slots_per_owner = 8, .max_reqs_per_owner = 8};
    sched_t *s = sched_create(&lim, record_grant, g);
    assert_non_null(s);
    return s;
}

static void put(sched_t *s, sched_owner_t *o, const char *key, const char *mk)
{
    char err[128];
    json_t *port = json_new_int(9090);
    assert_int_equal(sched_put(s, o, key, "10.0.0.1", port, mk, err, sizeof(err)), 0);
    json_free(port);
}

static void req(sched_t *s, sched_owner_t *o, const char *key, double prio)
{
    char err[128];
    assert_int_equal(sched_request(s, o, key, prio, err, sizeof(err)), 0);
}

static const sched_queue_t *find(const sched_t *s, const char *key)
{
    for (const sched_queue_t *q = sched_queues(s); q; q = sched_queue_next(q))
        if (strcmp(sched_queue_key(q), key) == 0)
            return q;
    return NULL;
}

static void test_slot_waits_for_request(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t srv, cli;
    sched_owner_init(&srv);
    sched_owner_init(&cli);
    put(s, &srv, "rasp3b", "rasp3b:0.1");
    assert_int_equal(g.n, 0);
    assert_int_equal(sched_queue_free(find(s, "rasp3b")), 1);
    assert_int_equal(srv.nslots, 1);
    req(s, &cli, "rasp3b", 1);
    assert_int_equal(g.n, 1);
    assert_ptr_equal(g.who[0], &cli);
    assert_string_equal(g.matchkey[0], "rasp3b:0.1");
    assert_int_equal(srv.nslots, 0); /* consumed: no longer pending */
    assert_int_equal(sched_queue_free(find(s, "rasp3b")), 0);
    assert_int_equal(sched_queue_pending(find(s, "rasp3b")), 0);
    sched_free(s);
}

static void test_priority_then_fifo(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t srv, a, b, c, d;
    sched_owner_init(&srv);
    sched_owner_init(&a);
    sched_owner_init(&b);
    sched_owner_init(&c);
    sched_owner_init(&d);
    req(s, &a, "k", 1);
    req(s, &b, "k", 5);
    req(s, &c, "k", 1);
    req(s, &d, "k", 5);
    assert_int_equal(sched_queue_pending(find(s, "k")), 4);
    put(s, &srv, "k", "k:1");
    put(s, &srv, "k", "k:2");
    put(s, &srv, "k", "k:3");
    put(s, &srv, "k", "k:4");
    assert_int_equal(g.n, 4);
    assert_ptr_equal(g.who[0], &b); /* highest priority, earliest */
    assert_ptr_equal(g.who[1], &d);
    assert_ptr_equal(g.who[2], &a);
    assert_ptr_equal(g.who[3], &c);
    sched_free(s);
}

static void test_oldest_slot_first(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t s1, s2, cli;
    sched_owner_init(&s1);
    sched_owner_init(&s2);
    sched_owner_init(&cli);
    put(s, &s1, "k", "k:first");
    put(s, &s2, "k", "k:second");
    req(s, &cli, "k", 1);
    assert_string_equal(g.matchkey[0], "k:first");
    req(s, &cli, "k", 1);
    assert_string_equal(g.matchkey[1], "k:second");
    sched_free(s);
}

static void test_failed_grant_requeues_slot_at_end(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t s1, s2, dead, live;
    sched_owner_init(&s1);
    sched_owner_init(&s2);
    sched_owner_init(&dead);
    sched_owner_init(&live);
    g.refuse = &dead;
    put(s, &s1, "k", "k:a");
    put(s, &s2, "k", "k:b");
    req(s, &dead, "k", 10); /* gets k:a, fails: k:a goes behind k:b */
    assert_int_equal(g.n, 0);
    assert_int_equal(dead.nreqs, 0);
    assert_int_equal(sched_queue_free(find(s, "k")), 2);
    req(s, &live, "k", 1);
    assert_string_equal(g.matchkey[0], "k:b");
    sched_free(s);
}

static void test_owner_drop_removes_slots_and_requests(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t srv, cli, other;
    sched_owner_init(&srv);
    sched_owner_init(&cli);
    sched_owner_init(&other);
    put(s, &srv, "a", "a:1");
    put(s, &srv, "b", "b:1");
    req(s, &cli, "c", 1);
    req(s, &cli, "c", 2);
    sched_owner_drop(s, &srv);
    sched_owner_drop(s, &cli);
    assert_int_equal(sched_queue_free(find(s, "a")), 0);
    assert_int_equal(sched_queue_free(find(s, "b")), 0);
    assert_int_equal(sched_queue_pending(find(s, "c")), 0);
    /* Keys stay listed (SUMMARY shows every key ever seen). */
    assert_int_equal(sched_nqueues(s), 3);
    /* A dropped client no longer wastes a slot. */
    put(s, &other, "c", "c:1");
    assert_int_equal(g.n, 0);
    assert_int_equal(sched_queue_free(find(s, "c")), 1);
    sched_free(s);
}

static void test_drop_request_from_middle_of_heap(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t o[6], srv;
    sched_owner_init(&srv);
    for (int i = 0; i < 6; i++) {
        sched_owner_init(&o[i]);
        req(s, &o[i], "k", (double)(i % 3));
    }
    sched_owner_drop(s, &o[2]); /* priority 2, would be first */
    sched_owner_drop(s, &o[3]); /* priority 0 */
    for (int i = 0; i < 4; i++)
        put(s, &srv, "k", "k:x");
    assert_int_equal(g.n, 4);
    assert_ptr_equal(g.who[0], &o[5]); /* prio 2 */
    assert_ptr_equal(g.who[1], &o[1]); /* prio 1, earlier */
    assert_ptr_equal(g.who[2], &o[4]); /* prio 1 */
    assert_ptr_equal(g.who[3], &o[0]); /* prio 0 */
    sched_free(s);
}

static void test_limits(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t o;
    sched_owner_init(&o);
    char err[128], key[16];
    json_t *port = json_new_int(1);
    for (int i = 0; i < 8; i++)
        put(s, &o, "k", "k:1");
    assert_int_equal(sched_put(s, &o, "k", "h", port, "k:1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many queued slots"));
    sched_owner_t p;
    sched_owner_init(&p);
    for (int i = 1; i < 16; i++) { /* "k" already exists: 15 more keys fit */
        snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(sched_request(s, &p, key, 1, err, sizeof(err)), i <= 8 ? 0 : -1);
    }
    sched_owner_t r;
    sched_owner_init(&r);
    for (int i = 9; i < 16; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(sched_request(s, &r, key, 1, err, sizeof(err)), 0);
    }
    assert_int_equal(sched_request(s, &r, "one-too-many", 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many device keys"));
    json_free(port);
    sched_owner_drop(s, &o);
    sched_owner_drop(s, &p);
    sched_owner_drop(s, &r);
    sched_free(s);
}

static void test_port_echoed_unchanged(void **state)
{
    grant_log_t g;
    sched_t *s = make(&g);
    sched_owner_t srv;
    sched_owner_init(&srv);
    char err[128];
    json_t *port = json_new_string("9090");
    assert_int_equal(sched_put(s, &srv, "k", "h", port, "k:1", err, sizeof(err)), 0);
    json_free(port);
    assert_non_null(srv.slots);
    assert_true(json_is(srv.slots->port, JSON_STRING));
    assert_string_equal(srv.slots->port->u.str.s, "9090");
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_waits_for_request),
        cmocka_unit_test(test_priority_then_fifo),
        cmocka_unit_test(test_oldest_slot_first),
        cmocka_unit_test(test_failed_grant_requeues_slot_at_end),
        cmocka_unit_test(test_owner_drop_removes_slots_and_requests),
        cmocka_unit_test(test_drop_request_from_middle_of_heap),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_port_echoed_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
