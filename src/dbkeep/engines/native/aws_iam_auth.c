/* AWSAuthenticationPlugin: dbkeep's MariaDB server authentication plugin for IAM accounts.
 *
 * An account `IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'` is an IAM account: the engine
 * itself asks the client for `mysql_clear_password` (an AuthSwitchRequest naming that plugin, as
 * Aurora does) and accepts only dbkeep's proof, never a password or a token. The plugin data of
 * the AuthSwitchRequest is a fresh random nonce (32 hex digits; real clients ignore the data of
 * the cleartext plugin, the gateway reads it); the reply must be
 *   hex(HMAC-SHA256(proof key, "dbkeep-iam-mysql-v1" 0x00 NONCE 0x00 USER)) [+ NUL]
 * where USER is the login name the client sent. The key is read at each login from
 * `../iam/proof.key`, relative to the server's working directory, its data directory
 * (DIR/clusters/<id>/data): a key that is missing or malformed refuses every login. A refusal
 * is the server's own 1045 Access denied (using password: YES).
 *
 * Plugin API: MariaDB's plugin_auth.h (MYSQL_AUTHENTICATION_INTERFACE_VERSION); the server wraps
 * the plugin's first packet in the AuthSwitchRequest (sql_acl.cc, server_mpvio_write_packet).
 * No password hashing: `IDENTIFIED WITH AWSAuthenticationPlugin BY '...'` is refused. */
#include <stdio.h>
#include <sys/random.h>
#include <mysql/plugin_auth.h>

#include "iam_proof.h"

#define KEY_PATH "../iam/proof.key"
#define LABEL "dbkeep-iam-mysql-v1"
#define NONCE_BYTES 16

static int iam_authenticate(MYSQL_PLUGIN_VIO *vio, MYSQL_SERVER_AUTH_INFO *info)
{
  static const char hexd[] = "0123456789abcdef";
  unsigned char raw[NONCE_BYTES], key[IAM_KEY_LEN];
  char nonce[NONCE_BYTES * 2 + 1], expected[IAM_MAC_HEX + 1];
  unsigned char *pkt;
  int len, ok;
  size_t got = 0;

  info->password_used = PASSWORD_USED_YES;
  while (got < sizeof(raw))
  {
    ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
    if (n < 0) { if (errno == EINTR) continue; return CR_ERROR; }
    got += (size_t)n;
  }
  for (int i = 0; i < NONCE_BYTES; i++)
  {
    nonce[2 * i] = hexd[raw[i] >> 4];
    nonce[2 * i + 1] = hexd[raw[i] & 15];
  }
  nonce[NONCE_BYTES * 2] = 0;
  /* the first packet becomes the AuthSwitchRequest to mysql_clear_password */
  if (vio->write_packet(vio, (const unsigned char *)nonce, NONCE_BYTES * 2))
    return CR_ERROR;
  if ((len = vio->read_packet(vio, &pkt)) < 0)
    return CR_ERROR;
  if (len > 0 && pkt[len - 1] == 0)   /* mysql_clear_password sends the text and a NUL */
    len--;
  if (len != IAM_MAC_HEX || info->user_name == NULL)
    return CR_ERROR;
  if (iam_read_key(KEY_PATH, key) != 0)
  {
    fprintf(stderr, "AWSAuthenticationPlugin: cannot read the proof key %s: login refused\n", KEY_PATH);
    return CR_ERROR;
  }
  ok = iam_mac_hex(key, LABEL, nonce, NONCE_BYTES * 2, info->user_name, info->user_name_length, expected) == 0
       && CRYPTO_memcmp(expected, pkt, IAM_MAC_HEX) == 0;
  OPENSSL_cleanse(key, sizeof(key));
  return ok ? CR_OK : CR_ERROR;
}

static struct st_mysql_auth iam_handler = {
  MYSQL_AUTHENTICATION_INTERFACE_VERSION,
  "mysql_clear_password",
  iam_authenticate,
  NULL, /* hash_password: an IAM account has no password */
  NULL, /* preprocess_hash */
};

maria_declare_plugin(aws_iam_auth)
{
  MYSQL_AUTHENTICATION_PLUGIN,
  &iam_handler,
  "AWSAuthenticationPlugin",
  "dbkeep",
  "IAM database authentication: accepts dbkeep's per-connection proof of a verified IAM token",
  PLUGIN_LICENSE_GPL,
  NULL,
  NULL,
  0x0100,
  NULL,
  NULL,
  "1.0",
  MariaDB_PLUGIN_MATURITY_STABLE
}
maria_declare_plugin_end;
