/*
 * nftables scripts applied in-process through libnftables (the library the
 * nft command is built on), loaded with dlopen so that the addon itself
 * loads on a host without it and networking alone fails, with the reason.
 * One context, behind a mutex (a context is not thread-safe); callers run on
 * libuv's thread pool, never on the event loop: a commit can wait on the
 * kernel (an element delete waits out an RCU grace period).
 */
#include "nft.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct nft_ctx;

static struct {
	pthread_mutex_t lock;
	int tried;
	char why[256];
	struct nft_ctx *ctx;
	int (*run)(struct nft_ctx *, const char *);
	int (*buffer_output)(struct nft_ctx *);
	int (*buffer_error)(struct nft_ctx *);
	const char *(*error_buffer)(struct nft_ctx *);
	const char *(*output_buffer)(struct nft_ctx *);
} lib = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Called with lib.lock held. */
static int load(void)
{
	if (lib.tried)
		return lib.ctx ? 0 : -1;
	lib.tried = 1;
	void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(lib.why, sizeof lib.why, "cannot load libnftables.so.1 (install nftables): %s", dlerror());
		return -1;
	}
	struct nft_ctx *(*ctx_new)(uint32_t) = (struct nft_ctx * (*)(uint32_t)) dlsym(h, "nft_ctx_new");
	lib.run = (int (*)(struct nft_ctx *, const char *))dlsym(h, "nft_run_cmd_from_buffer");
	lib.buffer_output = (int (*)(struct nft_ctx *))dlsym(h, "nft_ctx_buffer_output");
	lib.buffer_error = (int (*)(struct nft_ctx *))dlsym(h, "nft_ctx_buffer_error");
	lib.output_buffer = (const char *(*)(struct nft_ctx *))dlsym(h, "nft_ctx_get_output_buffer");
	lib.error_buffer = (const char *(*)(struct nft_ctx *))dlsym(h, "nft_ctx_get_error_buffer");
	if (!ctx_new || !lib.run || !lib.buffer_output || !lib.buffer_error || !lib.output_buffer || !lib.error_buffer) {
		snprintf(lib.why, sizeof lib.why, "libnftables.so.1 lacks the nft_ctx API");
		return -1;
	}
	struct nft_ctx *ctx = ctx_new(0 /* NFT_CTX_DEFAULT */);
	/* Both buffered: nothing of nft's reaches the daemon's stdout or stderr. */
	if (!ctx || lib.buffer_output(ctx) || lib.buffer_error(ctx)) {
		snprintf(lib.why, sizeof lib.why, "cannot create an nftables context");
		return -1;
	}
	lib.ctx = ctx;
	return 0;
}

int nft_apply(const char *script, char *err, size_t errlen)
{
	pthread_mutex_lock(&lib.lock);
	int rc = load();
	if (rc) {
		snprintf(err, errlen, "%s", lib.why);
	} else {
		rc = lib.run(lib.ctx, script) ? -1 : 0;
		const char *e = lib.error_buffer(lib.ctx); /* reading a buffer also resets it */
		lib.output_buffer(lib.ctx);
		if (rc)
			snprintf(err, errlen, "%s", e && *e ? e : "nft: the script was refused");
	}
	pthread_mutex_unlock(&lib.lock);
	return rc;
}
