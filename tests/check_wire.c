/* The protocol codec: framing over real sockets, partial reads, oversize
 * frames, garbage, descriptor passing. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"
#include "suite.h"

static int sp[2];

static void setup(void)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
}

static void teardown(void)
{
    close(sp[0]);
    close(sp[1]);
}

static Mcefa__Request *make_submit(size_t n)
{
    Mcefa__Request *req = calloc(1, sizeof(*req));
    mcefa__request__init(req);
    Mcefa__SubmitBatch *sb = calloc(1, sizeof(*sb));
    mcefa__submit_batch__init(sb);
    sb->batch_id = 42;
    sb->n_transfers = n;
    sb->transfers = calloc(n, sizeof(*sb->transfers));
    for (size_t i = 0; i < n; i++) {
        Mcefa__Transfer *t = calloc(1, sizeof(*t));
        mcefa__transfer__init(t);
        t->opcode = i % 2 ? MCEFA__OPCODE__OP_WRITE : MCEFA__OPCODE__OP_READ;
        t->local_addr = 0x7f0000000000ull + i * 4096;
        t->segment = 3;
        t->remote_addr = 0x7e0000000000ull + i * 4096;
        t->length = 4096 + i;
        sb->transfers[i] = t;
    }
    req->seq = 99;
    req->body_case = MCEFA__REQUEST__BODY_SUBMIT_BATCH;
    req->submit_batch = sb;
    return req;
}

static void free_submit(Mcefa__Request *req)
{
    for (size_t i = 0; i < req->submit_batch->n_transfers; i++)
        free(req->submit_batch->transfers[i]);
    free(req->submit_batch->transfers);
    free(req->submit_batch);
    free(req);
}

static void check_submit(const uint8_t *p, size_t len, size_t n)
{
    Mcefa__Request *r = mcefa__request__unpack(NULL, len, p);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->seq, 99);
    ck_assert_int_eq(r->body_case, MCEFA__REQUEST__BODY_SUBMIT_BATCH);
    ck_assert_uint_eq(r->submit_batch->n_transfers, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(r->submit_batch->transfers[i]->length, 4096 + i);
        ck_assert_uint_eq(r->submit_batch->transfers[i]->remote_addr, 0x7e0000000000ull + i * 4096);
    }
    mcefa__request__free_unpacked(r, NULL);
}

START_TEST(roundtrip_large_batch)
{
    Mcefa__Request *req = make_submit(20000);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(wire_pack(&req->base, &buf, &len), 0);
    ck_assert_uint_gt(len, 64 * 1024); /* several reads needed */
    ck_assert_int_eq(fcntl(sp[1], F_SETFL, O_NONBLOCK), 0);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    size_t sent = 0;
    const uint8_t *p;
    size_t plen;
    int got = 0;
    while (!got) {
        if (sent < len) {
            ssize_t n = wire_send_some(sp[0], buf + sent, len - sent, NULL, 0);
            if (n > 0)
                sent += (size_t)n;
        }
        ssize_t n = wire_reader_fill(&rd, sp[1]);
        ck_assert(n > 0 || n == -EAGAIN);
        got = wire_reader_next(&rd, &p, &plen);
        ck_assert_int_ge(got, 0);
    }
    check_submit(p, plen, 20000);
    wire_reader_consume(&rd);
    ck_assert_uint_eq(rd.len, 0);
    wire_reader_free(&rd);
    free(buf);
    free_submit(req);
}
END_TEST

START_TEST(byte_by_byte_and_back_to_back)
{
    Mcefa__Request *req = make_submit(3);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(wire_pack(&req->base, &buf, &len), 0);
    wire_reader rd;
    wire_reader_init(&rd, WIRE_MAX_FRAME_DEFAULT);
    const uint8_t *p;
    size_t plen;
    /* Partial frame: nothing until the last byte. */
    for (size_t i = 0; i < len; i++) {
        ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), 0);
        ck_assert_int_eq(wire_send_all(sp[0], buf + i, 1, NULL, 0), 0);
        ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), 1);
    }
    ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), 1);
    check_submit(p, plen, 3);
    wire_reader_consume(&rd);
    /* Two frames in one write come out as two frames. */
    uint8_t two[2 * 4096];
    ck_assert_uint_lt(2 * len, sizeof(two));
    memcpy(two, buf, len);
    memcpy(two + len, buf, len);
    ck_assert_int_eq(wire_send_all(sp[0], two, 2 * len, NULL, 0), 0);
    ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), (ssize_t)(2 * len));
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), 1);
        check_submit(p, plen, 3);
        wire_reader_consume(&rd);
    }
    ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), 0);
    wire_reader_free(&rd);
    free(buf);
    free_submit(req);
}
END_TEST

START_TEST(oversize_rejected_from_header)
{
    wire_reader rd;
    wire_reader_init(&rd, 1024);
    uint8_t hdr[4] = {0x01, 0x04, 0, 0}; /* 1025 bytes */
    ck_assert_int_eq(wire_send_all(sp[0], hdr, 4, NULL, 0), 0);
    ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), 4);
    const uint8_t *p;
    size_t plen;
    /* Refused at the header, before any payload is buffered. */
    ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), -EMSGSIZE);
    wire_reader_free(&rd);
    /* Exactly the limit is fine. */
    wire_reader_init(&rd, 1025);
    ck_assert_int_eq(wire_send_all(sp[0], hdr, 4, NULL, 0), 0);
    ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), 4);
    ck_assert_int_eq(wire_reader_next(&rd, &p, &plen), 0);
    wire_reader_free(&rd);
}
END_TEST

START_TEST(garbage_does_not_decode)
{
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(0xff - i);
    ck_assert_ptr_null(mcefa__request__unpack(NULL, sizeof(junk), junk));
    /* A truncated valid message does not decode either. */
    Mcefa__Request *req = make_submit(2);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(wire_pack(&req->base, &buf, &len), 0);
    ck_assert_ptr_null(mcefa__request__unpack(NULL, len - WIRE_HDR_LEN - 3, buf + WIRE_HDR_LEN));
    free(buf);
    free_submit(req);
}
END_TEST

START_TEST(descriptors_travel_with_the_frame)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    uint8_t frame[6] = {2, 0, 0, 0, 0x08, 0x01};
    int fds[2] = {p[0], p[1]};
    ck_assert_int_eq(wire_send_all(sp[0], frame, sizeof(frame), fds, 2), 0);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), (ssize_t)sizeof(frame));
    ck_assert_uint_eq(rd.nfds, 2);
    int a = wire_reader_take_fd(&rd), b = wire_reader_take_fd(&rd);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(b, 0);
    ck_assert_int_eq(wire_reader_take_fd(&rd), -EBADF);
    /* They are the same pipe: write on one end, read on the other. */
    ck_assert_int_eq(write(b, "x", 1), 1);
    char ch;
    ck_assert_int_eq(read(a, &ch, 1), 1);
    ck_assert_int_eq(ch, 'x');
    close(a);
    close(b);
    close(p[0]);
    close(p[1]);
    wire_reader_free(&rd);
}
END_TEST

START_TEST(unclaimed_descriptors_are_closed)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    wire_reader rd;
    wire_reader_init(&rd, 0);
    int fds[WIRE_MAX_FDS];
    for (int i = 0; i < WIRE_MAX_FDS; i++)
        fds[i] = p[0];
    /* Two messages of WIRE_MAX_FDS descriptors: the second set overflows. */
    uint8_t b = 0;
    ck_assert_int_eq(wire_send_all(sp[0], &b, 1, fds, WIRE_MAX_FDS), 0);
    ck_assert_int_eq(wire_send_all(sp[0], &b, 1, fds, WIRE_MAX_FDS), 0);
    while (rd.len < 2)
        ck_assert_int_gt(wire_reader_fill(&rd, sp[1]), 0);
    ck_assert_uint_eq(rd.nfds, WIRE_MAX_FDS);
    ck_assert_uint_eq(rd.fds_dropped, WIRE_MAX_FDS);
    wire_reader_free(&rd);
    /* Everything the reader held was closed: only our two ends remain, so
     * closing the write end gives EOF on the read end. */
    close(p[1]);
    char ch;
    ck_assert_int_eq(read(p[0], &ch, 1), 0);
    close(p[0]);
}
END_TEST

START_TEST(end_of_stream)
{
    wire_reader rd;
    wire_reader_init(&rd, 0);
    close(sp[0]);
    sp[0] = -1;
    ck_assert_int_eq(wire_reader_fill(&rd, sp[1]), 0);
    ck_assert_int_eq(wire_reader_fill(&rd, 12345), -EBADF);
    wire_reader_free(&rd);
    /* Sending on a closed connection is an error, not a SIGPIPE. */
    ck_assert_int_lt(wire_send_all(sp[1], "x", 1, NULL, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("codec");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, roundtrip_large_batch);
    tcase_add_test(tc, byte_by_byte_and_back_to_back);
    tcase_add_test(tc, oversize_rejected_from_header);
    tcase_add_test(tc, garbage_does_not_decode);
    tcase_add_test(tc, descriptors_travel_with_the_frame);
    tcase_add_test(tc, unclaimed_descriptors_are_closed);
    tcase_add_test(tc, end_of_stream);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
