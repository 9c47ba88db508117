/* libFuzzer harness for base/json.
 *
 * Beyond "does not crash", it checks the property peers rely on: whatever
 * the reader accepts, the writer turns into pure ASCII that reads back to a
 * value which writes out identically, and a clone writes the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

static void check_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_limits_t lim = {.max_depth = 32, .max_nodes = 512};
    char err[128];
    json_t *v = json_parse((const char *)data, size, &lim, err, sizeof(err));
    if (!v) {
        if (strncmp(err, "json: ", 6) != 0)
            abort();
        return 0;
    }
    char *a = json_dumps(v);
    if (!a)
        abort();
    check_ascii(a);
    json_t *w = json_parse(a, strlen(a), &lim, err, sizeof(err));
    if (!w)
        abort();
    char *b = json_dumps(w);
    json_t *c = json_clone(v);
    char *d = json_dumps(c);
    if (!b || !d || strcmp(a, b) != 0 || strcmp(a, d) != 0)
        abort();
    int64_t i;
    json_get_int(v, &i);
    free(a);
    free(b);
    free(d);
    json_free(v);
    json_free(w);
    json_free(c);
    return 0;
}
