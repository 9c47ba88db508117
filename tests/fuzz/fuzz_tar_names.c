/* libFuzzer harness for the check of an uploaded .tar's member names
 * (module_tar_names_ok): whatever the listing, it must not crash, and any
 * name it accepts must be relative and free of ".." components. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An independent statement of the rule, to check the checker. */
static int name_escapes(const char *name)
{
    if (name[0] == '/')
        return 1;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += n;
        p += strspn(p, "/");
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *listing = malloc(size + 1), *copy = malloc(size + 1);
    if (!listing || !copy)
        abort();
    memcpy(listing, data, size);
    listing[size] = '\0';
    memcpy(copy, listing, size + 1);
    char bad[256];
    int ok = module_tar_names_ok(listing, bad, sizeof(bad));
    if (ok) {
        char *save;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            if (name_escapes(line))
                abort(); /* accepted a name that leaves the directory */
    }
    free(listing);
    free(copy);
    return 0;
}
