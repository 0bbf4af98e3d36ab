/* AWSAuthenticationPlugin: dbkeep's MariaDB server authentication plugin for IAM accounts.
 *
 * An account `IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'` is an IAM account: the engine
 * itself asks the client for `mysql_clear_password` (as Aurora does) and accepts only dbkeep's
 * proof, never a password or a token. The plugin reads first: when the login packet already
 * names `mysql_clear_password` (the gateway does so for an account it knows to be an IAM one,
 * with the proof as its data), the server hands that data over; otherwise it sends the client an
 * AuthSwitchRequest to `mysql_clear_password` (empty plugin data) and hands over the reply.
 * Either way the data must be
 *   hex(HMAC-SHA256(proof key, "dbkeep-iam-mysql-v2" 0x00 THREAD 0x00 USER)) [+ NUL]
 * where THREAD is this connection's id in decimal (the low 32 bits: what the server's greeting
 * told the gateway; ids are not reused while the server runs, and the key is a new one at every
 * engine start) and USER the login name the client sent. The key is read at each login from
 * `../iam/proof.key`, relative to the server's working directory, its data directory
 * (DIR/clusters/<id>/data): a key that is missing or malformed refuses every login. A refusal
 * is the server's own 1045 Access denied (using password: YES).
 *
 * Plugin API: MariaDB's plugin_auth.h (MYSQL_AUTHENTICATION_INTERFACE_VERSION); sql_acl.cc,
 * server_mpvio_read_packet, uses the login packet's data when its plugin is ours.
 * No password hashing: `IDENTIFIED WITH AWSAuthenticationPlugin BY '...'` is refused. */
#include <stdio.h>
#include <mysql/plugin_auth.h>

#include "iam_proof.h"

#define KEY_PATH "../iam/proof.key"
#define LABEL "dbkeep-iam-mysql-v2"

static int iam_authenticate(MYSQL_PLUGIN_VIO *vio, MYSQL_SERVER_AUTH_INFO *info)
{
  unsigned char key[IAM_KEY_LEN];
  char thread[16], expected[IAM_MAC_HEX + 1];
  unsigned char *pkt;
  int len, ok, thread_len;

  info->password_used = PASSWORD_USED_YES;
  if ((len = vio->read_packet(vio, &pkt)) < 0)
    return CR_ERROR;
  if (len > 0 && pkt[len - 1] == 0)   /* mysql_clear_password sends the text and a NUL */
    len--;
  if (len != IAM_MAC_HEX || info->user_name == NULL)
    return CR_ERROR;
  thread_len = snprintf(thread, sizeof(thread), "%u", (unsigned)(thd_get_thread_id(info->thd) & 0xffffffffu));
  if (iam_read_key(KEY_PATH, key) != 0)
  {
    fprintf(stderr, "AWSAuthenticationPlugin: cannot read the proof key %s: login refused\n", KEY_PATH);
    return CR_ERROR;
  }
  ok = iam_mac_hex(key, LABEL, thread, (size_t)thread_len, info->user_name, info->user_name_length, expected) == 0
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
  0x0200,
  NULL,
  NULL,
  "2.0",
  MariaDB_PLUGIN_MATURITY_STABLE
}
maria_declare_plugin_end;
