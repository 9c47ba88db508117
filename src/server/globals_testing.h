/* globals_testing: the global functions TVM's own RPC tests call
 * (RUNTIME.md §1.8), for both generations. Registered in globals.c; each is
 * an rpc_fn (session.h). */
#ifndef TVMRPC_GLOBALS_TESTING_H
#define TVMRPC_GLOBALS_TESTING_H

#include "server/session.h"

#define TESTING_FN(name)                                                                           \
    int name(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,        \
             size_t errlen)

/* testing.* (libtvm, both generations) */
TESTING_FN(testing_fn_echo);
TESTING_FN(testing_fn_nop);
TESTING_FN(testing_fn_error_test);           /* testing.ErrorTest (classic) */
TESTING_FN(testing_fn_raise_error);          /* testing.test_raise_error (ffi) */
TESTING_FN(testing_fn_raise_error_callback); /* testing.test_raise_error_callback (classic) */
TESTING_FN(testing_fn_object_use_count);     /* testing.object_use_count (classic) */

/* Shapes: runtime.ShapeTuple / runtime.GetShapeTuple{Size,Elem} (classic),
 * ffi.Shape / rpc.testing.GetShape{Size,Elem} (ffi); one object kind. */
TESTING_FN(testing_fn_shape);
TESTING_FN(testing_fn_shape_size);
TESTING_FN(testing_fn_shape_elem);

/* rpc.test.* (python/tvm/rpc/testing.py, imported by the Python server) */
TESTING_FN(testing_fn_addone);
TESTING_FN(testing_fn_strcat);
TESTING_FN(testing_fn_str_concat);
TESTING_FN(testing_fn_except);
TESTING_FN(testing_fn_remote_array_func); /* remote_array_func / remote_tensor_func */
TESTING_FN(testing_fn_add_to_lhs);
TESTING_FN(testing_fn_remote_return_nd);

#endif
