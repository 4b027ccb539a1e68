/*
 * nftables scripts through libnftables, in-process (see nft.c).
 */
#ifndef ENCLAVE_NFT_H
#define ENCLAVE_NFT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Apply one nft script atomically. 0, or -1 with the reason in err. Blocks: not for the event loop. */
int nft_apply(const char *script, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
