#include "cuda_drv.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

cuda_drv_table cuda_drv;

/* The symbol a prototype name stands for, after cuda.h's renaming. */
#define CUDA_DRV_STR(n) #n
#define CUDA_DRV_SYM(n) CUDA_DRV_STR(n)

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int load_done, load_rc;
static char load_why[512], load_path[512];

static int load_locked(const char *path)
{
    const char *lib = path && path[0] ? path : "libcuda.so.1";
    /* RTLD_NODELETE: streams and mappings outlive any notion of unloading. */
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        snprintf(load_why, sizeof(load_why),
                 "cannot load the CUDA driver %s (%s): install the NVIDIA driver, or run where one is", lib,
                 dlerror());
        return -ENOENT;
    }
    cuda_drv_table t;
#define CUDA_DRV_LOAD(n)                                                                                           \
    if (!(*(void **)&t.n = dlsym(h, CUDA_DRV_SYM(n)))) {                                                           \
        snprintf(load_why, sizeof(load_why),                                                                       \
                 "the CUDA driver %s has no %s: it is too old for mcefa (CUDA 12 or newer is needed)", lib,        \
                 CUDA_DRV_SYM(n));                                                                                 \
        return -ENOSYS;                                                                                            \
    }
    CUDA_DRV_FNS(CUDA_DRV_LOAD)
#undef CUDA_DRV_LOAD
    CUresult rc = t.cuInit(0);
    if (rc != CUDA_SUCCESS) {
        const char *name = NULL;
        if (t.cuGetErrorName(rc, &name) != CUDA_SUCCESS || !name)
            name = "unknown error";
        snprintf(load_why, sizeof(load_why),
                 "the CUDA driver %s did not initialise (%s, %d): no usable GPU, or no access to /dev/nvidia* "
                 "(device nodes, cgroup, container --gpus)",
                 lib, name, (int)rc);
        return -ENODEV;
    }
    cuda_drv = t;
    return 0;
}

int cuda_drv_load(const char *path, char *why, size_t whylen)
{
    pthread_mutex_lock(&load_lock);
    /* A failure is final for the path that failed; another path (a
     * setting changed since) is tried. */
    if (!load_done || (load_rc < 0 && strcmp(load_path, path ? path : ""))) {
        snprintf(load_path, sizeof(load_path), "%s", path ? path : "");
        load_rc = load_locked(path);
        load_done = 1;
    }
    int rc = load_rc;
    if (rc < 0 && why && whylen)
        snprintf(why, whylen, "%s", load_why);
    pthread_mutex_unlock(&load_lock);
    return rc;
}

const char *cuda_drv_error(CUresult rc)
{
    static __thread char buf[160];
    const char *name = NULL, *text = NULL;
    if (cuda_drv.cuGetErrorName)
        cuda_drv.cuGetErrorName(rc, &name);
    if (cuda_drv.cuGetErrorString)
        cuda_drv.cuGetErrorString(rc, &text);
    snprintf(buf, sizeof(buf), "%s (%s)", name ? name : "CUDA error", text ? text : "no description");
    if (!name)
        snprintf(buf, sizeof(buf), "CUDA error %d", (int)rc);
    return buf;
}
