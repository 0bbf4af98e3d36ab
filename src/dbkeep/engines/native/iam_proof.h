/* dbkeep IAM database login: the proof the gateway gives an engine in place of a verified
 * token (shared by the MariaDB plugin and the PostgreSQL PAM checker).
 *
 * Proof key: the cluster's `iam/proof.key`, 64 hex digits (32 bytes) and a newline, 0600, owned
 * by the cluster's engine user; only dbkeep and that engine read it.
 *
 *   MariaDB:    hex(HMAC-SHA256(key, "dbkeep-iam-mysql-v1" 0x00 NONCE 0x00 USER))
 *               NONCE: the 32 hex digits the plugin sent in its AuthSwitchRequest
 *   PostgreSQL: "dbkeep-iam-pg-v1:" NONCE ":" hex(HMAC-SHA256(key, "dbkeep-iam-pg-v1" 0x00 NONCE 0x00 USER))
 *               NONCE: 16 hex digits of the unix time + 32 random hex digits, minted by the
 *               gateway as an empty file iam/nonces/NONCE, consumed (unlinked) by the checker
 *
 * Python twin: dbkeep/identity/engine_proof.py (tests check that they agree). */
#ifndef DBKEEP_IAM_PROOF_H
#define DBKEEP_IAM_PROOF_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define IAM_KEY_LEN 32
#define IAM_MAC_HEX 64

static int iam_unhex(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Read the proof key (64 lowercase hex digits, optional trailing newline). 0 on success. */
static int iam_read_key(const char *path, unsigned char key[IAM_KEY_LEN])
{
  char buf[IAM_KEY_LEN * 2 + 8];
  ssize_t n, got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  while (got < (ssize_t)sizeof(buf) && (n = read(fd, buf + got, sizeof(buf) - got)) != 0)
  {
    if (n < 0) { if (errno == EINTR) continue; close(fd); return -1; }
    got += n;
  }
  close(fd);
  if (got < IAM_KEY_LEN * 2) return -1;
  for (int i = 0; i < IAM_KEY_LEN; i++)
  {
    int hi = iam_unhex(buf[2 * i]), lo = iam_unhex(buf[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    key[i] = (unsigned char)(hi << 4 | lo);
  }
  for (ssize_t i = IAM_KEY_LEN * 2; i < got; i++)
    if (buf[i] != '\n') return -1;
  OPENSSL_cleanse(buf, sizeof(buf));
  return 0;
}

/* hex(HMAC-SHA256(key, label 0 nonce 0 user)) into out[65]. 0 on success. */
static int iam_mac_hex(const unsigned char key[IAM_KEY_LEN], const char *label, const char *nonce, size_t nonce_len,
                       const char *user, size_t user_len, char out[IAM_MAC_HEX + 1])
{
  static const char hexd[] = "0123456789abcdef";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  size_t label_len = strlen(label);
  size_t len = label_len + 1 + nonce_len + 1 + user_len;
  unsigned char msg[600];
  if (len > sizeof(msg)) return -1;
  memcpy(msg, label, label_len);
  msg[label_len] = 0;
  memcpy(msg + label_len + 1, nonce, nonce_len);
  msg[label_len + 1 + nonce_len] = 0;
  memcpy(msg + label_len + 2 + nonce_len, user, user_len);
  if (!HMAC(EVP_sha256(), key, IAM_KEY_LEN, msg, len, mac, &mac_len) || mac_len != 32) return -1;
  for (unsigned int i = 0; i < mac_len; i++)
  {
    out[2 * i] = hexd[mac[i] >> 4];
    out[2 * i + 1] = hexd[mac[i] & 15];
  }
  out[IAM_MAC_HEX] = 0;
  return 0;
}

#endif
