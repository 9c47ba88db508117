/* libFuzzer harness for the framing of a classic import blob
 * (__tvm_dev_mblob payload, RUNTIME.md §2.3): entry count, entry keys,
 * "_lib", "_import_tree" (CSR rows and children, cycles), and the entries
 * of known loaders (GraphExecutorFactory). module_blob_check parses it over
 * a library without symbols and frees everything; any input must give 0 or
 * -1 with a message, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "server/module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    err[0] = '\0';
    if (module_blob_check(data, size, err, sizeof(err)) < 0 && !err[0])
        abort(); /* every failure must say why */
    return 0;
}
