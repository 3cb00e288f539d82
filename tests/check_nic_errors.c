/* CQ error entries to POSIX errors (nic_errors.c), without a NIC: the efa
 * provider's documented codes (prov/efa/src/efa_errno.h in ofiwg/libfabric:
 * each entry below pairs a prov_errno with the FI_E* value its to_fi_errno
 * gives), the socket providers' errnos, the generic FI_E* codes of other
 * providers, and the texts. */
#include <check.h>
#include <errno.h>
#include <rdma/fi_errno.h>
#include <string.h>

#include "nic_errors.h"
#include "suite.h"

static nic_errors_verdict v;
static char text[400];

static int map(const char *prov, int err, int prov_errno, const char *prov_text)
{
    nic_errors_cq in = {.err = err, .prov_errno = prov_errno, .provider = prov, .prov_text = prov_text};
    memset(&v, 0x55, sizeof(v));
    int rc = nic_errors_map(&in, &v, text, sizeof(text));
    ck_assert_int_eq(rc, v.code);
    return rc;
}

typedef struct efa_case {
    int prov_errno, err; /* as the efa provider reports them */
    int code;
    nic_errors_kind kind;
    bool rehandshake;
} efa_case;

START_TEST(efa_documented_codes)
{
    static const efa_case cases[] = {
        {1, FI_ECANCELED, -ECANCELED, NIC_ERRORS_CANCELED, false},        /* FLUSHED */
        {2, FI_EINVAL, -EINVAL, NIC_ERRORS_LOCAL, false},                 /* QP_INTERNAL_ERROR */
        {3, FI_EINVAL, -EINVAL, NIC_ERRORS_LOCAL, false},                 /* UNSUPPORTED_OP */
        {4, FI_EINVAL, -ENOTCONN, NIC_ERRORS_UNKNOWN_PEER, true},         /* INVALID_AH */
        {5, FI_EINVAL, -EINVAL, NIC_ERRORS_LOCAL, false},                 /* INVALID_LKEY */
        {6, FI_EMSGSIZE, -EMSGSIZE, NIC_ERRORS_TOO_LONG, false},          /* LOCAL BAD_LENGTH */
        {7, FI_EINVAL, -EFAULT, NIC_ERRORS_REMOTE_MR, false},             /* REMOTE BAD_ADDRESS */
        {8, FI_ECONNABORTED, -ECONNRESET, NIC_ERRORS_RESET, true},        /* REMOTE_ERROR_ABORT */
        {9, FI_ENOTCONN, -ENOTCONN, NIC_ERRORS_UNKNOWN_PEER, true},       /* BAD_DEST_QPN */
        {10, FI_ENORX, -EAGAIN, NIC_ERRORS_NOT_READY, false},             /* RNR */
        {11, FI_EMSGSIZE, -EMSGSIZE, NIC_ERRORS_TOO_LONG, false},         /* REMOTE BAD_LENGTH */
        {13, FI_ECONNABORTED, -ETIMEDOUT, NIC_ERRORS_UNRESPONSIVE, true}, /* UNRESP_REMOTE */
        {14, FI_ENOTCONN, -ENOTCONN, NIC_ERRORS_UNKNOWN_PEER, true},      /* UNKNOWN_PEER */
        {15, FI_EHOSTUNREACH, -EHOSTUNREACH, NIC_ERRORS_UNREACHABLE, true}, /* UNREACH_REMOTE */
        {4105, FI_ENOMEM, -ENOMEM, NIC_ERRORS_NO_MEMORY, false},          /* FI_EFA_ERR_OOM */
        {4109, FI_EOTHER, -EAGAIN, NIC_ERRORS_NOT_READY, false},          /* TXE_POOL_EXHAUSTED */
        {4110, FI_EOTHER, -ENOTCONN, NIC_ERRORS_UNKNOWN_PEER, true},      /* AV_INSERT */
        {4111, FI_EOTHER, -EFAULT, NIC_ERRORS_REMOTE_MR, false},          /* RMA_ADDR */
        {4113, FI_EOTHER, -EHOSTUNREACH, NIC_ERRORS_UNREACHABLE, true},   /* PEER_HANDSHAKE */
        {4124, FI_ECONNABORTED, -ETIMEDOUT, NIC_ERRORS_UNRESPONSIVE, true}, /* ESTABLISHED_RECV_UNRESP */
        {4126, FI_ECONNABORTED, -EHOSTUNREACH, NIC_ERRORS_UNREACHABLE, true}, /* UNESTABLISHED_RECV_UNRESP */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const efa_case *c = &cases[i];
        int rc = map("efa", c->err, c->prov_errno, "efa's text");
        ck_assert_msg(rc == c->code && v.kind == c->kind && v.rehandshake == c->rehandshake,
                      "prov_errno %d: got %d kind %d rehandshake %d", c->prov_errno, rc, v.kind, v.rehandshake);
        /* Providers before to_fi_errno reported FI_EIO with the status:
         * the verdict comes from the status alone. */
        ck_assert_int_eq(map("efa", FI_EIO, c->prov_errno, NULL), c->code);
    }
}
END_TEST

START_TEST(efa_texts_say_what_to_do)
{
    map("efa", FI_EINVAL, 7, "Remote key (RKEY) not registered or does not match remote IOVA");
    ck_assert_ptr_nonnull(strstr(text, "the remote region was unregistered or the peer restarted; reopen the segment"));
    ck_assert_ptr_nonnull(strstr(text, "Remote key (RKEY) not registered"));
    ck_assert_ptr_nonnull(strstr(text, "FI_EINVAL, prov_errno 7"));
    map("efa", FI_ECONNABORTED, 13, NULL);
    ck_assert_ptr_nonnull(strstr(text, "stopped responding"));
    ck_assert_ptr_nonnull(strstr(text, "handshakes with it again"));
    ck_assert_ptr_nonnull(strstr(text, "no detail"));
    map("efa", FI_ENOTCONN, 14, "No valid address handle at remote side");
    ck_assert_ptr_nonnull(strstr(text, "does not know this host's NIC address"));
    map("efa", FI_ENORX, 10, "Destination resource not ready");
    ck_assert_ptr_nonnull(strstr(text, "retry the transfer"));
    /* A code we do not know: the provider's words carry it. */
    ck_assert_int_eq(map("efa", FI_EOTHER, 4100, "Failure to post packet"), -EIO);
    ck_assert_int_eq(v.kind, NIC_ERRORS_OTHER);
    ck_assert(!v.rehandshake);
    ck_assert_ptr_nonnull(strstr(text, "Failure to post packet"));
    ck_assert_ptr_nonnull(strstr(text, "FI_EOTHER, prov_errno 4100"));
}
END_TEST

START_TEST(generic_codes)
{
    const char *p = "tcp;ofi_rxm";
    ck_assert_int_eq(map(p, FI_EINVAL, 0, NULL), -EFAULT);
    ck_assert_int_eq(v.kind, NIC_ERRORS_REMOTE_MR);
    ck_assert_int_eq(map(p, FI_EKEYREJECTED, 0, NULL), -EFAULT);
    ck_assert_int_eq(map(p, FI_EACCES, 0, NULL), -EFAULT);
    ck_assert_int_eq(map(p, FI_ECONNABORTED, 0, NULL), -ETIMEDOUT);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map(p, FI_ETIMEDOUT, 0, NULL), -ETIMEDOUT);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map(p, FI_EHOSTUNREACH, 0, NULL), -EHOSTUNREACH);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map(p, FI_ENETUNREACH, 0, NULL), -EHOSTUNREACH);
    ck_assert_int_eq(map(p, FI_ENOTCONN, 0, NULL), -ENOTCONN);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map(p, FI_ENOAV, 0, NULL), -ENOTCONN);
    ck_assert_int_eq(map(p, FI_ECONNRESET, 0, NULL), -ECONNRESET);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map(p, FI_ECONNREFUSED, 0, NULL), -ECONNRESET);
    ck_assert_int_eq(map(p, FI_ENORX, 0, NULL), -EAGAIN);
    ck_assert(!v.rehandshake);
    ck_assert_int_eq(map(p, FI_EAGAIN, 0, NULL), -EAGAIN);
    ck_assert_int_eq(map(p, FI_ECANCELED, 0, NULL), -ECANCELED);
    ck_assert_int_eq(map(p, FI_ETRUNC, 0, NULL), -EMSGSIZE);
    ck_assert_int_eq(map(p, FI_ENOMEM, 0, NULL), -ENOMEM);
    ck_assert_int_eq(map(p, FI_EOPNOTSUPP, 0, NULL), -EINVAL);
    ck_assert_int_eq(map(p, FI_EIO, 0, "socket error"), -EIO);
    ck_assert(!v.rehandshake);
    ck_assert_int_eq(map(p, FI_EREMOTEIO, 0, NULL), -EREMOTEIO);
    /* Other POSIX values pass through; libfabric's own ones do not. */
    ck_assert_int_eq(map(p, FI_EPERM, 0, NULL), -EPERM);
    ck_assert_int_eq(map(p, FI_EOTHER, 0, NULL), -EIO);
    ck_assert_int_eq(map(p, FI_EOPBADSTATE, 0, NULL), -EIO);
    ck_assert_int_eq(map(p, 0, 0, NULL), -EIO);
    ck_assert_int_eq(map(p, -5, 0, NULL), -EIO);
}
END_TEST

START_TEST(prov_errno_read_only_where_known)
{
    /* tcp's prov_errno 7 (E2BIG) is not efa's REMOTE_ERROR_BAD_ADDRESS. */
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_EIO, 7, NULL), -EIO);
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_EIO, 14, NULL), -EIO);
    ck_assert(!v.rehandshake);
    ck_assert_int_eq(map("efa;ofi_rxd", FI_EIO, 14, NULL), -ENOTCONN);
    ck_assert_int_eq(map("efanother", FI_EIO, 14, NULL), -EIO);
    ck_assert_int_eq(map(NULL, FI_EIO, 14, NULL), -EIO);
    ck_assert_ptr_nonnull(strstr(text, "provider ?"));
}
END_TEST

/* tcp puts the socket's errno in prov_errno: a peer whose daemon died
 * shows as FI_ECANCELED with ENOTCONN (seen with tcp;ofi_rxm, libfabric
 * 1.17). */
START_TEST(socket_provider_errnos)
{
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_ECANCELED, ENOTCONN, "Transport endpoint is not connected"), -ECONNRESET);
    ck_assert_int_eq(v.kind, NIC_ERRORS_RESET);
    ck_assert(v.rehandshake);
    ck_assert_ptr_nonnull(strstr(text, "went away"));
    ck_assert_ptr_nonnull(strstr(text, "FI_ECANCELED, prov_errno 107"));
    ck_assert_int_eq(map("tcp", FI_EIO, ECONNRESET, NULL), -ECONNRESET);
    ck_assert_int_eq(map("sockets", FI_EIO, EPIPE, NULL), -ECONNRESET);
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_EIO, ETIMEDOUT, NULL), -ETIMEDOUT);
    ck_assert(v.rehandshake);
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_EIO, EHOSTUNREACH, NULL), -EHOSTUNREACH);
    /* Other socket errnos leave the verdict to err. */
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_ECANCELED, 0, NULL), -ECANCELED);
    ck_assert(!v.rehandshake);
    ck_assert_int_eq(map("tcp;ofi_rxm", FI_EINVAL, EINVAL, NULL), -EFAULT);
    /* Not a socket provider: prov_errno is not an errno there. */
    ck_assert_int_eq(map("verbs;ofi_rxm", FI_ECANCELED, ENOTCONN, NULL), -ECANCELED);
    ck_assert_int_eq(map("tcpx", FI_ECANCELED, ENOTCONN, NULL), -ECANCELED);
}
END_TEST

/* Whatever a provider reports (a peer can make it report nearly anything),
 * the result is a valid negative errno and a terminated text. */
START_TEST(any_input_gives_an_errno)
{
    const char *provs[] = {"efa", "tcp;ofi_rxm", "", NULL};
    for (int p = 0; p < 4; p++)
        for (int err = -2; err < 300; err++)
            for (int pe = -1; pe < 4200; pe += (pe < 20 || pe >= 4090) ? 1 : 1000) {
                int rc = map(provs[p], err, pe, "x");
                ck_assert_msg(rc < 0 && rc > -4096, "%s err %d prov_errno %d -> %d", provs[p] ? provs[p] : "NULL",
                              err, pe, rc);
                ck_assert(v.kind >= NIC_ERRORS_OTHER && v.kind <= NIC_ERRORS_NO_MEMORY);
                ck_assert_uint_gt(strlen(text), 0);
            }
    char small[16];
    nic_errors_cq in = {.err = FI_EINVAL, .prov_errno = 7, .provider = "efa", .prov_text = "long text"};
    ck_assert_int_eq(nic_errors_map(&in, &v, small, sizeof(small)), -EFAULT);
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

START_TEST(fi_names)
{
    ck_assert_str_eq(nic_errors_fi_name(FI_ENORX), "FI_ENORX");
    ck_assert_str_eq(nic_errors_fi_name(FI_ECONNABORTED), "FI_ECONNABORTED");
    ck_assert_str_eq(nic_errors_fi_name(FI_EAGAIN), "FI_EAGAIN");
    ck_assert_ptr_null(nic_errors_fi_name(9999));
    ck_assert_ptr_null(nic_errors_fi_name(0));
    map("tcp;ofi_rxm", 9999, 3, NULL);
    ck_assert_ptr_nonnull(strstr(text, "error 9999, prov_errno 3"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nic_errors");
    TCase *tc = tcase_create("nic_errors");
    tcase_add_test(tc, efa_documented_codes);
    tcase_add_test(tc, efa_texts_say_what_to_do);
    tcase_add_test(tc, generic_codes);
    tcase_add_test(tc, prov_errno_read_only_where_known);
    tcase_add_test(tc, socket_provider_errnos);
    tcase_add_test(tc, any_input_gives_an_errno);
    tcase_add_test(tc, fi_names);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
