"""Build of the native parts (everything else is in pyproject.toml).

- dbkeep.gateway._relay relays logged-in gateway sessions in threads that never take the GIL;
  it links the system OpenSSL, the same library Python's ssl module uses (checked at import).
- dbkeep/engines/native/: IAM database login on the engine side (engines/iam.py). The MariaDB
  server plugin ``AWSAuthenticationPlugin`` (``aws_iam_auth.so``, headers from Debian's
  libmariadbd-dev), ``pam_dbkeep_iam.so``, the PAM module PostgreSQL's per-cluster PAM service
  loads (headers from libpam0g-dev), and ``dbkeep-iam-check``, its check as a program (tests).
  Without the MariaDB headers the plugin is skipped with a warning (IAM accounts on MariaDB then
  cannot be enabled); both link libcrypto.
- ``dbkeep_protect.so``, a PostgreSQL ProcessUtility hook every cluster preloads: the engine
  itself refuses changes to the roles dbkeep owns (engines/pg_hook.py; headers from
  postgresql-server-dev-15, skipped with a warning without them).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = os.path.join("src", "dbkeep", "engines", "native")
MARIADB_SERVER_INCLUDE = "/usr/include/mariadb/server"
PAM_MODULES_H = "/usr/include/security/pam_modules.h"
PG_SERVER_INCLUDE = "/usr/include/postgresql/15/server"  # Debian bookworm's PostgreSQL, the engines' (postgresql-server-dev-15)
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]


class BuildWithNative(build_ext):
    """build_ext plus the engine-side IAM artefacts, next to the package's sources (editable
    installs build in place) or in build_lib (wheels)."""

    def run(self) -> None:
        super().run()
        out = NATIVE if self.inplace else os.path.join(self.build_lib, "dbkeep", "engines", "native")
        os.makedirs(out, exist_ok=True)
        cc = self.compiler
        tmp = os.path.join(self.build_temp, "native")
        objs = cc.compile([os.path.join(NATIVE, "iam_check.c")], output_dir=tmp, extra_postargs=CFLAGS)
        cc.link_executable(objs, "dbkeep-iam-check", output_dir=out, libraries=["crypto"])
        if os.path.isfile(os.path.join(MARIADB_SERVER_INCLUDE, "mysql", "plugin_auth.h")):
            objs = cc.compile([os.path.join(NATIVE, "aws_iam_auth.c")], output_dir=tmp,
                              include_dirs=[MARIADB_SERVER_INCLUDE], macros=[("MYSQL_DYNAMIC_PLUGIN", None)],
                              extra_postargs=[*CFLAGS, "-fPIC"])
            cc.link_shared_object(objs, os.path.join(out, "aws_iam_auth.so"), libraries=["crypto"])
        else:
            print(f"warning: {MARIADB_SERVER_INCLUDE}/mysql/plugin_auth.h missing (apt-get install libmariadbd-dev): "
                  "the MariaDB IAM plugin is not built", file=sys.stderr)
        if os.path.isfile(os.path.join(PG_SERVER_INCLUDE, "postgres.h")):
            objs = cc.compile([os.path.join(NATIVE, "dbkeep_protect.c")], output_dir=tmp,
                              include_dirs=[PG_SERVER_INCLUDE], extra_postargs=[*CFLAGS, "-fPIC"])
            cc.link_shared_object(objs, os.path.join(out, "dbkeep_protect.so"))
        else:
            print(f"warning: {PG_SERVER_INCLUDE}/postgres.h missing (apt-get install postgresql-server-dev-15): "
                  "the PostgreSQL hook that protects dbkeep's roles is not built", file=sys.stderr)
        if os.path.isfile(PAM_MODULES_H):
            objs = cc.compile([os.path.join(NATIVE, "pam_dbkeep_iam.c")], output_dir=tmp, extra_postargs=[*CFLAGS, "-fPIC"])
            cc.link_shared_object(objs, os.path.join(out, "pam_dbkeep_iam.so"), libraries=["pam", "crypto"])
        else:
            print(f"warning: {PAM_MODULES_H} missing (apt-get install libpam0g-dev): "
                  "dbkeep's PAM module for PostgreSQL IAM logins is not built", file=sys.stderr)


# the relay's C sources, one concern a file (relay.h says which); the headers are `depends`:
# a change to one rebuilds the module (and current setuptools puts them in an sdist)
RELAY = "src/dbkeep/gateway/relay"

setup(
    cmdclass={"build_ext": BuildWithNative},
    ext_modules=[
        Extension(
            "dbkeep.gateway._relay",
            [f"{RELAY}/{name}.c" for name in ("module", "sessions", "loop", "tls", "mysql_framing", "pg_framing")],
            depends=[f"{RELAY}/{name}.h" for name in ("relay", "tls", "mysql_framing", "mysql_plain", "pg_framing", "pg_plain")],
            libraries=["ssl", "crypto"],
            extra_compile_args=CFLAGS,
        )
    ],
)
