/* Which CUDA driver a GPU suite runs against: the test stand-in
 * (tests/cuda_standin, the default), or the real one with
 * MCEFA_TEST_GPU=real. Only for builds with the CUDA headers. */
#ifndef MCEFA_TEST_GPU_MODE_H
#define MCEFA_TEST_GPU_MODE_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/cuda_drv.h"

/* Real driver: returns how many GPUs it lists (at most 100), probed in a
 * child since the suites fork after it; 0 when there is none, having
 * printed the suite's skip line. Stand-in: returns -1, with lib_flag set to
 * the daemon's --cuda_library flag and the environment naming the stand-in
 * for this process and the daemons it starts; a missing stand-in exits 1.
 * delay_us: how long each stand-in stream op waits (unless the environment
 * says), so work done out of order shows. */
static inline int gpu_mode_init(const char *suite, const char *delay_us, char *lib_flag, size_t len)
{
    const char *mode = getenv("MCEFA_TEST_GPU");
    char why[512] = "";
    if (mode && !strcmp(mode, "real")) {
        int n = 0;
        pid_t pid = fork();
        if (pid == 0)
            _exit(cuda_drv_load(NULL, why, sizeof(why)) == 0 && cuda_drv.cuDeviceGetCount(&n) == CUDA_SUCCESS
                      ? (n > 100 ? 100 : n)
                      : 0);
        int st = 0;
        waitpid(pid, &st, 0);
        n = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
        if (n == 0) {
            cuda_drv_load(NULL, why, sizeof(why));
            printf("%s (real driver): skipped: no usable GPU here (%s)\n100%%: Checks: 0, Failures: 0, Errors: 0\n",
                   suite, why[0] ? why : "the driver lists no GPU");
            return 0;
        }
        unsetenv("MCEFA_CUDA_LIBRARY");
        return n;
    }
    const char *b = getenv("MCEFA_BUILD");
    char standin[512], abs[PATH_MAX];
    snprintf(standin, sizeof(standin), "%s/tests/libcuda-standin.so", b && *b ? b : "build");
    if (!realpath(standin, abs)) {
        printf("%s (stand-in): %s is missing (build with make)\n", suite, standin);
        exit(1);
    }
    snprintf(lib_flag, len, "--cuda_library=%s", abs);
    setenv("MCEFA_CUDA_LIBRARY", abs, 1);
    setenv("MCEFA_STANDIN_GPUS", "2", 1);
    setenv("MCEFA_STANDIN_DELAY_US", delay_us, 0);
    printf("%s: CUDA driver stand-in %s (checks mcefa's bookkeeping, not a GPU)\n", suite, abs);
    return -1;
}

#endif
