/* libFuzzer harness for the graph executor's inputs: byte 0 picks graph
 * JSON or a params blob; the rest is the untrusted document. */
#include <stdint.h>
#include <stdlib.h>

#include "server/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char err[256];
    if (data[0] & 1) {
        graph_params_t p;
        if (graph_read_params(&p, data + 1, size - 1, data[0] & 2, err, sizeof(err)) == 0)
            graph_params_free(&p);
        return 0;
    }
    graph_t g;
    if (graph_parse(&g, (const char *)data + 1, size - 1, err, sizeof(err)) == 0) {
        /* Whatever validates must index safely. */
        for (size_t i = 0; i < g.nnodes; i++)
            for (size_t k = 0; k < g.nodes[i].ninputs; k++)
                if (graph_eid(&g, g.nodes[i].inputs[k]) >= g.nentries)
                    abort();
        for (size_t i = 0; i < g.nheads; i++)
            if (graph_eid(&g, g.heads[i]) >= g.nentries)
                abort();
        for (size_t i = 0; i < g.nentries; i++)
            if (g.entries[i].storage_id >= g.nslots)
                abort();
        graph_free(&g);
    }
    return 0;
}
