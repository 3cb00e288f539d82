/* The client socket: listening, reading frames, writing replies. */
#ifndef MCEFAD_SERVER_H
#define MCEFAD_SERVER_H

#include <uv.h>

/* Listens on path (its directory created if missing) with mode bits. */
int server_start(uv_loop_t *loop, const char *path, unsigned mode);
/* Stops listening and closes every session. */
void server_stop(void);

#endif
