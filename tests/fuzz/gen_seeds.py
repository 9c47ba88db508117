#!/usr/bin/env python3
"""Write the seed corpora of fuzz_import_blob, fuzz_params and fuzz_handshake
into tests/fuzz/corpus/<name>/, from the formats of RUNTIME.md §2.3, §3.4,
§3.5 and PROTOCOL.md §2, §3 and the examples of the unit tests. Seeds are
small on purpose (mutations are cheaper); one full-size factory entry and
params blob come from the fixture network when a build has made them:

    tests/fuzz/gen_seeds.py [BUILD_DIR]   # BUILD_DIR/tests/fixtures/net_blob.c

Re-running it rewrites the same files (names are content hashes)."""
import hashlib
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NDARRAY_MAGIC = 0xDD5E40F096B4A13F
PARAMS_MAGIC = 0xF7E58D4F05049CB7
RPC_MAGIC = 0xFF271


def u64(v):
    return struct.pack("<Q", v)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return u64(len(b)) + b


def ndarray(shape, code=2, bits=32, data=None, magic=NDARRAY_MAGIC, dev=1):
    n = 1
    for d in shape:
        n *= d
    nbytes = n * bits // 8
    data = bytes(nbytes) if data is None else data
    out = u64(magic) + u64(0) + struct.pack("<iii", dev, 0, len(shape))
    out += struct.pack("<BBH", code, bits, 1)
    out += b"".join(u64(d) for d in shape)
    return out + u64(len(data)) + data


def graph(nodes, arg_nodes, heads, dltype, storage, shapes):
    import json
    return json.dumps({
        "nodes": nodes, "arg_nodes": arg_nodes, "heads": heads,
        "attrs": {"dltype": ["list_str", dltype], "storage_id": ["list_int", storage],
                  "shape": ["list_shape", shapes]},
        "node_row_ptr": list(range(len(nodes) + 1))})


def op(name, func, inputs, nout=1):
    return {"op": "tvm_op", "name": name, "inputs": inputs,
            "attrs": {"num_outputs": str(nout), "num_inputs": str(len(inputs)),
                      "flatten_data": "0", "func_name": func}}


def var(name):
    return {"op": "null", "name": name, "inputs": []}


# x[4] + w[4] -> y[4]; __nop reshape; __copy
SMALL = graph([var("x"), var("w"), op("add", "add", [[0, 0, 0], [1, 0, 0]]),
               op("r", "__nop", [[2, 0, 0]]), op("c", "__copy", [[3, 0, 0]])],
              [0, 1], [[4, 0, 0]], ["float32"] * 5, [0, 1, 2, 2, 3],
              [[4], [4], [4], [2, 2], [2, 2]])
NOOP = graph([var("x")], [0], [[0, 0, 0]], ["int8"], [0], [[3]])


def factory(json_text, weights, name="default", count=None, names=None):
    names = names if names is not None else [w[0] for w in weights]
    out = s(json_text) + u64(len(weights) if count is None else count)
    out += u64(len(names)) + b"".join(s(n) for n in names)
    out += b"".join(ndarray(shape, **kw) for _, shape, kw in weights)
    return out + s(name)


def params(entries, names=None, reserved=0):
    names = names if names is not None else [e[0] for e in entries]
    out = u64(PARAMS_MAGIC) + u64(reserved) + u64(len(names))
    out += b"".join(s(n) for n in names) + u64(len(entries))
    return out + b"".join(ndarray(shape, **kw) for _, shape, kw in entries)


def import_blob_seeds(build):
    w4 = ("w", [4], {})
    seeds = [
        factory(SMALL, [w4]),
        factory(SMALL, []),
        factory(SMALL, [w4], name="mod1"),
        factory(NOOP, []),
        factory(SMALL, [w4, ("x", [4], {})]),
        factory(SMALL, [("w", [2, 2], {})]),
        factory(SMALL, [("w", [4], {"bits": 64, "code": 2})]),
        factory(SMALL, [w4], count=2),
        factory(SMALL, [w4], names=["w", "v"]),
        factory(SMALL, [("w", [4], {"magic": NDARRAY_MAGIC ^ 1})]),
        factory(SMALL, [("w", [4], {"dev": 2})]),
        factory(SMALL.replace('"heads"', '"headz"'), [w4]),
        factory(SMALL, [w4])[:-12],
    ]
    blob_c = os.path.join(build, "tests/fixtures/net_blob.c") if build else ""
    if blob_c and os.path.exists(blob_c):
        raw = bytes(int(v) for v in re.findall(r"\d+", open(blob_c).read().split("{", 1)[1]))
        # u64 length, u64 count, str key, then the entry up to str "_lib"
        klen = struct.unpack_from("<Q", raw, 16)[0]
        start = 24 + klen
        seeds.append(raw[start:raw.index(s("_lib"), start)])
    return seeds


def params_seeds(build):
    seeds = [
        params([("p1", [8], {}), ("p3", [10], {})]),
        params([("p0", [8, 3, 3, 3], {})]),
        params([("data", [1, 3, 16, 16], {})]),
        params([]),
        params([("p1", [4], {})]),
        params([("nope", [2], {})]),
        params([("p1", [8], {"bits": 16, "code": 2})]),
        params([("p1", [8], {})], names=["p1", "p3"]),
        params([("p1", [8], {"magic": 1})]),
        params([("p3", [10], {})], reserved=7),
        params([("p1", [8], {})])[:-5],
        params([("p1", [0], {})]),
    ]
    p = os.path.join(build, "tests/fixtures/net.params") if build else ""
    if p and os.path.exists(p):
        seeds.append(open(p, "rb").read())
    return seeds


def hs(key, magic=RPC_MAGIC, length=None):
    k = key.encode()
    return struct.pack("<Ii", magic, len(k) if length is None else length) + k


def handshake_seeds():
    http = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8888\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n")
    mask = b"\x01\x02\x03\x04"
    payload = bytes(a ^ mask[i % 4] for i, a in enumerate(b"hello"))
    return [
        b"\x00" + hs("client:rasp3b:0.7151893663724195 -timeout=60"),
        b"\x00" + hs("server:tracepd"),
        b"\x00" + hs("client:"),
        b"\x00" + hs("", length=-1),
        b"\x00" + hs("abc", magic=0x0002F271),
        b"\x00" + hs("client:abc") + b"extra",
        b"\x01" + b"client:local -timeout=10",
        b"\x01" + b"client:local\t-timeout=1e9 -timeout=x",
        b"\x01" + b"local",
        b"\x02" + http.encode(),
        b"\x02" + http.replace("GET", "POST").encode(),
        b"\x02" + http.replace("13", "8").encode(),
        b"\x02" + b"GET /other HTTP/1.0\r\n\r\n",
        b"\x03" + b"\x03" + b"\x82\x85" + mask + payload,
        b"\x03" + b"\x00" + b"\x02\x83" + mask + payload[:3] + b"\x80\x82" + mask + payload[:2],
        b"\x03" + b"\x01" + b"\x89\x80" + mask + b"\x88\x82" + mask + b"\x03\xea",
        b"\x03" + b"\x05" + b"\x82\xfe\x01\x00" + mask + bytes(256),
        b"\x03" + b"\x00" + b"\x82\xff" + u64(1 << 40)[::-1] + mask,
        b"\x03" + b"\x00" + b"\x82\x05hello",
    ]


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for seed in seeds:
        with open(os.path.join(d, hashlib.sha1(seed).hexdigest()), "wb") as f:
            f.write(seed)
    print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    build = sys.argv[1] if len(sys.argv) > 1 else ""
    write("import_blob", import_blob_seeds(build))
    write("params", params_seeds(build))
    write("handshake", handshake_seeds())
