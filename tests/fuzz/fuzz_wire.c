/* libFuzzer target: the client <-> daemon frame decoder. The input is a
 * byte stream as a socket would deliver it, cut into reads of a size the
 * first byte picks; every whole frame is unpacked as a Request (what the
 * daemon reads) and as a Response (what the library reads). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

/* Small, so announced sizes above it are reached and no run buffers much. */
#define FUZZ_MAX_FRAME 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] * 7 + 1; /* 1..1786 bytes per read */
    data++, size--;
    wire_reader r;
    wire_reader_init(&r, FUZZ_MAX_FRAME);
    size_t off = 0;
    int rc = 0;
    while (off < size && rc >= 0) {
        size_t avail;
        uint8_t *dst = wire_reader_space(&r, &avail);
        if (!dst)
            break;
        size_t n = size - off < chunk ? size - off : chunk;
        if (n > avail)
            n = avail;
        memcpy(dst, data + off, n);
        wire_reader_commit(&r, n);
        off += n;
        const uint8_t *p;
        size_t len;
        while ((rc = wire_reader_next(&r, &p, &len)) == 1) {
            Mcefa__Request *q = mcefa__request__unpack(NULL, len, p);
            if (q)
                mcefa__request__free_unpacked(q, NULL);
            Mcefa__Response *s = mcefa__response__unpack(NULL, len, p);
            if (s)
                mcefa__response__free_unpacked(s, NULL);
            wire_reader_consume(&r);
        }
    }
    wire_reader_free(&r);
    return 0;
}
