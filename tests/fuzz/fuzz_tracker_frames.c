/* libFuzzer harness for what the tracker and its clients parse: a stream of
 * frames (i32 length + JSON), each validated as a tracker message, and any
 * SUMMARY-shaped object rendered as the query tool's table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "client/summary.h"
#include "tracker/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int frames = 0; frames < 64; frames++) {
        const char *json;
        size_t len, used;
        char err[128];
        proto_status_t st =
            proto_parse_frame(data + off, size - off, 65536, &json, &len, &used, err, sizeof(err));
        if (st != PROTO_OK)
            break;
        if (len > size - off - 4 || used != len + 4)
            abort();
        json_limits_t lim = {.max_depth = 16, .max_nodes = 4096};
        json_t *v = json_parse(json, len, &lim, err, sizeof(err));
        if (v) {
            buf_t out;
            buf_init(&out, 0);
            const json_t *body = json_is(v, JSON_ARRAY) ? json_array_get(v, 1) : v;
            if (json_is(body, JSON_OBJECT))
                summary_format(body, (summary_layout_t)(len % 3), &out);
            buf_free(&out);
            json_free(v);
        }
        off += used;
    }
    return 0;
}
