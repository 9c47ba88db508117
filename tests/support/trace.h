/* trace: reader for the raw TVM RPC byte traces in shared/spec/traces
 * (format tvm-rpc-rawtrace/1, described in the README.md next to them).
 *
 * A trace is turned into, per connection and direction, the concatenated
 * byte stream (with TRACE_PLACEHOLDER bytes where a record was truncated,
 * so offsets stay right), the ordered list of events (@open, @step,
 * records, @eof) for replaying connections in their recorded interleaving,
 * and the step table from both the header and the body so tests can check
 * that they agree.
 *
 * The parser is strict about structure (offsets must be contiguous, records
 * must have exactly their announced length) and never trusts a number from
 * the file: anything malformed is an error return with the line number, not
 * a crash. No dependency on the project's code, so any test can use it. */
#ifndef TVMRPC_TEST_TRACE_H
#define TVMRPC_TEST_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_MAX_CONNS 32
#define TRACE_MAX_ALSO 8
#define TRACE_TEXT_LEN 256
/* Largest stream we accept; the real traces stay far below (176 KiB). */
#define TRACE_MAX_STREAM (256u * 1024 * 1024)
/* Value of the bytes standing in for a truncated part of a record. */
#define TRACE_PLACEHOLDER 0x00

/* Protocol constants the traces are full of (PROTOCOL.md §1.2, §2.1). */
#define TRACE_RPC_MAGIC 0x000FF271u
#define TRACE_TRACKER_MAGIC 0x0002F271u

typedef enum trace_dir {
    TRACE_C2S = 0, /* sent by the side that called connect() */
    TRACE_S2C = 1, /* sent by the accepting side */
} trace_dir_t;

typedef enum trace_role {
    TRACE_ROLE_UNKNOWN = 0,
    TRACE_ROLE_CLIENT,
    TRACE_ROLE_SERVER,
} trace_role_t;

typedef struct trace_range {
    size_t from, to; /* [from, to) in stream offsets */
} trace_range_t;

typedef struct trace_stream {
    uint8_t *data;
    size_t len, cap;
    trace_range_t *trunc; /* placeholder ranges, in stream order */
    size_t ntrunc, trunc_cap;
    int has_eof; /* an @eof line was seen; its total equals len */
} trace_stream_t;

typedef struct trace_conn {
    int opened;      /* @open seen in the body */
    int open_step;   /* step index (0-based) in effect at @open; -1 before any step */
    int hdr_present; /* listed in the header */
    int hdr_open_step;
    trace_role_t role; /* from the header */
    char role_text[TRACE_TEXT_LEN];
    trace_stream_t dir[2];
} trace_conn_t;

typedef struct trace_also {
    int conn;
    trace_role_t role;
    trace_dir_t dir;
    size_t off;
} trace_also_t;

/* One step, as announced by the header and as found in the body. */
typedef struct trace_step {
    int in_header, in_body;
    char hdr_text[TRACE_TEXT_LEN];
    char body_text[TRACE_TEXT_LEN];
    /* Header: "starts at DIR cN@X; cN stream offsets C>S@A S>C@B". */
    int hdr_has_start;
    int hdr_conn;
    trace_dir_t hdr_dir;
    size_t hdr_start;
    size_t hdr_off[2];
    int hdr_opened; /* "(connection opened in this step)" */
    int nalso;
    trace_also_t also[TRACE_MAX_ALSO];
    /* Header: "no bytes; ..." and, if it names one, the connection closed. */
    int hdr_no_bytes;
    int hdr_close_conn; /* -1 if none */
    /* Body: stream offsets of every connection when the @step line came
     * (0 for connections not opened yet), and the first event after it. */
    size_t off[TRACE_MAX_CONNS][2];
    size_t first_event;
} trace_step_t;

typedef enum trace_ev_kind {
    TRACE_EV_OPEN,
    TRACE_EV_STEP,
    TRACE_EV_DATA,
    TRACE_EV_EOF,
} trace_ev_kind_t;

typedef struct trace_event {
    trace_ev_kind_t kind;
    int conn;        /* OPEN, DATA, EOF */
    trace_dir_t dir; /* DATA, EOF */
    size_t off, len; /* DATA: stream range; EOF: off = total, len = 0 */
    int step;        /* index of the step in effect (-1 before the first), or this step */
    int bursts;      /* DATA: recv() results joined, 1 if not given */
    int line;        /* line number in the file, for messages */
} trace_event_t;

/* Annotation comment "# DIR cN @O: text" naming where a protocol unit starts. */
typedef struct trace_note {
    int conn;
    trace_dir_t dir;
    size_t off;
    char text[TRACE_TEXT_LEN];
} trace_note_t;

typedef struct trace {
    char name[TRACE_TEXT_LEN];       /* "# TVM RPC raw byte trace: NAME" */
    char format[TRACE_TEXT_LEN];     /* "# format: ..." first word */
    char generation[TRACE_TEXT_LEN]; /* "# protocol generation: ..." */
    int nconns;                      /* 1 + highest connection number seen */
    trace_conn_t conns[TRACE_MAX_CONNS];
    int nsteps;
    trace_step_t *steps;
    trace_event_t *events;
    size_t nevents, events_cap;
    trace_note_t *notes;
    size_t nnotes, notes_cap;
} trace_t;

/* Parse a whole trace text into t (zeroed first). 0, or -1 with a message
 * ("line N: ...") in err; t is then freed and safe to trace_free again. */
int trace_parse(trace_t *t, const char *text, size_t len, char *err, size_t errlen);
int trace_load(trace_t *t, const char *path, char *err, size_t errlen);
void trace_free(trace_t *t);

/* The (conn, dir) stream, or NULL if conn never appeared. */
const trace_stream_t *trace_stream(const trace_t *t, int conn, trace_dir_t dir);
/* 1 if any byte of [off, off + n) is a placeholder. */
int trace_is_truncated(const trace_stream_t *s, size_t off, size_t n);
const char *trace_dir_name(trace_dir_t dir); /* "C>S" / "S>C" */

/* Find shared/spec: $TVMRPC_SPEC_DIR if set and non-empty, else a
 * "shared/spec" next to the current directory or any of its parents, else
 * one next to an ancestor of this source file. The directory must contain
 * traces/README.md. 0, or -1 with what was tried in err. */
int trace_spec_dir(char *out, size_t outlen, char *err, size_t errlen);
/* <spec>/traces/<name>, same lookup. */
int trace_path(const char *name, char *out, size_t outlen, char *err, size_t errlen);
/* trace_path + trace_load. */
int trace_load_named(trace_t *t, const char *name, char *err, size_t errlen);

/* ---- protocol units ------------------------------------------------------
 * Record boundaries are TCP read bursts; these split a stream into the
 * protocol's own units so tests can reason about messages. */

typedef enum trace_unit_kind {
    TRACE_UNIT_MAGIC,     /* tracker: the 4-byte magic */
    TRACE_UNIT_FRAME,     /* tracker: i32 length + JSON text */
    TRACE_UNIT_HANDSHAKE, /* RPC: magic + key, or status [+ key] */
    TRACE_UNIT_PACKET,    /* RPC: u64 length + i32 code + payload */
} trace_unit_kind_t;

typedef struct trace_unit {
    trace_unit_kind_t kind;
    size_t off, len;    /* whole unit, header included, in stream offsets */
    size_t body, nbody; /* FRAME: the JSON; PACKET: code + payload; HANDSHAKE: the key */
    int64_t code;       /* PACKET: RPC code (-1 if the packet is empty); HANDSHAKE: magic/status */
} trace_unit_t;

typedef enum trace_proto {
    TRACE_PROTO_TRACKER, /* magic each way, then frames */
    TRACE_PROTO_RPC,     /* handshake each way, then packets */
} trace_proto_t;

/* Split a whole stream into units. The stream must end exactly at a unit
 * boundary. *units is malloc'ed (free() it), possibly NULL when n is 0.
 * 0, or -1 with the offset of the problem in err. */
int trace_split_units(const trace_stream_t *s, trace_proto_t proto, trace_dir_t dir,
                      trace_unit_t **units, size_t *n, char *err, size_t errlen);

#endif
