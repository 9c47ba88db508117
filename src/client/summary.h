/* summary: render a tracker SUMMARY as the text of TVM's
 * TrackerSession.text_summary() / query_rpc_tracker (PROTOCOL.md §1.11). */
#ifndef TVMRPC_SUMMARY_H
#define TVMRPC_SUMMARY_H

#include "base/buf.h"
#include "base/json.h"

typedef enum summary_layout {
    SUMMARY_LAYOUT_V24, /* TVM v0.24+: address left-justified (default) */
    SUMMARY_LAYOUT_V09, /* TVM v0.9 - v0.23: address right-justified */
    SUMMARY_LAYOUT_V08, /* TVM v0.8: tab separated, unsorted */
} summary_layout_t;

/* body is element 1 of the SUMMARY reply: {"queue_info": ..., "server_info": [...]}.
 * Appends the text (ending in '\n') to out. -1 on malformed input. */
int summary_format(const json_t *body, summary_layout_t layout, buf_t *out);
/* The whole query tool output: "Tracker address H:P\n\n" + text + "\n". */
int summary_format_query(const char *host, int port, const json_t *body, summary_layout_t layout,
                         buf_t *out);

#endif
