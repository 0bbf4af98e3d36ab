/* dbkeep-iam-check IAM_DIR: the PostgreSQL side of dbkeep's IAM database login, run by
 * pam_exec (expose_authtok) from the cluster's PAM service for members of rds_iam.
 *
 * stdin: the "password" the client side sent (pam_exec writes it and a NUL); PAM_USER: the
 * login name. Accepts only "dbkeep-iam-pg-v1:NONCE:MAC" where NONCE is 16 hex digits of the unix
 * time (within 60 s of now) and 32 random hex digits, MAC is
 * hex(HMAC-SHA256(IAM_DIR/proof.key, "dbkeep-iam-pg-v1" 0x00 NONCE 0x00 USER)), and the gateway's
 * one-time file IAM_DIR/nonces/NONCE still exists: it is unlinked here, so a proof works once.
 * Exit 0 accepts; anything else is PostgreSQL's "PAM authentication failed for user" (pam_exec
 * reports a failed command as PAM_SYSTEM_ERR; the reason goes to stderr, which pam_exec discards
 * unless its log= option is given). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "iam_proof.h"

#define LABEL "dbkeep-iam-pg-v1"
#define NONCE_HEX 48
#define MAX_AGE 60

int main(int argc, char **argv)
{
  char input[512 + 2], path[4096], expected[IAM_MAC_HEX + 1];
  unsigned char key[IAM_KEY_LEN];
  const char *user = getenv("PAM_USER"), *type = getenv("PAM_TYPE");
  size_t prefix = sizeof(LABEL ":") - 1, got = 0;
  ssize_t n;
  if (argc != 2 || user == NULL || (type != NULL && strcmp(type, "auth") != 0))
  {
    fprintf(stderr, "dbkeep-iam-check: usage\n");
    return 2;
  }
  while (got < sizeof(input) - 1 && (n = read(0, input + got, sizeof(input) - 1 - got)) != 0)
  {
    if (n < 0) { if (errno == EINTR) continue; return 1; }
    got += (size_t)n;
  }
  while (got > 0 && (input[got - 1] == 0 || input[got - 1] == '\n'))
    got--;
  input[got] = 0;
  if (got != prefix + NONCE_HEX + 1 + IAM_MAC_HEX || memcmp(input, LABEL ":", prefix) != 0
      || input[prefix + NONCE_HEX] != ':')
    return 1;
  const char *nonce = input + prefix, *mac = input + prefix + NONCE_HEX + 1;
  long long stamp = 0;
  for (int i = 0; i < NONCE_HEX; i++)
  {
    int v = iam_unhex(nonce[i]);
    if (v < 0) return 1;
    if (i < 16) stamp = stamp << 4 | v;
  }
  long long now = (long long)time(NULL);
  if (stamp > now + MAX_AGE || stamp < now - MAX_AGE)
  {
    fprintf(stderr, "dbkeep-iam-check: stale nonce\n");
    return 1;
  }
  if (snprintf(path, sizeof(path), "%s/proof.key", argv[1]) >= (int)sizeof(path) || iam_read_key(path, key) != 0)
  {
    perror("dbkeep-iam-check: cannot read the proof key");
    return 1;
  }
  int ok = iam_mac_hex(key, LABEL, nonce, NONCE_HEX, user, strlen(user), expected) == 0
           && CRYPTO_memcmp(expected, mac, IAM_MAC_HEX) == 0;
  OPENSSL_cleanse(key, sizeof(key));
  if (!ok)
  {
    fprintf(stderr, "dbkeep-iam-check: wrong proof\n");
    return 1;
  }
  if (snprintf(path, sizeof(path), "%s/nonces/%.*s", argv[1], NONCE_HEX, nonce) >= (int)sizeof(path))
    return 1;
  if (unlink(path) != 0) { perror("dbkeep-iam-check: unlink"); return 1; }
  return 0;   /* ENOENT: never minted, or used already */
}
