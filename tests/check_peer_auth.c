/* Unit tests of peer_auth.c: both sides derive matching keys and proofs,
 * and a sealed frame opens only once, in order, in its own direction. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_auth.h"
#include "suite.h"

static char secret_path[64];

static void with_secret(const char *text)
{
    snprintf(secret_path, sizeof(secret_path), "/tmp/mcefa-auth-unit-%d", (int)getpid());
    int fd = open(secret_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    err e = {0};
    ck_assert_msg(peer_auth_init("psk", secret_path, &e) == 0, "%s", e.text);
    unlink(secret_path);
}

static void handshake(peer_session *i, peer_session *r)
{
    memset(i, 0, sizeof(*i));
    memset(r, 0, sizeof(*r));
    peer_auth_new_nonce(i);
    peer_auth_new_nonce(r);
    peer_auth_derive(i, true, "hosta", 1, i->my_nonce, "hostb", 2, r->my_nonce);
    peer_auth_derive(r, false, "hosta", 1, i->my_nonce, "hostb", 2, r->my_nonce);
}

START_TEST(same_secret_agrees)
{
    with_secret("0123456789abcdef0123456789abcdef-one");
    peer_session i, r;
    handshake(&i, &r);
    ck_assert(peer_auth_proof_ok(&i, r.my_proof, PEER_AUTH_PROOF_LEN));
    ck_assert(peer_auth_proof_ok(&r, i.my_proof, PEER_AUTH_PROOF_LEN));
    /* Reflection: a side's own proof is not the other's. */
    ck_assert(!peer_auth_proof_ok(&i, i.my_proof, PEER_AUTH_PROOF_LEN));
    ck_assert(!peer_auth_proof_ok(&i, r.my_proof, PEER_AUTH_PROOF_LEN - 1));
}
END_TEST

START_TEST(other_secret_or_transcript_disagrees)
{
    with_secret("0123456789abcdef0123456789abcdef-one");
    peer_session i, r;
    handshake(&i, &r);
    uint8_t proof[PEER_AUTH_PROOF_LEN];
    memcpy(proof, r.my_proof, sizeof(proof));
    /* The same nonces with another epoch: another transcript. */
    peer_auth_derive(&r, false, "hosta", 1, i.my_nonce, "hostb", 3, r.my_nonce);
    ck_assert(!peer_auth_proof_ok(&i, r.my_proof, PEER_AUTH_PROOF_LEN));
    with_secret("0123456789abcdef0123456789abcdef-two");
    peer_auth_derive(&r, false, "hosta", 1, i.my_nonce, "hostb", 2, r.my_nonce);
    ck_assert(!peer_auth_proof_ok(&i, r.my_proof, PEER_AUTH_PROOF_LEN));
    ck_assert(peer_auth_proof_ok(&i, proof, sizeof(proof)));
}
END_TEST

START_TEST(seal_open_once_in_order)
{
    with_secret("0123456789abcdef0123456789abcdef-one");
    peer_session i, r;
    handshake(&i, &r);
    uint8_t *b1, *b2, *out;
    size_t l1, l2, lo;
    ck_assert_int_eq(peer_auth_seal(&i, (const uint8_t *)"first", 5, &b1, &l1), 0);
    ck_assert_int_eq(peer_auth_seal(&i, (const uint8_t *)"second", 6, &b2, &l2), 0);
    ck_assert_uint_eq(l1, 5 + PEER_AUTH_OVERHEAD);
    /* Reordered: the second cannot open first. */
    ck_assert_int_eq(peer_auth_open(&r, b2, l2, &out, &lo), -EBADMSG);
    ck_assert_int_eq(peer_auth_open(&r, b1, l1, &out, &lo), 0);
    ck_assert_uint_eq(lo, 5);
    ck_assert(!memcmp(out, "first", 5));
    free(out);
    /* Replayed. */
    ck_assert_int_eq(peer_auth_open(&r, b1, l1, &out, &lo), -EBADMSG);
    /* Reflected back to its sender. */
    ck_assert_int_eq(peer_auth_open(&i, b1, l1, &out, &lo), -EBADMSG);
    ck_assert_int_eq(peer_auth_open(&r, b2, l2, &out, &lo), 0);
    free(out);
    /* Tampered. */
    uint8_t *b3;
    size_t l3;
    ck_assert_int_eq(peer_auth_seal(&i, (const uint8_t *)"third", 5, &b3, &l3), 0);
    b3[0] ^= 1;
    ck_assert_int_eq(peer_auth_open(&r, b3, l3, &out, &lo), -EBADMSG);
    ck_assert_int_eq(peer_auth_open(&r, b3, 3, &out, &lo), -EBADMSG);
    free(b1);
    free(b2);
    free(b3);
}
END_TEST

START_TEST(names_and_texts)
{
    ck_assert(peer_name_ok("host-a.example", 255));
    ck_assert(!peer_name_ok("", 255));
    ck_assert(!peer_name_ok("a b", 255));
    ck_assert(!peer_name_ok("a\nb", 255));
    ck_assert(!peer_name_ok("a\xff", 255));
    ck_assert(!peer_name_ok("abcd", 3));
    ck_assert(!peer_name_ok(NULL, 3));
    char out[8];
    peer_text_clean(out, sizeof(out), "a\nb\xffzzzzzz");
    ck_assert_str_eq(out, "a?b?zzz");
    peer_text_clean(out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(secret_file_rules)
{
    err e = {0};
    ck_assert_int_eq(peer_auth_init("psk", "", &e), -ENOENT);
    ck_assert(strstr(e.text, "mcefactl gen-secret"));
    ck_assert_int_eq(peer_auth_init("psk", "/nonexistent/peer.secret", &e), -ENOENT);
    ck_assert_int_eq(peer_auth_init("other", "", &e), -EINVAL);
    ck_assert_int_eq(peer_auth_init("none", "", &e), 0);
    ck_assert(!peer_auth_enabled());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peer_auth");
    TCase *tc = tcase_create("unit");
    tcase_add_test(tc, same_secret_agrees);
    tcase_add_test(tc, other_secret_or_transcript_disagrees);
    tcase_add_test(tc, seal_open_once_in_order);
    tcase_add_test(tc, names_and_texts);
    tcase_add_test(tc, secret_file_rules);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
