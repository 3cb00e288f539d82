/* Submission rings (shm/ring.h): the second way a client submits
 * transfers, beside SubmitBatch on its socket. The loop thread copies each
 * descriptor out of the shared ring once and hands the copies to
 * xfer_submit, the same checks and planning a SubmitBatch gets; it answers
 * in the ring's result slots. While any ring had work within ring_spin_us
 * the loop keeps polling them (an idle handle); then it sets every ring's
 * `sleeping` flag and waits on their wake-up sockets with everything else. */
#ifndef MCEFAD_RING_H
#define MCEFAD_RING_H

#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "session.h"

typedef struct ring ring;

/* spin_us: ring_spin_us. */
void ring_init(uv_loop_t *loop, uint64_t spin_us);
/* Stops polling (at shutdown, when the server stops). */
void ring_stop(void);
/* Closes the copy threads' wake-up handle: after they are joined. */
void ring_shutdown(void);

/* Gives s a ring of about `want` descriptors (0: max_entries; rounded up to
 * a power of two, at most max_entries). fds[0] gets the ring's memfd,
 * fds[1] the client's end of a socket pair to write when the daemon sleeps; both are the
 * caller's to send. Returns 0 or a negative errno with e saying why. */
int ring_open(session *s, uint32_t want, uint32_t max_entries, uint32_t *entries, uint32_t *results, int fds[2],
              err *e);
/* At the end of the session: no descriptor of it is read after this. */
void ring_close(session *s);
/* Any thread: a run of s's copies finished. Its client is about to free
 * the batch or submit the next: a sleeping loop starts polling now, so the
 * wake-up is not on the client's path. */
void ring_work_done(session *s);

#endif
