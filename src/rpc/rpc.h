/* rpc: the RPC session protocol shared by server and client (PROTOCOL.md §2,
 * §4): handshake constants, packet codes, and a generation-neutral value
 * type that the classic (and later ffi) codecs translate to and from. */
#ifndef TVMRPC_RPC_H
#define TVMRPC_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define RPC_MAGIC 0x000FF271
#define RPC_CODE_SUCCESS (RPC_MAGIC + 0)
#define RPC_CODE_DUPLICATE (RPC_MAGIC + 1)
#define RPC_CODE_MISMATCH (RPC_MAGIC + 2)
#define RPC_PROTOCOL_VERSION "0.8.0"
#define RPC_MAX_KEY_LEN 4096

enum rpc_code {
    RPC_NONE = 0,
    RPC_SHUTDOWN = 1,
    RPC_INIT_SERVER = 2,
    RPC_CALL_FUNC = 3,
    RPC_RETURN = 4,
    RPC_EXCEPTION = 5,
    RPC_COPY_FROM_REMOTE = 6,
    RPC_COPY_TO_REMOTE = 7,
    RPC_COPY_ACK = 8,
    RPC_GET_GLOBAL_FUNC = 9,
    RPC_FREE_HANDLE = 10,
    RPC_DEV_SET_DEVICE = 11,
    RPC_DEV_GET_ATTR = 12,
    RPC_DEV_ALLOC_DATA = 13,
    RPC_DEV_FREE_DATA = 14,
    RPC_DEV_STREAM_SYNC = 15,
    RPC_COPY_AMONG_REMOTE = 16,
    RPC_DEV_ALLOC_DATA_WITH_SCOPE = 17,
    RPC_DEV_CREATE_STREAM = 18,
    RPC_DEV_FREE_STREAM = 19,
    RPC_DEV_SET_STREAM = 20,
    RPC_DEV_GET_CURRENT_STREAM = 21,
};

typedef struct rpc_dtype {
    uint8_t code, bits;
    uint16_t lanes;
} rpc_dtype_t;

typedef struct rpc_device {
    int32_t type, id;
} rpc_device_t;

#define RPC_MAX_NDIM 32

/* DLTensor wire form; shape is copied out of the packet (ndim is capped). */
typedef struct rpc_tensor {
    uint64_t data;
    rpc_device_t dev;
    int32_t ndim;
    rpc_dtype_t dtype;
    int64_t shape[RPC_MAX_NDIM];
    uint64_t byte_offset;
} rpc_tensor_t;

/* What a value is, independent of how a generation tags it. */
typedef enum rpc_kind {
    RV_NONE,
    RV_INT,
    RV_BOOL,
    RV_FLOAT,
    RV_HANDLE, /* opaque pointer: data pointers, streams */
    RV_DTYPE,
    RV_DEVICE,
    RV_TENSOR, /* DLTensor by value */
    RV_STR,
    RV_BYTES,
    RV_FUNC,   /* remote function handle */
    RV_MODULE, /* remote module handle */
    RV_OBJECT, /* remote object reference */
    RV_NDARRAY /* result only: tensor by value + object handle */
} rpc_kind_t;

typedef struct rpc_value {
    rpc_kind_t kind;
    union {
        int64_t i; /* INT, BOOL */
        double f;
        uint64_t h; /* HANDLE, FUNC, MODULE, OBJECT, NDARRAY's handle */
        rpc_dtype_t dtype;
        rpc_device_t dev;
        struct {
            const char *p; /* borrowed: points into the packet or the callee's result */
            uint64_t len;
        } s;
    } u;
    rpc_tensor_t *t; /* TENSOR, NDARRAY (owned by whoever decoded/built it) */
} rpc_value_t;

/* Bytes of a compact tensor (classic rule: prod(shape) * ceil(bits*lanes/8)).
 * -1 on overflow or negative dims. */
int64_t rpc_tensor_nbytes(const rpc_tensor_t *t);

/* A generation's encoding of packed sequences (PROTOCOL.md §4.4, §4.6). */
typedef struct rpc_codec {
    const char *name;
    /* Decode a packed sequence of at most max values from r, which must hold
     * exactly the sequence (trailing bytes are an error). Tensors are
     * written into tensors[] (max entries). 0 or -1 with err. */
    int (*decode)(rd_t *r, rpc_value_t *vals, rpc_tensor_t *tensors, int max, int *n, char *err,
                  size_t errlen);
    /* Packed sequences for kReturn: the result of kCallFunc (2 or 3 values),
     * the single value of a syscall, the void reply. */
    int (*encode_call_result)(buf_t *out, const rpc_value_t *v);
    int (*encode_value)(buf_t *out, const rpc_value_t *v);
    int (*encode_void)(buf_t *out);
    int (*encode_exception)(buf_t *out, const char *msg, size_t len);
    /* Encode argument sequences (client side). */
    int (*encode_args)(buf_t *out, const rpc_value_t *v, int n);
    /* Decode a kCallFunc result sequence into one value (client side). */
    int (*decode_call_result)(rd_t *r, rpc_value_t *out, rpc_tensor_t *t, char *err, size_t errlen);
} rpc_codec_t;

extern const rpc_codec_t rpc_codec_classic;
extern const rpc_codec_t rpc_codec_ffi;

/* Packet header helpers: u64 nbytes (excluding itself) + i32 code. */
#define RPC_PACKET_HEADER 12
/* Start a packet in out; returns the offset to patch with rpc_packet_end. */
size_t rpc_packet_begin(buf_t *out, int32_t code);
void rpc_packet_end(buf_t *out, size_t start);

int rpc_put_tensor(buf_t *out, const rpc_tensor_t *t);
int rpc_get_tensor(rd_t *r, rpc_tensor_t *t, char *err, size_t errlen);

/* ---- payloads both generations share (PROTOCOL.md §4.4) --------------------
 * A value on the wire is a generation-specific tag, then (for objects) a
 * generation-specific inner index, then one of these payloads. The codecs
 * write and read the tags; these write and read what follows them. */

/* The payload of v: nothing for NONE, the handle alone for OBJECT (its inner
 * index is the caller's). */
int rpc_put_payload(buf_t *out, const rpc_value_t *v);
/* Read the payload of a value whose kind the caller has already set in
 * v->kind from its tag (OBJECT: after the inner index). Tensors go to t.
 * Errors name the tag as "<msg> (<tagname> <tag>)". */
int rpc_get_payload(rd_t *r, rpc_value_t *v, rpc_tensor_t *t, const char *tagname, int32_t tag,
                    char *err, size_t errlen);

/* Packed sequence framing: the i32 count (0..max, and no more than the
 * bytes left could tag), and the check that nothing follows the values. */
int rpc_get_count(rd_t *r, int max, int32_t *num, char *err, size_t errlen);
int rpc_check_end(const rd_t *r, char *err, size_t errlen);

/* A kCallFunc result sequence (value 0: int holding the result's tag) after
 * decoding: check its shape, and turn "tensor, handle" into one NDARRAY in
 * out (tensor copied to t). what names the result in the error. */
int rpc_check_call_result(const rpc_value_t *vals, int n, char *err, size_t errlen);
int rpc_take_array_result(const rpc_value_t *vals, const rpc_tensor_t *ts, int n, rpc_value_t *out,
                          rpc_tensor_t *t, const char *what, char *err, size_t errlen);

/* ---- handshake (PROTOCOL.md §2.2) ------------------------------------------ */

typedef enum rpc_hs {
    RPC_HS_OK = 0,
    RPC_HS_INCOMPLETE = -2, /* need more bytes */
    RPC_HS_BAD_MAGIC = -3,  /* first 4 bytes are not RPC_MAGIC */
    RPC_HS_BAD_LENGTH = -4, /* key length < 0 or > RPC_MAX_KEY_LEN */
    RPC_HS_EXTRA = -5,      /* bytes after the key: the peer did not wait for the reply */
} rpc_hs_t;

/* Look at the n bytes a connecting peer sent so far: i32 magic, i32 length,
 * key. On RPC_HS_OK the key is at *key (borrowed from p). Errors are
 * reported as soon as the bytes that prove them are there, so a server or
 * proxy never waits on a peer that is already wrong. */
rpc_hs_t rpc_hs_parse(const uint8_t *p, size_t n, const uint8_t **key, size_t *keylen);

#endif
