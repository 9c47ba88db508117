/* peercap: per-address connection counting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/peercap.h"

static struct sockaddr_storage v4(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

/* Address number i as IPv4 (10.x.y.z) or IPv6 (fd00::x:y). */
static struct sockaddr_storage nth(uint32_t i)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (i & 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(0x0a000000u | (i >> 1));
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr.s6_addr[0] = 0xfd;
        memcpy(&sin6->sin6_addr.s6_addr[12], &i, 4);
    }
    return ss;
}

static void test_cap_per_address(void **state)
{
    peercap_t pc;
    peercap_init(&pc, 3);
    struct sockaddr_storage a = v4("10.0.0.1", 1000), a2 = v4("10.0.0.1", 2000);
    struct sockaddr_storage b = v4("10.0.0.2", 1000);
    assert_int_equal(peercap_take(&pc, &a), 0);
    assert_int_equal(peercap_take(&pc, &a2), 0); /* another port: same peer */
    assert_int_equal(peercap_take(&pc, &a), 0);
    assert_int_equal(peercap_count(&pc, &a), 3);
    assert_int_equal(peercap_take(&pc, &a2), PEERCAP_FULL);
    assert_int_equal(peercap_count(&pc, &a), 3); /* a refusal counts nothing */
    assert_int_equal(peercap_take(&pc, &b), 0);  /* other peers are unaffected */
    assert_int_equal(peercap_count(&pc, &b), 1);
    peercap_release(&pc, &a);
    assert_int_equal(peercap_take(&pc, &a), 0);
    assert_int_equal(peercap_take(&pc, &a), PEERCAP_FULL);
    for (int i = 0; i < 3; i++)
        peercap_release(&pc, &a);
    peercap_release(&pc, &b);
    assert_int_equal(peercap_count(&pc, &a), 0);
    assert_int_equal(pc.used, 0);
    peercap_free(&pc);
}

static void test_families(void **state)
{
    peercap_t pc;
    peercap_init(&pc, 2);
    struct sockaddr_storage a = v4("192.168.1.9", 1), m = v6("::ffff:192.168.1.9", 2);
    struct sockaddr_storage l6 = v6("::1", 3), l4 = v4("127.0.0.1", 3);
    /* A dual-stack socket shows an IPv4 peer mapped: still the same peer. */
    assert_int_equal(peercap_take(&pc, &a), 0);
    assert_int_equal(peercap_take(&pc, &m), 0);
    assert_int_equal(peercap_take(&pc, &a), PEERCAP_FULL);
    assert_int_equal(peercap_count(&pc, &m), 2);
    /* ::1 and 127.0.0.1 are different addresses. */
    assert_int_equal(peercap_take(&pc, &l6), 0);
    assert_int_equal(peercap_take(&pc, &l4), 0);
    assert_int_equal(peercap_count(&pc, &l6), 1);
    /* Not an IP peer: never counted, never refused. */
    struct sockaddr_storage un;
    memset(&un, 0, sizeof(un));
    un.ss_family = AF_UNIX;
    for (int i = 0; i < 5; i++)
        assert_int_equal(peercap_take(&pc, &un), 0);
    peercap_release(&pc, &un);
    assert_int_equal(peercap_count(&pc, &un), 0);
    assert_int_equal(pc.used, 3);
    peercap_free(&pc);
}

static void test_text_addresses(void **state)
{
    peercap_t pc;
    peercap_init(&pc, 1);
    assert_int_equal(peercap_take_ip(&pc, "10.1.2.3"), 0);
    assert_int_equal(peercap_take_ip(&pc, "::ffff:10.1.2.3"), PEERCAP_FULL);
    assert_int_equal(peercap_take_ip(&pc, "fe80::1"), 0);
    assert_int_equal(peercap_take_ip(&pc, "fe80::1"), PEERCAP_FULL);
    assert_int_equal(peercap_take_ip(&pc, "not-an-ip"), 0);
    assert_int_equal(peercap_take_ip(&pc, "not-an-ip"), 0);
    peercap_release_ip(&pc, "not-an-ip");
    peercap_release_ip(&pc, "10.1.2.3");
    assert_int_equal(peercap_take_ip(&pc, "10.1.2.3"), 0);
    peercap_release_ip(&pc, "10.1.2.3");
    peercap_release_ip(&pc, "fe80::1");
    assert_int_equal(pc.used, 0);
    peercap_free(&pc);
}

static void test_no_cap_counts_nothing(void **state)
{
    peercap_t pc;
    peercap_init(&pc, 0);
    struct sockaddr_storage a = v4("10.0.0.1", 1);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(peercap_take(&pc, &a), 0);
    assert_int_equal(peercap_count(&pc, &a), 0);
    assert_null(pc.slots); /* no memory at all */
    peercap_release(&pc, &a);
    peercap_free(&pc);
}

/* A release without a take (a caller bug) must not corrupt the table. */
static void test_unmatched_release(void **state)
{
    peercap_t pc;
    peercap_init(&pc, 2);
    struct sockaddr_storage a = v4("10.0.0.1", 1), b = v4("10.0.0.2", 1);
    peercap_release(&pc, &a); /* empty table */
    assert_int_equal(peercap_take(&pc, &a), 0);
    peercap_release(&pc, &b);
    assert_int_equal(peercap_count(&pc, &a), 1);
    assert_int_equal(pc.used, 1);
    peercap_free(&pc);
}

/* Memory follows the addresses connected now: nslots stays within a small
 * factor of used, growing and shrinking with it. */
static void check_bounds(const peercap_t *pc)
{
    assert_true(pc->used * 2 <= pc->nslots || pc->nslots == 0);
    assert_true(pc->nslots <= 16 || pc->nslots <= 8 * pc->used + 8);
}

/* Random takes and releases over many addresses against a plain array. */
static void test_against_model(void **state)
{
    enum { NADDR = 20000, CAP = 4, STEPS = 400000 };
    peercap_t pc;
    peercap_init(&pc, CAP);
    uint8_t *model = calloc(NADDR, 1);
    assert_non_null(model);
    uint32_t rnd = 12345;
    size_t live = 0, peak = 0;
    for (int step = 0; step < STEPS; step++) {
        rnd = rnd * 1103515245u + 12345u;
        /* Phases: fill up, churn, drain; the range moves so addresses come and go. */
        int phase = step / (STEPS / 4);
        uint32_t i = (rnd >> 8) % (NADDR / 2) + (uint32_t)(phase & 1) * (NADDR / 2);
        int take = phase == 3 ? 0 : phase == 0 ? (rnd & 7) != 0 : (rnd & 1);
        struct sockaddr_storage ss = nth(i);
        if (take) {
            int rc = peercap_take(&pc, &ss);
            if (model[i] < CAP) {
                assert_int_equal(rc, 0);
                live += model[i]++ == 0;
            } else {
                assert_int_equal(rc, PEERCAP_FULL);
            }
        } else if (model[i]) {
            peercap_release(&pc, &ss);
            live -= --model[i] == 0;
        }
        assert_int_equal(pc.used, live);
        peak = live > peak ? live : peak;
        if ((step & 1023) == 0) {
            check_bounds(&pc);
            for (uint32_t k = 0; k < NADDR; k += 97) {
                struct sockaddr_storage t = nth(k);
                assert_int_equal(peercap_count(&pc, &t), model[k]);
            }
        }
    }
    assert_true(peak > NADDR / 4); /* the table really grew */
    /* Drain what is left: the table shrinks back. */
    for (uint32_t i = 0; i < NADDR; i++) {
        struct sockaddr_storage ss = nth(i);
        while (model[i]) {
            peercap_release(&pc, &ss);
            model[i]--;
        }
    }
    assert_int_equal(pc.used, 0);
    assert_int_equal(pc.nslots, 16);
    free(model);
    peercap_free(&pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_per_address),   cmocka_unit_test(test_families),
        cmocka_unit_test(test_text_addresses),    cmocka_unit_test(test_no_cap_counts_nothing),
        cmocka_unit_test(test_unmatched_release), cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests_name("peercap", tests, NULL, NULL);
}
