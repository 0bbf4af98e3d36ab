/* pam_dbkeep_iam.so: dbkeep's PAM module for PostgreSQL IAM logins (engines/iam.py).
 *
 * The cluster's PAM service (/etc/pam.d/dbkeep-iam-<hash>) loads it by absolute path:
 *   auth  required  IAM_DIR/pam_dbkeep_iam.so IAM_DIR    IAM authentication enabled
 *   auth  required  IAM_DIR/pam_dbkeep_iam.so off        disabled: nothing passes
 * Either way it first asks for the password (pam_get_authtok: PostgreSQL then sends the client
 * AuthenticationCleartextPassword), so the gateway always reads the token and audits why it
 * refused; enabled, the password must be the gateway's one-time proof (iam_pg_check.h).
 *
 * In the backend itself, instead of pam_exec forking a checker per login: no fork, no exec, no
 * dynamic loading of libcrypto (the backend has it already). Refusals are PAM_AUTH_ERR, which
 * PostgreSQL reports as `PAM authentication failed for user "USER"`; the reason goes to syslog
 * at debug level only when the `debug` option is given. */
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "iam_pg_check.h"

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
  const char *user = NULL, *token = NULL, *why = "";
  int debug = argc > 1 && strcmp(argv[1], "debug") == 0;
  if (argc < 1 || pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL)
    return PAM_AUTH_ERR;
  if (pam_get_authtok(pamh, PAM_AUTHTOK, &token, NULL) != PAM_SUCCESS || token == NULL)
    return PAM_AUTH_ERR;
  if (strcmp(argv[0], "off") == 0)
    return PAM_AUTH_ERR;
  if (iam_pg_check(argv[0], user, token, strlen(token), &why) != 0)
  {
    if (debug)
      pam_syslog(pamh, LOG_DEBUG, "IAM proof refused for %s: %s", user, why);
    return PAM_AUTH_ERR;
  }
  return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
  return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
  return argc >= 1 && strcmp(argv[0], "off") == 0 ? PAM_PERM_DENIED : PAM_SUCCESS;
}
