/* dbkeep IAM database login, PostgreSQL: the check of the gateway's one-time proof, shared by
 * dbkeep's PAM module (pam_dbkeep_iam.c, what the cluster's PAM service loads) and the
 * stand-alone checker (iam_check.c).
 *
 * Accepts only "dbkeep-iam-pg-v1:NONCE:MAC" where NONCE is 16 hex digits of the unix time (within
 * 60 s of now) and 32 random hex digits, MAC is hex(HMAC-SHA256(IAM_DIR/proof.key,
 * "dbkeep-iam-pg-v1" 0x00 NONCE 0x00 USER)), and the gateway's one-time file IAM_DIR/nonces/NONCE
 * still exists: it is unlinked here, so a proof works once. */
#ifndef DBKEEP_IAM_PG_CHECK_H
#define DBKEEP_IAM_PG_CHECK_H

#include <stdio.h>
#include <time.h>

#include "iam_proof.h"

#define IAM_PG_LABEL "dbkeep-iam-pg-v1"
#define IAM_PG_NONCE_HEX 48
#define IAM_PG_MAX_AGE 60

/* 0 when `input` (len bytes, no NUL needed) is a valid, unused proof for `user`; otherwise -1
 * and *why says why (for a log line; never the proof). */
static int iam_pg_check(const char *iam_dir, const char *user, const char *input, size_t len, const char **why)
{
  char path[4096], expected[IAM_MAC_HEX + 1];
  unsigned char key[IAM_KEY_LEN];
  const size_t prefix = sizeof(IAM_PG_LABEL ":") - 1;
  *why = "malformed proof";
  if (len != prefix + IAM_PG_NONCE_HEX + 1 + IAM_MAC_HEX || memcmp(input, IAM_PG_LABEL ":", prefix) != 0
      || input[prefix + IAM_PG_NONCE_HEX] != ':')
    return -1;
  const char *nonce = input + prefix, *mac = input + prefix + IAM_PG_NONCE_HEX + 1;
  long long stamp = 0;
  for (int i = 0; i < IAM_PG_NONCE_HEX; i++)
  {
    int v = iam_unhex(nonce[i]);
    if (v < 0) return -1;
    if (i < 16) stamp = stamp << 4 | v;
  }
  long long now = (long long)time(NULL);
  if (stamp > now + IAM_PG_MAX_AGE || stamp < now - IAM_PG_MAX_AGE)
  {
    *why = "stale nonce";
    return -1;
  }
  if (snprintf(path, sizeof(path), "%s/proof.key", iam_dir) >= (int)sizeof(path) || iam_read_key(path, key) != 0)
  {
    *why = "cannot read the proof key";
    return -1;
  }
  int ok = iam_mac_hex(key, IAM_PG_LABEL, nonce, IAM_PG_NONCE_HEX, user, strlen(user), expected) == 0
           && CRYPTO_memcmp(expected, mac, IAM_MAC_HEX) == 0;
  OPENSSL_cleanse(key, sizeof(key));
  if (!ok)
  {
    *why = "wrong proof";
    return -1;
  }
  *why = "nonce unknown or used";  /* ENOENT: never minted, or used already */
  if (snprintf(path, sizeof(path), "%s/nonces/%.*s", iam_dir, IAM_PG_NONCE_HEX, nonce) >= (int)sizeof(path))
    return -1;
  return unlink(path) == 0 ? 0 : -1;
}

#endif
