/* dbkeep-iam-check IAM_DIR: the PostgreSQL proof check (iam_pg_check.h) as a program, the twin of
 * dbkeep's PAM module for tests and diagnosis (a pam_exec service could run it too).
 *
 * stdin: the "password" (pam_exec's expose_authtok writes it and a NUL); PAM_USER: the login name.
 * Exit 0 accepts; the reason of a refusal goes to stderr. */
#include <stdlib.h>

#include "iam_pg_check.h"

int main(int argc, char **argv)
{
  char input[512 + 2];
  const char *user = getenv("PAM_USER"), *type = getenv("PAM_TYPE"), *why;
  size_t got = 0;
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
  if (iam_pg_check(argv[1], user, input, got, &why) != 0)
  {
    fprintf(stderr, "dbkeep-iam-check: %s\n", why);
    return 1;
  }
  return 0;
}
