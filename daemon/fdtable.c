#include "fdtable.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int fdtable_reserve(unsigned want, err *e)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return err_set(e, -errno, "cannot read RLIMIT_NOFILE: %s", strerror(errno));
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        want = (unsigned)rl.rlim_cur;
    if (want < 2)
        return 0;
    /* A descriptor at want - 1 makes the kernel size the table for it;
     * the table keeps its size after the close. */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, -errno, "cannot open /dev/null: %s", strerror(errno));
    int high = fcntl(fd, F_DUPFD_CLOEXEC, (int)want - 1);
    int saved = errno;
    close(fd);
    if (high < 0)
        return err_set(e, -saved, "cannot reserve %u descriptors: %s", want, strerror(saved));
    close(high);
    return (int)want;
}
