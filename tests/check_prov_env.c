/* Provider environment defaults (prov_env.c): which variables a provider
 * gets from the settings, and that a variable the environment sets is
 * kept. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "prov_env.h"
#include "suite.h"

static const prov_env_settings settings = {
    .rxm_buffer_size = 2048, .rxm_msg_rx_size = 128, .rxm_cm_progress_interval_us = 1000};

START_TEST(rxm_gets_its_bounds)
{
    static const char *const provs[] = {"tcp;ofi_rxm", "ofi_rxm", "verbs;ofi_rxm"};
    for (size_t p = 0; p < sizeof(provs) / sizeof(provs[0]); p++) {
        prov_env_var v[PROV_ENV_MAX];
        ck_assert_uint_eq(prov_env_plan(provs[p], &settings, v), 3);
        ck_assert_str_eq(v[0].name, "FI_OFI_RXM_BUFFER_SIZE");
        ck_assert_str_eq(v[0].value, "2048");
        ck_assert_str_eq(v[0].setting, "rxm_buffer_size");
        ck_assert_str_eq(v[1].name, "FI_OFI_RXM_MSG_RX_SIZE");
        ck_assert_str_eq(v[1].value, "128");
        ck_assert_str_eq(v[1].setting, "rxm_msg_rx_size");
        ck_assert_str_eq(v[2].name, "FI_OFI_RXM_CM_PROGRESS_INTERVAL");
        ck_assert_str_eq(v[2].value, "1000");
        ck_assert_str_eq(v[2].setting, "rxm_cm_progress_interval_us");
    }
}
END_TEST

START_TEST(others_get_nothing)
{
    static const char *const provs[] = {"efa", "efa;ofi_rxd", "tcp", "sockets", ""};
    for (size_t p = 0; p < sizeof(provs) / sizeof(provs[0]); p++) {
        prov_env_var v[PROV_ENV_MAX];
        ck_assert_uint_eq(prov_env_plan(provs[p], &settings, v), 0);
    }
    prov_env_var v[PROV_ENV_MAX];
    ck_assert_uint_eq(prov_env_plan(NULL, &settings, v), 0);
}
END_TEST

START_TEST(environment_wins)
{
    unsetenv("FI_OFI_RXM_MSG_RX_SIZE");
    setenv("FI_OFI_RXM_BUFFER_SIZE", "16384", 1);
    prov_env_var v[PROV_ENV_MAX];
    prov_env_apply(v, prov_env_plan("tcp;ofi_rxm", &settings, v));
    ck_assert_str_eq(getenv("FI_OFI_RXM_BUFFER_SIZE"), "16384");
    ck_assert_str_eq(getenv("FI_OFI_RXM_MSG_RX_SIZE"), "128");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prov_env");
    TCase *tc = tcase_create("prov_env");
    tcase_add_test(tc, rxm_gets_its_bounds);
    tcase_add_test(tc, others_get_nothing);
    tcase_add_test(tc, environment_wins);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
