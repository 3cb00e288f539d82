/* Client request handlers, one file per family (rpc_session.c,
 * rpc_memory.c, rpc_segment.c, rpc_batch.c, rpc_notify.c, rpc_admin.c), all with this
 * shape. dispatch.c's command table says which handles what. A handler
 * fills r, or takes it over with reply_defer and answers later. */
#ifndef MCEFAD_RPC_H
#define MCEFAD_RPC_H

#include "mcefa.pb-c.h"
#include <uv.h>

#include "reply.h"

typedef void (*rpc_handler)(reply *r, const Mcefa__Request *req);

/* The loop registrations report back to (rpc_memory.c). */
void rpc_memory_init(uv_loop_t *loop);

void rpc_hello(reply *r, const Mcefa__Request *req);
void rpc_register(reply *r, const Mcefa__Request *req);
void rpc_unregister(reply *r, const Mcefa__Request *req);
void rpc_export(reply *r, const Mcefa__Request *req);
void rpc_open(reply *r, const Mcefa__Request *req);
void rpc_warmup(reply *r, const Mcefa__Request *req);
void rpc_close_segment(reply *r, const Mcefa__Request *req);
void rpc_query(reply *r, const Mcefa__Request *req);
void rpc_alloc_batch(reply *r, const Mcefa__Request *req);
void rpc_free_batch(reply *r, const Mcefa__Request *req);
void rpc_submit(reply *r, const Mcefa__Request *req);
void rpc_batch_status(reply *r, const Mcefa__Request *req);
void rpc_open_ring(reply *r, const Mcefa__Request *req);
void rpc_status(reply *r, const Mcefa__Request *req);
void rpc_set_log_level(reply *r, const Mcefa__Request *req);
void rpc_warmup_host(reply *r, const Mcefa__Request *req);
void rpc_notify(reply *r, const Mcefa__Request *req);
void rpc_get_notifies(reply *r, const Mcefa__Request *req);

#endif
